"""PAT-I: patching-based inference over ANY trained multi-label classifier, with no retraining."""

import torch
from torch import nn

from ..adapters import classifier_logits
from .modeling_pat import PatOutput, soft_pivot_logits, split_into_patches


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
        b = pixel_values.shape[0]
        patches = split_into_patches(pixel_values, self.grid_size, self.patch_size, self.mode)
        k = patches.shape[1]
        patches = patches.flatten(0, 1)
        if patches.shape[-2:] == pixel_values.shape[-2:]:
            all_logits = classifier_logits(self.model, torch.cat([pixel_values, patches]))
            whole_logits, patch_logits = all_logits[:b], all_logits[b:]
        else:
            whole_logits = classifier_logits(self.model, pixel_values)
            patch_logits = classifier_logits(self.model, patches)
        patch_logits = patch_logits.view(b, k, -1)
        pivot_logits = soft_pivot_logits(patch_logits, patch_logits)
        return PatOutput(
            logits=(whole_logits + pivot_logits) / 2,
            whole_logits=whole_logits,
            pivot_logits=pivot_logits,
            patch_logits=patch_logits,
            attention_logits=patch_logits,
        )


__all__ = ["PatchingInference"]
