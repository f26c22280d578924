"""Counterfactual data from a CGN (arXiv 2101.06046, sec. 3.3): datasets, a class grid, sample and mechanism grids.

A counterfactual keeps a real image's shape class and draws foreground texture and background classes
independently, each mechanism with fresh noise ("mask from one class, foreground and background from
permuted classes"); the authors train on 10 counterfactuals per real image. Figures are drawn on
matplotlib's Agg canvas without pyplot, so no global backend state is touched.
"""

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import datasets
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .modeling_cgn import CGNMaskEncoder, CounterfactualGenerativeNetwork, to_unit_range


def batch_seed(seed: int, index: int, model_index: int = 0) -> int:
    """The `generate` seed of batch `index` (of model `model_index`, when several are pooled) of
    `generate_counterfactual_dataset(..., seed=seed)`."""
    entropy = [seed, index] + ([model_index] if model_index else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def class_names(model: CounterfactualGenerativeNetwork) -> list[str]:
    """`model.config.id2label` names when it names every class (and not as `LABEL_i`), else "0", "1", ..."""
    k = model.config.num_classes
    id2label = {int(i): name for i, name in (model.config.id2label or {}).items()}
    names = [id2label.get(i) for i in range(k)]
    if None in names or names == [f"LABEL_{i}" for i in range(k)]:
        return [str(i) for i in range(k)]
    return names


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """CGN outputs (B, C, H, W) in [-1, 1] -> (B, H, W, 3) uint8 RGB (one channel is repeated)."""
    pixels = to_unit_range(images).clamp(0, 1).mul(255).round().to(torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1).cpu().numpy()
    return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels[..., :3]


def generate_counterfactual_dataset(
    model: CounterfactualGenerativeNetwork | Sequence[CounterfactualGenerativeNetwork],
    labels: Sequence[int] | int,
    per_image: int = 10,
    seed: int = 0,
    batch_size: int = 256,
    mode: Literal["random", "permuted"] = "random",
    pixel_values: torch.Tensor | None = None,
    mask_encoders: CGNMaskEncoder | Sequence[CGNMaskEncoder] | None = None,
    mask_threshold: float | None = 0.5,
    masks: torch.Tensor | None = None,
) -> datasets.Dataset:
    """`per_image` counterfactuals per real image: shape = its label y, texture and background drawn anew.

    `labels` are the real images' shape labels, or a number of images whose labels cycle 0, 1, ..., K-1.
    Row `i * per_image + k` is counterfactual k of image i. `mode="random"` draws texture and background
    classes uniformly from [0, K); `mode="permuted"` takes them from random permutations of `labels`
    (one per counterfactual round and mechanism), keeping the data's class frequencies. Class draws use
    `np.random.default_rng(seed)`; batch b is generated with `seed=batch_seed(seed, b)`, so the same seed
    gives the same dataset. Columns: `image` (RGB), `label` (ClassLabel, = shape), `shape`, `texture`,
    `background`.

    `model` may be several CGNs of the same classes and image size (e.g. trained with different seeds;
    not in the paper): their counterfactuals are pooled, row r drawn by model `r % len(model)` (its
    batch b with `seed=batch_seed(seed, b, model_index)`), and a `generator` column holds that index.
    A GAN's seed decides much of what its counterfactuals teach a classifier; a pool scores about as well
    as its best member (see benchmarks/README.md, "Pooling generators").

    With `pixel_values` (the real images behind `labels`, (N, C, H, W) in [-1, 1] as the CGN draws them, e.g.
    from `CgnCollator`) and `mask_encoders` (one [`CGNMaskEncoder`] per model, fitted to it; not in the paper),
    each counterfactual keeps its real image's shape: the encoder's mask of the image replaces the shape
    mechanism's, and the CGN draws texture and background as before. The mask is cut at `mask_threshold`
    (None keeps it soft): where the encoder is unsure (a background stripe, a colour it has not seen) a soft mask
    copies the real image's class-tied pattern into every counterfactual of it, and a classifier learns that
    pattern instead of the shape (quick bench, seed 0, a 17 px encoder: cgn_vs_oracle 0.86 / 0.56 / 0.63 soft,
    0.91 / 0.84 / 0.72 cut). `masks` ((N, 1, H, W) in [0, 1], one per image behind `labels`, e.g. from
    [`color_item_masks`]) gives the real images' masks directly, in place of `pixel_values` and the encoders,
    and is cut at `mask_threshold` the same way.
    """
    models = [model] if isinstance(model, CounterfactualGenerativeNetwork) else list(model)
    if not models:
        raise ValueError("model must be a CounterfactualGenerativeNetwork or a non-empty sequence of them.")
    model = models[0]
    for i, other in enumerate(models[1:], 1):
        for key in ("num_classes", "image_size", "num_channels"):
            if getattr(other.config, key) != getattr(model.config, key):
                raise ValueError(
                    f"pooled CGNs must share {key}: model 0 has {getattr(model.config, key)}, "
                    f"model {i} has {getattr(other.config, key)}."
                )
    k = model.config.num_classes
    if isinstance(labels, int | np.integer):
        if labels <= 0:
            raise ValueError(f"num_images must be > 0, got {labels}.")
        labels = np.arange(labels) % k
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be a non-empty 1-D sequence of integer class ids, got shape {labels.shape}."
        )
    if (labels < 0).any() or (labels >= k).any():
        raise ValueError(f"labels must be class ids in [0, {k}); got min {labels.min()}, max {labels.max()}.")
    if per_image <= 0:
        raise ValueError(f"per_image must be > 0, got {per_image}.")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}.")
    if mode not in ("random", "permuted"):
        raise ValueError(f"mode must be 'random' or 'permuted', got {mode!r}.")

    if (pixel_values is None) != (mask_encoders is None):
        raise ValueError("pixel_values and mask_encoders go together: the encoders find the images' masks.")
    if masks is not None and mask_encoders is not None:
        raise ValueError("give masks or mask_encoders, not both: either gives the real images' masks.")
    if (masks is not None or mask_encoders is not None) and not (
        mask_threshold is None or 0.0 < mask_threshold < 1.0
    ):
        raise ValueError(f"mask_threshold must be in (0, 1) or None (soft masks), got {mask_threshold}.")
    if masks is not None:
        size = model.config.image_size
        if masks.shape != (labels.size, 1, size, size):
            raise ValueError(
                f"masks must be (N, 1, {size}, {size}) for {labels.size} labels and this CGN's image size, "
                f"got shape {tuple(masks.shape)}."
            )
        if mask_threshold is not None:
            masks = (masks > mask_threshold).to(masks.dtype)
    encoders = None
    if mask_encoders is not None:
        encoders = [mask_encoders] if isinstance(mask_encoders, CGNMaskEncoder) else list(mask_encoders)
        if len(encoders) != len(models):
            raise ValueError(f"need one mask encoder per CGN: got {len(encoders)} for {len(models)} CGNs.")
        if len(pixel_values) != labels.size:
            raise ValueError(
                f"got {len(pixel_values)} images for {labels.size} labels; give one label per image."
            )

    rng = np.random.default_rng(seed)
    shape = np.repeat(labels, per_image)
    if mode == "random":
        texture, background = rng.integers(0, k, size=(2, shape.size))
    else:  # (per_image, n) rounds of permuted labels, then image-major like `shape`
        texture, background = (
            np.stack([labels[rng.permutation(labels.size)] for _ in range(per_image)]).T.ravel()
            for _ in range(2)
        )

    generator = np.arange(shape.size) % len(models)
    drawn = [None] * shape.size
    for g, cgn in enumerate(models):
        rows = np.flatnonzero(generator == g)
        for b, start in enumerate(range(0, rows.size, batch_size)):
            part = rows[start : start + batch_size]
            images = torch.from_numpy(part // per_image)  # the real images of these rows
            batch_masks = None if masks is None else masks[images].to(cgn.device)
            if encoders is not None:
                with torch.no_grad():
                    batch_masks = encoders[g].eval()(pixel_values[images].to(encoders[g].device)).mask
                if mask_threshold is not None:
                    batch_masks = (batch_masks > mask_threshold).to(batch_masks.dtype)
            seed_b = batch_seed(seed, b, g)
            out = cgn.generate(shape[part], texture[part], background[part], seed=seed_b, masks=batch_masks)
            for r, a in zip(part, to_uint8(out.images), strict=True):
                drawn[r] = Image.fromarray(a)
    features = {
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=class_names(model)),
        "shape": datasets.Value("int64"),
        "texture": datasets.Value("int64"),
        "background": datasets.Value("int64"),
    }
    columns = {"shape": shape.tolist(), "texture": texture.tolist(), "background": background.tolist()}
    if len(models) > 1:
        features["generator"] = datasets.Value("int64")
        columns["generator"] = generator.tolist()
    features = datasets.Features(features)
    return datasets.Dataset.from_dict(
        {"image": drawn, "label": columns["shape"], **columns}, features=features
    )


def save_counterfactual_grid(
    model: CounterfactualGenerativeNetwork,
    path: str | Path,
    shape_classes: Sequence[int] | None = None,
    column_classes: Sequence[int] | None = None,
    seed: int = 0,
) -> Path:
    """Write a PNG grid: one row per shape class, one column per texture = background class.

    Classes default to all of [0, K). All cells come from one `generate(..., seed=seed)` call. Each cell
    is 1 inch square at 100 dpi, after a 0.4 inch row-label margin and under a 0.3 inch title band: the
    PNG is 40 + 100 * columns pixels wide and 30 + 100 * rows tall. Returns the path.
    """
    k = model.config.num_classes
    rows = list(range(k)) if shape_classes is None else [int(c) for c in shape_classes]
    cols = list(range(k)) if column_classes is None else [int(c) for c in column_classes]
    if not rows or not cols:
        raise ValueError("shape_classes and column_classes must each name at least one class.")
    shape = [r for r in rows for _ in cols]
    other = cols * len(rows)
    cells = to_uint8(model.generate(shape, other, other, seed=seed).images)  # checks the class ids

    names = class_names(model)
    margin, band = 0.4, 0.3  # inches
    width, height = margin + len(cols), band + len(rows)
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.imshow(cells[i])
        ax.set_xticks([])
        ax.set_yticks([])
    for r, y in enumerate(rows):
        axes[r, 0].set_ylabel(f"shape {names[y]}", fontsize=7)
    for c, y in enumerate(cols):
        axes[0, c].set_title(f"tex/bg {names[y]}", fontsize=7)
    fig.subplots_adjust(
        left=margin / width, right=1, bottom=0, top=1 - band / height, wspace=0.05, hspace=0.05
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def save_image_grid(images: torch.Tensor, path: str | Path, columns: int | None = None, pad: int = 2) -> Path:
    """Tile CGN outputs (B, C, H, W) in [-1, 1] into one PNG with `pad` black pixels between cells.

    `columns` defaults to ceil(sqrt(B)); the PNG is columns * (W + pad) + pad wide and
    rows * (H + pad) + pad tall. Returns the path.
    """
    pixels = to_uint8(images)
    n, h, w, _ = pixels.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = np.zeros((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), dtype=np.uint8)
    for i, image in enumerate(pixels):
        top, left = pad + (i // columns) * (h + pad), pad + (i % columns) * (w + pad)
        canvas[top : top + h, left : left + w] = image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path, format="PNG")
    return path


def save_mechanism_grid(
    model: CounterfactualGenerativeNetwork,
    path: str | Path,
    classes: Sequence[int] | None = None,
    samples: int = 2,
    seed: int = 0,
    pad: int = 2,
) -> Path:
    """Write each mechanism's output side by side: per class one row of `samples` groups of four cells,
    the image, its mask (grey), foreground and background, all three mechanisms of that class.

    It shows what the composition hides, e.g. a mask that dithers shading, or a mask on the background that
    `orient_classes` did not catch (classes in `config.inverted_classes` are drawn re-oriented, as `generate`
    draws them). Classes default to all of [0, K); all cells come from one `generate(..., seed=seed)` call.
    Returns the path.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}.")
    rows = list(range(model.config.num_classes)) if classes is None else [int(c) for c in classes]
    if not rows:
        raise ValueError("classes must name at least one class.")
    labels = [c for c in rows for _ in range(samples)]
    out = model.generate(labels, labels, labels, seed=seed)  # checks the class ids
    mask = (out.mask * 2 - 1).expand(-1, out.images.shape[1], -1, -1)  # [0, 1] -> the images' [-1, 1]
    cells = torch.stack([out.images, mask, out.foreground, out.background], dim=1).flatten(0, 1)
    return save_image_grid(cells, path, columns=4 * samples, pad=pad)


__all__ = [
    "batch_seed",
    "class_names",
    "generate_counterfactual_dataset",
    "save_counterfactual_grid",
    "save_image_grid",
    "save_mechanism_grid",
    "to_uint8",
]
