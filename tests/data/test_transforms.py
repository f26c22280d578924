import io
import logging
import pathlib

import numpy as np
import pytest
import torch
from datasets import Dataset, Features, Image, List, Value
from PIL import Image as PILImage
from PIL import ImageFile

from hf_counterfactual.data import transforms
from hf_counterfactual.data.transforms import (
    ImageClassificationCollator,
    MultiLabelCollator,
    MultiLabelZoomCrop,
    decode_image,
)


def png_bytes(image: PILImage.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def solid(mode: str, value, size=(6, 10)) -> PILImage.Image:
    return PILImage.new(mode, size, value)


def rgb_of(batch: dict, i: int = 0) -> np.ndarray:
    """Undo the default (0.5, 0.5) normalisation at the top-left pixel: 0..255 per channel."""
    return np.round(((batch["pixel_values"][i, :, 0, 0] * 0.5 + 0.5) * 255).numpy())


def test_shapes_normalisation_and_multi_hot():
    collate = MultiLabelCollator(num_labels=5, image_size=8)
    batch = collate(
        [
            {"image": solid("RGB", (255, 0, 51)), "labels": [0, 3]},
            {"image": solid("RGB", (0, 0, 0), size=(30, 20)), "labels": []},
        ]
    )
    assert batch["pixel_values"].shape == (2, 3, 8, 8) and batch["pixel_values"].dtype == torch.float32
    # (x / 255 - 0.5) / 0.5 per channel, constant over the resized image.
    expected = torch.tensor([1.0, -1.0, 51 / 255 * 2 - 1]).view(3, 1, 1).expand(3, 8, 8)
    torch.testing.assert_close(batch["pixel_values"][0], expected)
    torch.testing.assert_close(batch["pixel_values"][1], torch.full((3, 8, 8), -1.0))
    assert batch["labels"].dtype == torch.float32
    torch.testing.assert_close(batch["labels"], torch.tensor([[1.0, 0, 0, 1, 0], [0, 0, 0, 0, 0]]))
    assert collate.skipped == 0


def test_custom_mean_std_and_columns():
    collate = MultiLabelCollator(
        num_labels=2, image_size=4, image_mean=(0.0, 0.5, 1.0), image_std=(1.0, 0.25, 2.0),
        image_column="img", labels_column="tags",
    )  # fmt: skip
    batch = collate([{"img": solid("RGB", (255, 255, 0)), "tags": np.array([1])}])
    torch.testing.assert_close(batch["pixel_values"][0, :, 0, 0], torch.tensor([1.0, 2.0, -0.5]))
    torch.testing.assert_close(batch["labels"], torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="need 3 values"):
        MultiLabelCollator(num_labels=2, image_size=4, image_mean=(0.5,))


def test_every_image_form_gives_the_same_pixels(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = PILImage.fromarray(array)
    path = tmp_path / "x.png"
    image.save(path)
    forms = [image, array, {"bytes": png_bytes(image), "path": None}, {"path": str(path), "bytes": None},
             str(path), pathlib.Path(path)]  # fmt: skip
    collate = MultiLabelCollator(num_labels=1, image_size=7)
    batches = [collate([{"image": form, "labels": [0]}])["pixel_values"] for form in forms]
    for batch in batches[1:]:
        torch.testing.assert_close(batch, batches[0])
    gray = np.arange(35, dtype=np.uint8).reshape(5, 7)
    out = collate([{"image": gray, "labels": [0]}])["pixel_values"][0]
    torch.testing.assert_close(out[0], out[2])  # (H, W) arrays are grayscale, copied to 3 channels


def test_decode_image_rejects_bad_arrays_and_types():
    with pytest.raises(ValueError, match="uint8 array"):
        decode_image(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="uint8 array"):
        decode_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(TypeError, match="Cannot read an image from int"):
        decode_image(3)
    with pytest.raises(ValueError, match="neither 'bytes' nor 'path'"):
        decode_image({"bytes": None, "path": None})


def test_truncated_loading_stays_off():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (solid("L", 77), [77, 77, 77]),
        (solid("LA", (200, 128)), [100, 100, 100]),  # alpha composited onto black
        (solid("RGBA", (200, 100, 50, 128)), [100, 50, 25]),
        (solid("RGBA", (200, 100, 50, 0)), [0, 0, 0]),
        (solid("CMYK", (0, 0, 0, 0)), [255, 255, 255]),
        (solid("CMYK", (255, 0, 0, 0)), [0, 255, 255]),
        (solid("I;16", 65535), [255, 255, 255]),  # 16-bit scaled, not clipped
        (solid("I;16", 32896), [128, 128, 128]),
        (solid("1", 1), [255, 255, 255]),
    ],
    ids=["L", "LA", "RGBA", "RGBA-transparent", "CMYK-white", "CMYK-cyan", "I16-max", "I16-mid", "1"],
)
def test_modes_converted_to_rgb(image, expected):
    batch = MultiLabelCollator(num_labels=1, image_size=4)([{"image": image, "labels": [0]}])
    np.testing.assert_allclose(rgb_of(batch), expected, atol=1)


def test_palette_with_transparency_from_png():
    palette = PILImage.new("P", (4, 4), 1)
    palette.putpalette([255, 255, 255, 10, 200, 30] + [0] * 762)
    palette.info["transparency"] = 1  # palette entry 1 fully transparent
    reloaded = PILImage.open(io.BytesIO(png_bytes(palette)))
    batch = MultiLabelCollator(num_labels=1, image_size=4)([{"image": reloaded, "labels": [0]}])
    np.testing.assert_allclose(rgb_of(batch), [0, 0, 0])


def test_convert_rgb_false_rejects_non_rgb():
    collate = MultiLabelCollator(num_labels=1, image_size=4, convert_rgb=False)
    assert collate([{"image": solid("RGB", (1, 2, 3)), "labels": [0]}])["pixel_values"].shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match="'L' image, not RGB; set convert_rgb=True"):
        collate([{"image": solid("L", 5), "labels": [0]}])


def test_bad_files_skipped_and_counted(tmp_path, caplog):
    good = tmp_path / "good.png"
    solid("RGB", (10, 20, 30)).save(good)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    data = png_bytes(
        PILImage.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    )
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 2])
    collate = MultiLabelCollator(num_labels=3, image_size=4)
    examples = [
        {"image": {"path": str(empty), "bytes": None}, "labels": [0]},
        {"image": str(good), "labels": [1]},
        {"image": {"path": str(truncated), "bytes": None}, "labels": [2]},
        {"image": str(tmp_path / "missing.png"), "labels": [2]},
        {"image": {"path": None, "bytes": data[:100]}, "labels": [2]},
    ]
    with caplog.at_level(logging.WARNING, logger=transforms.__name__):
        batch = collate(examples)
    assert batch["pixel_values"].shape == (1, 3, 4, 4)
    torch.testing.assert_close(batch["labels"], torch.tensor([[0.0, 1.0, 0.0]]))
    np.testing.assert_allclose(rgb_of(batch), [10, 20, 30])
    assert collate.skipped == 4
    assert str(empty) in caplog.text and str(truncated) in caplog.text and "missing.png" in caplog.text
    assert "sample 4 of the batch" in caplog.text and "truncated" in caplog.text
    collate(examples[:2])
    assert collate.skipped == 5  # counts accumulate over batches


def test_all_bad_batch_raises(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    collate = MultiLabelCollator(num_labels=2, image_size=4)
    with pytest.raises(ValueError, match="None of the 2 images in this batch could be decoded"):
        collate([{"image": str(empty), "labels": [0]}, {"image": str(tmp_path / "nope.jpg"), "labels": [1]}])
    assert collate.skipped == 2
    with pytest.raises(ValueError, match="empty batch"):
        collate([])


@pytest.mark.parametrize("labels", [[10], [-1], [1.5]])
def test_out_of_range_label(labels):
    collate = MultiLabelCollator(num_labels=10, image_size=4)
    with pytest.raises(ValueError, match=rf"label {labels[0]}; labels must be class ids in \[0, 10\)"):
        collate([{"image": solid("RGB", 0), "labels": labels}])
    with pytest.raises(ValueError, match="must be a list of class ids"):
        collate([{"image": solid("RGB", 0), "labels": 3}])


def test_collates_undecoded_dataset_rows(tmp_path):
    """Rows from a `datasets.Dataset` with Image(decode=False), as the COCO / VOC loaders build."""
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"{i}.png"))
        solid("RGB", (i * 100, 0, 0), size=(9, 9)).save(paths[-1])
    features = Features(
        {"image": Image(decode=False), "image_id": Value("int64"), "labels": List(Value("int64"))}
    )
    ds = Dataset.from_dict(
        {
            "image": [{"path": p, "bytes": None} for p in paths],
            "image_id": [0, 1, 2],
            "labels": [[0], [1, 2], []],
        },
        features=features,
    )
    batch = MultiLabelCollator(num_labels=3, image_size=5)([ds[i] for i in range(3)])
    assert batch["pixel_values"].shape == (3, 3, 5, 5)
    np.testing.assert_allclose(rgb_of(batch, 2), [200, 0, 0])
    torch.testing.assert_close(batch["labels"], torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 0]]))


def test_single_label_collator_keeps_pixels_in_unit_range_and_skips_bad_rows(tmp_path):
    collate = ImageClassificationCollator(num_labels=4, image_size=8)
    examples = [
        {"image": solid("RGB", (255, 0, 51)), "label": 3},
        {"image": str(tmp_path / "missing.png"), "label": 1},
        {"image": solid("L", 0, size=(20, 30)), "label": 0},
    ]
    batch = collate(examples)
    assert batch["pixel_values"].shape == (2, 3, 8, 8)
    torch.testing.assert_close(batch["pixel_values"][0, :, 0, 0], torch.tensor([1.0, 0.0, 51 / 255]))
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [3, 0]
    assert collate.skipped == 1
    with pytest.raises(ValueError, match=r"label 4; a label must be a class id in \[0, 4\)"):
        collate([{"image": solid("RGB", (0, 0, 0)), "label": 4}])


def test_center_crop_keeps_the_middle_square_and_matches_the_saved_image_processor():
    """A 24 x 8 image of three 8 px squares (red, green, blue): the short side is already 8 px, so the centre
    crop is the green square, where squashing mixes all three; the saved CLIP image processor agrees."""
    from hf_counterfactual.training.classification import image_processor_for

    pixels = np.zeros((8, 24, 3), dtype=np.uint8)
    for i in range(3):
        pixels[:, 8 * i : 8 * i + 8, i] = 255
    image = PILImage.fromarray(pixels)
    crop = ImageClassificationCollator(num_labels=1, image_size=8, center_crop=True)
    batch = crop([{"image": image, "label": 0}])
    torch.testing.assert_close(
        batch["pixel_values"][0], torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1).expand(3, 8, 8)
    )
    squash = ImageClassificationCollator(num_labels=1, image_size=8)([{"image": image, "label": 0}])
    assert squash["pixel_values"][0, 0, 0, 0] > 0.9 and squash["pixel_values"][0, 2, 0, -1] > 0.9
    rng = np.random.default_rng(0)
    for height, width in [(20, 37), (53, 20), (30, 9)]:
        image = PILImage.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        collate = ImageClassificationCollator(1, 16, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), center_crop=True)
        processed = image_processor_for(collate)(image, return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(collate([{"image": image, "label": 0}])["pixel_values"], processed)


def _two_item_row() -> dict:
    """64 px canvas: a red item (class 3) in box [0, 0, 16, 16], a green one (class 5) in [40, 40, 64, 64]."""
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[0:16, 0:16, 0] = 255
    pixels[40:64, 40:64, 1] = 255
    boxes = [[0, 0, 16, 16], [40, 40, 64, 64]]
    return {"image": PILImage.fromarray(pixels), "labels": [3, 5], "item_labels": [3, 5], "boxes": boxes}


def test_zoom_crop_keeps_the_labels_of_items_at_least_half_inside_the_crop():
    torch.manual_seed(0)
    zoom = MultiLabelZoomCrop(probability=1.0, scale=(0.5, 0.5))
    checked = 0
    for _ in range(60):
        out = zoom(_two_item_row())
        pixels = np.asarray(out["image"])
        assert out["image"].size == (64, 64)
        # a 32 px crop zoomed 2x: an item's visible share of its box, measured on the output pixels
        for label, channel, area in ((3, 0, 16 * 16), (5, 1, 24 * 24)):
            visible = (pixels[..., channel] > 127).sum() / (area * 4)
            if abs(visible - 0.5) > 0.1:  # away from the boundary that bilinear edges blur
                assert (label in out["labels"]) == (visible >= 0.5), (label, visible, out)
                checked += 1
        assert out["labels"] == sorted(set(out["item_labels"])) and len(out["boxes"]) == len(
            out["item_labels"]
        )
        for x0, y0, x1, y1 in out["boxes"]:  # boxes follow into the zoomed frame
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
    assert checked > 60


def test_zoom_crop_at_full_scale_or_probability_zero_changes_nothing():
    row = _two_item_row()
    assert MultiLabelZoomCrop(probability=0.0)(row) is row
    out = MultiLabelZoomCrop(probability=1.0, scale=(1.0, 1.0))(row)
    assert np.array_equal(np.asarray(out["image"]), np.asarray(row["image"]))
    assert out["labels"] == [3, 5] and out["boxes"] == row["boxes"]


def test_collator_applies_the_augmentation_and_zoom_crop_errors_name_the_problem():
    torch.manual_seed(1)
    collator = MultiLabelCollator(num_labels=10, image_size=64, augment=MultiLabelZoomCrop(1.0, (0.5, 0.5)))
    batch = collator([_two_item_row() for _ in range(32)])
    # a 32 px crop holds at most one of the two items: never both labels, sometimes neither
    assert batch["labels"][:, [3, 5]].sum(dim=1).max() <= 1
    assert batch["labels"].sum() < 32
    with pytest.raises(ValueError, match="boxes"):
        MultiLabelZoomCrop()({"image": _two_item_row()["image"], "labels": [3]})
    with pytest.raises(ValueError, match="probability"):
        MultiLabelZoomCrop(probability=1.5)
    with pytest.raises(ValueError, match="scale"):
        MultiLabelZoomCrop(scale=(0.0, 1.0))
