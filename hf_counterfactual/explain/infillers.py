"""Infillers for FIDO (arXiv 1807.08024, section 3): what replaces the pixels a mask drops.

An infiller is any callable `infill(pixel_values, keep_mask) -> fill`:

- `pixel_values`: (N, C, H, W) images;
- `keep_mask`: (N, 1, H, W) in {0, 1}, 1 where a pixel is kept;
- `fill`: (N, C, H, W) values for the DROPPED pixels. Values at kept pixels are ignored: the explainer
  composes `z * x + (1 - z) * fill` itself, and calls the infiller under `torch.no_grad()`.

The four heuristic infillers of the paper live here; a generative inpainter only has to follow the same
signature to plug into `FidoExplainer`.
"""

import math

import torch
import torch.nn.functional as F


class MeanInfiller:
    """Fill with one colour: `mean` (e.g. the dataset mean, per channel) or, if None, each image's mean."""

    def __init__(self, mean: tuple[float, ...] | None = None):
        self.mean = mean

    def __call__(self, pixel_values: torch.Tensor, keep_mask: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            colour = pixel_values.mean(dim=(2, 3), keepdim=True)
        else:
            if len(self.mean) != pixel_values.shape[1]:
                raise ValueError(
                    f"MeanInfiller has {len(self.mean)} channel means but the images have "
                    f"{pixel_values.shape[1]} channels."
                )
            colour = torch.tensor(self.mean, dtype=pixel_values.dtype, device=pixel_values.device)
            colour = colour.view(1, -1, 1, 1)
        return colour.expand_as(pixel_values)


def _gaussian_kernel(sigma: float, radius: int, like: torch.Tensor) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=like.dtype, device=like.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


class BlurInfiller:
    """Fill with a Gaussian blur of the whole image (separable, reflect padding, radius ~3 sigma).

    The radius is clipped to size - 1 per axis, which reflect padding needs, so small images work too.
    """

    def __init__(self, sigma: float = 10.0):
        if sigma <= 0:
            raise ValueError(f"BlurInfiller needs sigma > 0, got {sigma}.")
        self.sigma = sigma

    def __call__(self, pixel_values: torch.Tensor, keep_mask: torch.Tensor) -> torch.Tensor:
        _, c, h, w = pixel_values.shape
        out = pixel_values
        for axis, size in ((2, h), (3, w)):
            radius = min(math.ceil(3 * self.sigma), size - 1)
            if radius < 1:
                continue
            k = _gaussian_kernel(self.sigma, radius, pixel_values)
            if axis == 2:
                weight, pad = k.view(1, 1, -1, 1), (0, 0, radius, radius)
            else:
                weight, pad = k.view(1, 1, 1, -1), (radius, radius, 0, 0)
            out = F.conv2d(F.pad(out, pad, mode="reflect"), weight.expand(c, 1, -1, -1), groups=c)
        return out


class NoiseInfiller:
    """Fill with a uniform random colour per sample plus N(0, std) pixel noise (the paper's "Random").

    Draws from `generator` (a CPU `torch.Generator`), so a seeded generator gives reproducible fills;
    results then depend on the order and size of the batches it fills.
    """

    def __init__(self, std: float = 0.2, generator: torch.Generator | None = None):
        self.std = std
        self.generator = generator

    def __call__(self, pixel_values: torch.Tensor, keep_mask: torch.Tensor) -> torch.Tensor:
        n, c, h, w = pixel_values.shape
        colour = torch.rand(n, c, 1, 1, generator=self.generator, dtype=pixel_values.dtype)
        noise = torch.randn(n, c, h, w, generator=self.generator, dtype=pixel_values.dtype)
        return (colour + self.std * noise).to(pixel_values.device)


class LocalInfiller:
    """Fill each dropped pixel with the mean of the KEPT pixels in a window x window neighbourhood.

    Where the window holds no kept pixel, the fill is the image's mean colour.
    """

    def __init__(self, window: int = 15):
        if window < 1 or window % 2 == 0:
            raise ValueError(f"LocalInfiller needs an odd window >= 1, got {window}.")
        self.window = window

    def __call__(self, pixel_values: torch.Tensor, keep_mask: torch.Tensor) -> torch.Tensor:
        keep = keep_mask.to(pixel_values.dtype)
        pool = dict(kernel_size=self.window, stride=1, padding=self.window // 2, count_include_pad=True)
        kept_sum = F.avg_pool2d(pixel_values * keep, **pool)
        kept_count = F.avg_pool2d(keep, **pool)
        local = kept_sum / kept_count.clamp(min=1e-12)
        fallback = pixel_values.mean(dim=(2, 3), keepdim=True).expand_as(pixel_values)
        return torch.where(kept_count > 0, local, fallback)


INFILLERS = {"mean": MeanInfiller, "blur": BlurInfiller, "noise": NoiseInfiller, "local": LocalInfiller}


def get_infiller(name: str, **kwargs):
    """Build the infiller registered as `name` ("mean", "blur", "noise", "local") with `kwargs`.

    The generative infiller needs a trained model, so it has no name here: pass
    `GenerativeInfiller.from_pretrained(path)` (a saved `InpaintingPipeline`, see `generative.py`) or a
    `DiffusersInpaintInfiller(pipe)` to `FidoExplainer(model, infill=...)` instead.
    """
    if name not in INFILLERS:
        raise ValueError(f"unknown infiller {name!r}; choose one of {sorted(INFILLERS)}.")
    return INFILLERS[name](**kwargs)


def infiller_for_image_size(name: str, size: int, **kwargs):
    """`get_infiller(name)` with the paper's 224 px sizes (blur sigma 10, local window 15) scaled to `size`."""
    scale = size / 224
    sized = {"blur": {"sigma": 10 * scale}, "local": {"window": max(1, round(15 * scale)) | 1}}
    return get_infiller(name, **{**sized.get(name, {}), **kwargs})
