"""Generative infillers for FIDO (arXiv 1807.08024, section 3): fill dropped pixels with an inpainting model.

Both follow the infiller interface of `infillers.py`: `infill(pixel_values, keep_mask) -> fill`, with
(N, C, H, W) images, an (N, 1, H, W) keep mask in {0, 1} (1 = kept) and a fill for the dropped pixels.

- `GenerativeInfiller`: our single-pass `InpainterUNet` (trained with `recipes/inpainter/*.yaml`); one
  forward pass per chunk of masks, cheap enough for FIDO's hundreds of calls per map.
- `DiffusersInpaintInfiller`: any pretrained diffusers inpainting pipeline (e.g. Stable Diffusion
  inpainting); many denoising steps per call, so slow, but it brings a model of natural images.

Both take `value_range=(low, high)`, the range of the `pixel_values` FIDO works on, i.e. the classifier's
input: (0, 1) for raw pixels, (-1, 1) for the project's `MultiLabelCollator` default (mean = std = 0.5).
Images are mapped linearly to [0, 1] for the inpainter and the fill back to `value_range`.
"""

import torch
import torch.nn.functional as F

from ..models.inpainter import InpainterUNet, InpaintingPipeline


def _to_unit(pixel_values: torch.Tensor, keep_mask: torch.Tensor, value_range: tuple[float, float]):
    if pixel_values.ndim != 4:
        raise ValueError(f"pixel_values must be (N, C, H, W), got {tuple(pixel_values.shape)}.")
    n, _, h, w = pixel_values.shape
    if tuple(keep_mask.shape) != (n, 1, h, w):
        raise ValueError(f"keep_mask must be (N, 1, H, W) = {(n, 1, h, w)}, got {tuple(keep_mask.shape)}.")
    low, high = value_range
    return (pixel_values - low) / (high - low)


def _check_settings(batch_size: int, value_range: tuple[float, float]) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if value_range[0] >= value_range[1]:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}.")


class GenerativeInfiller:
    """Fill dropped pixels with a trained `InpainterUNet` (given directly or as an `InpaintingPipeline`).

    Runs under `torch.no_grad()` on the unet's device, `batch_size` images at a time; the fill is
    clamped to `value_range` and returned on the input's device and dtype. Deterministic, and each
    image's fill depends on that image and mask only.

    ```python
    from hf_counterfactual.explain import FidoExplainer, GenerativeInfiller

    infill = GenerativeInfiller.from_pretrained("outputs/inpainter_small", value_range=(-1, 1))
    result = FidoExplainer(classifier, infill=infill).explain(pixel_values, target)
    ```
    """

    def __init__(
        self,
        model: InpaintingPipeline | InpainterUNet,
        batch_size: int = 64,
        value_range: tuple[float, float] = (0.0, 1.0),
    ):
        if isinstance(model, InpaintingPipeline):
            model = model.unet
        if not isinstance(model, InpainterUNet):
            raise TypeError(
                f"GenerativeInfiller needs an InpaintingPipeline or InpainterUNet, got {type(model)}."
            )
        _check_settings(batch_size, value_range)
        self.unet = model
        self.batch_size = batch_size
        self.value_range = value_range

    @classmethod
    def from_pretrained(
        cls, path: str, batch_size: int = 64, value_range: tuple[float, float] = (0.0, 1.0), **kwargs
    ) -> "GenerativeInfiller":
        """Load a saved `InpaintingPipeline` (folder with model_index.json and unet/); kwargs go to it."""
        return cls(InpaintingPipeline.from_pretrained(path, **kwargs), batch_size, value_range)

    @torch.no_grad()
    def __call__(self, pixel_values: torch.Tensor, keep_mask: torch.Tensor) -> torch.Tensor:
        x = _to_unit(pixel_values, keep_mask, self.value_range)
        fills = []
        for start in range(0, len(x), self.batch_size):
            chunk = x[start : start + self.batch_size].to(self.unet.device, self.unet.dtype)
            keep = keep_mask[start : start + self.batch_size].to(self.unet.device, self.unet.dtype)
            fills.append(
                self.unet(chunk, keep).sample.clamp(0, 1).to(pixel_values.device, pixel_values.dtype)
            )
        low, high = self.value_range
        return torch.cat(fills) * (high - low) + low


class DiffusersInpaintInfiller:
    """Fill dropped pixels with a pretrained diffusers inpainting pipeline (the plug-in path).

    Any pipeline called as `pipe(prompt=..., image=..., mask_image=..., output_type="pt")` works, e.g.
    `StableDiffusionInpaintPipeline`. Diffusers masks are 1 where to INPAINT, so the pipeline gets
    `1 - keep_mask`; images go in as [0, 1] tensors (the pipeline normalises them itself), the output
    is resized back to the input's H, W when the pipeline changed it (its `height` / `width` default to
    the input rounded to its VAE's multiple; `image_size` overrides both) and mapped to `value_range`.
    Each call seeds a fresh CPU `torch.Generator` with `seed`, so the same inputs give the same fill.
    Only RGB (3-channel) images are accepted. Extra keyword arguments go to every pipeline call.

    ```python
    from diffusers import StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline.from_pretrained(
        "stable-diffusion-v1-5/stable-diffusion-inpainting", torch_dtype=torch.float16
    ).to("cuda")
    infill = DiffusersInpaintInfiller(pipe, num_inference_steps=20, image_size=512, value_range=(-1, 1))
    result = FidoExplainer(classifier, FidoConfig(steps=300), infill=infill).explain(pixel_values, target)
    ```

    FIDO calls the infiller once per step with `num_samples` masks per image, so this costs
    steps x num_inference_steps denoising passes; lower `FidoConfig.steps` or use `GenerativeInfiller`
    when that is too slow.
    """

    def __init__(
        self,
        pipeline,
        prompt: str = "",
        num_inference_steps: int = 20,
        guidance_scale: float = 1.0,
        value_range: tuple[float, float] = (0.0, 1.0),
        image_size: int | None = None,
        batch_size: int = 8,
        seed: int = 0,
        progress_bar: bool = False,
        **pipeline_kwargs,
    ):
        _check_settings(batch_size, value_range)
        self.pipeline = pipeline
        self.prompt = prompt
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.value_range = value_range
        self.image_size = image_size
        self.batch_size = batch_size
        self.seed = seed
        self.pipeline_kwargs = pipeline_kwargs
        pipeline.set_progress_bar_config(disable=not progress_bar)

    @torch.no_grad()
    def __call__(self, pixel_values: torch.Tensor, keep_mask: torch.Tensor) -> torch.Tensor:
        x = _to_unit(pixel_values, keep_mask, self.value_range).clamp(0, 1)
        if x.shape[1] != 3:
            raise ValueError(f"DiffusersInpaintInfiller needs RGB images (3 channels), got {x.shape[1]}.")
        h, w = x.shape[-2:]
        size = {"height": self.image_size, "width": self.image_size} if self.image_size else {}
        generator = torch.Generator().manual_seed(self.seed)
        fills = []
        for start in range(0, len(x), self.batch_size):
            chunk = x[start : start + self.batch_size].float()
            inpaint = 1 - keep_mask[start : start + self.batch_size].float()
            out = self.pipeline(
                prompt=[self.prompt] * len(chunk),
                image=chunk,
                mask_image=inpaint,
                num_inference_steps=self.num_inference_steps,
                guidance_scale=self.guidance_scale,
                generator=generator,
                output_type="pt",
                **size,
                **self.pipeline_kwargs,
            ).images
            if out.shape[-2:] != (h, w):
                out = F.interpolate(out.float(), size=(h, w), mode="bilinear", align_corners=False)
            fills.append(out.clamp(0, 1).to(pixel_values.device, pixel_values.dtype))
        low, high = self.value_range
        return torch.cat(fills) * (high - low) + low
