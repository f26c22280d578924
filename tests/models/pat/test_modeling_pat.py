"""PAT-T model (arXiv 2404.06287, sec. 3): patches, soft pivot patch, TDE score, ASL, save/load."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    ResNetConfig,
    ResNetModel,
    ViTConfig,
    ViTMAEConfig,
)

from hf_counterfactual import PatConfig, PatForMultiLabelClassification
from hf_counterfactual.models.adapters import classifier_logits
from hf_counterfactual.models.pat import asymmetric_loss, soft_pivot_logits, split_into_patches


def tiny_resnet_config() -> ResNetConfig:
    return ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")


def tiny_vit_kwargs() -> dict:
    return dict(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=16,
        patch_size=8,
    )


def tiny_pat(num_labels: int = 3, seed: int = 0, **kwargs) -> PatForMultiLabelClassification:
    torch.manual_seed(seed)
    kwargs.setdefault("backbone_config", tiny_resnet_config())
    return PatForMultiLabelClassification(PatConfig(num_labels=num_labels, **kwargs)).eval()


# --- patches ------------------------------------------------------------------------------------


def test_split_into_patches_matches_hand_slicing_row_major():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    hand = torch.stack(
        [x[:, :, 0:2, 0:2], x[:, :, 0:2, 2:4], x[:, :, 2:4, 0:2], x[:, :, 2:4, 2:4]], dim=1
    )  # top-left, top-right, bottom-left, bottom-right

    kept = split_into_patches(x, grid_size=2, size=2)
    assert kept.shape == (2, 4, 3, 2, 2)
    assert torch.equal(kept, hand)

    # size=None resizes each 2x2 patch back to the 4x4 input size; nearest doubles every pixel
    resized = split_into_patches(x, grid_size=2, size=None, mode="nearest")
    assert resized.shape == (2, 4, 3, 4, 4)
    assert torch.equal(resized, hand.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1))

    # grid 1 is the whole image
    assert torch.equal(split_into_patches(x, grid_size=1), x[:, None])


def test_split_into_patches_rejects_bad_input():
    with pytest.raises(ValueError, match="not divisible by grid_size=2"):
        split_into_patches(torch.zeros(1, 3, 5, 4), grid_size=2)
    with pytest.raises(ValueError, match=r"\(batch, channels, height, width\)"):
        split_into_patches(torch.zeros(3, 4, 4), grid_size=2)


# --- soft pivot patch and TDE -------------------------------------------------------------------


def test_soft_pivot_logits_matches_paper_formula():
    """z_pat[c] = sum_k softmax_k(a_k[c]) z_k[c] (PAT paper sec. 3, soft pivot patch), by a numpy loop."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 4, 3)).astype(np.float32) * 3
    z = rng.normal(size=(2, 4, 3)).astype(np.float32) * 3
    expected = np.zeros((2, 3))
    for b in range(2):
        for c in range(3):
            weights = [math.exp(a[b, k, c]) for k in range(4)]
            expected[b, c] = sum(w / sum(weights) * z[b, k, c] for k, w in enumerate(weights))
    got = soft_pivot_logits(torch.from_numpy(a), torch.from_numpy(z))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_forward_heads_and_total_direct_effect_score():
    model = tiny_pat()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = model(x)
        # z0 = fc1(whole), a_k = fc2(p_k), z_k = fc3(p_k) with p_k cut and resized to 16 px
        whole = model.backbone(pixel_values=x).pooler_output.flatten(1)
        patches = split_into_patches(x, 2, 16, "bilinear").flatten(0, 1)
        per_patch = model.backbone(pixel_values=patches).pooler_output.flatten(1).view(2, 4, -1)
        z0 = model.classifier(whole)
        a = model.patch_attention(per_patch)
        z = model.patch_classifier(per_patch)
    assert out.logits.shape == out.whole_logits.shape == out.pivot_logits.shape == (2, 3)
    assert out.patch_logits.shape == out.attention_logits.shape == (2, 4, 3)
    torch.testing.assert_close(out.whole_logits, z0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.attention_logits, a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.patch_logits, z, atol=1e-5, rtol=1e-5)
    assert torch.equal(out.pivot_logits, soft_pivot_logits(out.attention_logits, out.patch_logits))
    # TDE (PAT paper sec. 3): score = sigmoid((z0 + z_pat) / 2)
    assert torch.equal(out.logits, (out.whole_logits + out.pivot_logits) / 2)
    # what every metric reads through the classifier adapter is that TDE logit
    with torch.no_grad():
        adapter_logits = classifier_logits(model, x)
    assert torch.equal(adapter_logits, out.logits)
    tde = (z0 + soft_pivot_logits(a, z)).numpy() / 2
    np.testing.assert_allclose(torch.sigmoid(adapter_logits).numpy(), 1 / (1 + np.exp(-tde)), atol=1e-6)
    assert out.loss is None


# --- asymmetric loss ----------------------------------------------------------------------------

LOGITS = [[2.0, -1.0, 0.5], [-0.3, 1.5, -2.0]]
LABELS = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]


def hand_asl(logits, labels, gamma_neg, gamma_pos, clip) -> float:
    """Ridnik et al. 2021 (ASL, eqs. 1-4), python floats: L+ = (1-p)^g+ log p, L- = p_m^g- log(1-p_m)."""
    total = 0.0
    for row_z, row_y in zip(logits, labels, strict=True):
        for zi, yi in zip(row_z, row_y, strict=True):
            p = 1 / (1 + math.exp(-zi))
            if yi == 1:
                total += (1 - p) ** gamma_pos * math.log(p)
            else:
                p_m = max(p - clip, 0.0)
                total += p_m**gamma_neg * math.log(1 - p_m)
    return -total / len(logits)


@pytest.mark.parametrize("gamma_neg,gamma_pos,clip", [(4.0, 0.0, 0.05), (2.0, 1.0, 0.2), (3.0, 2.0, 0.0)])
def test_asymmetric_loss_matches_hand_computation(gamma_neg, gamma_pos, clip):
    got = asymmetric_loss(torch.tensor(LOGITS), torch.tensor(LABELS), gamma_neg, gamma_pos, clip)
    assert got.item() == pytest.approx(hand_asl(LOGITS, LABELS, gamma_neg, gamma_pos, clip), rel=1e-5)


def test_asymmetric_loss_without_focusing_or_clip_is_bce():
    z, y = torch.tensor(LOGITS), torch.tensor(LABELS)
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="sum") / 2
    torch.testing.assert_close(asymmetric_loss(z, y, 0.0, 0.0, 0.0), bce)


def test_asymmetric_loss_clip_zeroes_easy_negatives():
    # p = sigmoid(-5) ~ 0.0067 < clip: p_m = 0, so the negative contributes nothing
    assert asymmetric_loss(torch.tensor([[-5.0]]), torch.tensor([[0.0]]), 4.0, 0.0, 0.05).item() == 0.0


@pytest.mark.parametrize("loss", ["asl", "bce"])
def test_pat_loss_is_sum_of_whole_and_pivot_terms(loss):
    """loss = ASL(z0, y) + ASL(z_pat, y) (PAT paper sec. 3): both terms every step."""
    model = tiny_pat(loss=loss, asl_gamma_neg=2.0, asl_gamma_pos=1.0, asl_clip=0.1)
    x, y = torch.randn(2, 3, 16, 16), torch.tensor(LABELS)
    with torch.no_grad():
        out = model(x, labels=y)
    if loss == "asl":
        expected = asymmetric_loss(out.whole_logits, y, 2.0, 1.0, 0.1) + asymmetric_loss(
            out.pivot_logits, y, 2.0, 1.0, 0.1
        )
    else:
        expected = (
            F.binary_cross_entropy_with_logits(out.whole_logits, y, reduction="sum")
            + F.binary_cross_entropy_with_logits(out.pivot_logits, y, reduction="sum")
        ) / 2
    torch.testing.assert_close(out.loss, expected)


def test_labels_with_wrong_shape_raise():
    model = tiny_pat()
    with pytest.raises(ValueError, match=r"labels must be multi-hot of shape \(2, 3\), got \(2,\)"):
        model(torch.randn(2, 3, 16, 16), labels=torch.tensor([0, 2]))


# --- backbone calls -----------------------------------------------------------------------------


def count_backbone_batches(model) -> list[int]:
    sizes = []
    model.backbone.register_forward_pre_hook(
        lambda module, args, kwargs: sizes.append(kwargs["pixel_values"].shape[0]), with_kwargs=True
    )
    return sizes


def test_backbone_runs_once_on_whole_and_patches():
    model = tiny_pat(grid_size=2)
    sizes = count_backbone_batches(model)
    with torch.no_grad():
        model(torch.randn(3, 3, 16, 16))
    assert sizes == [(1 + 2**2) * 3]


def test_backbone_runs_twice_when_patch_size_differs():
    model = tiny_pat(grid_size=2, patch_size=8)
    sizes = count_backbone_batches(model)
    with torch.no_grad():
        out = model(torch.randn(3, 3, 16, 16))
    assert sizes == [3, 2**2 * 3]
    assert out.patch_logits.shape == (3, 4, 3)


# --- save / load --------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["resnet", "vit"])
def test_save_pretrained_round_trip_and_auto_classes(tmp_path, backbone):
    backbone_config = tiny_resnet_config() if backbone == "resnet" else ViTConfig(**tiny_vit_kwargs())
    model = tiny_pat(backbone_config=backbone_config, asl_clip=0.1, id2label={0: "a", 1: "b", 2: "c"})
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x).logits
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))

    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, PatConfig) and config.asl_clip == 0.1 and config.id2label[2] == "c"
    assert type(config.backbone_config) is type(backbone_config)
    for loader in (PatForMultiLabelClassification, AutoModel, AutoModelForImageClassification):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert isinstance(loaded, PatForMultiLabelClassification)
        state = loaded.state_dict()
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items()), loader.__name__
        with torch.no_grad():
            assert torch.equal(loaded(x).logits, expected), loader.__name__


def test_from_backbone_loads_saved_weights(tmp_path):
    torch.manual_seed(0)
    backbone = ResNetModel(tiny_resnet_config())
    backbone.save_pretrained(tmp_path / "backbone")
    model = PatForMultiLabelClassification.from_backbone(
        str(tmp_path / "backbone"), num_labels=4, grid_size=2
    )
    assert model.config.backbone == str(tmp_path / "backbone")
    assert model.config.num_labels == 4 and model.classifier.out_features == 4
    saved, loaded = backbone.state_dict(), model.backbone.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)

    model.save_pretrained(tmp_path / "pat")  # the recorded backbone path survives a round trip
    assert PatConfig.from_pretrained(tmp_path / "pat").backbone == str(tmp_path / "backbone")


# --- other backbones, pooling, config errors ----------------------------------------------------


def test_vit_backbone_with_pooler():
    model = tiny_pat(backbone_config=ViTConfig(**tiny_vit_kwargs()), pooling="pooler")
    with torch.no_grad():
        out = model(torch.randn(2, 3, 16, 16), labels=torch.tensor(LABELS))
    assert out.logits.shape == (2, 3) and torch.isfinite(out.loss)


def test_backbone_without_pooler_needs_mean_pooling():
    # ViTMAEModel's output has no pooler_output at all (mask_ratio=0 keeps every token)
    backbone_config = ViTMAEConfig(mask_ratio=0.0, **tiny_vit_kwargs())
    model = tiny_pat(backbone_config=backbone_config)
    with pytest.raises(ValueError, match="returns no pooler_output; set pooling='mean'"):
        model(torch.randn(2, 3, 16, 16))
    model = tiny_pat(backbone_config=backbone_config, pooling="mean")
    with torch.no_grad():
        out = model(torch.randn(2, 3, 16, 16))
    assert out.logits.shape == (2, 3) and torch.isfinite(out.logits).all()


def test_mean_pooling_equals_resnet_pooler():
    """ResNet's pooler is a global average pool, so pooling='mean' over its 4-D map gives the same logits."""
    pooled, mean = tiny_pat(pooling="pooler"), tiny_pat(pooling="mean")
    mean.load_state_dict(pooled.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(mean(x).logits, pooled(x).logits)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"grid_size": 0}, "grid_size must be >= 1, got 0"),
        ({"loss": "foo"}, "loss must be 'asl' or 'bce', got 'foo'"),
        ({"pooling": "cls"}, "pooling must be 'pooler' or 'mean', got 'cls'"),
        ({"asl_clip": 1.0}, r"asl_clip must be in \[0, 1\), got 1.0"),
    ],
)
def test_config_validation_errors(kwargs, message):
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        PatConfig(backbone_config=tiny_resnet_config(), **kwargs)
