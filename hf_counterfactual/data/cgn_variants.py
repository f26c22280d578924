"""Colored / double-colored / wildlife items: the CGN benchmarks, where colour or texture is a shortcut.

Following the MNIST variants of Counterfactual Generative Networks (Sauer & Geiger, ICLR 2021), each
image is one item (Fashion-MNIST, or the digits fallback) composed from three mechanisms, each with
its own class: the item's shape (`label`), the foreground colour / texture that fills it
(`foreground`) and the background colour / texture around it (`background`):

    image = alpha * foreground + (1 - alpha) * background

with alpha the item's intensity resized to `image_size` (the authors' colored MNIST) or its binary
`mask` (their double-colored and wildlife MNIST; `binarize` picks, by default as the authors). In
train and validation the foreground and background classes equal the label (the bias a plain
classifier learns); in test they are drawn uniformly at random, independent of the label and of
each other. With `bias=False` every split draws them at random: the oracle data,
on exactly the same items (shapes) as the biased build with the same seed.

- colored: the item in palette[f] + jitter on black (Kim et al.'s colored MNIST); `background` is -1.
- double_colored: item in palette[(f - 6) % 10], background palette[b], both + jitter (the authors'
  shift by 6 keeps foreground and background colours of one class apart).
- wildlife: item filled with foreground texture f, background with background texture b, each cut
  at a random offset from a tile twice the image size (the authors' random crops). The 2 x 10
  textures are procedural (stripes, checkerboards, dots, value noise, waves) and fixed: they depend
  on `image_size` only, not on the seed, so every build of the benchmark uses the same textures.
"""

import struct
import zlib
from dataclasses import dataclass, field

import datasets
import numpy as np
from PIL import Image

from .builders import builder_config_of, builder_description

SPLITS = ("train", "validation", "test")
CGN_VARIANTS = ("colored", "double_colored", "wildlife")
# The authors' double-colored MNIST colours (generated with mokole.com/palette.html for maximal
# separation): darkgreen, darkblue, maroon #b03060, orangered, yellow, burlywood, lime, aqua,
# fuchsia, cornflowerblue. Class c's colour is CGN_PALETTE[c] (0..255 RGB).
CGN_PALETTE = (
    (0, 100, 0),
    (0, 0, 139),
    (176, 48, 96),
    (255, 69, 0),
    (255, 255, 0),
    (222, 184, 135),
    (0, 255, 0),
    (0, 255, 255),
    (255, 0, 255),
    (100, 149, 237),
)
# The colour jitter of the authors' data when color_std is None: colored MNIST with variance 0.02
# (Kim et al.), double-colored with std 0.01. Wildlife textures are not jittered.
PAPER_COLOR_STD = {"colored": 0.02**0.5, "double_colored": 0.01, "wildlife": 0.0}
# How the authors compose when binarize is None: colored MNIST keeps the digit's intensity,
# double-colored and wildlife MNIST threshold it to a binary mask
PAPER_BINARIZE = {"colored": False, "double_colored": True, "wildlife": True}
_TEXTURE_SEED = 2101_06046  # the value-noise lattice; fixed, so textures never change with the seed


@dataclass
class CgnVariantConfig:
    """Knobs of the CGN colored / double-colored / wildlife benchmarks; same config and seed, same data.

    The defaults follow the paper: 32-pixel RGB images, the authors' colour jitter, class-tied
    colours / textures in train and validation, random ones in test, no pixel noise; items are
    composed with their intensity on colored and with their binary mask on the other two.
    """

    variant: str = field(
        default="colored", metadata={"help": f"Which benchmark: one of {', '.join(CGN_VARIANTS)}."}
    )
    bias: bool = field(
        default=True,
        metadata={
            "help": "Tie foreground / background classes to the label in train and validation. False "
            "draws them at random in every split: the unbiased oracle data, on the same items."
        },
    )
    image_size: int = field(
        default=32, metadata={"help": "Side of the square RGB image; items are resized to it (bilinear)."}
    )
    color_std: float | None = field(
        default=None,
        metadata={
            "help": "Std of the per-image Gaussian jitter of each colour channel (0..1 scale). None: "
            "the paper's value for the variant (colored sqrt(0.02), double_colored 0.01). "
            "Ignored by wildlife."
        },
    )
    noise_std: float = field(default=0.0, metadata={"help": "Std of Gaussian pixel noise (0..1 scale)."})
    binarize: bool | None = field(
        default=None,
        metadata={
            "help": "Compose with the binary mask (image = mask * foreground + (1 - mask) * background "
            "exactly) instead of the item's intensity. None: the authors' choice for the variant "
            "(intensity on colored, mask on double_colored and wildlife)."
        },
    )
    mask_threshold: float = field(
        default=0.1,
        metadata={"help": "A pixel is in the item's mask when its resized intensity (0..1) exceeds this."},
    )
    num_train: int = field(default=10000, metadata={"help": "Training images."})
    num_validation: int = field(default=1000, metadata={"help": "Validation images (as biased as train)."})
    num_test: int = field(default=2000, metadata={"help": "Test images (random colours / textures)."})
    seed: int = field(default=0, metadata={"help": "Seed of everything random in the builder."})

    @property
    def binary_items(self) -> bool:
        """Whether items are composed with their binary mask: `binarize`, or the authors' choice if None."""
        return PAPER_BINARIZE[self.variant] if self.binarize is None else self.binarize

    def __post_init__(self):
        if self.variant not in CGN_VARIANTS:
            raise ValueError(f"Unknown CGN variant {self.variant!r}; valid: {', '.join(CGN_VARIANTS)}.")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}.")
        if self.color_std is not None and self.color_std < 0:
            raise ValueError(f"color_std must be >= 0 (or None for the paper's value), got {self.color_std}.")
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}.")
        if not 0.0 <= self.mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must be in [0, 1), got {self.mask_threshold}.")
        if min(self.num_train, self.num_validation, self.num_test) < 0:
            raise ValueError("num_train, num_validation and num_test must be >= 0.")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}.")


def _palette() -> np.ndarray:
    return np.asarray(CGN_PALETTE, dtype=np.float32) / 255.0


def texture_patterns(size: int, period_scale: float) -> list[np.ndarray]:
    """Ten stationary (size, size) float32 patterns in [0, 1]; periods in pixels of a 32-pixel image.

    In order: horizontal, vertical, diagonal and anti-diagonal stripes, fine and coarse checkerboards,
    a dot grid, plaid, value-noise blotches and waves. Fixed: they depend on `size` and `period_scale` only.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / period_scale

    def wave(t: np.ndarray, period: float) -> np.ndarray:
        return 0.5 + 0.5 * np.sin(2 * np.pi * t / period)

    cells = 4
    lattice = np.random.default_rng(_TEXTURE_SEED).random((size // cells + 2, size // cells + 2))
    fy, fx = y * period_scale / cells, x * period_scale / cells
    iy, ix = fy.astype(int), fx.astype(int)
    ty, tx = fy - iy, fx - ix
    value_noise = (
        lattice[iy, ix] * (1 - ty) * (1 - tx)
        + lattice[iy + 1, ix] * ty * (1 - tx)
        + lattice[iy, ix + 1] * (1 - ty) * tx
        + lattice[iy + 1, ix + 1] * ty * tx
    )
    dots = np.hypot((y % 5) - 2.5, (x % 5) - 2.5) < 1.6
    return [
        wave(y, 4),  # horizontal stripes
        wave(x, 3),  # vertical stripes
        wave((x + y) / np.sqrt(2), 5),  # diagonal stripes
        wave((x - y) / np.sqrt(2), 3.5),  # anti-diagonal stripes
        ((y // 2 + x // 2) % 2).astype(np.float32),  # fine checkerboard
        ((y // 4 + x // 4) % 2).astype(np.float32),  # coarse checkerboard
        dots.astype(np.float32),  # dot grid
        np.maximum(wave(y, 6), wave(x, 6)) ** 4,  # plaid
        (value_noise - value_noise.min()) / np.ptp(value_noise),  # blotches
        wave(y + 2 * np.sin(2 * np.pi * x / 8), 4),  # waves
    ]


def wildlife_textures(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The wildlife banks: foreground and background textures, each (10, 2 s, 2 s, 3) float32 in [0, 1].

    Foreground texture c is pattern c in two bright tones of palette[c] (full and a pastel half-way to
    white), so the item stands out; background texture c is pattern (c + 5) % 10 at twice the period
    in two dark tones of palette[(c + 3) % 10]. Every texture differs from every other in pattern or
    colour, and none depends on the seed.
    """
    size, scale = 2 * image_size, image_size / 32
    palette = _palette()
    fine, coarse = texture_patterns(size, scale), texture_patterns(size, 2 * scale)
    fg, bg = [], []
    for c in range(len(CGN_PALETTE)):
        g = fine[c][..., None]
        colour = palette[c]
        fg.append(g * colour + (1 - g) * (0.5 * colour + 0.5))
        g = coarse[(c + 5) % 10][..., None]
        colour = palette[(c + 3) % 10]
        bg.append(g * 0.5 * colour + (1 - g) * 0.15 * colour)
    return np.stack(fg).astype(np.float32), np.stack(bg).astype(np.float32)


def texture_crops(bank: np.ndarray, kinds: np.ndarray, offsets: np.ndarray, size: int) -> np.ndarray:
    """(n, size, size, 3) crops: crop i is `bank[kinds[i]]` from row / column `offsets[i]` (n, 2) on."""
    grid = np.arange(size)
    rows = (offsets[:, 0, None] + grid)[:, :, None]
    cols = (offsets[:, 1, None] + grid)[:, None, :]
    return bank[kinds[:, None, None], rows, cols]


def _draw_items(n: int, pool_size: int, rng: np.random.Generator) -> np.ndarray:
    """n source indices without replacement while the pool lasts, then from a fresh permutation."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if pool_size == 0:
        raise ValueError("the source split is empty; it needs at least one item.")
    rounds = -(-n // pool_size)
    return np.concatenate([rng.permutation(pool_size) for _ in range(rounds)])[:n]


def _load_items(source: datasets.Dataset, indices: np.ndarray, size: int) -> np.ndarray:
    """(len(indices), size, size) float32 intensities in [0, 1]; each distinct item decoded once."""
    unique, inverse = np.unique(indices, return_inverse=True)
    decoder = datasets.Image()
    items = []
    # Arrow rows + one decode each: iterating the `image` column row by row is ~5x slower.
    for encoded in source.select(unique.tolist()).with_format("arrow")["image"].to_pylist():
        image = decoder.decode_example(encoded).convert("L")
        if image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
        items.append(np.asarray(image, dtype=np.float32) / 255.0)
    stacked = np.stack(items) if items else np.zeros((0, size, size), np.float32)
    return stacked[inverse]


def _png(images: np.ndarray) -> list[dict]:
    """Encode (n, h, w) grayscale or (n, h, w, 3) RGB uint8 images as PNG `Image` feature values.

    Writing the three chunks directly is several times faster than one PIL save per image, which
    would otherwise be most of the build time.
    """

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    n, height, width = images.shape[:3]
    colour_type = 2 if images.ndim == 4 else 0
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    tail = chunk(b"IEND", b"")
    # Each scanline starts with its filter type; 0 means "no filter".
    rows = images.reshape(n, height, -1)
    rows = np.concatenate([np.zeros((n, height, 1), np.uint8), rows], axis=2).reshape(n, -1)
    pngs = (head + chunk(b"IDAT", zlib.compress(row.tobytes())) + tail for row in rows)
    return [{"bytes": png, "path": None} for png in pngs]


def _compose(
    config: CgnVariantConfig,
    alpha: np.ndarray,
    fg: np.ndarray,
    bg: np.ndarray,
    rng: np.random.Generator,
    textures: tuple[np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    """uint8 (n, s, s, 3) images from alphas and foreground / background classes, all vectorised."""
    n, s = len(alpha), config.image_size
    palette = _palette()
    color_std = PAPER_COLOR_STD[config.variant] if config.color_std is None else config.color_std
    jitter = rng.normal(0.0, color_std, size=(2, n, 3)).astype(np.float32)
    offsets = rng.integers(0, s, size=(2, n, 2))
    if config.variant == "colored":
        front = np.clip(palette[fg] + jitter[0], 0, 1)[:, None, None, :]
        back = np.zeros((n, 1, 1, 3), np.float32)
    elif config.variant == "double_colored":
        front = np.clip(palette[(fg - 6) % len(palette)] + jitter[0], 0, 1)[:, None, None, :]
        back = np.clip(palette[bg] + jitter[1], 0, 1)[:, None, None, :]
    else:
        front, back = (
            texture_crops(bank, classes, offset, s)
            for bank, classes, offset in zip(textures, (fg, bg), offsets, strict=True)
        )
    a = alpha[..., None]
    image = a * front + (1 - a) * back
    if config.noise_std > 0:
        image = image + rng.normal(0.0, config.noise_std, size=image.shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def _build_split(
    config: CgnVariantConfig,
    source: datasets.Dataset,
    items: np.ndarray,
    biased: bool,
    num_classes: int,
    rng: np.random.Generator,
    textures: tuple[np.ndarray, np.ndarray] | None,
) -> dict:
    labels = source.with_format("arrow")["label"].to_numpy().astype(np.int64)[items]
    # Random classes are always drawn, so a biased and an unbiased build share every later draw.
    random_fg, random_bg = rng.integers(0, num_classes, size=(2, len(items)))
    fg = labels if biased else random_fg
    bg = labels if biased else random_bg
    rows = {"image": [], "label": labels, "foreground": fg, "background": bg, "mask": [], "item": items}
    if config.variant == "colored":
        rows["background"] = np.full(len(items), -1, dtype=np.int64)
    chunk = 2048  # bounds the float32 working memory
    for start in range(0, len(items), chunk):
        part = slice(start, start + chunk)
        intensity = _load_items(source, items[part], config.image_size)
        mask = intensity > config.mask_threshold
        alpha = mask.astype(np.float32) if config.binary_items else intensity
        rows["image"].extend(_png(_compose(config, alpha, fg[part], bg[part], rng, textures)))
        rows["mask"].extend(_png(mask.astype(np.uint8) * 255))
    return rows


def build_cgn_variant(config: CgnVariantConfig, source: datasets.DatasetDict) -> datasets.DatasetDict:
    """Build train / validation / test images of a CGN variant from a {"train", "test"} item source.

    Columns: `image` (RGB, `image_size`), `label` (the shape class, the source's ClassLabel),
    `foreground` and `background` (the classes whose colour / texture fill the item and the rest;
    `background` is -1 for colored, whose background is black), `mask` (mode "L", 255 where the
    resized item's intensity exceeds `mask_threshold`) and `item` (the item's index in its source
    split). Train and validation items come from the source's train split (no item in both while
    num_train + num_validation <= its size; beyond that items repeat), test items from its test split.
    The config is stored in each split's `info.description`.
    """
    names = source["train"].features["label"].names
    if len(names) > len(CGN_PALETTE):
        raise ValueError(
            f"the source has {len(names)} classes but CGN variants have {len(CGN_PALETTE)} colours / "
            f"textures; use a source with at most {len(CGN_PALETTE)} classes."
        )
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=names),
            "foreground": datasets.Value("int64"),
            "background": datasets.Value("int64"),
            "mask": datasets.Image(),
            "item": datasets.Value("int64"),
        }
    )
    description = builder_description("cgn_variant", config)
    textures = wildlife_textures(config.image_size) if config.variant == "wildlife" else None
    train_items = _draw_items(
        config.num_train + config.num_validation,
        source["train"].num_rows,
        np.random.default_rng([config.seed, 0]),
    )
    plan = {
        "train": (source["train"], train_items[: config.num_train], config.bias),
        "validation": (source["train"], train_items[config.num_train :], config.bias),
        "test": (
            source["test"],
            _draw_items(config.num_test, source["test"].num_rows, np.random.default_rng([config.seed, 1])),
            False,
        ),
    }
    splits = {}
    for i, (name, (split_source, items, biased)) in enumerate(plan.items()):
        rng = np.random.default_rng([config.seed, 10 + i])
        rows = _build_split(config, split_source, items, biased, len(names), rng, textures)
        info = datasets.DatasetInfo(description=description, features=features)
        splits[name] = datasets.Dataset.from_dict(rows, features=features, info=info, split=name)
    return datasets.DatasetDict(splits)


def cgn_variant_config_of(dataset: datasets.Dataset) -> CgnVariantConfig:
    """Recover the builder config of a CGN-variant split (also after `load_from_disk`)."""
    return builder_config_of(dataset, "cgn_variant", CgnVariantConfig)
