"""Item masks from per-class colour statistics, centre against frame (not in the paper): the formula by hand,
the masks of class-tied items, errors."""

import numpy as np
import pytest
import torch

from hf_counterfactual.models.cgn import color_item_masks


def to_pixels(rgb: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) in [0, 1] -> (N, 3, H, W) in [-1, 1], as the CGN's collator gives images."""
    return torch.from_numpy(rgb).float().permute(0, 3, 1, 2) * 2 - 1


def test_the_item_probability_is_the_centre_histogram_over_centre_plus_frame():
    """Two 8x8 images of class 0 with 2 bins per channel: colour ids are r + 2 g + 4 b. Frame (width 1):
    28 pixels per image; centre: rows and columns 2..5, 16 pixels per image."""
    red, green, blue = (1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0)
    images = np.zeros((2, 8, 8, 3))
    images[:] = blue  # background
    images[:, 1:7, 1:7] = red  # the item: inside the frame, covering the centre
    images[0, 0, 0] = red  # one item pixel on image 0's frame
    images[1, 3, 3] = green  # a colour seen only in the centre
    images[1, 1, 1] = green  # ... and off the centre, off the frame
    masks = color_item_masks(to_pixels(images), torch.tensor([0, 0]), num_classes=1, bins=2, border_width=1)

    frame_px, centre_px = 2 * 28, 2 * 16
    h_frame = {"red": 1 / frame_px, "blue": (frame_px - 1) / frame_px, "green": 0.0}
    h_centre = {"red": (centre_px - 1) / centre_px, "blue": 0.0, "green": 1 / centre_px}
    p = {c: h_centre[c] / (h_centre[c] + h_frame[c]) for c in h_frame}
    assert masks.shape == (2, 1, 8, 8)
    expect = np.full((2, 8, 8), p["blue"])
    expect[:, 1:7, 1:7] = p["red"]
    expect[0, 0, 0] = p["red"]
    expect[1, 3, 3] = expect[1, 1, 1] = p["green"]
    np.testing.assert_allclose(masks[:, 0].numpy(), expect, rtol=1e-6)
    assert p["blue"] == 0 and p["green"] == 1 and 0.5 < p["red"] < 1


def test_class_tied_colours_give_the_items_masks_even_where_an_item_colour_is_another_class_background():
    """Class 0: yellow items on blue; class 1: blue items on yellow. Colours are only read per class, so the
    same colour is item in one class and background in the other. Items are random blobs around the
    centre, some touching the frame."""
    rng = np.random.default_rng(0)
    n, size = 40, 16
    yy, xx = np.mgrid[:size, :size]
    centres = rng.uniform(6, 10, size=(n, 2))
    radii = rng.uniform(3, 8, size=n)
    truth = np.hypot(yy - centres[:, 0, None, None], xx - centres[:, 1, None, None]) < radii[:, None, None]
    labels = np.arange(n) % 2
    yellow, blue = np.array([1.0, 1.0, 0]), np.array([0, 0, 1.0])
    item = np.where(labels[:, None] == 0, yellow, blue)[:, None, None, :]
    back = np.where(labels[:, None] == 0, blue, yellow)[:, None, None, :]
    jitter = rng.normal(0, 0.01, size=(n, size, size, 3))
    images = np.clip(np.where(truth[..., None], item, back) + jitter, 0, 1)
    masks = color_item_masks(to_pixels(images), torch.from_numpy(labels), num_classes=2)
    assert truth[:, [0, -1]].any()  # items do reach the frame
    np.testing.assert_array_equal(masks[:, 0].numpy() > 0.5, truth)


def test_color_item_masks_errors():
    images = torch.zeros(3, 3, 16, 16)
    with pytest.raises(ValueError, match=r"pixel_values must be \(N, C, H, W\)"):
        color_item_masks(images[0], torch.tensor([0, 0, 0]), num_classes=2)
    with pytest.raises(ValueError, match=r"one label per image: got labels of shape \(2,\) for 3 images"):
        color_item_masks(images, torch.tensor([0, 1]), num_classes=2)
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\), got \[0, 2\]"):
        color_item_masks(images, torch.tensor([0, 2, 0]), num_classes=2)
    with pytest.raises(ValueError, match="bins must be >= 2"):
        color_item_masks(images, torch.tensor([0, 1, 0]), num_classes=2, bins=1)
    with pytest.raises(ValueError, match=r"border_width must be in \[1, 4\] for 16x16 images"):
        color_item_masks(images, torch.tensor([0, 1, 0]), num_classes=2, border_width=5)
