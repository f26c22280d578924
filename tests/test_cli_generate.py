"""`hf-counterfactual generate`: CGN samples PNG, class grid and counterfactual dataset from a saved model."""

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from hf_counterfactual.cli import main
from hf_counterfactual.models.cgn import (
    CGNConfig,
    CGNMaskEncoder,
    CounterfactualGenerativeNetwork,
    generate_counterfactual_dataset,
)
from hf_counterfactual.training.cgn_trainer import CgnCollator


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cgn")
    CounterfactualGenerativeNetwork(
        CGNConfig(num_classes=8, image_size=8, latent_dim=8, ngf=4)
    ).save_pretrained(path)
    return str(path)


def test_writes_samples_png(model_dir, tmp_path):
    out = tmp_path / "x.png"
    main(
        ["generate", "--model", model_dir, "--shape", "3", "--texture", "7", "--background", "1"]
        + ["-n", "16", "--seed", "0", "--out", str(out)]
    )
    with Image.open(out) as image:
        assert image.size == (4 * 10 + 2, 4 * 10 + 2)  # 4 x 4 cells of 8 px, 2 px padding


def test_writes_class_grid_and_dataset(model_dir, tmp_path):
    out, data_dir = tmp_path / "grid.png", tmp_path / "cf"
    main(
        ["generate", "--model", model_dir, "--grid", "--out", str(out)]
        + ["--dataset-out", str(data_dir), "--labels-from", "3", "--per-image", "2"]
    )
    with Image.open(out) as image:
        assert image.size == (40 + 100 * 8, 30 + 100 * 8)
    data = datasets.load_from_disk(str(data_dir))
    assert len(data) == 6 and data["shape"] == [0, 0, 1, 1, 2, 2]


def test_pools_datasets_of_several_models(model_dir, tmp_path):
    torch.manual_seed(1)
    other = tmp_path / "other"
    CounterfactualGenerativeNetwork(
        CGNConfig(num_classes=8, image_size=8, latent_dim=8, ngf=4)
    ).save_pretrained(other)
    data_dir = tmp_path / "cf"
    main(
        ["generate", "--model", model_dir, "--out", str(tmp_path / "x.png"), "--dataset-out", str(data_dir)]
        + ["--labels-from", "3", "--per-image", "2", "--pool-with", str(other)]
    )
    data = datasets.load_from_disk(str(data_dir))
    assert data["generator"] == [0, 1] * 3 and data["shape"] == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="--pool-with .* needs --dataset-out"):
        main(["generate", "--model", model_dir, "--out", str(tmp_path / "y.png"), "--pool-with", str(other)])


def test_writes_mechanism_grid(model_dir, tmp_path):
    out = tmp_path / "mechanisms.png"
    main(["generate", "--model", model_dir, "--mechanisms", "--out", str(out)])
    with Image.open(out) as image:  # 8 classes x (2 samples x 4 cells) of 8 px, 2 px padding
        assert image.size == (8 * 10 + 2, 8 * 10 + 2)
    with pytest.raises(SystemExit):  # one figure per call
        main(["generate", "--model", model_dir, "--mechanisms", "--grid", "--out", str(out)])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shape", "8"], "--shape"),
        (["--texture", "-1"], "--texture"),
        (["--background", "12"], "--background"),
        (["-n", "0"], "--num-images"),
    ],
)
def test_rejects_bad_arguments(model_dir, tmp_path, args, message):
    with pytest.raises(ValueError, match=message):
        main(["generate", "--model", model_dir, "--out", str(tmp_path / "x.png"), *args])
    assert not (tmp_path / "x.png").exists()


def _images(n: int, size: int = 8) -> datasets.DatasetDict:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=8)})
    rows = {"image": images, "label": [3, 5, 0, 7, 1][:n]}
    return datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows, features=features)})


def test_images_get_counterfactuals_that_keep_their_shapes(tmp_path):
    torch.manual_seed(0)
    config = CGNConfig(num_classes=8, image_size=8, latent_dim=8, ngf=4, encoder_channels=4)
    model_dir = tmp_path / "cgn"
    CounterfactualGenerativeNetwork(config).save_pretrained(model_dir)
    CGNMaskEncoder(config).save_pretrained(model_dir / "mask_encoder")
    images = _images(4)
    images.save_to_disk(tmp_path / "images")
    model = CounterfactualGenerativeNetwork.from_pretrained(model_dir)
    encoder = CGNMaskEncoder.from_pretrained(model_dir / "mask_encoder")
    pixels = CgnCollator(8)(list(images["train"]))["pixel_values"]
    with torch.no_grad():  # an untrained encoder's masks sit near one value: cut them at their median
        threshold = round(encoder(pixels).mask.median().item(), 6)
    data_dir = tmp_path / "cf"
    args = ["--model", str(model_dir), "--out", str(tmp_path / "x.png"), "--dataset-out", str(data_dir)]
    args += ["--images", str(tmp_path / "images"), "--per-image", "2", "--seed", "3"]
    main(["generate", *args, "--masks", "encoder", "--mask-threshold", str(threshold)])
    data = datasets.load_from_disk(str(data_dir))
    assert data["shape"] == [3, 3, 5, 5, 0, 0, 7, 7]  # the images' labels, per_image rows each

    def images_of(dataset):
        return [np.asarray(image).tolist() for image in dataset["image"]]

    # the same rows as the Python API with the images' pixels, the folder's encoder and the threshold
    kwargs = dict(seed=3, pixel_values=pixels, mask_encoders=encoder)
    expected = generate_counterfactual_dataset(model, [3, 5, 0, 7], 2, mask_threshold=threshold, **kwargs)
    assert images_of(data) == images_of(expected)
    assert data["texture"] == expected["texture"] and data["background"] == expected["background"]
    soft = generate_counterfactual_dataset(model, [3, 5, 0, 7], 2, mask_threshold=None, **kwargs)
    assert images_of(data) != images_of(soft)  # the cut took effect


def test_images_get_the_colour_masks_of_their_class_by_default(tmp_path):
    """Without a mask encoder in the CGN folder: --masks color reads the masks off the images themselves."""
    from hf_counterfactual.models.cgn import color_item_masks

    torch.manual_seed(0)
    config = CGNConfig(num_classes=8, image_size=8, latent_dim=8, ngf=4)
    model_dir = tmp_path / "cgn"
    CounterfactualGenerativeNetwork(config).save_pretrained(model_dir)
    images = _images(4)
    images.save_to_disk(tmp_path / "images")
    data_dir = tmp_path / "cf"
    args = ["--model", str(model_dir), "--out", str(tmp_path / "x.png"), "--dataset-out", str(data_dir)]
    main(["generate", *args, "--images", str(tmp_path / "images"), "--per-image", "2", "--seed", "3"])
    data = datasets.load_from_disk(str(data_dir))

    pixels = CgnCollator(8)(list(images["train"]))["pixel_values"]
    masks = color_item_masks(pixels, torch.tensor([3, 5, 0, 7]), 8)
    model = CounterfactualGenerativeNetwork.from_pretrained(model_dir)
    expected = generate_counterfactual_dataset(model, [3, 5, 0, 7], 2, seed=3, masks=masks)
    assert [np.asarray(i).tolist() for i in data["image"]] == [
        np.asarray(i).tolist() for i in expected["image"]
    ]
    assert data["shape"] == [3, 3, 5, 5, 0, 0, 7, 7]


def test_images_errors(model_dir, tmp_path):
    _images(2).save_to_disk(tmp_path / "images")
    base = [
        "generate",
        "--model",
        model_dir,
        "--out",
        str(tmp_path / "x.png"),
        "--images",
        str(tmp_path / "images"),
    ]
    with pytest.raises(ValueError, match="--images .* needs --dataset-out"):
        main(base)
    with pytest.raises(
        ValueError, match="mask encoder in .*mask_encoder: train the CGN with mask_encoder_steps"
    ):
        main([*base, "--dataset-out", str(tmp_path / "cf"), "--masks", "encoder"])
    with pytest.raises(ValueError, match="no split 'test'; it has train"):
        main([*base, "--dataset-out", str(tmp_path / "cf"), "--split", "test"])
    assert not (tmp_path / "cf").exists() and not (tmp_path / "x.png").exists()
