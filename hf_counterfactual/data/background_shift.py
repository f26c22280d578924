"""Spurious-background shift: the benchmark of robust fine-tuning (masked-image counterfactuals, arXiv 2303.03052).

Each image is one item (Fashion-MNIST, or the digits fallback), drawn in white at a random position
on a procedural background (stripes at several angles, checkers, dots, noise, gradients, plain
colour, ...; built from the CGN texture helpers, so no image files are copied in):

    image = alpha * white + (1 - alpha) * background

with alpha the item's intensity resized to `item_size`. Background kinds are split into `seen`
ones (the first `num_backgrounds` of `BACKGROUND_KINDS`) and `unseen` ones (the next
`num_unseen_backgrounds`). Splits:

- pretrain: the diverse "pre-training" distribution: every class on every seen background, drawn
  independently. Its captions ("a photo of a sneaker on a checkered background.") feed CLIP
  contrastive pre-training.
- train, validation, test_id: the downstream task, where the background is tied to the class: with
  probability `bias` class c sits on seen background c % num_backgrounds, otherwise on one of the
  other seen backgrounds, uniformly. Validation is held-out train data (model selection).
- test_ood_shuffled: seen backgrounds drawn independently of the class (the tie broken).
- test_ood_unseen: background kinds never seen in pretrain or train.

Pretrain, train and validation items come from disjoint parts of the source's train split (when the
source is too small for the sizes asked, each part repeats its own items, never another part's);
the three test splits show the same items of the source's test split, so their accuracies differ
by the backgrounds only.
"""

from dataclasses import dataclass, field

import datasets
import numpy as np

from .builders import builder_config_of, builder_description
from .cgn_variants import _draw_items, _load_items, _palette, _png, texture_crops, texture_patterns
from .sources import ITEM_SOURCES, load_item_source

SPLITS = ("pretrain", "train", "validation", "test_id", "test_ood_shuffled", "test_ood_unseen")
# (name used in captions, pattern, index into CGN_PALETTE). Patterns 0..9 are `texture_patterns`;
# the rest are made here. The first 10 are the default seen kinds, the last 6 the unseen ones.
BACKGROUND_KINDS = (
    ("horizontally striped", 0, 0),
    ("vertically striped", 1, 1),
    ("diagonally striped", 2, 2),
    ("checkered", 4, 3),
    ("polka-dot", 6, 4),
    ("blotchy", 8, 5),
    ("wavy", 9, 6),
    ("plaid", 7, 7),
    ("gradient", "horizontal_gradient", 8),
    ("plain", "solid", 9),
    ("tiled", 5, 0),
    ("slanted", 3, 3),
    ("speckled", "speckle", 6),
    ("ringed", "rings", 9),
    ("spotlit", "radial_gradient", 2),
    ("shaded", "vertical_gradient", 5),
)
CAPTION = "a photo of a {item} on a {background} background."
SHORT_CAPTION = "a photo of a {item}."
_SPECKLE_SEED = 2303_03052  # fixed, so backgrounds never change with the seed


@dataclass
class BackgroundShiftConfig:
    """Knobs of the spurious-background benchmark; same config and seed, same data."""

    source: str = field(
        default="auto",
        metadata={
            "help": f"Item source: one of {', '.join(ITEM_SOURCES)} ('auto': Fashion-MNIST, else digits)."
        },
    )
    source_path: str | None = field(default=None, metadata={"help": "Folder with Fashion-MNIST IDX files."})
    image_size: int = field(default=32, metadata={"help": "Side of the square RGB image in pixels."})
    item_size: int | None = field(
        default=None,
        metadata={
            "help": "Side of the item, pasted at a random position (None: 7/8 of image_size, so a ViT "
            "learns it from few images; smaller items move more)."
        },
    )
    num_backgrounds: int = field(
        default=10,
        metadata={
            "help": "Seen background kinds (pretrain, train, test_id, test_ood_shuffled): the first N."
        },
    )
    num_unseen_backgrounds: int = field(
        default=6,
        metadata={
            "help": f"Background kinds of test_ood_unseen only: the next N ({len(BACKGROUND_KINDS)} kinds in all)."
        },
    )
    bias: float = field(
        default=0.95,
        metadata={
            "help": "Share of train / validation / test_id images on their class's background "
            "(class c: seen kind c % num_backgrounds); the rest are on another seen kind."
        },
    )
    background_in_caption: float = field(
        default=0.1,
        metadata={
            "help": "Probability that a caption names the background ('a photo of a bag on a plaid "
            "background.'); otherwise it names the item only ('a photo of a bag.'). Contrastive "
            "pre-training counts 'a photo of a bag.' as wrong for the images of the other bags' "
            "captions, so high values slow down learning the classes (see recipes/robust_ft/)."
        },
    )
    num_pretrain: int = field(default=8000, metadata={"help": "Pre-training images (diverse)."})
    num_train: int = field(default=2000, metadata={"help": "Downstream training images (biased)."})
    num_validation: int = field(default=500, metadata={"help": "Held-out downstream images (biased)."})
    num_test: int = field(default=1000, metadata={"help": "Images of each test split (the same items)."})
    seed: int = field(default=0, metadata={"help": "Seed of everything random in the builder."})

    def __post_init__(self):
        if self.source not in ITEM_SOURCES:
            raise ValueError(f"Unknown source {self.source!r}; valid: {', '.join(ITEM_SOURCES)}.")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}.")
        if self.item_size is not None and not 4 <= self.item_size <= self.image_size:
            raise ValueError(f"item_size must be in [4, image_size={self.image_size}], got {self.item_size}.")
        if self.num_backgrounds < 2 or self.num_unseen_backgrounds < 1:
            raise ValueError(
                "num_backgrounds must be >= 2 and num_unseen_backgrounds >= 1, got "
                f"{self.num_backgrounds} and {self.num_unseen_backgrounds}."
            )
        if self.num_backgrounds + self.num_unseen_backgrounds > len(BACKGROUND_KINDS):
            raise ValueError(
                f"num_backgrounds + num_unseen_backgrounds must be <= {len(BACKGROUND_KINDS)} (the kinds "
                f"in BACKGROUND_KINDS), got {self.num_backgrounds} + {self.num_unseen_backgrounds}."
            )
        if not 0.0 <= self.bias <= 1.0 or not 0.0 <= self.background_in_caption <= 1.0:
            raise ValueError(
                f"bias and background_in_caption must be in [0, 1], got {self.bias} and "
                f"{self.background_in_caption}."
            )
        if min(self.num_pretrain, self.num_train, self.num_validation, self.num_test) < 0:
            raise ValueError("num_pretrain, num_train, num_validation and num_test must be >= 0.")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}.")

    @property
    def resolved_item_size(self) -> int:
        return self.item_size or self.image_size - self.image_size // 8


def item_name(label_name: str) -> str:
    """How captions and zero-shot prompts name a class: its label name in lower case."""
    return label_name.lower()


def background_textures(image_size: int) -> np.ndarray:
    """All `BACKGROUND_KINDS` as (K, 2 s, 2 s, 3) float32 tiles in [0, 1]; images show s x s crops.

    Kind k is its pattern g in two tones of its palette colour c: 0.2 c + g (0.6 c + 0.1), so every
    background stays darker than the white item. Fixed: they depend on `image_size` only.
    """
    size, scale = 2 * image_size, image_size / 32
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    radius = np.hypot(y - 0.5, x - 0.5)
    made = {
        "horizontal_gradient": x,
        "vertical_gradient": y,
        "radial_gradient": 1 - radius / radius.max(),
        "solid": np.full((size, size), 0.5, np.float32),
        "speckle": (np.random.default_rng(_SPECKLE_SEED).random((size, size)) > 0.7).astype(np.float32),
        "rings": 0.5 + 0.5 * np.cos(2 * np.pi * radius * (size - 1) / (5 * scale)),
    }
    patterns = texture_patterns(size, scale)
    palette = _palette()
    tiles = []
    for _, pattern, colour in BACKGROUND_KINDS:
        g = (patterns[pattern] if isinstance(pattern, int) else made[pattern])[..., None]
        c = palette[colour]
        tiles.append(0.2 * c + g * (0.6 * c + 0.1))
    return np.stack(tiles).astype(np.float32)


def _disjoint_items(counts: list[int], pool_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Source indices for parts of `counts` images from disjoint parts of a pool of `pool_size` items.

    When the pool holds all of them, each item is used once; otherwise each part gets a share of the
    pool proportional to its count (at least one item) and repeats its own items.
    """
    total = sum(counts)
    if total == 0:
        return [np.zeros(0, np.int64) for _ in counts]
    if pool_size < sum(1 for n in counts if n):
        raise ValueError(f"the source's train split has {pool_size} items; each part needs at least one.")
    order = rng.permutation(pool_size)
    shares = counts if total <= pool_size else [max(1, pool_size * n // total) if n else 0 for n in counts]
    while sum(shares) > pool_size:  # rounding up to one item can overshoot by a few
        shares[int(np.argmax(shares))] -= 1
    parts, start = [], 0
    for n, share in zip(counts, shares, strict=True):
        pool = order[start : start + share]
        parts.append(pool[_draw_items(n, share, rng)] if n else np.zeros(0, np.int64))
        start += share
    return parts


def _build_split(
    config: BackgroundShiftConfig,
    source: datasets.Dataset,
    items: np.ndarray,
    backgrounds: np.ndarray,
    names: list[str],
    tiles: np.ndarray,
    rng: np.random.Generator,
) -> dict:
    labels = source.with_format("arrow")["label"].to_numpy().astype(np.int64)[items]
    n, s, k = len(items), config.image_size, config.resolved_item_size
    places = rng.integers(0, s - k + 1, size=(n, 2))
    crops = rng.integers(0, s + 1, size=(n, 2))
    named = rng.random(n) < config.background_in_caption
    captions = [
        (CAPTION if with_background else SHORT_CAPTION).format(
            item=item_name(names[label]), background=BACKGROUND_KINDS[background][0]
        )
        for label, background, with_background in zip(labels, backgrounds, named, strict=True)
    ]
    images = []
    chunk = 2048  # bounds the float32 working memory
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        intensity = _load_items(source, items[part], k)
        alpha = np.zeros((len(intensity), s, s), np.float32)
        for a, item, (top, left) in zip(alpha, intensity, places[part], strict=True):
            a[top : top + k, left : left + k] = item
        back = texture_crops(tiles, backgrounds[part], crops[part], s)
        image = alpha[..., None] + (1 - alpha[..., None]) * back
        images.extend(_png((np.clip(image, 0, 1) * 255).round().astype(np.uint8)))
    return {"image": images, "label": labels, "background": backgrounds, "caption": captions, "item": items}


def build_background_shift(
    config: BackgroundShiftConfig, source: datasets.DatasetDict | None = None
) -> datasets.DatasetDict:
    """Build the six splits of `SPLITS` from a {"train", "test"} item source (None: `config.source`).

    Columns: `image` (RGB, `image_size`), `label` (the item's class, the source's ClassLabel),
    `background` (ClassLabel over all `BACKGROUND_KINDS` names, seen and unseen), `caption` (see
    `CAPTION`, `SHORT_CAPTION`) and `item` (the item's index in its source split). The config is stored
    in each split's `info.description` (`background_shift_config_of`).
    """
    if source is None:
        source = load_item_source(config.source, config.source_path)
    names = source["train"].features["label"].names
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=names),
            "background": datasets.ClassLabel(names=[kind[0] for kind in BACKGROUND_KINDS]),
            "caption": datasets.Value("string"),
            "item": datasets.Value("int64"),
        }
    )
    tiles = background_textures(config.image_size)
    seen, n_seen = np.arange(config.num_backgrounds), config.num_backgrounds
    unseen = n_seen + np.arange(config.num_unseen_backgrounds)
    counts = [config.num_pretrain, config.num_train, config.num_validation]
    pretrain_items, train_items, validation_items = _disjoint_items(
        counts, source["train"].num_rows, np.random.default_rng([config.seed, 0])
    )
    test_items = _draw_items(
        config.num_test, source["test"].num_rows, np.random.default_rng([config.seed, 1])
    )
    all_labels = {
        name: split.with_format("arrow")["label"].to_numpy().astype(np.int64)
        for name, split in source.items()
    }

    def tied(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The class's seen kind with probability `bias`, else one of the other seen kinds."""
        own = labels % n_seen
        other = (own + rng.integers(1, n_seen, size=len(labels))) % n_seen
        return np.where(rng.random(len(labels)) < config.bias, own, other)

    plan = {  # split: (source split, items, background sampler)
        "pretrain": ("train", pretrain_items, lambda y, rng: rng.choice(seen, len(y))),
        "train": ("train", train_items, tied),
        "validation": ("train", validation_items, tied),
        "test_id": ("test", test_items, tied),
        "test_ood_shuffled": ("test", test_items, lambda y, rng: rng.choice(seen, len(y))),
        "test_ood_unseen": ("test", test_items, lambda y, rng: rng.choice(unseen, len(y))),
    }
    description = builder_description("background_shift", config)
    splits = {}
    for i, (name, (source_split, items, draw)) in enumerate(plan.items()):
        rng = np.random.default_rng([config.seed, 10 + i])
        backgrounds = draw(all_labels[source_split][items], rng).astype(np.int64)
        rows = _build_split(config, source[source_split], items, backgrounds, names, tiles, rng)
        info = datasets.DatasetInfo(description=description, features=features)
        splits[name] = datasets.Dataset.from_dict(rows, features=features, info=info, split=name)
    return datasets.DatasetDict(splits)


def background_shift_config_of(dataset: datasets.Dataset) -> BackgroundShiftConfig:
    """Recover the builder config of a background-shift split (also after `load_from_disk`)."""
    return builder_config_of(dataset, "background_shift", BackgroundShiftConfig)
