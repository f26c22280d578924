"""Tests for saliency metrics, each against a hand computation."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from hf_counterfactual.metrics.saliency import (
    dabkowski_gal_score,
    deletion_insertion_auc,
    mask_iou,
    pointing_game,
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
