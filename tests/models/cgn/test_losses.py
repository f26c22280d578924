"""CGN losses (arXiv 2101.06046, sec. 3 / app. A) against hand computations on tiny tensors."""

import math

import pytest
import torch

from hf_counterfactual.models.cgn import (
    gram_matrix,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    mask_binary_entropy,
    mask_border_loss,
    mask_size_loss,
    mode_seeking_loss,
    style_loss,
)


def test_lsgan_generator_loss_is_mean_squared_distance_to_one():
    # ((0.5 - 1)^2 + (2 - 1)^2 + (1 - 1)^2) / 3 = (0.25 + 1 + 0) / 3
    assert lsgan_generator_loss(torch.tensor([0.5, 2.0, 1.0])).item() == pytest.approx(1.25 / 3)


def test_lsgan_discriminator_loss_averages_real_and_fake_terms():
    real, fake = torch.tensor([1.0, 0.0]), torch.tensor([0.5, -1.0])
    # real: ((0)^2 + (-1)^2) / 2 = 0.5; fake: (0.25 + 1) / 2 = 0.625; total (0.5 + 0.625) / 2
    assert lsgan_discriminator_loss(real, fake).item() == pytest.approx(0.5625)


def test_mask_binary_entropy_in_bits():
    # H(0.5) = 1 bit, H(0.25) = -(0.25 log2 0.25 + 0.75 log2 0.75); a near-binary pixel ~ 0
    h25 = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    mask = torch.tensor([0.5, 0.25, 1.0, 0.0]).view(1, 1, 2, 2)
    assert mask_binary_entropy(mask).item() == pytest.approx((1.0 + h25) / 4, abs=1e-6)


def test_mask_size_loss_hinges_per_image_then_averages():
    # per-image mean areas 0.05 (too small by 0.05), 0.5 (fine), 0.95 (too large by 0.05)
    mask = torch.tensor([0.05, 0.5, 0.95]).view(3, 1, 1, 1).expand(3, 1, 2, 2)
    assert mask_size_loss(mask).item() == pytest.approx((0.05 + 0 + 0.05) / 3)
    # hinge on the per-image mean, not per pixel: half 0 / half 1 has mean 0.5 -> no loss
    half = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    assert mask_size_loss(half).item() == 0.0
    assert mask_size_loss(torch.full((1, 1, 2, 2), 0.3), low=0.4, high=0.6).item() == pytest.approx(0.1)


def test_mask_border_loss_is_the_mean_of_the_frame():
    mask = torch.zeros(2, 1, 6, 6)
    mask[0, 0, 0, :] = 1.0  # image 0: the top row of its frame (6 of 20 frame pixels at width 1)
    mask[1, 0, 2:4, 2:4] = 1.0  # image 1: a centred object, nothing on the frame
    assert mask_border_loss(mask, width=1).item() == pytest.approx((6 / 20 + 0) / 2)
    # width 2: the frame is 36 - 4 = 32 pixels; a fully inverted mask (1 outside the centre) scores 1
    inverted = 1 - mask[1:]
    assert mask_border_loss(inverted, width=2).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="border width"):
        mask_border_loss(mask, width=3)


def test_mode_seeking_loss_is_inverse_output_over_noise_distance():
    a, b = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)  # mean |a - b| = 1
    za, zb = torch.zeros(2, 4), torch.full((2, 4), 4.0)  # mean |za - zb| = 4
    assert mode_seeking_loss(a, b, za, zb).item() == pytest.approx(1 / (1 / 4 + 1e-5))
    b[0] = 0  # half the pairs identical: output distance 0.5
    assert mode_seeking_loss(a, b, za, zb, eps=0.0).item() == pytest.approx(8.0)


def test_gram_matrix_normalised_by_chw():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # C=2, H=1, W=2
    # rows (1, 2) and (3, 4): [[5, 11], [11, 25]] / (2 * 1 * 2)
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    torch.testing.assert_close(gram_matrix(f), expected)
    with pytest.raises(ValueError, match=r"\(batch, channels, height, width\)"):
        gram_matrix(torch.zeros(2, 3))


def test_style_loss_sums_gram_mse_over_layers():
    a1 = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    b1 = torch.zeros(1, 2, 1, 2)
    a2 = torch.full((1, 1, 1, 1), 2.0)  # gram 4
    b2 = torch.ones(1, 1, 1, 1)  # gram 1
    layer1 = ((torch.tensor([5.0, 11.0, 11.0, 25.0]) / 4) ** 2).mean().item()
    layer2 = (4.0 - 1.0) ** 2
    assert style_loss([a1, a2], [b1, b2]).item() == pytest.approx(layer1 + layer2)
    assert style_loss([a1, a2], [b1, b2], weights=[0.0, 2.0]).item() == pytest.approx(2 * layer2)
    assert style_loss([a1], [a1]).item() == 0.0
    with pytest.raises(ValueError, match="same non-zero number"):
        style_loss([a1], [])


def test_random_conv_features_are_frozen_seeded_and_multiscale():
    from hf_counterfactual.models.cgn import RandomConvFeatures

    x = torch.rand(2, 3, 16, 16)
    a, b, c = RandomConvFeatures(seed=0), RandomConvFeatures(seed=0), RandomConvFeatures(seed=1)
    fa, fb, fc = a(x), b(x), c(x)
    assert [tuple(f.shape) for f in fa] == [(2, 32, 16, 16), (2, 64, 8, 8), (2, 64, 4, 4)]
    assert all(torch.equal(p, q) for p, q in zip(fa, fb, strict=True))
    assert not torch.equal(fa[0], fc[0])
    assert not any(p.requires_grad for p in a.parameters())
