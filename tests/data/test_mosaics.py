"""Co-occurrence mosaics (the PAT benchmark): deterministic, biased in train, unbiased in test."""

import numpy as np
import pytest
from datasets import Dataset, load_from_disk

from hf_counterfactual.data import (
    CooccurrenceMosaicConfig,
    build_cooccurrence_mosaics,
    load_digits_dataset,
    mosaic_config_of,
)

PAIRS = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset()


def tiny_config(**kwargs) -> CooccurrenceMosaicConfig:
    defaults = dict(canvas_size=32, biased_pairs=PAIRS, num_train=12, num_validation=4, num_test=8, seed=0)
    return CooccurrenceMosaicConfig(**{**defaults, **kwargs})


def pixels(split: Dataset) -> list[bytes]:
    return [np.asarray(image).tobytes() for image in split["image"]]


def companion_rate(split: Dataset, pairs) -> float:
    """P(companion present | target present), pooled over the biased pairs."""
    with_target = with_both = 0
    for labels in split["labels"]:
        for target, companion in pairs:
            if target in labels:
                with_target += 1
                with_both += companion in labels
    return with_both / with_target


def base_rate(config: CooccurrenceMosaicConfig, num_classes: int = 10) -> float:
    """P(companion drawn at random | target drawn): n items ~ U{min..max}, drawn without replacement."""
    counts = range(config.min_items, config.max_items + 1)
    weights = {n: n / num_classes for n in counts}  # P(target among n items), n uniform
    return sum(w * (n - 1) / (num_classes - 1) for n, w in weights.items()) / sum(weights.values())


def test_same_seed_same_data_other_seed_other_data(digits):
    a = build_cooccurrence_mosaics(tiny_config(seed=3), digits)
    b = build_cooccurrence_mosaics(tiny_config(seed=3), digits)
    c = build_cooccurrence_mosaics(tiny_config(seed=4), digits)
    assert list(a) == ["train", "validation", "test"]
    assert [a[s].num_rows for s in a] == [12, 4, 8]
    for split in a:
        assert pixels(a[split]) == pixels(b[split])
        assert a[split]["labels"] == b[split]["labels"] and a[split]["boxes"] == b[split]["boxes"]
        assert pixels(a[split]) != pixels(c[split])
    image = a["train"][0]["image"]
    assert image.size == (32, 32) and image.mode == "RGB"


def test_rows_are_consistent(digits):
    config = tiny_config(min_items=1, max_items=3)
    mosaics = build_cooccurrence_mosaics(config, digits)
    assert mosaics["train"].features["labels"].feature.names == [str(d) for d in range(10)]
    for split in mosaics.values():
        for row in split:
            assert row["labels"] == sorted(set(row["item_labels"]))
            assert len(row["boxes"]) == len(row["hard"]) == len(row["item_labels"])
            for x0, y0, x1, y1 in row["boxes"]:
                assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32
            assert len(set(row["item_labels"])) == len(row["item_labels"]) <= 2 * config.max_items
    # test canvases never get added companions: at most max_items items each
    assert max(len(items) for items in mosaics["test"]["item_labels"]) <= config.max_items


def test_strength_one_always_adds_the_companion_in_train_and_never_in_test(digits):
    config = tiny_config(strength=1.0, num_train=400, num_validation=40, num_test=400, canvas_size=16)
    mosaics = build_cooccurrence_mosaics(config, digits)
    assert base_rate(config) == pytest.approx(2 / 27)  # 1-2 items of 10 classes: 2/3 * 1/9
    assert companion_rate(mosaics["train"], PAIRS) == 1.0
    assert companion_rate(mosaics["validation"], PAIRS) == 1.0
    # test: no companion is added, so it shows up only by chance
    assert companion_rate(mosaics["test"], PAIRS) == pytest.approx(base_rate(config), abs=0.05)


@pytest.mark.parametrize("strength", [0.0, 0.6])
def test_train_companion_rate_given_target_follows_strength(digits, strength):
    """P(companion | target) = base + (1 - base) * strength: added with `strength` when not drawn anyway."""
    config = tiny_config(strength=strength, num_train=400, num_validation=4, num_test=4, canvas_size=16)
    rate = companion_rate(build_cooccurrence_mosaics(config, digits)["train"], PAIRS)
    base = base_rate(config)
    assert rate == pytest.approx(base + (1 - base) * strength, abs=0.06)


def test_save_load_round_trip_keeps_data_and_config(digits, tmp_path):
    config = tiny_config(strength=0.7, hard_fraction=0.25, seed=5)
    mosaics = build_cooccurrence_mosaics(config, digits)
    mosaics.save_to_disk(tmp_path / "mosaics")
    loaded = load_from_disk(tmp_path / "mosaics")
    for split in mosaics:
        assert pixels(loaded[split]) == pixels(mosaics[split])
        assert loaded[split]["labels"] == mosaics[split]["labels"]
        assert loaded[split]["hard"] == mosaics[split]["hard"]
        assert mosaic_config_of(loaded[split]) == config
    assert mosaic_config_of(mosaics["test"]) == config
    with pytest.raises(ValueError, match="not made by build_cooccurrence_mosaics"):
        mosaic_config_of(digits["train"])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"min_items": 0}, "need 1 <= min_items <= max_items"),
        ({"min_items": 3, "max_items": 2}, "need 1 <= min_items <= max_items"),
        ({"biased_pairs": [[1, 1]]}, "two different classes"),
        ({"biased_pairs": [[0, 1, 2]]}, "two different classes"),
        ({"biased_pairs": [[0, 1], [1, 2]]}, "only one biased pair"),
        ({"strength": 1.5}, r"strength and hard_fraction must be in \[0, 1\]"),
        ({"item_scale": [0.0, 0.5]}, "item_scale must be"),
    ],
)
def test_invalid_configs_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**kwargs)


@pytest.mark.parametrize("pairs", [[[0, 10]], [[-1, 3]]])
def test_pair_outside_the_source_classes_raises(digits, pairs):
    with pytest.raises(ValueError, match=r"name classes outside 0..9"):
        build_cooccurrence_mosaics(tiny_config(biased_pairs=pairs), digits)
