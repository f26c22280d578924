import gzip
import json
import logging
import os
import struct

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image

from hf_counterfactual.data import sources
from hf_counterfactual.data.sources import (
    FASHION_MNIST_HUB_ID,
    FASHION_MNIST_LABELS,
    VOC_CLASSES,
    DataSourceNotFoundError,
    load_coco_multilabel,
    load_digits_dataset,
    load_fashion_mnist,
    load_item_source,
    load_voc_multilabel,
    read_idx,
)

FASHION_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def write_idx(path, array: np.ndarray) -> None:
    """Write a uint8 IDX file by hand (magic 00 00 08 ndim, big-endian sizes, raw bytes)."""
    data = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wb") as f:
        f.write(data)


def write_fashion_folder(folder, n_train=5, n_test=3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Tiny Fashion-MNIST folder: train files gzipped, test files raw (both forms must be read)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n, ext in (("train", n_train, ".gz"), ("test", n_test, "")):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(folder / (FASHION_NAMES[split][0] + ext), images)
        write_idx(folder / (FASHION_NAMES[split][1] + ext), labels)
        arrays[split] = (images, labels)
    return arrays


@pytest.fixture
def offline_empty_debian(tmp_path, monkeypatch):
    """No Hub (offline) and an empty Debian folder: nothing can provide Fashion-MNIST."""
    empty = tmp_path / "no-debian"
    empty.mkdir()
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST_DIR", str(empty))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return empty


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_read_idx_round_trip(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, array)
    out = read_idx(str(tmp_path / name))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, array)


def test_read_idx_bad_magic_names_file(tmp_path):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">I", 2) + b"\x01\x02")  # 0x0d = float, not ubyte
    with pytest.raises(ValueError, match=r"bad-idx1-ubyte is not an IDX file.*0x00000d01"):
        read_idx(str(path))


def test_read_idx_truncated_and_not_gzip(tmp_path):
    path = tmp_path / "short-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x01\x02")
    with pytest.raises(ValueError, match="short-idx1-ubyte is truncated"):
        read_idx(str(path))
    fake_gz = tmp_path / "fake-idx1-ubyte.gz"
    fake_gz.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="fake-idx1-ubyte.gz"):
        read_idx(str(fake_gz))


def test_load_fashion_mnist_from_path(tmp_path):
    arrays = write_fashion_folder(tmp_path)
    ds = load_fashion_mnist(str(tmp_path))
    assert set(ds) == {"train", "test"}
    assert ds["train"].num_rows == 5 and ds["test"].num_rows == 3
    assert ds["train"].features["label"].names == list(FASHION_MNIST_LABELS)
    assert isinstance(ds["train"].features["image"], Image)
    for split, (images, labels) in arrays.items():
        for i in range(len(labels)):
            row = ds[split][i]
            assert row["image"].mode == "L" and row["image"].size == (28, 28)
            np.testing.assert_array_equal(np.asarray(row["image"]), images[i])
            assert row["label"] == labels[i]


def test_user_path_fails_at_once_without_fallback(tmp_path, monkeypatch):
    good = tmp_path / "good"
    good.mkdir()
    write_fashion_folder(good)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST_DIR", str(good))  # a fallback that would work
    (tmp_path / "incomplete").mkdir()
    with pytest.raises(DataSourceNotFoundError, match="incomplete has no train-images-idx3-ubyte"):
        load_fashion_mnist(str(tmp_path / "incomplete"))


def test_not_found_lists_every_location(offline_empty_debian):
    with pytest.raises(DataSourceNotFoundError) as info:
        load_fashion_mnist()
    message = str(info.value)
    assert f"Hub {FASHION_MNIST_HUB_ID}: skipped, HF_HUB_OFFLINE" in message
    assert f"{offline_empty_debian}: {offline_empty_debian} has no train-images-idx3-ubyte" in message
    for hint in ("apt-get install dataset-fashion-mnist", "path=", "unset HF_HUB_OFFLINE"):
        assert hint in message


def test_hub_failure_reason_is_listed(offline_empty_debian, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)

    def no_network(repo_id):
        raise ConnectionError(f"cannot reach the Hub for {repo_id}\nlong traceback text")

    monkeypatch.setattr(sources, "load_dataset", no_network)
    with pytest.raises(DataSourceNotFoundError, match=r"ConnectionError: cannot reach the Hub for zalando"):
        load_fashion_mnist()


def test_hub_copy_gets_canonical_label_names(offline_empty_debian, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    hub_names = ["T - shirt / top", *FASHION_MNIST_LABELS[1:]]
    features = Features({"image": Image(), "label": ClassLabel(names=hub_names)})
    split = Dataset.from_dict({"image": [np.zeros((28, 28), np.uint8)], "label": [0]}, features=features)
    monkeypatch.setattr(sources, "load_dataset", lambda repo_id: DatasetDict(train=split, test=split))
    ds = load_fashion_mnist()
    assert ds["train"].features["label"].names == list(FASHION_MNIST_LABELS)
    assert ds["test"][0]["label"] == 0


def test_debian_fallback_on_real_files(tmp_path, monkeypatch):
    """The Debian folder is used offline; the real test files stand in for both splits to stay fast."""
    test_images = os.path.join(sources.DEBIAN_FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz")
    test_labels = os.path.join(sources.DEBIAN_FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz")
    if not (os.path.isfile(test_images) and os.path.isfile(test_labels)):
        pytest.skip("dataset-fashion-mnist is not installed")
    for split in ("train", "test"):
        os.symlink(test_images, tmp_path / (FASHION_NAMES[split][0] + ".gz"))
        os.symlink(test_labels, tmp_path / (FASHION_NAMES[split][1] + ".gz"))
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ds = load_fashion_mnist()
    assert ds["test"].num_rows == 10_000
    np.testing.assert_array_equal(np.bincount(ds["test"]["label"]), [1000] * 10)
    np.testing.assert_array_equal(np.asarray(ds["test"][0]["image"]), read_idx(test_images)[0])


def test_digits_split_sizes_stratified_and_deterministic():
    ds = load_digits_dataset()
    assert ds["train"].num_rows == 1437 and ds["test"].num_rows == 360
    assert ds["test"].features["label"].names == [str(d) for d in range(10)]
    image = ds["train"][0]["image"]
    assert image.mode == "L" and image.size == (8, 8)
    assert max(np.asarray(ds["train"][i]["image"]).max() for i in range(20)) == 255
    counts = np.bincount(ds["test"]["label"], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # ~180 per class * 0.2
    again = load_digits_dataset()
    assert again["test"]["label"] == ds["test"]["label"]
    np.testing.assert_array_equal(np.asarray(again["test"][5]["image"]), np.asarray(ds["test"][5]["image"]))
    assert load_digits_dataset(seed=1)["test"]["label"] != ds["test"]["label"]
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_dataset(test_fraction=1.0)


def test_item_source_names(tmp_path, offline_empty_debian, caplog):
    with pytest.raises(ValueError, match="valid names: auto, fashion_mnist, digits"):
        load_item_source("mnist")
    with pytest.raises(ValueError, match="path= only applies to Fashion-MNIST"):
        load_item_source("digits", path=str(tmp_path))
    write_fashion_folder(tmp_path)
    assert load_item_source("fashion_mnist", path=str(tmp_path))["train"].num_rows == 5
    with pytest.raises(DataSourceNotFoundError):
        load_item_source("fashion_mnist")
    with caplog.at_level(logging.WARNING, logger=sources.__name__):
        ds = load_item_source("auto")
    assert ds["train"].features["label"].names[0] == "0"
    assert "Fashion-MNIST is unavailable" in caplog.text and "apt-get install" in caplog.text


def write_png(path, value: int) -> None:
    from PIL import Image as PILImage

    PILImage.fromarray(np.full((4, 4, 3), value, np.uint8)).save(path)


def test_coco_multilabel(tmp_path):
    images_dir = tmp_path / "train2014"
    images_dir.mkdir()
    for i in range(3):
        write_png(images_dir / f"img{i}.png", 50 * i)
    coco = {
        "images": [{"id": 10 + i, "file_name": f"img{i}.png"} for i in range(3)],
        # Category ids are not contiguous and not listed in order, as in the real file.
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 18},
            {"id": 2, "image_id": 10, "category_id": 1},
            {"id": 3, "image_id": 10, "category_id": 1},
            {"id": 4, "image_id": 11, "category_id": 3},
        ],
    }
    annotation_file = tmp_path / "instances_train2014.json"
    annotation_file.write_text(json.dumps(coco))
    ds = load_coco_multilabel(str(annotation_file), str(images_dir))
    assert ds.features["labels"].feature.names == ["person", "car", "dog"]
    assert ds["image_id"] == [10, 11, 12]
    assert ds["labels"] == [[0, 2], [1], []]  # img2 has no annotation: kept, no labels
    assert ds[0]["image"] == {"path": str(images_dir / "img0.png"), "bytes": None}


def test_coco_errors(tmp_path):
    with pytest.raises(
        DataSourceNotFoundError, match="annotations_trainval2014.zip from https://cocodataset.org"
    ):
        load_coco_multilabel(str(tmp_path / "missing.json"), str(tmp_path))
    captions = tmp_path / "captions_train2014.json"
    captions.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DataSourceNotFoundError, match="image folder .*nowhere not found"):
        load_coco_multilabel(str(captions), str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"lacks \['categories'\]; pass an instances_\*.json"):
        load_coco_multilabel(str(captions), str(tmp_path))


def voc_xml(filename: str, objects: list[tuple[str, int]]) -> str:
    body = "".join(f"<object><name>{n}</name><difficult>{d}</difficult></object>" for n, d in objects)
    return f"<annotation><filename>{filename}</filename>{body}</annotation>"


def make_voc(root) -> str:
    base = root / "VOCdevkit" / "VOC2007"
    (base / "Annotations").mkdir(parents=True)
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "JPEGImages").mkdir()
    annotations = {
        "000005": [("chair", 0), ("chair", 1), ("diningtable", 0)],
        "000007": [("car", 0)],
        "000009": [("person", 1), ("horse", 0)],  # the difficult person still labels the image
    }
    for image_id, objects in annotations.items():
        (base / "Annotations" / f"{image_id}.xml").write_text(voc_xml(f"{image_id}.jpg", objects))
    (base / "ImageSets" / "Main" / "trainval.txt").write_text("000005\n000009\n")
    (base / "ImageSets" / "Main" / "test.txt").write_text("000007\n")
    return str(base)


def test_voc_multilabel(tmp_path):
    base = make_voc(tmp_path)
    ds = load_voc_multilabel(str(tmp_path))
    assert ds.features["labels"].feature.names == list(VOC_CLASSES)
    assert ds["image_id"] == ["000005", "000009"]
    idx = VOC_CLASSES.index
    assert ds["labels"] == [sorted([idx("chair"), idx("diningtable")]), sorted([idx("person"), idx("horse")])]
    assert ds[0]["image"]["path"] == os.path.join(base, "JPEGImages", "000005.jpg")
    same = load_voc_multilabel(base, split="test")  # root may also be the VOC2007 folder itself
    assert same["labels"] == [[idx("car")]]


def test_voc_errors(tmp_path):
    with pytest.raises(DataSourceNotFoundError, match="No VOC2007 data.*host.robots.ox.ac.uk"):
        load_voc_multilabel(str(tmp_path))
    make_voc(tmp_path)
    with pytest.raises(DataSourceNotFoundError, match="ImageSets/Main/val.txt not found"):
        load_voc_multilabel(str(tmp_path), split="val")
