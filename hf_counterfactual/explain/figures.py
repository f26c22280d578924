"""Saliency figures: a PNG grid comparing methods image by image, and a single-image overlay PNG.

Images may be a (B, C, H, W) float tensor in [0, 1] (C = 1 or 3), a PIL image or a list of them, or numpy
(H, W, C) / (B, H, W, C) arrays (floats in [0, 1] or uint8) or a list of them. Maps are (B, H, W) tensors
or arrays, or lists of (H, W) maps; each is min-max normalised per image to [0, 1] for display (a
constant map shows as 0). Figures are drawn on matplotlib's Agg canvas without pyplot, so no global
backend state is touched.
"""

from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().float().numpy()
    return np.asarray(x)


def _hwc(image: np.ndarray) -> np.ndarray:
    """One image as float (H, W, 3) or (H, W) in [0, 1]."""
    if image.dtype == np.uint8:
        image = image / 255.0
    image = np.clip(image.astype(np.float64), 0, 1)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim != 2 and not (image.ndim == 3 and image.shape[-1] in (3, 4)):
        raise ValueError(f"an image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {image.shape}.")
    return image[..., :3] if image.ndim == 3 else image


def _images_list(images: Any) -> list[np.ndarray]:
    """Images in any accepted form -> list of (H, W[, 3]) float arrays in [0, 1]."""
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"image tensors must be (B, C, H, W); got {tuple(images.shape)}.")
        return [_hwc(a) for a in images.detach().cpu().float().permute(0, 2, 3, 1).numpy()]
    if isinstance(images, np.ndarray):
        return [_hwc(a) for a in (images if images.ndim == 4 else images[None])]
    return [
        _hwc(np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image))
        for image in images
    ]


def _normalise(saliency: np.ndarray) -> np.ndarray:
    saliency = saliency.astype(np.float64)
    lo, span = saliency.min(), np.ptp(saliency)
    return (saliency - lo) / span if span > 0 else np.zeros_like(saliency)


def _maps_list(maps: Any, name: str, images: list[np.ndarray]) -> list[np.ndarray]:
    maps = [_as_numpy(m) for m in maps] if isinstance(maps, (list, tuple)) else list(_as_numpy(maps))
    if len(maps) != len(images):
        raise ValueError(f"{name} has {len(maps)} maps for {len(images)} images; give one map per image.")
    for i, (m, image) in enumerate(zip(maps, images, strict=True)):
        if m.shape != image.shape[:2]:
            raise ValueError(
                f"{name} map {i} is {m.shape} but image {i} is {image.shape[:2]}; resize it first."
            )
    return maps


def _overlay(ax, image: np.ndarray, saliency: np.ndarray | None, alpha: float, cmap: str) -> None:
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    if saliency is not None:
        ax.imshow(_normalise(saliency), cmap=cmap, alpha=alpha, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def save_saliency_grid(
    images: Any,
    maps: dict[str, Any],
    path: str | Path,
    titles: list[str] | None = None,
    masks: Any = None,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> Path:
    """Write a PNG grid: one row per image; the image, then one overlay column per method in `maps`.

    `maps` maps a method name (the column title) to that method's maps, one per image. `titles` (one
    string per image, e.g. the class) label the image column; `masks` ((B, H, W) boolean ground truth)
    are drawn as a white contour on it. Each cell is 2 inches wide and 2 * H / W inches tall, under a 0.3
    inch title band, at 100 dpi: the PNG is (1 + len(maps)) * 200 pixels wide and B * (200 * H / W + 30)
    tall, with H, W of the first image (others are drawn into cells of that shape). Returns the path.
    """
    images = _images_list(images)
    if not images:
        raise ValueError("no images given.")
    columns = {name: _maps_list(m, f"maps[{name!r}]", images) for name, m in maps.items()}
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(titles)} titles for {len(images)} images; give one per image.")
    if masks is not None:
        masks = _maps_list(masks, "masks", images)

    rows, cols = len(images), 1 + len(columns)
    h, w = images[0].shape[:2]
    cell, band = 2 * h / w, 0.3  # inches: image cell height, title band above each row
    fig = Figure(figsize=(2 * cols, rows * (cell + band)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, image in enumerate(images):
        _overlay(axes[r, 0], image, None, alpha, cmap)
        if masks is not None:
            axes[r, 0].contour(masks[r].astype(float), levels=[0.5], colors="white", linewidths=1)
        if titles is not None:
            axes[r, 0].set_title(titles[r], fontsize=8)
        elif r == 0:
            axes[r, 0].set_title("image", fontsize=8)
        for c, (name, column) in enumerate(columns.items(), start=1):
            _overlay(axes[r, c], image, column[r], alpha, cmap)
            if r == 0:
                axes[r, c].set_title(name, fontsize=8)
    top = 1 - band / (rows * (cell + band))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=top, wspace=0.04, hspace=band / cell)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def save_overlay(image: Any, saliency: Any, path: str | Path, alpha: float = 0.5, cmap: str = "jet") -> Path:
    """Write one PNG at the image's own size: (1 - alpha) * image + alpha * cmap(normalised saliency).

    `image` is one (C, H, W) tensor in [0, 1], a PIL image or an (H, W[, C]) numpy array; `saliency` an
    (H, W) map. Returns the path written.
    """
    if isinstance(image, torch.Tensor):
        if image.ndim != 3:
            raise ValueError(f"an image tensor must be (C, H, W); got {tuple(image.shape)}.")
        image = image[None]
    images = _images_list(image)
    if len(images) != 1:
        raise ValueError(f"save_overlay takes one image; got {len(images)}. Use save_saliency_grid.")
    (saliency,) = _maps_list([saliency], "saliency", images)
    image = images[0]
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)
    heat = colormaps[cmap](_normalise(saliency))[..., :3]
    blend = (1 - alpha) * rgb + alpha * heat
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(blend * 255).astype(np.uint8)).save(path, format="PNG")
    return path
