"""CGN losses (arXiv 2101.06046, sec. 3 and app. A), as the authors' MNIST code computes them.

Scores are raw discriminator outputs; LSGAN (Mao et al. 2017) regresses them to 1 (real) and 0 (fake)
with a plain mean squared error, as the authors' `nn.MSELoss` does (no extra factor 1/2 on the
generator term). Masks are (B, 1, H, W) (or any (B, ...)) in (0, 1).
"""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def lsgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """L_adv for the generator: mean((D(G(u, y)) - 1)^2)."""
    return ((fake_scores - 1) ** 2).mean()


def lsgan_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """L_adv for the discriminator: (mean((D(x) - 1)^2) + mean(D(G(u, y))^2)) / 2."""
    return (((real_scores - 1) ** 2).mean() + (fake_scores**2).mean()) / 2


def mask_binary_entropy(mask: torch.Tensor) -> torch.Tensor:
    """L_binary: mean over pixels of H(m) = -m log2 m - (1 - m) log2 (1 - m), pushing masks to 0 / 1.

    0 log 0 is taken as 0, so exactly binary masks give 0 (CGN masks are clamped away from 0 / 1 anyway).
    """
    entropy_nats = torch.special.xlogy(mask, mask) + torch.special.xlogy(1 - mask, 1 - mask)
    return -entropy_nats.mean() / math.log(2)


def mask_size_loss(mask: torch.Tensor, low: float = 0.1, high: float = 0.9) -> torch.Tensor:
    """L_mask: mean over images of max(0, low - mean m) + max(0, mean m - high), mean m per image."""
    area = mask.flatten(1).mean(dim=1)
    return ((low - area).clamp(min=0) + (area - high).clamp(min=0)).mean()


def frame_and_centre(
    height: int, width: int, border_width: int = 2, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (H, W) masks of the `border_width`-pixel frame and of the central half (rows and columns
    [H // 4, H - H // 4)): where the centred-object prior expects background, and mostly item."""
    frame = torch.ones(height, width, dtype=torch.bool, device=device)
    frame[border_width:-border_width, border_width:-border_width] = False
    q, r = height // 4, width // 4
    centre = torch.zeros_like(frame)
    centre[q : height - q, r : width - r] = True
    return frame, centre


def mask_border_loss(mask: torch.Tensor, width: int = 2) -> torch.Tensor:
    """L_border: mean of m over the `width`-pixel frame of each (B, 1, H, W) mask (not in the paper).

    A prior for centred objects (MNIST-like data) in the spirit of the paper's L_bg: the frame is
    background, so a mask learned inside out (covering the background while the background mechanism
    paints the object) is penalised.
    """
    if width < 1 or 2 * width >= min(mask.shape[-2:]):
        raise ValueError(f"border width must be in [1, {min(mask.shape[-2:]) // 2}), got {width}.")
    frame, _ = frame_and_centre(*mask.shape[-2:], width, mask.device)
    return (mask * frame).sum(dim=(-2, -1)).mean() / frame.sum()


def mode_seeking_loss(
    outputs_a: torch.Tensor,
    outputs_b: torch.Tensor,
    noise_a: torch.Tensor,
    noise_b: torch.Tensor,
    eps: float = 1e-5,
) -> torch.Tensor:
    """L_ms (MSGAN, Mao et al. 2019): 1 / (mean|G(a) - G(b)| / mean|u_a - u_b| + eps) for pairs of samples
    with the same class and different noise; minimising it spreads each class's outputs (not in the paper)."""
    ratio = (outputs_a - outputs_b).abs().mean() / (noise_a - noise_b).abs().mean()
    return 1 / (ratio + eps)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) feature maps -> (B, C, C) Gram matrices F F^T / (C H W)."""
    if features.ndim != 4:
        raise ValueError(f"features must be (batch, channels, height, width), got {tuple(features.shape)}.")
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def style_loss(
    features_a: Sequence[torch.Tensor],
    features_b: Sequence[torch.Tensor],
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Gram (style) loss: sum over layers l of w_l * MSE(gram(a_l), gram(b_l)); w_l = 1 by default.

    `features_a` / `features_b` are the feature maps of one frozen CNN at the same layers.
    """
    if len(features_a) != len(features_b) or len(features_a) == 0:
        raise ValueError(
            f"need the same non-zero number of feature maps, got {len(features_a)} and {len(features_b)}."
        )
    weights = [1.0] * len(features_a) if weights is None else list(weights)
    if len(weights) != len(features_a):
        raise ValueError(f"got {len(weights)} weights for {len(features_a)} layers.")
    return sum(
        w * torch.mean((gram_matrix(a) - gram_matrix(b)) ** 2)
        for w, a, b in zip(weights, features_a, features_b, strict=True)
    )


__all__ = [
    "gram_matrix",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "mask_binary_entropy",
    "mask_size_loss",
    "style_loss",
]


class RandomConvFeatures(nn.Module):
    """A frozen, randomly initialised conv net whose activations feed `style_loss` (no VGG weights offline).

    Three conv3x3 + ReLU stages (the last two after 2x average pooling), weights drawn from a seeded
    generator with He scaling, so the features are a fixed random basis of local colour / texture
    statistics. `forward` returns the three activations.
    """

    def __init__(self, in_channels: int = 3, channels: tuple[int, ...] = (32, 64, 64), seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList()
        for c_in, c_out in zip((in_channels, *channels[:-1]), channels, strict=True):
            conv = nn.Conv2d(c_in, c_out, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(
                    torch.randn(conv.weight.shape, generator=generator) * math.sqrt(2 / (c_in * 9))
                )
                conv.bias.zero_()
            self.convs.append(conv)
        self.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        features, h = [], images
        for i, conv in enumerate(self.convs):
            h = torch.relu(conv(F.avg_pool2d(h, 2) if i else h))
            features.append(h)
        return features
