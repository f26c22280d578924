"""InpainterUNet, InpaintingPipeline and the training masks of FIDO's generative infiller (arXiv 1807.08024, sec. 3)."""

import numpy as np
import PIL.Image
import pytest
import torch

from hf_counterfactual.models.inpainter import InpainterUNet, InpaintingPipeline, random_inpainting_masks


def tiny_unet(**kwargs) -> InpainterUNet:
    torch.manual_seed(0)
    return InpainterUNet(**{"block_out_channels": (8, 16, 16), "norm_num_groups": 4, **kwargs})


def _inputs(n=2, c=3, h=30, w=45, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g), random_inpainting_masks(n, h, w, g)


@pytest.mark.parametrize("size", [(30, 45), (1, 1), (32, 32), (17, 8)])
def test_any_size_gives_output_of_input_shape(size):
    x, keep = _inputs(h=size[0], w=size[1])
    out = tiny_unet()(x, keep)
    assert out.sample.shape == x.shape and out.loss is None
    assert torch.isfinite(out.sample).all()


def test_grayscale_and_tuple_output():
    x, keep = _inputs(c=1)
    sample, loss = tiny_unet(in_channels=1)(x, keep, target=x, return_dict=False)
    assert sample.shape == x.shape and loss.ndim == 0


def test_dropped_pixels_are_never_seen():
    x, keep = _inputs()
    noisy = torch.where(keep.bool(), x, torch.rand_like(x))
    unet = tiny_unet()
    torch.testing.assert_close(unet(x, keep).sample, unet(noisy, keep).sample)


def test_loss_is_l1_over_dropped_pixels_only():
    x, keep = _inputs()
    unet = tiny_unet()
    out = unet(x, keep, target=x)
    dropped = (1 - keep).expand_as(x).bool()
    torch.testing.assert_close(out.loss, (out.sample - x).abs()[dropped].mean())
    # a different target at kept pixels leaves the loss unchanged; at a dropped pixel it changes it
    other = torch.where(keep.bool(), torch.rand_like(x), x)
    torch.testing.assert_close(unet(x, keep, target=other).loss, out.loss)
    other = x.clone()
    other[dropped.nonzero()[0].unbind()] += 1.0
    assert unet(x, keep, target=other).loss > out.loss
    # nothing dropped: loss 0, not nan
    assert unet(x, torch.ones_like(keep), target=x).loss.item() == 0.0


def test_bad_inputs_name_the_problem():
    unet = tiny_unet()
    x, keep = _inputs()
    with pytest.raises(ValueError, match=r"pixel_values must be \(N, 3, H, W\)"):
        unet(x[:, :2], keep)
    with pytest.raises(ValueError, match="keep_mask must be"):
        unet(x, keep[..., :-1])
    with pytest.raises(ValueError, match="keep_mask must be"):
        unet(x, keep.expand(-1, 3, -1, -1))
    with pytest.raises(ValueError, match="target must have the shape"):
        unet(x, keep, target=x[:1])
    with pytest.raises(ValueError, match="norm_num_groups=8 must divide"):
        InpainterUNet(block_out_channels=(12, 16))


def test_unet_save_load_round_trip(tmp_path):
    unet = tiny_unet(layers_per_block=2, mid_layers=1)
    unet.save_pretrained(tmp_path)
    loaded = InpainterUNet.from_pretrained(tmp_path)
    assert loaded.config.block_out_channels == [8, 16, 16] and loaded.config.layers_per_block == 2
    x, keep = _inputs()
    torch.testing.assert_close(loaded(x, keep).sample, unet(x, keep).sample, rtol=0, atol=0)


def test_pipeline_composes_and_round_trips(tmp_path):
    pipe = InpaintingPipeline(unet=tiny_unet())
    pipe.set_progress_bar_config(disable=True)
    x, keep = _inputs()
    out = pipe(x, 1 - keep, output_type="pt").images
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    kept = keep.expand_as(x).bool()
    torch.testing.assert_close(out[kept], x[kept])
    fill = pipe.unet(x, keep).sample.clamp(0, 1)
    torch.testing.assert_close(out[~kept], fill[~kept])

    pipe.save_pretrained(tmp_path)
    assert (tmp_path / "model_index.json").is_file() and (tmp_path / "unet" / "config.json").is_file()
    loaded = InpaintingPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.unet, InpainterUNet)
    torch.testing.assert_close(loaded(x, 1 - keep, output_type="pt").images, out, rtol=0, atol=0)


def test_pipeline_accepts_pil_and_numpy():
    pipe = InpaintingPipeline(unet=tiny_unet())
    rng = np.random.default_rng(0)
    image = PIL.Image.fromarray(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8))
    mask = PIL.Image.fromarray(np.where(np.arange(20) < 10, 255, 0).astype(np.uint8)[None].repeat(12, 0))
    pil = pipe(image, mask).images
    assert len(pil) == 1 and pil[0].size == (20, 12) and pil[0].mode == "RGB"
    arr = pipe(np.asarray(image) / 255.0, np.asarray(mask) / 255.0, output_type="np").images
    assert arr.shape == (1, 12, 20, 3)
    # the right half is kept: identical to the input up to uint8 rounding
    np.testing.assert_allclose(arr[0, :, 10:], np.asarray(image)[:, 10:] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(pil[0])[:, 10:], np.asarray(image)[:, 10:])


def test_pipeline_bad_inputs():
    pipe = InpaintingPipeline(unet=tiny_unet())
    x, keep = _inputs()
    with pytest.raises(ValueError, match="image has 1 channels but the inpainter expects 3"):
        pipe(x[:, :1], 1 - keep)
    with pytest.raises(ValueError, match="mask_image must be one single-channel mask per image"):
        pipe(x, (1 - keep)[..., :-2])
    with pytest.raises(ValueError, match="output_type"):
        pipe(x, 1 - keep, output_type="latent")


def test_random_masks_keep_ratio_kinds_and_determinism():
    masks = random_inpainting_masks(300, 32, 40, torch.Generator().manual_seed(0))
    assert masks.shape == (300, 1, 32, 40) and set(masks.unique().tolist()) <= {0.0, 1.0}
    ratio = masks.mean(dim=(1, 2, 3))
    assert ratio.min() >= 0.05 and ratio.max() <= 0.95
    assert ratio.min() < 0.2 and ratio.max() > 0.8  # the whole range is covered
    again = random_inpainting_masks(300, 32, 40, torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)
    assert not torch.equal(masks, random_inpainting_masks(300, 32, 40, torch.Generator().manual_seed(1)))
    for kind in ("blob", "noise", "rect"):
        one = random_inpainting_masks(40, 16, 16, torch.Generator().manual_seed(2), (0.3, 0.3), (kind,))
        assert abs(one.mean().item() - 0.3) < 0.08, kind
    with pytest.raises(ValueError, match="kinds must be"):
        random_inpainting_masks(1, 8, 8, kinds=("circle",))
    with pytest.raises(ValueError, match="keep_ratio must be"):
        random_inpainting_masks(1, 8, 8, keep_ratio=(0.0, 1.0))
