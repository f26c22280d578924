"""PAT-I (arXiv 2404.06287, sec. 3): patching inference over an ordinary classifier, no retraining."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForImageClassification, ResNetConfig, ResNetModel

from hf_counterfactual import PatchingInference
from hf_counterfactual.models.adapters import classifier_logits


def tiny_classifier(num_labels: int = 3):
    torch.manual_seed(0)
    config = ResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        num_labels=num_labels,
        problem_type="multi_label_classification",
    )
    return AutoModelForImageClassification.from_config(config).eval()


def hand_pat_i(model, x: torch.Tensor, grid: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier on the whole image and on each cut + resized patch, one call each, then
    z_pat[c] = sum_k softmax_k(z_k[c]) z_k[c] and the TDE logits (z0 + z_pat) / 2."""
    h, w = x.shape[-2] // grid, x.shape[-1] // grid
    z0 = model(pixel_values=x).logits
    z_k = []
    for r in range(grid):  # row-major
        for c in range(grid):
            patch = x[:, :, r * h : (r + 1) * h, c * w : (c + 1) * w]
            if patch.shape[-2:] != (size, size):
                patch = F.interpolate(patch, size=(size, size), mode="bilinear", align_corners=False)
            z_k.append(model(pixel_values=patch).logits)
    z_k = torch.stack(z_k, dim=1)  # (B, K, C)
    weights = torch.exp(z_k) / torch.exp(z_k).sum(dim=1, keepdim=True)
    z_pat = (weights * z_k).sum(dim=1)
    return (z0 + z_pat) / 2, z_k


@pytest.mark.parametrize("patch_size", [None, 8, 12])
def test_patching_inference_matches_hand_computation(patch_size):
    model = tiny_classifier()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = PatchingInference(model, grid_size=2, patch_size=patch_size)(x)
        expected, z_k = hand_pat_i(model, x, grid=2, size=patch_size or 16)
    torch.testing.assert_close(out.patch_logits, z_k, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=1e-5)
    assert out.attention_logits is out.patch_logits  # PAT-I: the same head scores and weights patches


def test_patching_inference_accepts_plain_modules():
    class Bare(nn.Module):  # returns a plain tensor, not a ModelOutput
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 2)

        def forward(self, pixel_values):
            return self.linear(pixel_values.mean(dim=(2, 3)))

    with torch.no_grad():
        out = PatchingInference(Bare(), grid_size=2)(torch.randn(2, 3, 8, 8))
    assert out.logits.shape == (2, 2)


def test_model_without_logits_raises_type_error():
    torch.manual_seed(0)
    backbone = ResNetModel(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    )
    with pytest.raises(TypeError, match=r"ResNetModel returned no \(batch, num_classes\) logits.*wrap it"):
        classifier_logits(backbone, torch.randn(2, 3, 16, 16))
    with pytest.raises(TypeError, match="returned no"):
        PatchingInference(backbone)(torch.randn(2, 3, 16, 16))


def test_bad_grid_size_raises():
    with pytest.raises(ValueError, match="grid_size must be >= 1"):
        PatchingInference(tiny_classifier(), grid_size=0)
