"""Tests for saliency metrics, each against a hand computation, and the model-randomisation sanity check
(Adebayo et al. 2018, arXiv 1810.03292)."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from transformers import ResNetConfig, ResNetForImageClassification

from hf_counterfactual.metrics.saliency import (
    dabkowski_gal_score,
    deletion_insertion_auc,
    mask_iou,
    pointing_game,
    randomization_sanity_check,
    randomize_model,
    rank_correlation,
)


class QuadrantModel(nn.Module):
    """Class-0 logit = sum of the top-left quadrant of channel 0; class-1 logit = 0."""

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        h, w = pixel_values.shape[-2:]
        s = pixel_values[:, 0, : h // 2, : w // 2].sum(dim=(1, 2))
        return torch.stack([s, torch.zeros_like(s)], dim=1)


class MeanModel(nn.Module):
    """Class-0 logit = mean of the image; class-1 logit = 0."""

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        s = pixel_values.mean(dim=(1, 2, 3))
        return torch.stack([s, torch.zeros_like(s)], dim=1)


class ConstantModel(nn.Module):
    """Probabilities (0.2, 0.8) whatever the input."""

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[math.log(0.2), math.log(0.8)]]).expand(pixel_values.shape[0], -1)


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_pointing_game_three_images():
    sal = np.zeros((3, 3, 3))
    masks = np.zeros((3, 3, 3), dtype=bool)
    sal[0, 1, 1] = 1.0  # hit
    masks[0, 1, 1] = True
    sal[1, 0, 0] = 1.0  # miss
    masks[1, 2, 2] = True
    sal[2, 0, 1] = sal[2, 2, 2] = 1.0  # tie: first argmax (0, 1) is in the mask -> hit
    masks[2, 0, 1] = True
    assert pointing_game(sal, masks) == pytest.approx(2 / 3)
    assert pointing_game(torch.tensor(sal), torch.tensor(masks)) == pytest.approx(2 / 3)


def test_mask_iou_topk_and_threshold():
    sal = np.arange(16, dtype=float)[::-1].reshape(1, 4, 4).copy()  # 15 at (0,0) ... 0 at (3,3)
    mask = np.zeros((1, 4, 4), dtype=bool)
    mask[0, 0, :2] = mask[0, 1, :2] = True  # area 4: pixels 0, 1, 4, 5 (row-major)
    # top-4 = pixels 0..3 -> intersection {0, 1} = 2, union {0,1,2,3,4,5} = 6
    assert mask_iou(sal, mask) == pytest.approx(2 / 6)
    # saliency >= 10 -> pixels 0..5 -> intersection 4, union 6
    assert mask_iou(sal, mask, threshold=10.0) == pytest.approx(4 / 6)


def _quadrant_case():
    x = torch.ones(1, 1, 4, 4)
    good = torch.zeros(1, 4, 4)
    good[0, :2, :2] = 1.0
    good += torch.arange(16.0).view(1, 4, 4) * 1e-3  # break ties, keep the quadrant on top
    return x, good, torch.tensor([0])


def test_deletion_insertion_zero_baseline_hand_values():
    x, good, target = _quadrant_case()
    model = QuadrantModel()
    p1, p0 = sigmoid(4.0), 0.5  # full quadrant vs empty quadrant
    res = deletion_insertion_auc(model, x, good, target, steps=4, baseline="zero", batch_size=3)
    # top quadrant = the first 4 of 16 pixels, gone (deletion) / back (insertion) from t = 1/4 on
    assert res["deletion_curve"] == [pytest.approx([p1, p0, p0, p0, p0])]
    assert res["insertion_curve"] == [pytest.approx([p0, p1, p1, p1, p1])]
    assert res["deletion_auc"] == pytest.approx(0.25 * ((p1 + p0) / 2 + 3 * p0))
    assert res["insertion_auc"] == pytest.approx(0.25 * ((p0 + p1) / 2 + 3 * p1))
    bad = deletion_insertion_auc(model, x, -good, target, steps=4, baseline="zero")
    # reversed: the quadrant goes last, only at t = 1
    assert bad["deletion_curve"] == [pytest.approx([p1, p1, p1, p1, p0])]
    assert res["deletion_auc"] < bad["deletion_auc"]
    assert res["insertion_auc"] > bad["insertion_auc"]


@pytest.mark.parametrize("baseline", ["blur", "mean"])
def test_deletion_insertion_endpoints_and_ordering(baseline):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8) * 0.1  # keep the quadrant logit (< 5) away from saturation
    x[:, 0, :4, :4] += 0.2
    good = torch.zeros(2, 8, 8)
    good[:, :4, :4] = 1.0
    good += torch.rand(2, 8, 8) * 1e-3
    target = torch.tensor([0, 0])
    model = QuadrantModel()
    p_orig = model(x).softmax(-1)[:, 0]
    res = deletion_insertion_auc(model, x, good, target, steps=8, baseline=baseline, batch_size=5)
    bad = deletion_insertion_auc(model, x, -good, target, steps=8, baseline=baseline, batch_size=5)
    for i in range(2):
        assert res["deletion_curve"][i][0] == pytest.approx(float(p_orig[i]), rel=1e-5)
        assert res["insertion_curve"][i][-1] == pytest.approx(float(p_orig[i]), rel=1e-5)
        assert len(res["deletion_curve"][i]) == 9
    assert res["deletion_auc"] < bad["deletion_auc"]
    assert res["insertion_auc"] > bad["insertion_auc"]


def test_dabkowski_gal_constant_model():
    sal = torch.zeros(3, 8, 8)
    sal[0, 2:6, 1:3] = 1.0  # box 4 x 2 -> area 8 / 64 = 0.125
    sal[1, 0, 0] = 1.0  # 1 pixel -> area 1/64 < 0.05 -> clipped to min_area
    # sal[2] constant -> nothing kept -> whole image, area 1
    x = torch.rand(3, 1, 8, 8)
    score = dabkowski_gal_score(ConstantModel(), x, sal, torch.tensor([0, 0, 1]))
    expected = [math.log(0.125) - math.log(0.2), math.log(0.05) - math.log(0.2), 0.0 - math.log(0.8)]
    assert score == pytest.approx(np.mean(expected))


def test_dabkowski_gal_uses_the_crop():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 2:6, 1:3] = 2.0  # crop of the box is constant 2 -> resized crop is all 2 -> logit 2
    sal = x[:, 0] * 3.0 + 1.0  # normalised: 1 inside the box, 0 outside
    score = dabkowski_gal_score(MeanModel(), x, sal, torch.tensor([0]), min_area=0.01)
    assert score == pytest.approx(math.log(0.125) - math.log(sigmoid(2.0)))


def test_rank_correlation_self_and_negation():
    a = torch.randn(2, 5, 5)
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)


def test_bad_shapes_raise():
    model = QuadrantModel()
    x = torch.ones(2, 1, 4, 4)
    with pytest.raises(ValueError, match="3-D"):
        pointing_game(np.zeros((4, 4)), np.zeros((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="same shape"):
        mask_iou(np.zeros((1, 4, 4)), np.zeros((1, 4, 5), dtype=bool))
    with pytest.raises(ValueError, match="saliency must have shape"):
        deletion_insertion_auc(model, x, torch.zeros(2, 4, 5), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="target"):
        dabkowski_gal_score(model, x, torch.zeros(2, 4, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match="pixel_values"):
        deletion_insertion_auc(model, torch.ones(1, 4, 4), torch.zeros(1, 4, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match="baseline"):
        deletion_insertion_auc(model, x, torch.zeros(2, 4, 4), torch.tensor([0, 0]), baseline="noise")
    with pytest.raises(ValueError, match="same shape"):
        rank_correlation(torch.zeros(1, 3, 3), torch.zeros(2, 3, 3))


def _small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.GroupNorm(2, 4),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def _tiny_hf_resnet(tmp_path) -> nn.Module:
    """Saved and reloaded, so transformers has flagged its tensors as initialised."""
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    ResNetForImageClassification(config).save_pretrained(tmp_path)
    return ResNetForImageClassification.from_pretrained(tmp_path)


def _as_if_trained(model: nn.Module) -> nn.Module:
    """Move every weight and running statistic away from any init value (1, 0 or a fresh draw)."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.add_(0.5 + 0.1 * torch.randn(t.shape, generator=g))
    return model


@pytest.mark.parametrize("build", ["cnn", "hf_resnet"])
def test_randomize_model_reinitialises_every_weight(build, tmp_path):
    model = _as_if_trained(_small_cnn() if build == "cnn" else _tiny_hf_resnet(tmp_path))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    randomized = randomize_model(model, seed=0)
    assert torch.equal(torch.random.get_rng_state(), rng)  # caller's RNG untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # original untouched
    new = randomized.state_dict()
    for name, p in model.named_parameters():
        if p.numel() > 1:
            assert not torch.equal(new[name], p), name
    for name, module in randomized.named_modules():
        if isinstance(module, nn.BatchNorm2d):  # normalisation reset: running statistics cleared
            assert (module.running_mean == 0).all() and (module.running_var == 1).all(), name
            assert (module.weight == 1).all() and (module.bias == 0).all(), name
    again, other = randomize_model(model, seed=0).state_dict(), randomize_model(model, seed=1).state_dict()
    assert all(torch.equal(new[k], again[k]) for k in new)
    assert any(not torch.equal(new[k], other[k]) for k in new)


def test_randomize_model_top_layers_and_errors():
    model = _as_if_trained(_small_cnn())
    top = randomize_model(model, layers="top", num_layers=1).state_dict()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(top[k], v)}
    assert changed == {"7.weight", "7.bias"}  # only the Linear head
    top2 = randomize_model(model, layers="top", num_layers=2).state_dict()
    assert {k for k, v in model.state_dict().items() if not torch.equal(top2[k], v)} == changed | {
        "4.weight",
        "4.bias",
    }
    with pytest.raises(ValueError, match="layers must be"):
        randomize_model(model, layers="bottom")
    with pytest.raises(ValueError, match=r"num_layers must be in \[1, 5\]"):
        randomize_model(model, layers="top", num_layers=6)

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

    with pytest.raises(ValueError, match="cannot re-initialise Scaled.scale"):
        randomize_model(Scaled())


class QuadrantDetector(nn.Sequential):
    """A "trained" model: red channel -> linear head that reads only the top-left quadrant (positive weights)."""

    def __init__(self, size: int = 16):
        super().__init__(nn.Conv2d(3, 1, 1), nn.Flatten(), nn.Linear(size * size, 2))
        weight, half = torch.zeros(size, size), size // 2
        weight[:half, :half] = 0.5 + torch.rand(half, half, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            self[0].weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
            self[2].weight.copy_(torch.stack([weight.flatten(), torch.zeros(size * size)]))


def _gradient_map(model, pixel_values, target):
    """Vanilla gradient saliency |d y_c / d x| summed over channels."""
    x = pixel_values.clone().requires_grad_()
    (grad,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)
    return grad.abs().sum(1)


def test_sanity_check_model_blind_explainer_fails():
    """An explainer that ignores the model gives the same maps for the randomised model: correlation 1."""
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    res = randomization_sanity_check(lambda m, px, t: px.mean(1), QuadrantDetector(), x, torch.tensor([0, 0]))
    assert res["rank_correlation"] == pytest.approx(1.0)
    assert res["rank_correlation_per_image"] == pytest.approx([1.0, 1.0])
    assert res["abs_rank_correlation"] == pytest.approx(1.0)
    assert res["saliency"].shape == res["randomized_saliency"].shape == (2, 16, 16)


def test_sanity_check_gradient_explainer_passes():
    """Gradients of the quadrant detector sit in the quadrant; of its randomised copy, everywhere."""
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    model = QuadrantDetector()
    res = randomization_sanity_check(_gradient_map, model, x, torch.tensor([0, 0, 0]), seed=0)
    assert abs(res["rank_correlation"]) < 0.3
    assert all(abs(r) < 0.3 for r in res["rank_correlation_per_image"])
    assert res["saliency"][:, 8:, :].max() == 0  # the original model's map is confined to the quadrant
