"""Masked images as counterfactual samples (arXiv 2303.03052): which cells to mask, and what fills them.

`cell_masks` turns a CAM (see `hf_counterfactual.explain.cams.cam_for`) into a boolean cell mask by the
object, context or random strategy; `apply_masks` upsamples it to pixels and refills the masked pixels
with nothing (zeros), one other image of the batch, or a random other image per cell. All randomness comes
from an optional `torch.Generator`, so a seeded generator gives the same masks and refills.
"""

from dataclasses import dataclass, field

import torch

STRATEGIES = ("object", "context", "random")
REFILLS = ("none", "single", "multi")

# The paper's thresholds per (strategy, refill); the headline setting is object mask, single refill, 0.3.
PAPER_THRESHOLDS = {
    ("object", "none"): 0.3,
    ("object", "single"): 0.3,
    ("object", "multi"): 0.6,
    ("context", "none"): 0.6,
    ("context", "single"): 0.5,
    ("context", "multi"): 0.3,
    ("random", "none"): 0.75,
    ("random", "single"): 0.5,
    ("random", "multi"): 0.5,
}


def paper_threshold(strategy: str, refill: str) -> float:
    """The threshold the paper uses for this strategy and refill (`PAPER_THRESHOLDS`)."""
    if (strategy, refill) not in PAPER_THRESHOLDS:
        raise ValueError(
            f"unknown strategy {strategy!r} or refill {refill!r}; choose from {STRATEGIES} and {REFILLS}."
        )
    return PAPER_THRESHOLDS[strategy, refill]


@dataclass
class MaskingConfig:
    """How masked counterfactual images are made. Paper headline: object mask, single refill, t = 0.3.

    Args:
        strategy: "object" masks cells with CAM > threshold, "context" the complement (CAM <= threshold),
            "random" masks each cell with probability threshold.
        refill: "none" (masked pixels zeroed; the caller may also drop or attention-mask those tokens),
            "single" (all masked pixels of an image from one other image of the batch) or "multi" (each
            masked cell from a random other image), always at the same location.
        threshold: in [0, 1]; None takes the paper's value for (strategy, refill), see `PAPER_THRESHOLDS`.
        cell: mask unit in pixels; None means one ViT patch (CNNs need a value).
    """

    strategy: str = field(default="object", metadata={"help": '"object", "context" or "random".'})
    refill: str = field(default="single", metadata={"help": '"none", "single" or "multi".'})
    threshold: float | None = field(
        default=None, metadata={"help": "CAM threshold (random: mask probability); None = paper's value."}
    )
    cell: int | None = field(default=None, metadata={"help": "Mask unit in pixels; None = one ViT patch."})

    def __post_init__(self):
        default = paper_threshold(self.strategy, self.refill)  # also checks the names
        if self.threshold is None:
            self.threshold = default
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}.")
        if self.cell is not None and self.cell < 1:
            raise ValueError(f"cell must be >= 1 pixel, got {self.cell}.")


def _device(generator: torch.Generator | None, fallback: torch.device) -> torch.device:
    """Random numbers are drawn where the generator lives, so a seeded CPU generator works for GPU batches."""
    return generator.device if generator is not None else fallback


def cell_masks(
    cam_or_shape: torch.Tensor | tuple[int, int, int],
    config: MaskingConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A (B, h, w) bool mask, True = masked, from a (B, h, w) CAM in [0, 1] (or just a shape for "random")."""
    if config.strategy == "random":
        shape, device = (
            (cam_or_shape.shape, cam_or_shape.device)
            if isinstance(cam_or_shape, torch.Tensor)
            else (tuple(cam_or_shape), torch.device("cpu"))
        )
        draw = torch.rand(shape, generator=generator, device=_device(generator, device))
        return (draw < config.threshold).to(device)
    if not isinstance(cam_or_shape, torch.Tensor):
        raise ValueError(f"the {config.strategy!r} strategy needs a CAM tensor, got a shape.")
    if config.strategy == "object":
        return cam_or_shape > config.threshold
    return cam_or_shape <= config.threshold


def apply_masks(
    pixel_values: torch.Tensor,
    cell_mask: torch.Tensor,
    refill: str,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask a (B, C, H, W) batch by a (B, h, w) cell mask; returns (masked pixels, (B, H, W) pixel mask).

    Cells are upsampled nearest (H and W must be multiples of h and w). "none" zeroes masked pixels; to
    drop the masked tokens instead, pass `token_attention_mask(cell_mask)` to the model as well. "single"
    takes every masked pixel of image i from image (i + k_i) mod B with k_i uniform in 1..B-1; "multi" draws
    such a k per cell. Sources are never the image itself and always at the same location.
    """
    b, c, h, w = pixel_values.shape
    if cell_mask.ndim != 3 or cell_mask.shape[0] != b or h % cell_mask.shape[1] or w % cell_mask.shape[2]:
        raise ValueError(
            f"cell_mask of shape {tuple(cell_mask.shape)} does not tile pixel_values of shape {(b, c, h, w)}; "
            "it must be (B, h, w) with h and w dividing the image size."
        )
    if refill not in REFILLS:
        raise ValueError(f"unknown refill {refill!r}; choose from {REFILLS}.")
    sy, sx = h // cell_mask.shape[1], w // cell_mask.shape[2]
    pixel_mask = cell_mask.bool().repeat_interleave(sy, 1).repeat_interleave(sx, 2)
    if refill == "none":
        return pixel_values.masked_fill(pixel_mask[:, None], 0), pixel_mask
    if b < 2:
        raise ValueError(f"refill {refill!r} needs at least 2 images in the batch, got {b}.")
    device = _device(generator, pixel_values.device)
    shift_shape = (b, 1, 1) if refill == "single" else tuple(cell_mask.shape)
    shift = torch.randint(1, b, shift_shape, generator=generator, device=device).to(pixel_values.device)
    source = (torch.arange(b, device=pixel_values.device)[:, None, None] + shift) % b
    source = source.expand_as(cell_mask).repeat_interleave(sy, 1).repeat_interleave(sx, 2)
    refilled = pixel_values.gather(0, source[:, None].expand(b, c, h, w))
    return torch.where(pixel_mask[:, None], refilled, pixel_values), pixel_mask


def token_attention_mask(cell_mask: torch.Tensor, num_prefix_tokens: int = 1) -> torch.Tensor:
    """The (B, prefix + h * w) `attention_mask` (1 = attend) that hides masked patches from a ViT.

    For refill "none" with a cell of one patch: `ViTForImageClassification(pixel_values=x,
    attention_mask=token_attention_mask(cell_mask))` never attends to the masked tokens, so its CLS output
    equals dropping them (the paper's "none"). The CLS (and any other prefix token) is always kept.
    """
    keep = ~cell_mask.flatten(1)
    prefix = torch.ones(keep.shape[0], num_prefix_tokens, dtype=torch.bool, device=keep.device)
    return torch.cat([prefix, keep], dim=1).long()
