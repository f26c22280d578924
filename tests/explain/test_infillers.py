"""Infillers of FIDO (arXiv 1807.08024, section 3): kept pixels untouched, dropped pixels filled."""

import pytest
import torch

from hf_counterfactual.explain import (
    BlurInfiller,
    LocalInfiller,
    MeanInfiller,
    NoiseInfiller,
    get_infiller,
)


def _compose(infill, x, keep):
    return keep * x + (1 - keep) * infill(x, keep)


@pytest.mark.parametrize(
    "infill",
    [
        MeanInfiller(),
        MeanInfiller((0.1, 0.2, 0.3)),
        BlurInfiller(sigma=2.0),
        NoiseInfiller(generator=torch.Generator().manual_seed(0)),
        LocalInfiller(window=3),
    ],
    ids=["mean", "mean-dataset", "blur", "noise", "local"],
)
def test_kept_pixels_untouched_and_dropped_pixels_filled(infill):
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    keep = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    fill = infill(x, keep)
    assert fill.shape == x.shape
    out = _compose(infill, x, keep)
    kept = keep.expand_as(x).bool()
    assert torch.equal(out[kept], x[kept])
    assert not torch.allclose(out[~kept], x[~kept])


def test_mean_infiller_colours():
    x = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(
        MeanInfiller()(x, torch.zeros(2, 1, 4, 4)), x.mean((2, 3), keepdim=True).expand_as(x)
    )
    fill = MeanInfiller((0.1, 0.2, 0.3))(x, torch.zeros(2, 1, 4, 4))
    torch.testing.assert_close(fill[1, :, 2, 3], torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="2 channel means but the images have 3"):
        MeanInfiller((0.1, 0.2))(x, torch.zeros(2, 1, 4, 4))


def test_blur_of_constant_is_constant_and_smooths():
    x = torch.full((1, 3, 6, 9), 0.7)
    torch.testing.assert_close(BlurInfiller(sigma=10.0)(x, torch.zeros(1, 1, 6, 9)), x)
    spike = torch.zeros(1, 1, 9, 9)
    spike[0, 0, 4, 4] = 1.0
    out = BlurInfiller(sigma=1.0)(spike, torch.zeros(1, 1, 9, 9))
    assert out.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert 0 < out[0, 0, 4, 4] < 1 and out[0, 0, 4, 5] > out[0, 0, 4, 7] > 0
    with pytest.raises(ValueError, match="sigma > 0"):
        BlurInfiller(sigma=0.0)


def test_local_fill_is_mean_of_kept_neighbours():
    x = torch.arange(25, dtype=torch.float32).view(1, 1, 5, 5)
    keep = torch.ones(1, 1, 5, 5)
    keep[0, 0, 2, 2] = keep[0, 0, 1, 1] = 0
    fill = LocalInfiller(window=3)(x, keep)
    # neighbours of (2,2) in the 3x3 window, minus the dropped (1,1) and (2,2) themselves
    kept = [x[0, 0, i, j].item() for i in (1, 2, 3) for j in (1, 2, 3) if (i, j) not in ((1, 1), (2, 2))]
    assert fill[0, 0, 2, 2].item() == pytest.approx(sum(kept) / len(kept))
    # a window with nothing kept falls back to the image mean
    fill = LocalInfiller(window=3)(x, torch.zeros(1, 1, 5, 5))
    torch.testing.assert_close(fill, torch.full_like(x, 12.0))
    with pytest.raises(ValueError, match="odd window"):
        LocalInfiller(window=4)


def test_noise_infiller_is_seeded():
    x = torch.zeros(2, 3, 4, 4)
    a = NoiseInfiller(generator=torch.Generator().manual_seed(3))(x, x[:, :1])
    b = NoiseInfiller(generator=torch.Generator().manual_seed(3))(x, x[:, :1])
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])


def test_registry():
    assert isinstance(get_infiller("blur", sigma=3.0), BlurInfiller)
    assert get_infiller("local", window=5).window == 5
    with pytest.raises(
        ValueError, match=r"unknown infiller 'vae'; choose one of \['blur', 'local', 'mean', 'noise'\]"
    ):
        get_infiller("vae")
