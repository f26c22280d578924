"""Localisation scenes: the FIDO benchmark, one labelled item on a cluttered canvas with its exact mask.

Each canvas holds one item (the labelled object) at a random position, drawn over `num_distractors`
pieces of clutter: random crops of items of other classes, shrunk and faded, so they are parts rather
than whole objects. The item is drawn last, on top, so its mask - the pixels where the resized item's
intensity exceeds `mask_threshold` - is exactly the part of the item that is visible. A saliency map
that localises the object should put its mass inside `mask` (and inside `box`, its tight box).
"""

from dataclasses import dataclass, field

import datasets
import numpy as np
from PIL import Image

from .builders import builder_config_of, builder_description, item_pools

SPLITS = ("train", "validation", "test")


@dataclass
class LocalisationSceneConfig:
    """Knobs of the localisation-scene benchmark; the same config and seed give the same data.

    The defaults are the benchmark's design: one Fashion-MNIST item at 35-60% of a 64-pixel canvas,
    three faded crops of other classes as clutter, mild pixel noise.
    """

    canvas_size: int = field(default=64, metadata={"help": "Side of the square RGB canvas in pixels."})
    item_scale: list[float] = field(
        default_factory=lambda: [0.35, 0.6],
        metadata={"help": "Labelled item's side as a fraction of the canvas (min, max)."},
    )
    num_distractors: int = field(
        default=3, metadata={"help": "Clutter pieces per canvas (crops of items of other classes)."}
    )
    distractor_scale: list[float] = field(
        default_factory=lambda: [0.15, 0.35],
        metadata={"help": "Clutter piece's side as a fraction of the canvas (min, max)."},
    )
    distractor_contrast: float = field(
        default=0.4, metadata={"help": "Brightness multiplier of a clutter piece (0..1)."}
    )
    noise_std: float = field(default=0.05, metadata={"help": "Std of Gaussian pixel noise (0..1 scale)."})
    mask_threshold: float = field(
        default=0.1,
        metadata={"help": "An item pixel is in the mask when its resized intensity (0..1) exceeds this."},
    )
    num_train: int = field(default=2000, metadata={"help": "Training canvases."})
    num_validation: int = field(default=200, metadata={"help": "Validation canvases."})
    num_test: int = field(default=500, metadata={"help": "Test canvases (items unseen in train)."})
    seed: int = field(default=0, metadata={"help": "Seed of everything random in the builder."})

    def __post_init__(self):
        if self.canvas_size < 8:
            raise ValueError(f"canvas_size must be >= 8, got {self.canvas_size}.")
        for name in ("item_scale", "distractor_scale"):
            scale = getattr(self, name)
            if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
                raise ValueError(f"{name} must be [min, max] with 0 < min <= max <= 1, got {scale}.")
        if self.num_distractors < 0:
            raise ValueError(f"num_distractors must be >= 0, got {self.num_distractors}.")
        if not 0.0 <= self.distractor_contrast <= 1.0:
            raise ValueError(f"distractor_contrast must be in [0, 1], got {self.distractor_contrast}.")
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}.")
        if not 0.0 <= self.mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must be in [0, 1), got {self.mask_threshold}.")
        if min(self.num_train, self.num_validation, self.num_test) < 0:
            raise ValueError("num_train, num_validation and num_test must be >= 0.")


def _resize(item: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(item).resize((side, side), Image.BILINEAR), dtype=np.float32)


def _render(
    config: LocalisationSceneConfig, cls: int, pools: dict, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One canvas (uint8 RGB) and its item mask (bool), clutter first, then the item on top."""
    s = config.canvas_size
    canvas = np.zeros((s, s, 3), dtype=np.float32)
    others = [c for c in pools if c != cls]
    for _ in range(config.num_distractors):
        pool = pools[others[rng.integers(len(others))]]
        item = pool[rng.integers(len(pool))]
        h, w = item.shape
        ch, cw = (max(2, int(round(rng.uniform(0.4, 0.7) * n))) for n in (h, w))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        side = max(2, int(round(rng.uniform(*config.distractor_scale) * s)))
        crop = np.ascontiguousarray(item[top : top + ch, left : left + cw])
        colour = rng.uniform(0.5, 1.0, size=3).astype(np.float32) * config.distractor_contrast
        patch = _resize(crop, side)[..., None] * colour
        x, y = rng.integers(0, s - side + 1, size=2)
        canvas[y : y + side, x : x + side] = np.maximum(canvas[y : y + side, x : x + side], patch)

    pool = pools[cls]
    for _ in range(20):  # an item too faint for the threshold has no mask: draw another
        side = max(4, int(round(rng.uniform(*config.item_scale) * s)))
        intensity = _resize(pool[rng.integers(len(pool))], side)
        item_mask = intensity > config.mask_threshold
        if item_mask.any():
            break
    else:
        raise ValueError(f"class {cls} items never exceed mask_threshold={config.mask_threshold}; lower it.")
    colour = rng.uniform(0.5, 1.0, size=3).astype(np.float32)
    patch = intensity[..., None] * colour
    x, y = rng.integers(0, s - side + 1, size=2)
    region = canvas[y : y + side, x : x + side]
    region[:] = np.maximum(region, patch)
    region[item_mask] = patch[item_mask]  # the item hides the clutter behind it
    mask = np.zeros((s, s), dtype=bool)
    mask[y : y + side, x : x + side] = item_mask

    canvas += rng.normal(0.0, config.noise_std, size=canvas.shape).astype(np.float32)
    return (np.clip(canvas, 0, 1) * 255).round().astype(np.uint8), mask


def _build_split(config: LocalisationSceneConfig, pools: dict, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    class_ids = sorted(pools)
    rows = {"image": [], "label": [], "mask": [], "box": []}
    for _ in range(n):
        cls = int(class_ids[rng.integers(len(class_ids))])
        image, mask = _render(config, cls, pools, rng)
        ys, xs = np.nonzero(mask)
        rows["image"].append(image)
        rows["label"].append(cls)
        rows["mask"].append(mask.astype(np.uint8) * 255)
        rows["box"].append([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1])
    return rows


def build_localisation_scenes(
    config: LocalisationSceneConfig, source: datasets.DatasetDict
) -> datasets.DatasetDict:
    """Build train / validation / test scenes from a {"train", "test"} item source (image, label).

    Columns: `image` (RGB), `label`, `mask` (mode "L", 255 on the visible item pixels) and `box`
    ([x0, y0, x1, y1], the mask's tight box, x1 and y1 exclusive). Train and validation items come
    from the source's train split, test items from its test split. The config is stored in each
    split's `info.description`.
    """
    names = source["train"].features["label"].names
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=names),
            "mask": datasets.Image(),
            "box": datasets.Sequence(datasets.Value("int32"), length=4),
        }
    )
    description = builder_description("localisation_scenes", config)
    train_pools = item_pools(source["train"])
    test_pools = item_pools(source["test"])
    if config.num_distractors > 0 and min(len(train_pools), len(test_pools)) < 2:
        raise ValueError("clutter is drawn from other classes: the source needs >= 2 classes per split.")
    plan = {
        "train": (train_pools, config.num_train),
        "validation": (train_pools, config.num_validation),
        "test": (test_pools, config.num_test),
    }
    splits = {}
    for i, (name, (pools, n)) in enumerate(plan.items()):
        rows = _build_split(config, pools, n, seed=config.seed * 1000 + i)
        info = datasets.DatasetInfo(description=description, features=features)
        splits[name] = datasets.Dataset.from_dict(rows, features=features, info=info, split=name)
    return datasets.DatasetDict(splits)


def localisation_config_of(dataset: datasets.Dataset) -> LocalisationSceneConfig:
    """Recover the builder config of a localisation-scene split (also after `load_from_disk`)."""
    return builder_config_of(dataset, "localisation_scenes", LocalisationSceneConfig)
