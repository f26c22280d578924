"""`InpaintingPipeline`: a diffusers pipeline around `InpainterUNet` (one forward pass, no scheduler)."""

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.image_processor import PipelineImageInput, VaeImageProcessor

from .modeling_inpainter import InpainterUNet


class InpaintingPipeline(DiffusionPipeline):
    """Fill the masked pixels of images with a trained `InpainterUNet`.

    Conventions are diffusers' (as `StableDiffusionInpaintPipeline`): `mask_image` is 1 (white) where
    pixels are to be INPAINTED and 0 where they are kept; image tensors / arrays are in [0, 1]
    (not [-1, 1]), the range the inpainter is trained on. The result composes the kept pixels of
    `image` with the prediction elsewhere, clamped to [0, 1].

    ```python
    pipe = InpaintingPipeline.from_pretrained("outputs/inpainter_small")
    filled = pipe(image, mask_image, output_type="pt").images  # (N, C, H, W) in [0, 1]
    ```

    `save_pretrained` writes `model_index.json` and `unet/`; `from_pretrained` imports `InpainterUNet`
    from `hf_counterfactual.models.inpainter.modeling_inpainter`, so this package must be installed.
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: InpainterUNet):
        super().__init__()
        self.register_modules(unet=unet)
        self.image_processor = VaeImageProcessor(vae_scale_factor=1, do_resize=False, do_normalize=False)
        self.mask_processor = VaeImageProcessor(
            vae_scale_factor=1,
            do_resize=False,
            do_normalize=False,
            do_binarize=True,
            do_convert_grayscale=True,
        )

    @torch.no_grad()
    def __call__(
        self,
        image: PipelineImageInput,
        mask_image: PipelineImageInput,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Inpaint `image` where `mask_image` is 1.

        Args:
            image: PIL image(s), (N, C, H, W) / (C, H, W) tensor or (N, H, W, C) / (H, W, C) array in
                [0, 1], with as many channels as the unet's `in_channels`.
            mask_image: PIL image(s) (white = inpaint), (N, 1, H, W) / (N, H, W) / (H, W) tensor or
                array; binarised at 0.5. Same H, W as `image`.
            output_type: "pil", "np" (N, H, W, C) or "pt" (N, C, H, W), values in [0, 1].
            return_dict: return an `ImagePipelineOutput` (else a tuple).
        """
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f'output_type must be "pil", "np" or "pt", got {output_type!r}.')
        if isinstance(mask_image, torch.Tensor) and mask_image.ndim == 2:
            mask_image = mask_image[None]
        pixels = self.image_processor.preprocess(image)
        mask = self.mask_processor.preprocess(mask_image)
        channels = self.unet.config.in_channels
        if pixels.shape[1] != channels:
            raise ValueError(
                f"image has {pixels.shape[1]} channels but the inpainter expects {channels}"
                + ("; pass RGB images." if channels == 3 else ".")
            )
        if mask.shape[1] != 1 or mask.shape[2:] != pixels.shape[2:] or len(mask) not in (1, len(pixels)):
            raise ValueError(
                f"mask_image must be one single-channel mask per image with the image's H, W: got mask "
                f"{tuple(mask.shape)} for images {tuple(pixels.shape)}."
            )
        pixels = pixels.to(self.device, self.unet.dtype)
        keep = (1 - mask).to(self.device, self.unet.dtype).expand(len(pixels), -1, -1, -1)
        fill = self.unet(pixels, keep).sample
        images = (keep * pixels + (1 - keep) * fill).clamp(0, 1)
        images = self.image_processor.postprocess(images.float(), output_type=output_type)
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)
