"""FIDO (arXiv 1807.08024): concrete mask, log-odds score, SSR / SDR objectives, batching, errors."""

import math

import pytest
import torch
from torch import nn

from hf_counterfactual.explain import FidoConfig, FidoExplainer, concrete_keep_mask, log_odds


class QuadrantClassifier(nn.Module):
    """Class-0 logit = scale * mean red of the top-left quadrant; class-1 logit = 1; class-2 logit = 0."""

    def __init__(self, scale: float = 2.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))
        self.bias = nn.Parameter(torch.tensor([0.0, 1.0, 0.0]))

    def forward(self, pixel_values):
        h, w = pixel_values.shape[-2:]
        evidence = pixel_values[:, 0, : h // 2, : w // 2].mean(dim=(1, 2))
        return (
            torch.stack([self.scale * evidence, torch.zeros_like(evidence), torch.zeros_like(evidence)], 1)
            + self.bias
        )


class NoLogits(nn.Module):
    def forward(self, pixel_values):
        return {"features": pixel_values}


def _images(b=2, size=16):
    x = 0.2 * torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(0))
    x[:, 0, : size // 2, : size // 2] += 3.0
    return x


def _config(**kw):
    base = dict(mask_size=4, steps=40, num_samples=2, lr=0.2, lambda_=0.02, ramp_steps=5, tau=0.1)
    return FidoConfig(**{**base, **kw})


def test_concrete_keep_mask_formula():
    """z = 1 - sigmoid((logit_p + log u - log(1 - u)) / tau), methods/fido.md (paper eq. 5)."""
    logit_p, tau = torch.tensor(0.3), 0.5
    for u in (0.1, 0.5, 0.8):
        expected = 1 - 1 / (1 + math.exp(-(0.3 + math.log(u) - math.log(1 - u)) / tau))
        assert concrete_keep_mask(logit_p, torch.tensor(u), tau).item() == pytest.approx(expected, rel=1e-5)


def test_concrete_keep_mask_statistics():
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0)).clamp(1e-7, 1 - 1e-7)
    z = concrete_keep_mask(torch.zeros(()), u, tau=0.05)
    assert z.mean().item() == pytest.approx(0.5, abs=0.01)
    assert ((z < 0.05) | (z > 0.95)).float().mean() > 0.9  # near-binary at low temperature
    assert concrete_keep_mask(torch.tensor(20.0), u, tau=0.1).mean() < 1e-3  # high drop logit -> dropped


def test_log_odds_hand_computation():
    """log p_c - log sum_{c' != c} p_c' (paper section 3, the classifier score)."""
    logits = torch.tensor([[1.0, 2.0, -0.5], [0.0, 0.0, 0.0]])
    target = torch.tensor([1, 2])
    p = [math.exp(v) for v in (1.0, 2.0, -0.5)]
    expected0 = math.log(p[1]) - math.log(p[0] + p[2])
    torch.testing.assert_close(log_odds(logits, target), torch.tensor([expected0, math.log(1 / 2)]))


@pytest.mark.parametrize("infill", ["mean", "blur"])
def test_ssr_keeps_and_sdr_drops_the_evidence(infill):
    model = QuadrantClassifier()
    x = _images(b=1)
    target = torch.tensor([0])
    ssr = FidoExplainer(model, _config(objective="ssr"), infill=infill).explain(x, target)
    inside, outside = ssr.keep_prob[0, :8, :8].mean(), ssr.keep_prob[0, 8:, :].mean()
    assert inside > outside + 0.2
    assert ssr.saliency[0, :8, :8].mean() > 0 > ssr.saliency[0, 8:, :].mean()
    sdr = FidoExplainer(model, _config(objective="sdr"), infill=infill).explain(x, target)
    assert (1 - sdr.keep_prob[0, :8, :8]).mean() > (1 - sdr.keep_prob[0, 8:, :]).mean() + 0.2
    assert sdr.saliency[0, :8, :8].mean() > 0
    torch.testing.assert_close(sdr.saliency, 0.5 - sdr.keep_prob)
    assert len(ssr.losses) == 40 and len(ssr.losses[0]) == 1


def test_batch_equals_per_image_and_weights_untouched():
    model = QuadrantClassifier().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, target = _images(b=2), torch.tensor([0, 1])
    cfg = _config(steps=10, tv_weight=0.1)
    batch = FidoExplainer(model, cfg, infill="local").explain(x, target)
    second = FidoExplainer(model, FidoConfig(**{**cfg.__dict__, "seed": cfg.seed + 1}), infill="local")
    first = FidoExplainer(model, cfg, infill="local").explain(x[:1], target[:1])
    second = second.explain(x[1:], target[1:])
    torch.testing.assert_close(
        batch.saliency, torch.cat([first.saliency, second.saliency]), atol=1e-5, rtol=0
    )
    assert batch.saliency.shape == (2, 16, 16)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert model.training  # mode restored


def test_errors():
    model = QuadrantClassifier()
    explainer = FidoExplainer(model, _config(steps=1))
    x = _images(b=2)
    with pytest.raises(ValueError, match="out of range for a model with 3 classes"):
        explainer.explain(x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"target must have shape \(2,\)"):
        explainer.explain(x, torch.tensor([0]))
    with pytest.raises(ValueError, match="pixel_values must be"):
        explainer.explain(x[0], torch.tensor([0]))
    with pytest.raises(TypeError, match="integer class indices"):
        explainer.explain(x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match='objective must be "ssr" or "sdr"'):
        FidoConfig(objective="both")
    with pytest.raises(TypeError, match="returned no"):
        FidoExplainer(NoLogits(), _config(steps=1)).explain(x, torch.tensor([0, 1]))


def test_image_lists_and_input_sizes_the_model_rejects():
    model = QuadrantClassifier()
    explainer = FidoExplainer(model, _config(steps=1))
    x = _images(b=2)
    listed = explainer.explain([x[0], x[1]], torch.tensor([0, 1]))
    assert listed.saliency.shape == (2, *x.shape[-2:])
    with pytest.raises(ValueError, match="images of mismatched size"):
        explainer.explain([x[0], x[1, :, :-1]], torch.tensor([0, 1]))

    class FixedSize(torch.nn.Module):  # a linear head on flattened pixels only takes one input size
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3 * 8 * 8, 2)

        def forward(self, pixel_values):
            return self.fc(pixel_values.flatten(1))

    with pytest.raises(ValueError, match=r"FixedSize failed on pixel_values of shape \(2, 3, 16, 16\)"):
        FidoExplainer(FixedSize(), _config(steps=1)).explain(torch.rand(2, 3, 16, 16), torch.tensor([0, 1]))
