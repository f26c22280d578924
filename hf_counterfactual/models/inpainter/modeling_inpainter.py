"""A single-pass U-Net inpainter: the generative infiller of FIDO (arXiv 1807.08024, section 3).

FIDO fills the dropped pixels of hundreds of masks per saliency map, so the inpainter is one forward
pass (no diffusion steps): the image with its dropped pixels zeroed, concatenated with the keep mask,
goes through a small U-Net that predicts the whole image. Images are float in [0, 1]; the keep mask
is 1 where a pixel is kept, 0 where it is dropped (to be filled).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

MASK_KINDS = ("blob", "noise", "rect")


@dataclass
class InpainterOutput(BaseOutput):
    """`sample` (N, C, H, W): the predicted image, unclamped; only its dropped pixels are meant to be used.
    `loss`: mean absolute error over the dropped pixels, when `target` was given.
    """

    sample: torch.Tensor
    loss: torch.Tensor | None = None


class ResnetBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, twice, plus a (1x1 when channels change) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.shortcut(x) + h


class InpainterUNet(ModelMixin, ConfigMixin):
    """U-Net that fills the dropped pixels of an image in one forward pass.

    Level i of `block_out_channels` runs `layers_per_block` resnet blocks at 1 / 2**i of the input
    resolution; the encoder downsamples with stride-2 convs, the decoder upsamples (nearest + conv)
    and concatenates the encoder's output of the same level. Inputs of any H, W are zero-padded at the
    bottom / right to a multiple of 2**(levels - 1) (padding counts as dropped) and the output is
    cropped back.

    Args:
        in_channels: image channels C; the network sees C + 1 (masked image and keep mask).
        block_out_channels: channels per resolution level (its length is the number of levels).
        layers_per_block: resnet blocks per level in the encoder and in the decoder.
        mid_layers: resnet blocks at the lowest resolution.
        norm_num_groups: GroupNorm groups; must divide every entry of `block_out_channels`.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        block_out_channels: tuple[int, ...] = (32, 64, 128, 128),
        layers_per_block: int = 1,
        mid_layers: int = 2,
        norm_num_groups: int = 8,
    ):
        super().__init__()
        channels = list(block_out_channels)
        if not channels or any(c % norm_num_groups for c in channels):
            raise ValueError(
                f"norm_num_groups={norm_num_groups} must divide every entry of block_out_channels={channels}."
            )
        self.conv_in = nn.Conv2d(in_channels + 1, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        prev = channels[0]
        for i, ch in enumerate(channels):
            blocks = [
                ResnetBlock(prev if j == 0 else ch, ch, norm_num_groups) for j in range(layers_per_block)
            ]
            self.down_blocks.append(nn.Sequential(*blocks))
            last = i == len(channels) - 1
            self.downsamplers.append(nn.Identity() if last else nn.Conv2d(ch, ch, 3, stride=2, padding=1))
            prev = ch
        self.mid_block = nn.Sequential(*[ResnetBlock(prev, prev, norm_num_groups) for _ in range(mid_layers)])
        # decoder, deepest level first
        self.upsamplers = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for i in reversed(range(len(channels))):
            ch = channels[i]
            last = i == len(channels) - 1
            self.upsamplers.append(nn.Identity() if last else nn.Conv2d(channels[i + 1], ch, 3, padding=1))
            blocks = [
                ResnetBlock(2 * ch if j == 0 else ch, ch, norm_num_groups) for j in range(layers_per_block)
            ]
            self.up_blocks.append(nn.Sequential(*blocks))
        self.norm_out = nn.GroupNorm(norm_num_groups, channels[0])
        self.conv_out = nn.Conv2d(channels[0], in_channels, 3, padding=1)

    def forward(
        self,
        pixel_values: torch.Tensor,
        keep_mask: torch.Tensor,
        target: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> InpainterOutput | tuple:
        """Predict the image from its kept pixels.

        Args:
            pixel_values: (N, C, H, W) images in [0, 1]. Dropped pixels are zeroed here, so passing the
                full image is fine: the network never sees them.
            keep_mask: (N, 1, H, W), 1 where a pixel is kept, 0 where it is to be filled.
            target: optional (N, C, H, W) images to compute `loss` against (in training, `pixel_values`).
            return_dict: return an `InpainterOutput` (else a tuple).

        The loss is the L1 error averaged over the dropped pixels and channels only: kept pixels are
        copied from the input by whoever composes `keep * x + (1 - keep) * sample`, so they carry no
        training signal. A batch with no dropped pixel has loss 0.
        """
        c = self.config.in_channels
        if pixel_values.ndim != 4 or pixel_values.shape[1] != c:
            raise ValueError(
                f"pixel_values must be (N, {c}, H, W) for this {c}-channel inpainter, "
                f"got {tuple(pixel_values.shape)}."
            )
        n, _, h, w = pixel_values.shape
        if tuple(keep_mask.shape) != (n, 1, h, w):
            raise ValueError(
                f"keep_mask must be (N, 1, H, W) = {(n, 1, h, w)}, got {tuple(keep_mask.shape)}."
            )
        if target is not None and target.shape != pixel_values.shape:
            raise ValueError(
                f"target must have the shape of pixel_values {tuple(pixel_values.shape)}, got {tuple(target.shape)}."
            )
        keep = keep_mask.to(pixel_values.dtype)
        multiple = 2 ** (len(self.config.block_out_channels) - 1)
        pad = (0, -w % multiple, 0, -h % multiple)
        hidden = F.pad(torch.cat([pixel_values * keep, keep], dim=1), pad)

        hidden = self.conv_in(hidden)
        skips = []
        for block, down in zip(self.down_blocks, self.downsamplers, strict=True):
            hidden = block(hidden)
            skips.append(hidden)
            hidden = down(hidden)
        hidden = self.mid_block(hidden)
        for up, block in zip(self.upsamplers, self.up_blocks, strict=True):
            skip = skips.pop()
            if not isinstance(up, nn.Identity):
                hidden = up(F.interpolate(hidden, size=skip.shape[-2:], mode="nearest"))
            hidden = block(torch.cat([hidden, skip], dim=1))
        sample = self.conv_out(F.silu(self.norm_out(hidden)))[..., :h, :w]

        loss = None
        if target is not None:
            dropped = 1 - keep
            loss = ((sample - target).abs() * dropped).sum() / (dropped.sum() * c).clamp(min=1)
        if not return_dict:
            return (sample,) if loss is None else (sample, loss)
        return InpainterOutput(sample=sample, loss=loss)


def random_inpainting_masks(
    n: int,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    keep_ratio: tuple[float, float] = (0.1, 0.9),
    kinds: tuple[str, ...] = MASK_KINDS,
) -> torch.Tensor:
    """(n, 1, height, width) float keep masks in {0, 1} of the kinds FIDO produces, for training.

    Each mask draws a target keep ratio r uniformly in `keep_ratio` and a kind uniformly in `kinds`:

    - "blob": a coarse grid (2 .. side / 4 cells per side) of Gaussian noise, upsampled bilinearly and
      thresholded at its r-quantile: smooth blobs, as FIDO's upsampled mask logits once they settle;
    - "noise": the same upsampled grid as a keep probability with mean r (random spread), then one
      Bernoulli draw per pixel: the noisy masks FIDO samples while its dropout probabilities are
      still undecided;
    - "rect": 1 to 3 dropped rectangles covering (1 - r) of the image (up to 8 more make up for overlaps).

    Draws from `generator` (CPU), or from torch's global RNG when None.
    """
    unknown = set(kinds) - set(MASK_KINDS)
    if not kinds or unknown:
        raise ValueError(f"kinds must be a non-empty subset of {MASK_KINDS}, got {kinds}.")
    lo, hi = keep_ratio
    if not 0 < lo <= hi < 1:
        raise ValueError(f"keep_ratio must be (min, max) with 0 < min <= max < 1, got {keep_ratio}.")

    def uniform(a: float = 0.0, b: float = 1.0) -> float:
        return a + (b - a) * torch.rand((), generator=generator).item()

    def smooth_field() -> torch.Tensor:
        cells = int(torch.randint(2, max(3, min(height, width) // 4 + 1), (), generator=generator))
        coarse = torch.randn(1, 1, cells, cells, generator=generator)
        return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0, 0]

    masks = torch.ones(n, 1, height, width)
    for i in range(n):
        r = uniform(lo, hi)
        kind = kinds[int(torch.randint(len(kinds), (), generator=generator))]
        if kind == "blob":
            field = smooth_field()
            masks[i, 0] = (field <= torch.quantile(field.flatten(), r)).float()
        elif kind == "noise":
            field = smooth_field()
            field = field - field.mean()
            spread = uniform() * min(r, 1 - r)
            prob = r + spread * field / field.abs().max().clamp(min=1e-6)
            masks[i, 0] = torch.bernoulli(prob, generator=generator)
        else:
            pieces = int(torch.randint(1, 4, (), generator=generator))
            for j in range(pieces + 8):  # extra rectangles make up for overlaps
                missing = (1 - r) - (1 - masks[i].mean().item())
                if missing < 0.01:
                    break
                area = missing / max(1, pieces - j)
                fw = uniform(area, 1.0)  # width fraction; the height fraction area / fw is then <= 1
                rh, rw = max(1, round(area / fw * height)), max(1, round(fw * width))
                top = int(torch.randint(height - rh + 1, (), generator=generator))
                left = int(torch.randint(width - rw + 1, (), generator=generator))
                masks[i, 0, top : top + rh, left : left + rw] = 0
    return masks
