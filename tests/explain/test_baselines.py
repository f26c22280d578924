"""Baselines: occlusion (arXiv 1311.2901), Grad-CAM (arXiv 1610.02391) and BBMP (arXiv 1704.03296) saliency,
batching, errors."""

import math

import pytest
import torch
from torch import nn
from transformers import AutoModelForImageClassification, ResNetConfig

from hf_counterfactual.explain.baselines import (
    BbmpConfig,
    BbmpExplainer,
    GradCamExplainer,
    OcclusionExplainer,
)
from tests.explain.test_fido import QuadrantClassifier  # the same evidence-in-one-quadrant model


class TinyCNN(nn.Module):
    """Conv2d(3, 2, 3) -> ReLU -> global average pool -> Linear(2, 2); conv channel 0 = red, 1 = green."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[0, 0, 1, 1] = 1.0  # channel 0 = red
            self.conv.weight[1, 1, 1, 1] = 1.0  # channel 1 = green
            self.head.weight.copy_(torch.eye(2))
            self.head.bias.zero_()

    def forward(self, pixel_values):
        return self.head(torch.relu(self.conv(pixel_values)).mean(dim=(2, 3)))


class FlatLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 3)

    def forward(self, pixel_values):
        return self.fc(pixel_values.flatten(1))


def _red_square(b=2, size=16):
    x = 0.05 * torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(0))
    x[:, 0, 8:12, 2:6] = 1.0
    return x


def _quadrant_images(b=2, size=16):
    """Noise plus strong red in the top-left quadrant: the QuadrantClassifier's only evidence for class 0."""
    x = 0.2 * torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(0))
    x[:, 0, : size // 2, : size // 2] += 3.0
    return x


def _bbmp_config(**kw):
    return BbmpConfig(**{**dict(mask_size=4, steps=25, lr=0.2, lambda_=0.02, ramp_steps=5), **kw})


def _explainers():
    return [
        OcclusionExplainer(QuadrantClassifier(), window=4, stride=4),
        GradCamExplainer(TinyCNN()),
        BbmpExplainer(QuadrantClassifier(), _bbmp_config(steps=1)),
    ]


def test_occlusion_hand_case():
    """4x4 image, window 2 stride 2: only the top-left window changes p_0, from softmax([2,1,0])_0 to softmax([0,1,0])_0."""
    x = torch.zeros(1, 3, 4, 4)
    x[:, 0, :2, :2] = 1.0
    sal = OcclusionExplainer(QuadrantClassifier(), window=2, stride=2).explain(x, torch.tensor([0]))
    e = math.e
    drop = e**2 / (e**2 + e + 1) - 1 / (1 + e + 1)
    expected = torch.zeros(1, 4, 4)
    expected[:, :2, :2] = drop
    torch.testing.assert_close(sal, expected)


def test_occlusion_averages_overlaps_and_zeroes_uncovered():
    x = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    model = QuadrantClassifier()
    # window 1 stride 3: windows at rows/cols 0 and 3 only, the rest is covered by none.
    sal = OcclusionExplainer(model, window=1, stride=3).explain(x, torch.tensor([0]))
    assert (sal[0, 1:3] == 0).all() and (sal[0, :, 1:3] == 0).all()
    assert sal[0, 0, 0] > 0
    # window 2 stride 1 on 3x3 (top-left quadrant = pixel (0, 0)): every window covering (0, 0) drops the
    # same amount d, so (0,0) gets d, (0,1) gets mean(d, 0) = d / 2, (1,1) gets d / 4.
    x3 = torch.ones(1, 3, 3, 3)
    sal = OcclusionExplainer(model, window=2, stride=1).explain(x3, torch.tensor([0]))
    d = sal[0, 0, 0]
    assert d > 0
    torch.testing.assert_close(sal[0, 0, 1], d / 2)
    torch.testing.assert_close(sal[0, 1, 1], d / 4)
    assert sal[0, 2, 2] == 0


def test_occlusion_finds_top_left_quadrant_and_batch_size_does_not_matter():
    x = 0.2 * torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    x[:, 0, :8, :8] += 2.0
    model = QuadrantClassifier()
    sal = OcclusionExplainer(model, window=4, stride=2, batch_size=64).explain(x, torch.tensor([0, 0]))
    assert sal.shape == (2, 16, 16)
    top_left = sal[:, :8, :8].mean(dim=(1, 2))
    rest = (sal.sum(dim=(1, 2)) - sal[:, :8, :8].sum(dim=(1, 2))) / (256 - 64)
    assert (top_left > rest + 0.05).all()
    assert sal[:, 10:, 10:].abs().max() < 1e-6
    small = OcclusionExplainer(model, window=4, stride=2, batch_size=5).explain(x, torch.tensor([0, 0]))
    torch.testing.assert_close(small, sal)


def test_gradcam_localises_red_square():
    """Eq. 1-2: w_0 = mean d y_0 / d A_0 > 0, so the CAM is the (normalised) red channel."""
    x = _red_square()
    cam = GradCamExplainer(TinyCNN()).explain(x, torch.tensor([0, 0]))
    assert cam.shape == (2, 16, 16)
    assert cam.min() >= 0 and cam.max() <= 1
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[8:12, 2:6] = True
    assert (cam[:, inside].mean(1) > 0.9).all()
    assert (cam[:, ~inside].max(1).values < 0.1).all()


def test_gradcam_leaves_model_untouched_and_works_frozen():
    model = TinyCNN().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    GradCamExplainer(model).explain(_red_square(), torch.tensor([0, 1]))
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.requires_grad_(False)
    cam = GradCamExplainer(model).explain(_red_square(), torch.tensor([0, 0]))
    assert cam.max() == pytest.approx(1.0)


def test_gradcam_on_tiny_hf_resnet():
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    model = AutoModelForImageClassification.from_config(config)
    explainer = GradCamExplainer(model)
    assert explainer.layer is [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cam = explainer.explain(x, torch.tensor([0, 2]))
    assert cam.shape == (2, 32, 32)
    assert cam.min() >= 0 and cam.max() <= 1
    assert all(p.grad is None for p in model.parameters())


def test_gradcam_without_conv_raises():
    with pytest.raises(ValueError, match="has no Conv2d layer; pass layer="):
        GradCamExplainer(FlatLinear())


def test_occlusion_restores_mode_and_weights():
    model = QuadrantClassifier().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    OcclusionExplainer(model, window=4, stride=4).explain(_red_square(), torch.tensor([0, 1]))
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("explainer", _explainers(), ids=["occlusion", "gradcam", "bbmp"])
def test_input_errors(explainer):
    x = _red_square()
    with pytest.raises(ValueError, match="batch, channels, height, width"):
        explainer.explain(x[0], torch.tensor([0]))
    with pytest.raises(ValueError, match="one class per image"):
        explainer.explain(x, torch.tensor([0]))
    with pytest.raises(TypeError, match="integer class indices"):
        explainer.explain(x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="out of range"):
        explainer.explain(x, torch.tensor([0, 7]))


@pytest.mark.parametrize(("objective", "infill"), [("sdr", "blur"), ("ssr", "mean")])
def test_bbmp_finds_the_evidence_quadrant(objective, infill):
    """SDR deletes (saliency 1 - m), SSR keeps (saliency m) the top-left quadrant, the model's only evidence."""
    x = _quadrant_images()
    sal = BbmpExplainer(QuadrantClassifier(), _bbmp_config(objective=objective), infill=infill).explain(
        x, torch.tensor([0, 0])
    )
    assert sal.shape == (2, 16, 16)
    assert sal.min() >= 0 and sal.max() <= 1
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[:8, :8] = True
    assert (sal[:, inside].mean(1) > sal[:, ~inside].mean(1) + 0.5).all()
    assert inside.flatten()[sal.flatten(1).argmax(1)].all()


@pytest.mark.parametrize("objective", ["sdr", "ssr"])
def test_bbmp_mask_starts_at_one_and_stays_in_unit_interval(objective):
    x, target = _quadrant_images(), torch.tensor([0, 2])
    # lr 0: the mask keeps its init 1 (all kept), so SDR saliency 1 - m = 0 and SSR saliency m = 1.
    frozen = BbmpExplainer(QuadrantClassifier(), _bbmp_config(objective=objective, steps=1, lr=0.0))
    torch.testing.assert_close(frozen.explain(x, target), torch.full((2, 16, 16), float(objective == "ssr")))
    # A huge step would leave [0, 1] without the clamp after each step.
    wild = BbmpExplainer(
        QuadrantClassifier(), _bbmp_config(objective=objective, steps=5, lr=50.0, tv_weight=1.0)
    )
    sal = wild.explain(x, target)
    assert sal.min() >= 0 and sal.max() <= 1
    assert sal.min() == 0 and sal.max() == 1  # the clamp was hit on both sides


def test_bbmp_batch_equals_per_image_and_model_untouched():
    model = QuadrantClassifier().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, target = _quadrant_images(), torch.tensor([0, 1])
    explainer = BbmpExplainer(model, _bbmp_config(steps=10, tv_weight=0.1), infill="local")
    with torch.no_grad():  # BBMP turns gradients back on for its mask
        batch = explainer.explain(x, target)
    single = torch.cat([explainer.explain(x[i : i + 1], target[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert model.training


def test_bbmp_on_tiny_hf_resnet():
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    model = AutoModelForImageClassification.from_config(config)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    explainer = BbmpExplainer(model, _bbmp_config(mask_size=8, steps=3), infill="mean")
    sal = explainer.explain(x, torch.tensor([0, 2]))
    assert sal.shape == (2, 32, 32)
    assert sal.min() >= 0 and sal.max() <= 1
    assert all(p.grad is None for p in model.parameters())


def test_bbmp_config_rejects_unknown_objective():
    with pytest.raises(ValueError, match='objective must be "ssr" or "sdr"'):
        BbmpConfig(objective="preserve")


def test_deepest_conv_layer_picks_the_last_layer_with_enough_resolution():
    from torch import nn

    from hf_counterfactual.explain import deepest_conv_layer

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.b = nn.Conv2d(4, 4, 3, stride=2, padding=1)  # registered first, called last: 8 -> 4
            self.first = nn.Conv2d(3, 4, 3, stride=2, padding=1)  # 32 -> 16
            self.a = nn.Conv2d(4, 4, 3, stride=2, padding=1)  # 16 -> 8
            self.head = nn.Linear(4, 2)

        def forward(self, pixel_values):
            h = self.b(self.a(self.first(pixel_values)))
            return self.head(h.mean(dim=(2, 3)))

    net = Net()
    x = torch.rand(2, 3, 32, 32)
    assert deepest_conv_layer(net, x, min_size=4) is net.b
    assert deepest_conv_layer(net, x, min_size=5) is net.a  # call order, not registration order
    assert deepest_conv_layer(net, x, min_size=16) is net.first
    with pytest.raises(ValueError, match="no Conv2d layer with >= 17 x 17"):
        deepest_conv_layer(net, x, min_size=17)


def test_deepest_conv_layer_works_on_a_model_in_train_mode():
    from transformers import ResNetConfig, ResNetForImageClassification

    from hf_counterfactual.explain.baselines import deepest_conv_layer

    model = ResNetForImageClassification(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    ).train()  # BatchNorm in train mode cannot take the single probe image
    layer = deepest_conv_layer(model, torch.rand(4, 3, 32, 32), min_size=4)
    assert isinstance(layer, torch.nn.Conv2d) and model.training
