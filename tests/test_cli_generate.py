"""`hf-counterfactual generate`: CGN samples PNG, class grid and counterfactual dataset from a saved model."""

import datasets
import pytest
import torch
from PIL import Image

from hf_counterfactual.cli import main
from hf_counterfactual.models.cgn import CGNConfig, CounterfactualGenerativeNetwork


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
