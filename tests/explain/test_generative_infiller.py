"""Generative infillers of FIDO (arXiv 1807.08024, section 3): our inpainter and the diffusers plug-in path."""

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from hf_counterfactual.explain import DiffusersInpaintInfiller, FidoConfig, FidoExplainer, GenerativeInfiller
from hf_counterfactual.models.inpainter import InpainterUNet, InpaintingPipeline, random_inpainting_masks


def _tiny_unet() -> InpainterUNet:
    torch.manual_seed(0)
    return InpainterUNet(block_out_channels=(8, 16), norm_num_groups=4)


def _inputs(n=5, h=20, w=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g), random_inpainting_masks(n, h, w, g)


def _assert_kept_untouched(x, keep, fill):
    out = keep * x + (1 - keep) * fill
    kept = keep.expand_as(x).bool()
    assert torch.equal(out[kept], x[kept])


def test_generative_infiller_matches_the_pipeline_and_keeps_pixels():
    unet = _tiny_unet()
    pipe = InpaintingPipeline(unet=unet)
    x, keep = _inputs()
    fill = GenerativeInfiller(pipe)(x, keep)
    assert fill.shape == x.shape and fill.dtype == x.dtype
    assert 0 <= fill.min() and fill.max() <= 1
    _assert_kept_untouched(x, keep, fill)
    dropped = (1 - keep).expand_as(x).bool()
    torch.testing.assert_close(fill[dropped], pipe(x, 1 - keep, output_type="pt").images[dropped])


def test_batched_equals_chunked():
    unet = _tiny_unet()
    x, keep = _inputs(n=7)
    whole = GenerativeInfiller(unet, batch_size=64)(x, keep)
    chunked = GenerativeInfiller(unet, batch_size=3)(x, keep)
    torch.testing.assert_close(chunked, whole)


def test_value_range_maps_to_unit_interval_and_back():
    unet = _tiny_unet()
    x, keep = _inputs()
    unit = GenerativeInfiller(unet)(x, keep)
    signed = GenerativeInfiller(unet, value_range=(-1.0, 1.0))(2 * x - 1, keep)
    torch.testing.assert_close(signed, 2 * unit - 1)


def test_from_pretrained_and_fido(tmp_path):
    InpaintingPipeline(unet=_tiny_unet()).save_pretrained(tmp_path)
    infill = GenerativeInfiller.from_pretrained(str(tmp_path), batch_size=4)
    x, keep = _inputs()
    torch.testing.assert_close(infill(x, keep), GenerativeInfiller(_tiny_unet())(x, keep))

    class Bright(torch.nn.Module):  # class 1 when the top-left quadrant is bright
        def forward(self, pixel_values):
            s = pixel_values[:, :, :10, :14].mean(dim=(1, 2, 3))
            return torch.stack([-s, s], dim=1) * 10

    result = FidoExplainer(Bright(), FidoConfig(mask_size=5, steps=3, num_samples=2), infill=infill).explain(
        x[:2], torch.tensor([1, 1])
    )
    assert result.saliency.shape == (2, 20, 28) and torch.isfinite(result.saliency).all()


def test_generative_infiller_bad_inputs():
    infill = GenerativeInfiller(_tiny_unet())
    x, keep = _inputs()
    with pytest.raises(ValueError, match="keep_mask must be"):
        infill(x, keep[:, :, :-1])
    with pytest.raises(ValueError, match=r"pixel_values must be \(N, 3, H, W\)"):
        infill(x[:, :1], keep)
    with pytest.raises(TypeError, match="needs an InpaintingPipeline or InpainterUNet"):
        GenerativeInfiller(torch.nn.Conv2d(4, 3, 1))
    with pytest.raises(ValueError, match="value_range"):
        GenerativeInfiller(_tiny_unet(), value_range=(1.0, 0.0))


def tiny_sd_inpaint_pipeline(tokenizer) -> StableDiffusionInpaintPipeline:
    """A randomly initialised Stable Diffusion inpainting pipeline, built offline from configs."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=9,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        sample_size=32,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    return StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def test_diffusers_plug_in_path_with_a_tiny_stable_diffusion_inpainter(tiny_clip_tokenizer):
    pipe = tiny_sd_inpaint_pipeline(tiny_clip_tokenizer)
    x, keep = _inputs(n=3, h=30, w=36)  # not a multiple of 8: the pipeline resizes, the infiller resizes back
    infill = DiffusersInpaintInfiller(pipe, prompt="a cat", num_inference_steps=2, batch_size=2)
    fill = infill(x, keep)
    assert fill.shape == x.shape and torch.isfinite(fill).all()
    assert 0 <= fill.min() and fill.max() <= 1
    _assert_kept_untouched(x, keep, fill)
    torch.testing.assert_close(infill(x, keep), fill)  # seeded: the same inputs give the same fill

    signed = DiffusersInpaintInfiller(pipe, num_inference_steps=2, value_range=(-1.0, 1.0), image_size=32)
    fill = signed(2 * x[:1] - 1, keep[:1])
    assert fill.shape == (1, 3, 30, 36) and -1 <= fill.min() and fill.max() <= 1
    with pytest.raises(ValueError, match="needs RGB images"):
        infill(x[:, :1], keep)
