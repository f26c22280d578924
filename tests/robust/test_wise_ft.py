"""WiSE-FT (arXiv 2109.01903, eq. 1: theta = (1 - a) theta_zs + a theta_ft) and the linear-probe baseline."""

import copy

import pytest
import torch
from torch.utils.data import default_collate
from transformers import ViTConfig, ViTForImageClassification

from hf_counterfactual.robust import freeze_all_but_head, wise_ft
from hf_counterfactual.training import TrainingConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


def _endpoints(clip_pair):
    _, zero_shot = clip_pair
    fine_tuned = copy.deepcopy(zero_shot)
    with torch.no_grad():
        for p in fine_tuned.parameters():
            p.add_(torch.randn_like(p))
    return zero_shot.eval(), fine_tuned.eval()


def test_alpha_zero_and_one_are_the_endpoints_and_half_is_the_mean(clip_pair):
    zero_shot, fine_tuned = _endpoints(clip_pair)
    zs_before, ft_before = copy.deepcopy(zero_shot.state_dict()), copy.deepcopy(fine_tuned.state_dict())
    x = torch.rand(2, 3, 16, 16)
    for alpha, endpoint in ((0.0, zero_shot), (1.0, fine_tuned)):
        mixed = wise_ft(zero_shot, fine_tuned, alpha)
        assert mixed is not fine_tuned and mixed is not zero_shot
        for name, value in endpoint.state_dict().items():
            assert torch.equal(mixed.state_dict()[name], value), (alpha, name)
        with torch.no_grad():
            assert torch.equal(mixed(pixel_values=x).logits, endpoint(pixel_values=x).logits)
    half = wise_ft(zero_shot, fine_tuned, 0.5).state_dict()
    for name, value in half.items():
        torch.testing.assert_close(value, (zs_before[name] + ft_before[name]) / 2, rtol=0, atol=0, msg=name)
    for model, before in ((zero_shot, zs_before), (fine_tuned, ft_before)):  # endpoints untouched
        for name, value in model.state_dict().items():
            assert torch.equal(value, before[name]), name


def test_mismatched_architectures_and_alphas_are_errors(clip_pair):
    zero_shot, fine_tuned = _endpoints(clip_pair)
    vit = ViTForImageClassification(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                              intermediate_size=32, image_size=16, patch_size=4))  # fmt: skip
    with pytest.raises(ValueError, match="differ in architecture"):
        wise_ft(zero_shot, vit, 0.5)
    wider = copy.deepcopy(fine_tuned)
    wider.classifier.weight = torch.nn.Parameter(torch.zeros(5, 8))
    with pytest.raises(ValueError, match=r"differ in shape, e.g. classifier.weight: \(3, 8\) vs \(5, 8\)"):
        wise_ft(zero_shot, wider, 0.5)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        wise_ft(zero_shot, fine_tuned, 1.5)


def test_linear_probe_changes_only_the_head(clip_pair, tmp_path):
    _, model = clip_pair
    before = copy.deepcopy(model.state_dict())
    freeze_all_but_head(model)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        "classifier.weight",
        "classifier.bias",
    ]
    g = torch.Generator().manual_seed(0)
    data = [
        {"pixel_values": torch.rand(3, 16, 16, generator=g), "labels": torch.tensor(i % 3)} for i in range(8)
    ]
    config = TrainingConfig(output_dir=str(tmp_path), batch_size=4, max_steps=2, learning_rate=1e-2,
                            weight_decay=0.1, disable_progress_bar=True)  # fmt: skip
    train(config, model, data, default_collate)
    changed = {n for n, v in model.state_dict().items() if not torch.equal(v, before[n])}
    assert changed == {"classifier.weight", "classifier.bias"}
    with pytest.raises(ValueError, match="no 'head' submodule"):
        freeze_all_but_head(model, head="head")
