"""Spurious-background shift (robust FT, arXiv 2303.03052): background tied to the class downstream, not in OOD.

The composition checked is image = alpha * white + (1 - alpha) * background crop, alpha the item's
resized intensity.
"""

import numpy as np
import pytest
from datasets import ClassLabel, Value, load_from_disk
from PIL import Image

from hf_counterfactual.data import load_digits_dataset
from hf_counterfactual.data.background_shift import (
    BACKGROUND_KINDS,
    SPLITS,
    BackgroundShiftConfig,
    background_shift_config_of,
    background_textures,
    build_background_shift,
)


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset()


def tiny_config(**kwargs) -> BackgroundShiftConfig:
    defaults = dict(image_size=16, num_pretrain=40, num_train=20, num_validation=10, num_test=12, seed=0)
    return BackgroundShiftConfig(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def large(digits):
    """400 images per split: enough to tell a tie rate of 0.9 from one of 0.1."""
    config = tiny_config(
        image_size=8, bias=0.9, num_pretrain=400, num_train=400, num_validation=400, num_test=400
    )
    return build_background_shift(config, digits)


def stack(split, column: str = "image") -> np.ndarray:
    return np.stack([np.asarray(image) for image in split[column]])


def test_splits_columns_and_features(digits):
    data = build_background_shift(tiny_config(), digits)
    assert tuple(data) == SPLITS
    assert [data[s].num_rows for s in SPLITS] == [40, 20, 10, 12, 12, 12]
    features = data["train"].features
    assert features["label"] == ClassLabel(names=[str(d) for d in range(10)])
    assert features["background"] == ClassLabel(names=[kind[0] for kind in BACKGROUND_KINDS])
    assert features["caption"] == Value("string")
    row = data["pretrain"][0]
    assert row["image"].size == (16, 16) and row["image"].mode == "RGB"
    assert row["caption"].startswith(f"a photo of a {row['label']}")


def test_downstream_ties_background_to_class_ood_does_not(large):
    seen = set(range(10))
    for split in ("train", "validation", "test_id"):
        labels, backgrounds = np.asarray(large[split]["label"]), np.asarray(large[split]["background"])
        assert np.mean(backgrounds == labels % 10) == pytest.approx(0.9, abs=0.06)  # 4 sigma at n = 400
        assert set(backgrounds) <= seen
    for split in ("pretrain", "test_ood_shuffled"):
        labels, backgrounds = np.asarray(large[split]["label"]), np.asarray(large[split]["background"])
        assert np.mean(backgrounds == labels % 10) == pytest.approx(0.1, abs=0.06)
        assert set(backgrounds) == seen  # every seen kind shows up


def test_tie_wraps_around_fewer_backgrounds_and_bias_is_exact(digits):
    data = build_background_shift(tiny_config(num_backgrounds=3, bias=1.0, num_train=60), digits)
    labels, backgrounds = np.asarray(data["train"]["label"]), np.asarray(data["train"]["background"])
    assert np.array_equal(backgrounds, labels % 3)
    data = build_background_shift(tiny_config(num_backgrounds=3, bias=0.0, num_train=60), digits)
    labels, backgrounds = np.asarray(data["train"]["label"]), np.asarray(data["train"]["background"])
    assert not np.any(backgrounds == labels % 3) and set(backgrounds) <= {0, 1, 2}


def test_unseen_backgrounds_never_appear_in_pretrain_or_downstream(large):
    unseen = set(range(10, 16))
    assert set(large["test_ood_unseen"]["background"]) == unseen
    for split in ("pretrain", "train", "validation", "test_id", "test_ood_shuffled"):
        assert not set(large[split]["background"]) & unseen


def test_items_disjoint_between_pretrain_and_downstream_tests_share_test_items(digits, large):
    parts = [set(large[s]["item"]) for s in ("pretrain", "train", "validation")]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    assert len(parts[0]) == 400  # no repeats while the pool lasts (400 + 400 + 400 <= 1437)
    assert large["test_id"]["item"] == large["test_ood_shuffled"]["item"] == large["test_ood_unseen"]["item"]
    source_labels = np.asarray(digits["test"]["label"])
    assert list(source_labels[large["test_id"]["item"]]) == large["test_id"]["label"]
    # more images than the pool: each part repeats its own items, never another's
    big = build_background_shift(
        tiny_config(image_size=8, num_pretrain=1500, num_train=600, num_validation=100, num_test=0), digits
    )
    parts = [set(big[s]["item"]) for s in ("pretrain", "train", "validation")]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    assert big["train"].num_rows == 600 and len(parts[1]) < 600


def test_pixels_are_the_white_item_over_a_crop_of_its_background(digits):
    """With item_size = image_size the item covers the canvas, so alpha is known; the crop offset is searched."""
    data = build_background_shift(tiny_config(item_size=16, num_pretrain=6, num_train=6), digits)
    windows = np.lib.stride_tricks.sliding_window_view(background_textures(16), (16, 16, 3), axis=(1, 2, 3))
    for split, source in (("pretrain", digits["train"]), ("test_ood_unseen", digits["test"])):
        for row in data[split].select(range(6)):
            item = source[row["item"]]["image"].convert("L").resize((16, 16), Image.BILINEAR)
            alpha = (np.asarray(item, np.float64) / 255)[..., None]
            crops = windows[row["background"], :17, :17, 0]  # (17, 17, 16, 16, 3)
            expected = np.round((alpha + (1 - alpha) * crops) * 255)
            errors = np.abs(expected - np.asarray(row["image"], np.float64)).max(axis=(-1, -2, -3))
            assert errors.min() <= 1, split


def test_captions_name_item_and_background(digits):
    always = build_background_shift(tiny_config(background_in_caption=1.0), digits)
    for row in always["pretrain"]:
        name = BACKGROUND_KINDS[row["background"]][0]
        assert row["caption"] == f"a photo of a {row['label']} on a {name} background."
    never = build_background_shift(tiny_config(background_in_caption=0.0), digits)
    assert never["pretrain"]["caption"] == [f"a photo of a {y}." for y in never["pretrain"]["label"]]
    # the caption draw is separate from the images: same pixels either way
    assert np.array_equal(stack(always["test_id"]), stack(never["test_id"]))


def test_same_seed_same_data_other_seed_other_data(digits):
    a, b = build_background_shift(tiny_config(), digits), build_background_shift(tiny_config(), digits)
    c = build_background_shift(tiny_config(seed=1), digits)
    for split in SPLITS:
        assert np.array_equal(stack(a[split]), stack(b[split]))
        assert a[split]["caption"] == b[split]["caption"] and a[split]["background"] == b[split]["background"]
        assert not np.array_equal(stack(a[split]), stack(c[split]))


def test_backgrounds_are_fixed_distinct_and_darker_than_the_item():
    tiles = background_textures(16)
    assert tiles.shape == (len(BACKGROUND_KINDS), 32, 32, 3)
    assert np.array_equal(tiles, background_textures(16))
    flat = tiles.reshape(len(tiles), -1)
    distances = np.abs(flat[:, None] - flat[None]).mean(-1)
    assert distances[~np.eye(len(tiles), dtype=bool)].min() > 0.02
    assert tiles.max() <= 0.9 + 1e-6 and tiles.min() >= 0  # the item is white (1.0)


def test_save_load_round_trip_recovers_config(digits, tmp_path):
    config = tiny_config(bias=0.7, seed=3)
    data = build_background_shift(config, digits)
    data.save_to_disk(tmp_path / "shift")
    loaded = load_from_disk(tmp_path / "shift")
    for split in SPLITS:
        assert np.array_equal(stack(loaded[split]), stack(data[split]))
        assert loaded[split]["caption"] == data[split]["caption"]
        assert background_shift_config_of(loaded[split]) == config
    with pytest.raises(ValueError, match="not made by build_background_shift"):
        background_shift_config_of(digits["train"])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"source": "mnist"}, "Unknown source 'mnist'"),
        ({"image_size": 4}, "image_size must be >= 8"),
        ({"item_size": 20}, r"item_size must be in \[4, image_size=16\]"),
        ({"num_backgrounds": 1}, "num_backgrounds must be >= 2"),
        ({"num_unseen_backgrounds": 0}, "num_unseen_backgrounds >= 1"),
        ({"num_backgrounds": 12, "num_unseen_backgrounds": 5}, "must be <= 16"),
        ({"bias": 1.5}, r"must be in \[0, 1\]"),
        ({"background_in_caption": -0.1}, r"must be in \[0, 1\]"),
        ({"num_test": -1}, "must be >= 0"),
        ({"seed": -1}, "seed must be >= 0"),
    ],
)
def test_invalid_configs_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**kwargs)
