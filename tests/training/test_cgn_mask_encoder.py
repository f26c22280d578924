"""Fitting a CGN mask encoder on the shared loop: seeded sample batches, a fit that learns, errors."""

import pytest
import torch

from hf_counterfactual.models.cgn import CGNConfig, CGNMaskEncoder, CounterfactualGenerativeNetwork
from hf_counterfactual.training import TrainingConfig
from hf_counterfactual.training.cgn_mask_encoder import CgnSampleCollator, fit_mask_encoder


@pytest.fixture(scope="module")
def cgn():
    torch.manual_seed(0)
    model = CounterfactualGenerativeNetwork(
        CGNConfig(num_classes=3, image_size=8, latent_dim=6, ngf=4, embedding_dim=3, encoder_channels=8)
    )
    with torch.no_grad():  # spread the 0.1-gain init so masks vary; a light foreground on a dark background
        for p in model.parameters():
            if p.ndim > 1:
                p.normal_(0, 0.5)
        for mechanism, level in ((model.foreground, 2.0), (model.background, -2.0)):
            mechanism.blocks[-1].weight.zero_()
            mechanism.blocks[-1].bias.fill_(level)
    return model


def test_sample_batches_are_the_cgns_compositions_seeded_by_their_first_id(cgn):
    collate = CgnSampleCollator(cgn, tied_fraction=0.5)
    batch = collate([7, 3, 9, 1])
    assert batch["pixel_values"].shape == (4, 3, 8, 8) and batch["target_masks"].shape == (4, 1, 8, 8)
    again = collate([7, 0, 0, 0])
    torch.testing.assert_close(again["pixel_values"], batch["pixel_values"])
    assert not torch.equal(collate([8, 3, 9, 1])["target_masks"], batch["target_masks"])
    with pytest.raises(ValueError, match=r"tied_fraction must be in \[0, 1\], got 1.5"):
        CgnSampleCollator(cgn, tied_fraction=1.5)


def test_fit_learns_the_masks_of_fresh_samples_and_saves_the_encoder(cgn, tmp_path):
    config = TrainingConfig(
        output_dir=str(tmp_path), max_steps=60, batch_size=16, learning_rate=3e-3, lr_scheduler="constant",
        warmup_ratio=0.0, disable_progress_bar=True,
    )  # fmt: skip
    torch.manual_seed(config.seed)
    untrained = CGNMaskEncoder(cgn.config)  # the fit's own starting weights (same seed)
    encoder = fit_mask_encoder(cgn, config)
    held_out = CgnSampleCollator(cgn)(list(range(10_000, 10_064)))  # ids the fit never drew
    t = held_out["target_masks"]
    entropy = -(t * t.log() + (1 - t) * (1 - t).log()).mean()  # the cross-entropy's floor on soft masks
    with torch.no_grad():
        before = untrained(**held_out).loss - entropy
        after = encoder(**held_out).loss - entropy
    assert after < 0.5 * before  # 0.17 against 0.61 when written
    saved = CGNMaskEncoder.from_pretrained(tmp_path)
    torch.testing.assert_close(saved(held_out["pixel_values"]).mask, encoder(held_out["pixel_values"]).mask)


def test_fit_needs_max_steps(cgn, tmp_path):
    with pytest.raises(ValueError, match="set config.max_steps"):
        fit_mask_encoder(cgn, TrainingConfig(output_dir=str(tmp_path)))
