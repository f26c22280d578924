"""`hf-counterfactual explain`: overlays and saliency.json for image files, and its errors."""

import json
import os

import numpy as np
import pytest
from PIL import Image
from transformers import AutoImageProcessor

from hf_counterfactual.cli import main
from hf_counterfactual.data import LocalisationSceneConfig, build_localisation_scenes, load_digits_dataset
from hf_counterfactual.training import TrainingConfig
from hf_counterfactual.training.classification import train_image_classifier
from hf_counterfactual.training.pat_config import TINY_RESNET


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    scenes = LocalisationSceneConfig(canvas_size=32, num_train=64, num_validation=8, num_test=4)
    data = build_localisation_scenes(scenes, load_digits_dataset())
    cfg = TrainingConfig(
        output_dir=str(root / "model"), max_steps=3, batch_size=16, disable_progress_bar=True
    )
    model, metrics = train_image_classifier(cfg, data, TINY_RESNET, 32)
    paths = []
    for i, row in enumerate(data["test"]):
        path = root / f"scene{i}.png"
        row["image"].resize((48, 48)).save(path)  # another size: the processor resizes it
        paths.append(str(path))
    return root, paths, metrics


def test_classifier_is_saved_with_an_image_processor(trained):
    root, _, metrics = trained
    processor = AutoImageProcessor.from_pretrained(root / "model")
    assert processor.size == {"height": 32, "width": 32}
    assert 0 <= metrics["test_accuracy"] <= 1


def test_explain_writes_overlays_and_stats(trained, capsys):
    root, paths, _ = trained
    out = root / "out"
    main(["explain", "--model", str(root / "model"), "--image", *paths[:2], "--objective", "sdr",
          "--infill", "mean", "--steps", "3", "--target", "1", "--out", str(out)])  # fmt: skip
    summary = json.loads((out / "saliency.json").read_text())
    assert summary["objective"] == "sdr" and summary["input_size"] == 32
    assert summary["config"]["mask_size"] == 8 and summary["config"]["steps"] == 3
    assert [r["target"] for r in summary["images"]] == [1, 1]
    for record in summary["images"]:
        assert Image.open(record["overlay"]).size == (32, 32)
        assert 0 <= record["kept_fraction"] <= 1
    assert "saliency.json" in capsys.readouterr().out


def test_explain_errors_name_the_problem(trained, tmp_path):
    root, paths, _ = trained
    model = str(root / "model")
    with pytest.raises(ValueError, match="cannot read image .*missing.png"):
        main(["explain", "--model", model, "--image", str(tmp_path / "missing.png"), "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="needs --inpainter"):
        main(
            [
                "explain",
                "--model",
                model,
                "--image",
                paths[0],
                "--infill",
                "generative",
                "--out",
                str(tmp_path),
            ]
        )
    bare = tmp_path / "bare"
    os.makedirs(bare)
    for name in ("config.json", "model.safetensors"):
        os.link(root / "model" / name, bare / name)
    with pytest.raises(ValueError, match="no image processor"):
        main(["explain", "--model", str(bare), "--image", paths[0], "--out", str(tmp_path)])
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ok.png")
    with pytest.raises(ValueError, match="target"):
        main(["explain", "--model", model, "--image", str(tmp_path / "ok.png"), "--target", "99",
              "--steps", "1", "--out", str(tmp_path)])  # fmt: skip
