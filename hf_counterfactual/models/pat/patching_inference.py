"""PAT-I: patching-based inference over ANY trained multi-label classifier, with no retraining."""

import torch
from torch import nn

from ..adapters import classifier_logits
from .modeling_pat import PatOutput, soft_pivot_logits, whole_and_patches


class PatchingInference(nn.Module):
    """Wrap a classifier so its score is the TDE estimate sigmoid((z0 + z_pat) / 2) of arXiv 2404.06287.

    z0 is the classifier's logits on the whole image, z_k its logits on patch k (resized to the input
    size), and z_pat[c] = sum_k softmax_k(z_k[c]) * z_k[c]: a soft max over patches of the same head.
    Whole image and patches go through the classifier in one batched call of (1 + g^2) B images.
    """

    def __init__(
        self, model: nn.Module, grid_size: int = 2, patch_size: int | None = None, mode: str = "bilinear"
    ):
        super().__init__()
        if grid_size < 1:
            raise ValueError(f"grid_size must be >= 1, got {grid_size}.")
        self.model = model
        self.grid_size = grid_size
        self.patch_size = patch_size
        self.mode = mode

    def forward(self, pixel_values: torch.Tensor, **kwargs) -> PatOutput:
        whole_logits, patch_logits = whole_and_patches(
            lambda x: classifier_logits(self.model, x),
            pixel_values,
            self.grid_size,
            self.patch_size,
            self.mode,
        )
        pivot_logits = soft_pivot_logits(patch_logits, patch_logits)
        return PatOutput(
            logits=(whole_logits + pivot_logits) / 2,
            whole_logits=whole_logits,
            pivot_logits=pivot_logits,
            patch_logits=patch_logits,
            attention_logits=patch_logits,
        )


__all__ = ["PatchingInference"]
