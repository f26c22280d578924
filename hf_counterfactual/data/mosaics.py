"""Co-occurrence mosaics: the PAT benchmark, where a companion object is a shortcut for a hard target.

Each canvas holds 1-N items at random positions (not aligned to any patch grid). In train and
validation, every pair (target, companion) is biased: the companion is added to `strength` of the
canvases that contain the target, and `hard_fraction` of the targets are shrunk, faded and partly
occluded, so a plain model learns to lean on the companion. In test the companion is never added, so
"companion without target" canvases exist in number and the shortcut shows up as false positives.
"""

from dataclasses import dataclass, field

import datasets
import numpy as np
from PIL import Image

from .builders import builder_config_of, builder_description, item_pools

SPLITS = ("train", "validation", "test")


@dataclass
class CooccurrenceMosaicConfig:
    """Knobs of the co-occurrence mosaic benchmark; the same config and seed give the same data.

    The defaults are the benchmark's design (benchmarks/README.md): distinctive targets (Fashion-MNIST
    trouser, bag, sneaker, dress, ankle boot), each with a companion from another family; half of the
    targets drawn at 40% size, so the whole-image view barely resolves them and the companion is the
    easy cue, while a 2x-zoomed patch does resolve them. Contrast and occlusion make items harder still.
    """

    canvas_size: int = field(default=64, metadata={"help": "Side of the square RGB canvas in pixels."})
    min_items: int = field(default=1, metadata={"help": "Fewest randomly drawn items per canvas."})
    max_items: int = field(
        default=2, metadata={"help": "Most randomly drawn items per canvas (before companions)."}
    )
    biased_pairs: list[list[int]] = field(
        default_factory=lambda: [[1, 5], [8, 2], [7, 4], [3, 6], [9, 0]],
        metadata={"help": "[target, companion] class pairs; the companion joins the target in train."},
    )
    strength: float = field(
        default=0.9, metadata={"help": "P(companion added | target present) in train/val."}
    )
    item_scale: list[float] = field(
        default_factory=lambda: [0.35, 0.5],
        metadata={"help": "Item side as a fraction of the canvas (min, max)."},
    )
    hard_fraction: float = field(
        default=0.5, metadata={"help": "Fraction of target-class items drawn hard (small, faint, occluded)."}
    )
    hard_scale: float = field(default=0.4, metadata={"help": "Size multiplier of a hard item."})
    hard_contrast: float = field(default=1.0, metadata={"help": "Brightness multiplier of a hard item."})
    occlusion: float = field(
        default=0.0, metadata={"help": "Fraction of a hard item's side hidden by a random bar."}
    )
    noise_std: float = field(default=0.05, metadata={"help": "Std of Gaussian pixel noise (0..1 scale)."})
    max_overlap: float = field(
        default=0.1, metadata={"help": "Largest allowed IoU between two items' boxes."}
    )
    num_train: int = field(default=6000, metadata={"help": "Training canvases."})
    num_validation: int = field(
        default=1000, metadata={"help": "Validation canvases (biased, for thresholds)."}
    )
    num_test: int = field(default=2000, metadata={"help": "Test canvases (no companions added)."})
    seed: int = field(default=0, metadata={"help": "Seed of everything random in the builder."})

    def __post_init__(self):
        if not 1 <= self.min_items <= self.max_items:
            raise ValueError(f"need 1 <= min_items <= max_items, got {self.min_items}, {self.max_items}.")
        if not 0.0 <= self.strength <= 1.0 or not 0.0 <= self.hard_fraction <= 1.0:
            raise ValueError("strength and hard_fraction must be in [0, 1].")
        lo, hi = self.item_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"item_scale must be 0 < min <= max <= 1, got {self.item_scale}.")
        flat = [c for pair in self.biased_pairs for c in pair]
        if any(len(p) != 2 or p[0] == p[1] for p in self.biased_pairs):
            raise ValueError(
                f"biased_pairs must be [target, companion] with two different classes: {self.biased_pairs}."
            )
        if len(set(flat)) != len(flat):
            raise ValueError(f"a class may appear in only one biased pair: {self.biased_pairs}.")


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _render(
    config: CooccurrenceMosaicConfig,
    classes: list[int],
    pools: dict,
    targets: set[int],
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[list[int]], list[bool]]:
    s = config.canvas_size
    canvas = np.zeros((s, s, 3), dtype=np.float32)
    boxes: list[tuple[int, int, int, int]] = []
    hard_flags = []
    for cls in classes:
        pool = pools[cls]
        item = pool[rng.integers(len(pool))]
        hard = cls in targets and rng.random() < config.hard_fraction
        side = rng.uniform(*config.item_scale) * s * (config.hard_scale if hard else 1.0)
        side = max(4, int(round(side)))
        for _ in range(20):  # rejection-sample a position with little overlap
            x, y = rng.integers(0, s - side + 1, size=2)
            box = (int(x), int(y), int(x) + side, int(y) + side)
            if all(_iou(box, other) <= config.max_overlap for other in boxes):
                break
        patch = np.asarray(Image.fromarray(item).resize((side, side), Image.BILINEAR), dtype=np.float32)
        colour = rng.uniform(0.5, 1.0, size=3).astype(np.float32)
        patch = patch[..., None] * colour
        if hard:
            patch = patch * config.hard_contrast
            bar = int(round(config.occlusion * side))
            if bar > 0:
                start = rng.integers(0, side - bar + 1)
                if rng.random() < 0.5:
                    patch[start : start + bar] = 0
                else:
                    patch[:, start : start + bar] = 0
        x0, y0, x1, y1 = box
        canvas[y0:y1, x0:x1] = np.maximum(canvas[y0:y1, x0:x1], patch)
        boxes.append(box)
        hard_flags.append(bool(hard))
    canvas += rng.normal(0.0, config.noise_std, size=canvas.shape).astype(np.float32)
    image = (np.clip(canvas, 0, 1) * 255).round().astype(np.uint8)
    return image, [list(b) for b in boxes], hard_flags


def _build_split(config: CooccurrenceMosaicConfig, pools: dict, biased: bool, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    class_ids = sorted(pools)
    companion_of = {t: c for t, c in config.biased_pairs}
    targets = set(companion_of)
    rows = {"image": [], "labels": [], "item_labels": [], "boxes": [], "hard": []}
    for _ in range(n):
        count = int(rng.integers(config.min_items, config.max_items + 1))
        classes = [int(c) for c in rng.choice(class_ids, size=min(count, len(class_ids)), replace=False)]
        if biased:
            for t in list(classes):
                c = companion_of.get(t)
                if c is not None and c not in classes and rng.random() < config.strength:
                    classes.append(c)
        image, boxes, hard = _render(config, classes, pools, targets, rng)
        rows["image"].append(image)
        rows["labels"].append(sorted(set(classes)))
        rows["item_labels"].append(classes)
        rows["boxes"].append(boxes)
        rows["hard"].append(hard)
    return rows


def build_cooccurrence_mosaics(
    config: CooccurrenceMosaicConfig, source: datasets.DatasetDict
) -> datasets.DatasetDict:
    """Build train / validation / test mosaics from a {"train", "test"} item source (image, label).

    Train and validation items come from the source's train split, test items from its test split,
    so test canvases hold unseen items. The config is stored in each split's `info.description`.
    """
    names = source["train"].features["label"].names
    pair_classes = [c for pair in config.biased_pairs for c in pair]
    if max(pair_classes) >= len(names) or min(pair_classes) < 0:
        raise ValueError(f"biased_pairs {config.biased_pairs} name classes outside 0..{len(names) - 1}.")
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "labels": datasets.Sequence(datasets.ClassLabel(names=names)),
            "item_labels": datasets.Sequence(datasets.Value("int64")),
            "boxes": datasets.Sequence(datasets.Sequence(datasets.Value("int32"), length=4)),
            "hard": datasets.Sequence(datasets.Value("bool")),
        }
    )
    description = builder_description("cooccurrence_mosaics", config)
    train_pools = item_pools(source["train"])
    test_pools = item_pools(source["test"])
    plan = {
        "train": (train_pools, True, config.num_train),
        "validation": (train_pools, True, config.num_validation),
        "test": (test_pools, False, config.num_test),
    }
    splits = {}
    for i, (name, (pools, biased, n)) in enumerate(plan.items()):
        rows = _build_split(config, pools, biased, n, seed=config.seed * 1000 + i)
        info = datasets.DatasetInfo(description=description, features=features)
        splits[name] = datasets.Dataset.from_dict(rows, features=features, info=info, split=name)
    return datasets.DatasetDict(splits)


def mosaic_config_of(dataset: datasets.Dataset) -> CooccurrenceMosaicConfig:
    """Recover the builder config of a mosaic split (also after `load_from_disk`)."""
    return builder_config_of(dataset, "cooccurrence_mosaics", CooccurrenceMosaicConfig)
