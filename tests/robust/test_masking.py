"""Masked counterfactual images (arXiv 2303.03052): object / context / random cell masks, and refilling
masked pixels with nothing, one other image or a random other image per cell."""

import pytest
import torch
from transformers import ViTConfig, ViTForImageClassification

from hf_counterfactual.robust import (
    PAPER_THRESHOLDS,
    MaskingConfig,
    apply_masks,
    cell_masks,
    paper_threshold,
    token_attention_mask,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _batch(b=4, size=16):
    return torch.rand(b, 3, size, size, generator=_gen(1))  # continuous noise: no two images share a pixel


def _half_mask(b=4, cells=4):
    return torch.rand(b, cells, cells, generator=_gen(2)) < 0.5


def test_paper_thresholds_and_defaults():
    assert MaskingConfig().threshold == 0.3  # headline: object mask, single refill
    assert MaskingConfig("context", "multi").threshold == 0.3
    assert MaskingConfig("random", "none").threshold == 0.75
    assert MaskingConfig("object", "multi", threshold=0.1).threshold == 0.1
    assert paper_threshold("context", "single") == PAPER_THRESHOLDS["context", "single"] == 0.5
    assert len(PAPER_THRESHOLDS) == 9


def test_config_errors():
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        MaskingConfig(threshold=1.5)
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        MaskingConfig(threshold=-0.1)
    with pytest.raises(ValueError, match="unknown strategy 'patch'"):
        MaskingConfig(strategy="patch")
    with pytest.raises(ValueError, match="refill 'double'"):
        MaskingConfig(refill="double")
    with pytest.raises(ValueError, match="cell must be >= 1"):
        MaskingConfig(cell=0)


def test_object_masks_above_threshold_and_context_is_its_complement():
    cam = torch.rand(3, 7, 7, generator=_gen())
    cam[0, 0, 0] = 0.4  # exactly at the threshold: context, not object
    obj = cell_masks(cam, MaskingConfig("object", threshold=0.4))
    ctx = cell_masks(cam, MaskingConfig("context", threshold=0.4))
    assert torch.equal(obj, cam > 0.4)
    assert torch.equal(ctx, ~obj)
    assert ctx[0, 0, 0]
    with pytest.raises(ValueError, match="needs a CAM tensor"):
        cell_masks((3, 7, 7), MaskingConfig("object"))


def test_random_mask_rate_is_p_and_ignores_the_cam():
    cfg = MaskingConfig("random", threshold=0.3)
    mask = cell_masks((64, 14, 14), cfg, _gen())
    assert mask.shape == (64, 14, 14) and mask.dtype == torch.bool
    assert abs(mask.float().mean().item() - 0.3) < 0.02
    assert torch.equal(cell_masks(torch.zeros(64, 14, 14), cfg, _gen()), mask)
    assert not cell_masks((2, 4, 4), MaskingConfig("random", threshold=0.0)).any()
    assert cell_masks((2, 4, 4), MaskingConfig("random", threshold=1.0)).all()


def test_none_refill_zeroes_masked_pixels():
    x, cells = _batch(), _half_mask()
    masked, pixel_mask = apply_masks(x, cells, "none")
    assert torch.equal(pixel_mask, cells.repeat_interleave(4, 1).repeat_interleave(4, 2))
    assert (masked.permute(1, 0, 2, 3)[:, pixel_mask] == 0).all()
    assert torch.equal(masked.permute(1, 0, 2, 3)[:, ~pixel_mask], x.permute(1, 0, 2, 3)[:, ~pixel_mask])


def test_single_refill_takes_every_masked_pixel_from_one_other_image():
    x, cells = _batch(), _half_mask()
    masked, pixel_mask = apply_masks(x, cells, "single", _gen())
    for i in range(4):
        m = pixel_mask[i]
        assert torch.equal(masked[i][:, ~m], x[i][:, ~m])  # unmasked pixels unchanged
        sources = [j for j in range(4) if torch.equal(masked[i][:, m], x[j][:, m])]
        assert len(sources) == 1 and sources[0] != i


def test_multi_refill_takes_each_cell_from_some_other_image_at_the_same_place():
    x, cells = _batch(6), _half_mask(6)
    masked, pixel_mask = apply_masks(x, cells, "multi", _gen())
    used = set()
    for i in range(6):
        assert torch.equal(masked[i][:, ~pixel_mask[i]], x[i][:, ~pixel_mask[i]])
        sources = set()
        for r, c in cells[i].nonzero().tolist():
            patch = masked[i, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4]
            match = [j for j in range(6) if torch.equal(patch, x[j, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4])]
            assert len(match) == 1 and match[0] != i
            sources.add(match[0])
        used.add(len(sources))
    assert max(used) > 1  # cells of one image come from several images, unlike "single"


@pytest.mark.parametrize("refill", ["single", "multi"])
def test_refill_needs_two_images(refill):
    with pytest.raises(ValueError, match="needs at least 2 images in the batch"):
        apply_masks(_batch(1), _half_mask(1), refill, _gen())


def test_apply_masks_errors():
    with pytest.raises(ValueError, match="does not tile"):
        apply_masks(_batch(), _half_mask(cells=3), "none")
    with pytest.raises(ValueError, match="unknown refill"):
        apply_masks(_batch(), _half_mask(), "zeros")


@pytest.mark.parametrize("refill", ["single", "multi"])
def test_seeded_generator_is_deterministic(refill):
    x = _batch(8)
    cfg = MaskingConfig("random", refill)
    a = apply_masks(x, cell_masks((8, 4, 4), cfg, _gen(5)), refill, _gen(5))
    b = apply_masks(x, cell_masks((8, 4, 4), cfg, _gen(5)), refill, _gen(5))
    c = apply_masks(x, cell_masks((8, 4, 4), cfg, _gen(6)), refill, _gen(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_token_attention_mask_drops_masked_patches_from_a_vit():
    """Refill "none" as the paper does it for ViTs: masked tokens are invisible, so their content is irrelevant."""
    torch.manual_seed(0)
    config = ViTConfig(hidden_size=16, intermediate_size=20, num_hidden_layers=2, num_attention_heads=2,
                       image_size=16, patch_size=4, num_labels=3)  # fmt: skip
    vit = ViTForImageClassification(config).eval()
    x, cells = _batch(2), _half_mask(2)
    keep = token_attention_mask(cells)
    assert keep.shape == (2, 17) and (keep[:, 0] == 1).all()
    assert torch.equal(keep[:, 1:], (~cells.flatten(1)).long())
    masked, pixel_mask = apply_masks(x, cells, "none")
    other = torch.where(pixel_mask[:, None], torch.rand_like(x), x)
    with torch.no_grad():
        a = vit(pixel_values=masked, attention_mask=keep).logits
        b = vit(pixel_values=other, attention_mask=keep).logits
    torch.testing.assert_close(a, b)
