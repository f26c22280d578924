"""CGN colored / double-colored / wildlife benchmarks: class-tied appearance in train, random in test.

The composition checked throughout is the CGN one (Sauer & Geiger 2021, the composer of the mechanisms):
x = m * f + (1 - m) * b, here with m the item's resized intensity (or its binary mask).
"""

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, load_from_disk
from datasets import Image as ImageFeature
from PIL import Image

from hf_counterfactual.data import (
    CGN_PALETTE,
    CgnVariantConfig,
    build_cgn_variant,
    cgn_variant_config_of,
    load_digits_dataset,
)
from hf_counterfactual.data.cgn_variants import wildlife_textures

VARIANTS = ["colored", "double_colored", "wildlife"]
PALETTE = np.asarray(CGN_PALETTE, dtype=np.float64)


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset()


def tiny_config(**kwargs) -> CgnVariantConfig:
    defaults = dict(image_size=16, num_train=12, num_validation=4, num_test=8, seed=0)
    return CgnVariantConfig(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def large(digits):
    """400 train / 400 test images per variant: enough to tell agreement rates of 0.1 from 1."""
    config = dict(image_size=8, num_train=400, num_validation=40, num_test=400)
    return {
        (v, bias): build_cgn_variant(tiny_config(variant=v, bias=bias, **config), digits)
        for v in VARIANTS
        for bias in (True, False)
    }


def stack(split: Dataset, column: str = "image") -> np.ndarray:
    return np.stack([np.asarray(image) for image in split[column]])


def alphas(source: Dataset, items: list[int], size: int) -> np.ndarray:
    """The items' intensities resized as the builder documents (PIL bilinear), in [0, 1]."""
    return np.stack(
        [
            np.asarray(source[i]["image"].convert("L").resize((size, size), Image.BILINEAR), np.float64) / 255
            for i in items
        ]
    )


def test_same_seed_same_data_other_seed_other_data(digits):
    for variant in VARIANTS:
        config = tiny_config(variant=variant, image_size=24, noise_std=0.02)
        a, b = build_cgn_variant(config, digits), build_cgn_variant(config, digits)
        c = build_cgn_variant(tiny_config(variant=variant, image_size=24, noise_std=0.02, seed=1), digits)
        assert list(a) == ["train", "validation", "test"]
        assert [a[s].num_rows for s in a] == [12, 4, 8]
        for split in a:
            assert np.array_equal(stack(a[split]), stack(b[split]))
            assert a[split]["foreground"] == b[split]["foreground"] and a[split]["item"] == b[split]["item"]
            assert not np.array_equal(stack(a[split]), stack(c[split]))
        row = a["train"][0]
        assert row["image"].size == (24, 24) and row["image"].mode == "RGB"
        assert row["mask"].size == (24, 24) and row["mask"].mode == "L"
        features = a["test"].features
        assert features["label"] == ClassLabel(names=[str(d) for d in range(10)])
        assert features["foreground"] == features["background"] == Value("int64")


@pytest.mark.parametrize("variant", VARIANTS)
def test_train_and_validation_tie_appearance_to_the_label(large, variant):
    data = large[variant, True]
    for split in ("train", "validation"):
        labels = data[split]["label"]
        assert data[split]["foreground"] == labels
        expected = [-1] * len(labels) if variant == "colored" else labels
        assert data[split]["background"] == expected


@pytest.mark.parametrize("variant", VARIANTS)
def test_test_split_draws_appearance_independently_of_the_label(large, variant):
    test = large[variant, True]["test"]
    labels, fg, bg = (np.asarray(test[c]) for c in ("label", "foreground", "background"))
    assert np.mean(fg == labels) == pytest.approx(0.1, abs=0.06)  # 4 sigma at n = 400
    assert set(fg) == set(range(10))
    if variant == "colored":
        assert set(bg) == {-1}
    else:
        assert np.mean(bg == labels) == pytest.approx(0.1, abs=0.06)
        assert np.mean(bg == fg) == pytest.approx(0.1, abs=0.06)


@pytest.mark.parametrize("variant", VARIANTS)
def test_oracle_keeps_the_items_and_redraws_appearance(large, variant):
    biased, oracle = large[variant, True], large[variant, False]
    for split in biased:
        assert oracle[split]["item"] == biased[split]["item"]
        assert oracle[split]["label"] == biased[split]["label"]
        assert np.array_equal(stack(oracle[split], "mask"), stack(biased[split], "mask"))
    fg, labels = np.asarray(oracle["train"]["foreground"]), np.asarray(oracle["train"]["label"])
    assert np.mean(fg == labels) == pytest.approx(0.1, abs=0.06)
    # test is random either way, and every draw is shared: the same images
    assert np.array_equal(stack(oracle["test"]), stack(biased["test"]))


def test_items_train_and_validation_disjoint_test_from_the_test_split(digits, large):
    data = large["colored", True]
    assert not set(data["train"]["item"]) & set(data["validation"]["item"])
    assert len(set(data["train"]["item"])) == data["train"].num_rows  # no repeats while the pool lasts
    source_labels = np.asarray(digits["test"]["label"])
    assert list(source_labels[data["test"]["item"]]) == data["test"]["label"]


@pytest.mark.parametrize(
    "variant,binarize,expect_binary",
    [
        ("colored", None, False),  # the authors' defaults: intensity on colored,
        ("double_colored", None, True),  # the binary mask on double-colored (and wildlife)
        ("colored", True, True),
        ("double_colored", False, False),
    ],
)
def test_pixels_follow_the_composition_and_mask_is_the_thresholded_item(
    digits, variant, binarize, expect_binary
):
    """Without jitter or noise: x = alpha * palette colour + (1 - alpha) * background colour, alpha the item's
    intensity or its mask."""
    config = tiny_config(variant=variant, color_std=0.0, mask_threshold=0.3, binarize=binarize)
    data = build_cgn_variant(config, digits)
    for split, source in (("train", digits["train"]), ("test", digits["test"])):
        rows = data[split]
        alpha = alphas(source, rows["item"], 16)[..., None]
        mask = alpha[..., 0] > 0.3
        if expect_binary:
            alpha = mask[..., None].astype(np.float64)
        fg, bg = np.asarray(rows["foreground"]), np.asarray(rows["background"])
        if variant == "colored":
            expected = alpha * PALETTE[fg][:, None, None]
        else:
            front, back = PALETTE[(fg - 6) % 10], PALETTE[bg]
            expected = alpha * front[:, None, None] + (1 - alpha) * back[:, None, None]
        assert np.abs(stack(rows).astype(np.float64) - expected).max() <= 1
        masks = stack(rows, "mask")
        assert set(np.unique(masks)) == {0, 255}
        assert np.array_equal(masks == 255, mask)


@pytest.mark.parametrize("color_std,expected_std", [(0.05, 0.05), (None, 0.02**0.5)])
def test_colored_stroke_is_one_jittered_palette_colour_on_black(digits, color_std, expected_std):
    config = tiny_config(color_std=color_std, binarize=True, num_train=300, num_validation=0, num_test=0)
    train = build_cgn_variant(config, digits)["train"]
    images, masks = stack(train).astype(np.float64), stack(train, "mask") > 0
    deviations = []
    for image, mask, fg in zip(images, masks, train["foreground"], strict=True):
        assert image[~mask].max() == 0  # black background
        stroke = image[mask]
        assert np.ptp(stroke, axis=0).max() == 0  # one colour for the whole stroke
        deviation = (stroke[0] - PALETTE[fg]) / 255
        assert np.abs(deviation).max() <= 5 * expected_std + 1 / 255
        unclipped = (PALETTE[fg] > 40) & (PALETTE[fg] < 215)  # clipping at 0 / 255 shrinks the spread
        deviations.extend(deviation[unclipped])
    assert np.std(deviations) == pytest.approx(expected_std, rel=0.3)


def test_wildlife_textures_are_fixed_and_differ_between_classes():
    fg, bg = wildlife_textures(16)
    assert fg.shape == bg.shape == (10, 32, 32, 3)
    again_fg, again_bg = wildlife_textures(16)
    assert np.array_equal(fg, again_fg) and np.array_equal(bg, again_bg)
    bank = np.concatenate([fg, bg]).reshape(20, -1)
    distances = np.abs(bank[:, None] - bank[None]).mean(axis=-1)
    assert distances[~np.eye(20, dtype=bool)].min() > 0.03  # all 20 textures pairwise distinct
    assert fg.mean() > bg.mean() + 0.2  # bright items on dark backgrounds


def test_wildlife_images_are_crops_of_their_class_textures(digits):
    """Binary composition: stroke pixels are a crop of texture `foreground`, the rest of `background`."""
    fg_bank, bg_bank = wildlife_textures(16)
    windows = {
        name: np.lib.stride_tricks.sliding_window_view(np.round(bank * 255), (16, 16, 3), axis=(1, 2, 3))
        for name, bank in (("foreground", fg_bank), ("background", bg_bank))
    }  # (10, 17, 17, 1, 16, 16, 3): every 16-pixel crop of every texture
    for seed in (0, 1):
        data = build_cgn_variant(tiny_config(variant="wildlife", binarize=True, seed=seed), digits)
        for split in ("train", "test"):
            for row in data[split]:
                image = np.asarray(row["image"], np.float64)
                mask = np.asarray(row["mask"]) > 0
                for name, region in (("foreground", mask), ("background", ~mask)):
                    crops = windows[name][row[name], :16, :16, 0]
                    errors = np.abs(crops - image)[:, :, region].max(axis=(-1, -2))
                    assert errors.min() <= 1, (split, name)


def test_save_load_round_trip_recovers_config(digits, tmp_path):
    config = tiny_config(variant="double_colored", bias=False, noise_std=0.03, seed=4)
    data = build_cgn_variant(config, digits)
    data.save_to_disk(tmp_path / "cgn")
    loaded = load_from_disk(tmp_path / "cgn")
    for split in data:
        assert np.array_equal(stack(loaded[split]), stack(data[split]))
        assert np.array_equal(stack(loaded[split], "mask"), stack(data[split], "mask"))
        assert loaded[split]["background"] == data[split]["background"]
        assert cgn_variant_config_of(loaded[split]) == config
    with pytest.raises(ValueError, match="not made by build_cgn_variant"):
        cgn_variant_config_of(digits["train"])


def test_source_with_more_classes_than_colours_raises():
    names = [f"c{i}" for i in range(11)]
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=names)})
    split = Dataset.from_dict(
        {"image": [np.zeros((8, 8), np.uint8)] * 11, "label": list(range(11))}, features=features
    )
    with pytest.raises(ValueError, match="11 classes but CGN variants have 10"):
        build_cgn_variant(tiny_config(), DatasetDict(train=split, test=split))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"variant": "rainbow"}, "Unknown CGN variant 'rainbow'"),
        ({"image_size": 4}, "image_size must be >= 8"),
        ({"color_std": -0.1}, "color_std must be >= 0"),
        ({"noise_std": -0.1}, "noise_std must be >= 0"),
        ({"mask_threshold": 1.0}, r"mask_threshold must be in \[0, 1\)"),
        ({"num_test": -1}, "must be >= 0"),
        ({"seed": -1}, "seed must be >= 0"),
    ],
)
def test_invalid_configs_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**kwargs)
