"""Localisation scenes (the FIDO benchmark): deterministic, one item over clutter, exact item mask."""

import numpy as np
import pytest
from datasets import Dataset, load_from_disk

from hf_counterfactual.data import (
    LocalisationSceneConfig,
    build_localisation_scenes,
    load_digits_dataset,
    localisation_config_of,
)


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset()


def tiny_config(**kwargs) -> LocalisationSceneConfig:
    defaults = dict(canvas_size=32, num_train=6, num_validation=2, num_test=4, seed=0)
    return LocalisationSceneConfig(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def scenes(digits):
    return build_localisation_scenes(tiny_config(), digits)


def pixels(split: Dataset) -> list[bytes]:
    return [np.asarray(image).tobytes() for image in split["image"]]


def test_same_seed_same_data_other_seed_other_data(digits, scenes):
    again = build_localisation_scenes(tiny_config(), digits)
    other = build_localisation_scenes(tiny_config(seed=1), digits)
    assert list(scenes) == ["train", "validation", "test"]
    assert [scenes[s].num_rows for s in scenes] == [6, 2, 4]
    for split in scenes:
        assert pixels(scenes[split]) == pixels(again[split])
        assert scenes[split]["box"] == again[split]["box"]
        assert pixels(scenes[split]) != pixels(other[split])
    row = scenes["train"][0]
    assert row["image"].size == (32, 32) and row["image"].mode == "RGB"
    assert row["mask"].size == (32, 32) and row["mask"].mode == "L"


def test_mask_is_non_empty_binary_with_tight_box_and_bright_inside(scenes):
    inside, outside = [], []
    for split in scenes.values():
        for row in split:
            mask = np.asarray(row["mask"])
            assert set(np.unique(mask)) == {0, 255}
            ys, xs = np.nonzero(mask)
            assert row["box"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            brightness = np.asarray(row["image"], dtype=np.float32).max(axis=-1)
            inside.append(brightness[mask > 0].mean())
            outside.append(brightness[mask == 0].mean())
    assert np.mean(inside) > np.mean(outside) + 50  # the item, not the faded clutter, is bright


def test_mask_is_exactly_where_the_item_exceeds_the_threshold(digits):
    """Without clutter or noise every pixel is item intensity x colour (colour in [0.5, 1])."""
    config = tiny_config(num_distractors=0, noise_std=0.0, mask_threshold=0.3)
    for row in build_localisation_scenes(config, digits)["train"]:
        brightness = np.asarray(row["image"], dtype=np.float32).max(axis=-1) / 255
        mask = np.asarray(row["mask"]) > 0
        assert brightness[mask].min() > 0.3 * 0.5 - 1 / 255
        assert brightness[~mask].max() <= 0.3 + 1 / 255


def test_item_is_drawn_over_the_clutter(digits):
    """Clutter at full contrast and no noise: masked pixels still carry one colour ratio (the item's)."""
    config = tiny_config(num_distractors=6, distractor_contrast=1.0, noise_std=0.0, mask_threshold=0.5)
    for row in build_localisation_scenes(config, digits)["train"]:
        image = np.asarray(row["image"], dtype=np.float32)[np.asarray(row["mask"]) > 0]
        ratios = image / image.max(axis=-1, keepdims=True)
        assert np.ptp(ratios, axis=0).max() < 0.1  # up to uint8 rounding of faint pixels


def test_label_names_carried_over(digits, scenes):
    assert scenes["train"].features["label"].names == digits["train"].features["label"].names


def test_save_load_round_trip_recovers_config(scenes, tmp_path):
    scenes.save_to_disk(tmp_path / "scenes")
    loaded = load_from_disk(tmp_path / "scenes")
    assert pixels(loaded["test"]) == pixels(scenes["test"])
    assert loaded["test"]["box"] == scenes["test"]["box"]
    assert localisation_config_of(loaded["validation"]) == tiny_config()
    with pytest.raises(ValueError, match="build_localisation_scenes"):
        localisation_config_of(Dataset.from_dict({"label": [0]}))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"canvas_size": 4},
        {"item_scale": [0.6, 0.3]},
        {"item_scale": [0.0, 0.5]},
        {"distractor_scale": [0.2, 1.5]},
        {"num_distractors": -1},
        {"distractor_contrast": 1.5},
        {"noise_std": -0.1},
        {"mask_threshold": 1.0},
        {"num_test": -1},
    ],
)
def test_invalid_config_raises(kwargs):
    with pytest.raises(ValueError):
        tiny_config(**kwargs)
