"""Saliency figures: the PNG grid's layout, accepted image forms, the single overlay, and mismatch errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from hf_counterfactual.explain.figures import save_overlay, save_saliency_grid


def _batch(b=3, h=16, w=16):
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 3, h, w, generator=g), torch.rand(b, h, w, generator=g)


def test_grid_is_a_png_with_one_row_per_image_and_one_column_per_method(tmp_path):
    images, sal = _batch()
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[:, 2:9, 3:10] = True
    maps = {"fido": sal, "occlusion": sal.numpy() * 5 - 1, "constant": [torch.zeros(16, 16)] * 3}
    path = save_saliency_grid(
        images, maps, tmp_path / "sub" / "grid.png", titles=["a", "b", "c"], masks=masks
    )
    with Image.open(path) as png:
        assert png.format == "PNG"
        # (1 image + 3 methods) columns x 3 rows; cells 2 x 2 in under a 0.3 in title band, at 100 dpi
        assert png.size == (4 * 200, pytest.approx(3 * 230, abs=1))
        assert len(np.unique(np.asarray(png.convert("RGB")).reshape(-1, 3), axis=0)) > 50  # drawn


def test_grid_accepts_pil_numpy_and_grayscale_and_keeps_aspect(tmp_path):
    images, sal = _batch(b=2, h=16, w=32)
    pil = [Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype(np.uint8)) for img in images]
    uint8 = np.stack([np.asarray(p) for p in pil])  # (B, H, W, C) uint8
    for form in (pil, uint8, images[:, :1]):
        path = save_saliency_grid(form, {"m": sal}, tmp_path / "g.png")
        with Image.open(path) as png:
            assert png.size == (2 * 200, pytest.approx(2 * 130, abs=1))  # cells 2 in wide, 2 * 16 / 32 tall


def test_overlay_has_the_image_size_and_blends(tmp_path):
    image, sal = _batch(b=1, h=12, w=20)
    with Image.open(save_overlay(image[0], sal[0], tmp_path / "o.png")) as png:
        assert png.format == "PNG" and png.size == (20, 12)
    # alpha 0 is the image itself; alpha 1 the colormap of the normalised map (jet(0) is dark blue).
    with Image.open(save_overlay(image[0], sal[0], tmp_path / "a0.png", alpha=0.0)) as png:
        expected = np.round(image[0].permute(1, 2, 0).numpy() * 255)
        np.testing.assert_allclose(np.asarray(png, dtype=float), expected, atol=1)
    with Image.open(save_overlay(image[0], torch.zeros(12, 20), tmp_path / "a1.png", alpha=1.0)) as png:
        assert (np.asarray(png) == np.asarray(png)[0, 0]).all()
        assert np.asarray(png)[0, 0, 2] > 100 and np.asarray(png)[0, 0, 0] == 0


def test_mismatches_raise(tmp_path):
    images, sal = _batch()
    with pytest.raises(ValueError, match=r"maps\['fido'\] has 2 maps for 3 images"):
        save_saliency_grid(images, {"fido": sal[:2]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"maps\['fido'\] map 0 is \(16, 8\) but image 0 is \(16, 16\)"):
        save_saliency_grid(images, {"fido": sal[:, :, :8]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="masks has 1 maps for 3 images"):
        save_saliency_grid(images, {"fido": sal}, tmp_path / "x.png", masks=sal[:1] > 0.5)
    with pytest.raises(ValueError, match="2 titles for 3 images"):
        save_saliency_grid(images, {"fido": sal}, tmp_path / "x.png", titles=["a", "b"])
    with pytest.raises(ValueError, match=r"must be \(B, C, H, W\)"):
        save_saliency_grid(images[0], {"fido": sal}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"saliency map 0 is \(16, 15\)"):
        save_overlay(images[0], sal[0, :, :15], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
