"""Transforms from `datasets` rows to model inputs: image decoding, multi-label and single-label collators."""

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import numpy as np
import PIL.Image
import torch

logger = logging.getLogger(__name__)


def decode_image(obj: Any) -> PIL.Image.Image:
    """Return a fully loaded PIL image from any image form found in a `datasets` row.

    Accepts a PIL image, a uint8 array of shape (H, W), (H, W, 3) or (H, W, 4), a `datasets`
    image dict `{"path": ..., "bytes": ...}` (bytes win when both are set), or a file path.
    Pixels are loaded here, so a missing, empty, truncated or corrupt file raises `OSError` now
    rather than inside a later transform. PIL's `ImageFile.LOAD_TRUNCATED_IMAGES` is never turned
    on: a truncated file is an error, not an image padded with grey.
    """
    if isinstance(obj, PIL.Image.Image):
        obj.load()
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype != np.uint8 or not (obj.ndim == 2 or (obj.ndim == 3 and obj.shape[2] in (3, 4))):
            raise ValueError(
                f"Expected a uint8 array of shape (H, W), (H, W, 3) or (H, W, 4), got {obj.dtype} "
                f"{obj.shape}; scale it to 0..255 and use .astype(np.uint8)."
            )
        return PIL.Image.fromarray(obj)
    if isinstance(obj, dict):
        if obj.get("bytes") is not None:
            source = BytesIO(obj["bytes"])
        elif obj.get("path") is not None:
            source = obj["path"]
        else:
            raise ValueError("Image dict has neither 'bytes' nor 'path' set.")
    elif isinstance(obj, str | os.PathLike):
        source = obj
    else:
        raise TypeError(
            f"Cannot read an image from {type(obj).__name__}; pass a PIL image, a uint8 array, "
            "a {'path', 'bytes'} dict or a file path."
        )
    with PIL.Image.open(source) as image:
        image.load()
    return image


def _to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """RGB version of `image`, as HF image processors' `do_convert_rgb`, with two choices made explicit.

    Transparent pixels are composited onto black (transformers' `convert_to_rgb` uses white; black
    matches the dark backgrounds of the item and canvas images used here). 16-bit grayscale is
    scaled to 8 bits; PIL's own conversion would clip it to white.
    """
    if image.mode.startswith("I;16"):
        return PIL.Image.fromarray((np.asarray(image, dtype=np.uint32) // 257).astype(np.uint8)).convert(
            "RGB"
        )
    if image.has_transparency_data:
        background = PIL.Image.new("RGBA", image.size, (0, 0, 0, 255))
        background.alpha_composite(image.convert("RGBA"))
        return background.convert("RGB")
    return image.convert("RGB")


class _ImageBatching:
    """Decoding, RGB conversion, resizing and normalisation shared by the collators below.

    A row whose image cannot be decoded (missing, empty, truncated or corrupt file) is skipped:
    the batch comes back without it, `skipped` counts it and a warning names it. Each DataLoader
    worker process keeps its own count. A batch with no decodable image raises ValueError.
    """

    image_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    convert_rgb: bool
    image_column: str
    skipped: int
    resize = True  # False: an image of another size is an error (models that generate at one size)
    center_crop = False  # True: resize the short side to image_size, then crop the centre square

    def __post_init__(self) -> None:
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError(
                f"image_mean and image_std need 3 values (R, G, B), got {self.image_mean} and {self.image_std}."
            )

    def _pixels(self, example: dict, index: int) -> np.ndarray | None:
        """(S, S, 3) uint8 pixels of one row, or None (counted and logged) when its image cannot be read."""
        raw = example[self.image_column]
        try:
            image = decode_image(raw)
        except OSError as e:
            self.skipped += 1
            path = raw.get("path") if isinstance(raw, dict) else raw
            where = f"sample {index} of the batch" + (
                f" ({path})" if isinstance(path, str | os.PathLike) else ""
            )
            logger.warning(
                "Skipping %s: cannot decode its image: %s (%d skipped so far).", where, e, self.skipped
            )
            return None
        if image.mode != "RGB":
            if not self.convert_rgb:
                raise ValueError(
                    f"Sample {index} has a {image.mode!r} image, not RGB; set convert_rgb=True to convert it."
                )
            image = _to_rgb(image)
        if image.size != (self.image_size, self.image_size):
            if not self.resize:
                raise ValueError(
                    f"images must be {self.image_size}x{self.image_size}, got {image.size[0]}x{image.size[1]}; "
                    "build the data with the run's image_size."
                )
            image = self._resized(image)
        return np.asarray(image)

    def _resized(self, image: PIL.Image.Image) -> PIL.Image.Image:
        """`image` at image_size x image_size: squashed, or (center_crop) short side resized then the centre
        cropped, rounding as transformers' image processors do."""
        side = self.image_size
        if not self.center_crop:
            return image.resize((side, side), PIL.Image.Resampling.BILINEAR)
        width, height = image.size
        short, long = min(width, height), max(width, height)
        size = (side, int(side * long / short)) if width <= height else (int(side * long / short), side)
        image = image.resize(size, PIL.Image.Resampling.BILINEAR)
        left, top = (size[0] - side) // 2, (size[1] - side) // 2
        return image.crop((left, top, left + side, top + side))

    def _collate(self, examples: list[dict], target_of) -> tuple[torch.Tensor, list]:
        """Pixel values of the decodable rows and `target_of(example, index)` of each (checked first)."""
        if not examples:
            raise ValueError("Got an empty batch.")
        pixels, targets = [], []
        for index, example in enumerate(examples):
            target = target_of(example, index)
            image = self._pixels(example, index)
            if image is not None:
                pixels.append(image)
                targets.append(target)
        return self._pixel_values(pixels, len(examples)), targets

    def _pixel_values(self, pixels: list[np.ndarray], batch_size: int) -> torch.Tensor:
        if not pixels:
            raise ValueError(
                f"None of the {batch_size} images in this batch could be decoded (see the warnings); "
                "check the image files of your dataset."
            )
        pixel_values = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        return ((pixel_values - mean) / std).contiguous()


@dataclass
class MultiLabelZoomCrop:
    """Multi-label scale augmentation from item boxes: a random square crop, resized back to full size.

    With `probability`, a row's image is cropped to a square of `scale` (a range, share of the image
    side) at a random place and resized back; its `labels` become the classes of the items with at
    least `min_visible` of their box inside the crop (boxes follow). Rows need `boxes` ([x0, y0, x1,
    y1] per item, pixels) and `item_labels` (a class id per item), as the co-occurrence mosaics have.
    Draws from torch's global generator, so `set_seed` and DataLoader workers seed it.
    """

    probability: float = 0.5
    scale: tuple[float, float] = (0.5, 1.0)
    min_visible: float = 0.5
    image_column: str = "image"

    def __post_init__(self) -> None:
        if not 0 <= self.probability <= 1:
            raise ValueError(f"probability must be in [0, 1], got {self.probability}.")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {self.scale}.")
        if not 0 < self.min_visible <= 1:
            raise ValueError(f"min_visible must be in (0, 1], got {self.min_visible}.")

    def __call__(self, example: dict) -> dict:
        missing = {"boxes", "item_labels"} - set(example)
        if missing:
            raise ValueError(
                f"zoom-crop needs per-item `boxes` and `item_labels` columns; missing {sorted(missing)}."
            )
        if float(torch.rand(())) >= self.probability:
            return example
        try:
            image = decode_image(example[self.image_column])
        except OSError:
            return example  # the collator skips and counts it
        width, height = image.size
        low, high = self.scale
        side = max(1, round(min(width, height) * (low + (high - low) * float(torch.rand(())))))
        x0 = int(torch.randint(0, width - side + 1, ()))
        y0 = int(torch.randint(0, height - side + 1, ()))
        sx, sy = width / side, height / side
        item_labels, boxes = [], []
        for (bx0, by0, bx1, by1), label in zip(example["boxes"], example["item_labels"], strict=True):
            ix0, iy0, ix1, iy1 = max(bx0, x0), max(by0, y0), min(bx1, x0 + side), min(by1, y0 + side)
            inside = max(0, ix1 - ix0) * max(0, iy1 - iy0) / max(1, (bx1 - bx0) * (by1 - by0))
            if inside >= self.min_visible:
                item_labels.append(int(label))
                box = (ix0 - x0) * sx, (iy0 - y0) * sy, (ix1 - x0) * sx, (iy1 - y0) * sy
                boxes.append([round(c) for c in box])
        crop = image.crop((x0, y0, x0 + side, y0 + side)).resize(
            (width, height), PIL.Image.Resampling.BILINEAR
        )
        kept = {"labels": sorted(set(item_labels)), "item_labels": item_labels, "boxes": boxes}
        return {**example, self.image_column: crop, **kept}


@dataclass
class MultiLabelCollator(_ImageBatching):
    """Collate `datasets` rows into `pixel_values` (B, 3, S, S) and multi-hot `labels` (B, num_labels).

    Each row holds an image (any form `decode_image` reads) in `image_column` and a list of class
    ids in `labels_column`. Images are converted to RGB (see `_to_rgb`; with `convert_rgb=False`
    a non-RGB image is an error), resized bilinearly to `image_size` x `image_size`, scaled to
    [0, 1] and normalised with `image_mean` / `image_std`. Undecodable rows are skipped and counted
    (see `_ImageBatching`); a label outside [0, num_labels) raises ValueError. `augment`, when set,
    maps each row first (training only, e.g. `MultiLabelZoomCrop`).
    """

    num_labels: int
    image_size: int
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    convert_rgb: bool = True
    image_column: str = "image"
    labels_column: str = "labels"
    augment: Callable[[dict], dict] | None = None
    skipped: int = field(default=0, init=False)

    def _multi_hot(self, example: dict, index: int) -> np.ndarray:
        labels = example[self.labels_column]
        if not isinstance(labels, list | tuple | np.ndarray):
            raise ValueError(
                f"Sample {index}: '{self.labels_column}' must be a list of class ids, got {labels!r}."
            )
        for label in labels:
            if not isinstance(label, int | np.integer) or not 0 <= label < self.num_labels:
                raise ValueError(
                    f"Sample {index} has label {label!r}; labels must be class ids in [0, {self.num_labels})."
                )
        target = np.zeros(self.num_labels, dtype=np.float32)
        target[np.asarray(labels, dtype=np.int64)] = 1.0
        return target

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        if self.augment is not None:
            examples = [self.augment(example) for example in examples]
        pixel_values, targets = self._collate(examples, self._multi_hot)
        return {"pixel_values": pixel_values, "labels": torch.from_numpy(np.stack(targets))}


@dataclass
class ImageClassificationCollator(_ImageBatching):
    """Collate rows with one class id each into `pixel_values` (B, 3, S, S) and `labels` (B,) int64.

    Images are handled as by `MultiLabelCollator`, or with `center_crop` resized on the short side and
    cropped in the centre (CLIP's preprocessing). The default mean 0 / std 1 keeps pixels in [0, 1],
    the range the infillers and inpainter of `hf_counterfactual.explain` work in.
    """

    num_labels: int
    image_size: int
    image_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    image_std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    convert_rgb: bool = True
    image_column: str = "image"
    label_column: str = "label"
    center_crop: bool = False
    skipped: int = field(default=0, init=False)

    def _class_id(self, example: dict, index: int) -> int:
        label = example[self.label_column]
        if not isinstance(label, int | np.integer) or not 0 <= label < self.num_labels:
            raise ValueError(
                f"Sample {index} has label {label!r}; a label must be a class id in [0, {self.num_labels})."
            )
        return int(label)

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        pixel_values, targets = self._collate(examples, self._class_id)
        return {"pixel_values": pixel_values, "labels": torch.tensor(targets, dtype=torch.long)}


@dataclass
class ImageCollator(_ImageBatching):
    """Collate rows into `pixel_values` (B, 3, S, S) only (no labels), e.g. for inpainting.

    Images are handled as by `MultiLabelCollator`; the default mean 0 / std 1 keeps pixels in [0, 1].
    """

    image_size: int
    image_column: str = "image"
    image_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    image_std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    convert_rgb: bool = True
    skipped: int = field(default=0, init=False)

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        pixel_values, _ = self._collate(examples, lambda example, index: None)
        return {"pixel_values": pixel_values}
