from .modeling_inpainter import MASK_KINDS, InpainterOutput, InpainterUNet, random_inpainting_masks
from .pipeline_inpainter import InpaintingPipeline

__all__ = ["MASK_KINDS", "InpainterOutput", "InpainterUNet", "InpaintingPipeline", "random_inpainting_masks"]
