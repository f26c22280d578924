"""Model cards and push_to_hub, the upload tested against a local stand-in for the Hub (tests/hub_server.py)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard, constants
from transformers import ResNetConfig, ViTImageProcessor

from hf_counterfactual import (
    CGNConfig,
    CounterfactualGenerativeNetwork,
    PatConfig,
    PatForMultiLabelClassification,
)
from hf_counterfactual.cli import main
from hf_counterfactual.hub import (
    _code_files,
    card_metrics,
    finished_metrics,
    infer_method,
    push_to_hub,
    save_metrics_and_card,
    write_model_card,
)
from hf_counterfactual.models.inpainter import InpainterUNet, InpaintingPipeline
from hf_counterfactual.models.pat import patching_inference
from tests.hub_server import LocalHub

PAT_METRICS = {  # the shape run_pat writes to metrics.json
    "variant": "pat_t",
    "train_seconds": 12.5,
    "pairs": [[0, 1]],
    "pat_t": {
        "map": 0.8123,
        "cfpr": 0.2104,
        "ctpr": 0.9,
        "cond_auroc": 0.77,
        "recall_target": 0.9,
        "thresholds": [0.1, 0.2, 0.3],
        "per_pair": [{"i": 0, "j": 1, "cfpr": 0.2104}],
        "eval_seconds": 1.5,
    },
}
CGN_METRICS = {
    "train_seconds": 30.0,
    "final_losses": {"g_adv": 0.3},
    "mask_mean": 0.31,
    "mask_binariness": 0.87,
    "images_per_second": 2500.0,
    "mask_iou": 0.64,
    "mask_iou_per_class": {"0": 0.5, "1": 0.78},
    "cgn_vs_oracle": {"original": 0.41, "counterfactual": 0.73, "oracle": 0.95},
}


def save_tiny_pat(path: Path) -> PatForMultiLabelClassification:
    torch.manual_seed(0)
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    model = PatForMultiLabelClassification(PatConfig(num_labels=3, backbone_config=backbone)).eval()
    model.save_pretrained(path)
    return model


def save_tiny_cgn(path: Path) -> CounterfactualGenerativeNetwork:
    torch.manual_seed(0)
    config = CGNConfig(num_classes=3, image_size=8, latent_dim=4, ngf=4, embedding_dim=3)
    model = CounterfactualGenerativeNetwork(config).eval()
    model.save_pretrained(path)
    return model


def run_without_package(code: str, tmp_path: Path) -> str:
    """Run `code` in a fresh interpreter in which `import hf_counterfactual` fails; returns its stdout."""
    prelude = "import sys\nsys.modules['hf_counterfactual'] = None  # remote code must not need the package\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    """A local stand-in for the Hub; huggingface_hub pointed at it and allowed to make requests."""
    with LocalHub(tmp_path / "hub") as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_XET_CACHE", str(tmp_path / "xet"))  # hf_xet writes its logs there
        yield hub
    assert hub.unexpected == []


# --- model cards ----------------------------------------------------------------------------------


def test_pat_card_shows_the_measured_metrics_and_parses(tmp_path):
    save_tiny_pat(tmp_path / "pat")
    write_model_card(
        tmp_path / "pat",
        "pat",
        PAT_METRICS,
        dataset="org/mosaics",
        base_model="microsoft/resnet-50",
        training_config={"learning_rate": 1e-3, "image_size": (32, 32)},
        repo_id="org/pat-tiny",
    )
    card = ModelCard.load(tmp_path / "pat" / "README.md")
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "image-classification"
    assert "hf-counterfactual" in card.data.tags
    assert card.data.base_model == "microsoft/resnet-50"
    assert card.data.datasets == ["org/mosaics"]
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"map": 0.8123, "cfpr": 0.2104, "ctpr": 0.9, "cond_auroc": 0.77}
    assert all(r.dataset_type == "org/mosaics" for r in card.data.eval_results)
    assert "| mAP | pat_t | 0.8123 |" in card.text
    assert "| CFPR(i\\|j), mean over the biased pairs | pat_t | 0.2104 |" in card.text
    assert "recall 0.9" in card.text
    assert 'AutoModel.from_pretrained("org/pat-tiny", trust_remote_code=True)' in card.text
    assert '"learning_rate": 0.001' in card.text
    assert "arXiv:2404.06287" in card.text


def test_cgn_card_lists_accuracies_and_mask_metrics_only(tmp_path):
    save_tiny_cgn(tmp_path / "cgn")
    card = write_model_card(tmp_path / "cgn", "cgn", CGN_METRICS)
    loaded = ModelCard.load(tmp_path / "cgn" / "README.md")
    assert loaded.data.library_name == "transformers"
    assert loaded.data.pipeline_tag == "unconditional-image-generation"
    names = {r.metric_name: r.metric_value for r in loaded.data.eval_results}
    assert names == {
        "mask mean": 0.31,
        "mask binariness": 0.87,
        "images per second": 2500.0,
        "mask IoU with the true item masks": 0.64,
        "test accuracy (original)": 0.41,
        "test accuracy (counterfactual)": 0.73,
        "test accuracy (oracle)": 0.95,
    }
    assert "| test accuracy | counterfactual | 0.73 |" in card.text
    assert "g_adv" not in card.text and "train_seconds" not in card.text  # not card metrics
    assert "3 classes at 8 x 8 pixels" in card.text


def test_card_without_metrics_shows_no_numbers(tmp_path):
    save_tiny_pat(tmp_path / "pat")
    card = write_model_card(tmp_path / "pat", "pat", {"train_seconds": 3.0, "map": float("nan")})
    loaded = ModelCard.load(tmp_path / "pat" / "README.md")
    assert loaded.data.eval_results is None
    assert "No measurements were recorded" in card.text
    assert "| metric |" not in card.text
    assert "## Training configuration" not in card.text


def test_finished_metrics_reads_what_save_metrics_and_card_wrote(tmp_path):
    save_tiny_pat(tmp_path / "pat")
    assert finished_metrics(tmp_path / "pat") is None  # saved, but the run never wrote its metrics
    save_metrics_and_card(tmp_path / "pat", "pat", PAT_METRICS)
    assert finished_metrics(tmp_path / "pat") == json.loads(json.dumps(PAT_METRICS))
    assert finished_metrics(tmp_path / "missing") is None


def test_inpainter_card_is_a_diffusers_card(tmp_path):
    InpaintingPipeline(unet=InpainterUNet(block_out_channels=(8, 16), norm_num_groups=4)).save_pretrained(
        tmp_path / "inpainter"
    )
    metrics = {"l1_dropped": {"generative": 0.061, "blur": 0.083}, "fido_ssr": {"pointing_game": 0.88}}
    card = write_model_card(tmp_path / "inpainter", "inpainter", metrics)
    assert card.data.library_name == "diffusers"
    assert card.data.pipeline_tag == "image-to-image"
    assert [r.metric_type for r in card.data.eval_results] == ["l1_dropped", "l1_dropped", "pointing_game"]
    assert "DiffusionPipeline.from_pretrained" in card.text


def test_card_metrics_keeps_finite_numbers_under_known_keys():
    metrics = {"map": 0.5, "cfpr": float("inf"), "ctpr": True, "cond_auroc": "0.7", "x": {"map": [1.0]}}
    assert [(r["key"], r["setting"], r["value"]) for r in card_metrics("pat", metrics)] == [("map", "", 0.5)]
    assert (
        card_metrics("robust_ft", {"ood": {"sketch": {"ood_accuracy": 0.4}}})[0]["setting"] == "ood / sketch"
    )


def test_card_errors_are_short_and_clear(tmp_path):
    save_tiny_pat(tmp_path / "pat")
    with pytest.raises(ValueError, match="method must be one of"):
        write_model_card(tmp_path / "pat", "fancy", {})
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        write_model_card(tmp_path / "empty", "pat", {})


def test_infer_method(tmp_path):
    save_tiny_pat(tmp_path / "pat")
    save_tiny_cgn(tmp_path / "cgn")
    (tmp_path / "resnet").mkdir()
    (tmp_path / "resnet" / "config.json").write_text(json.dumps({"model_type": "resnet"}))
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    assert [infer_method(tmp_path / n) for n in ("pat", "cgn", "resnet", "pipe")] == [
        "pat",
        "cgn",
        "classifier",
        "inpainter",
    ]


# --- push_to_hub ----------------------------------------------------------------------------------


def test_push_pat_uploads_a_repo_that_loads_without_the_package(tmp_path, local_hub):
    model_dir = tmp_path / "pat"
    model = save_tiny_pat(model_dir)
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(model_dir)
    (model_dir / "metrics.json").write_text(json.dumps(PAT_METRICS))
    (model_dir / "checkpoints" / "checkpoint_0").mkdir(parents=True)  # accelerate state: not pushed
    (model_dir / "checkpoints" / "checkpoint_0" / "optimizer.bin").write_bytes(b"state")
    write_model_card(model_dir, "pat", PAT_METRICS, repo_id="org/pat-tiny")
    local_config = (model_dir / "config.json").read_text()

    url = push_to_hub(model_dir, "org/pat-tiny", token=local_hub.token)

    assert url == f"{local_hub.endpoint}/org/pat-tiny"
    assert local_hub.repos["org/pat-tiny"]["visibility"] == "public"
    arrived = local_hub.repo_dir("org/pat-tiny")
    assert sorted(p.name for p in arrived.iterdir()) == [
        "README.md",
        "config.json",
        "configuration_pat.py",
        "metrics.json",
        "model.safetensors",
        "modeling_pat.py",
        "preprocessor_config.json",
    ]
    assert json.loads((arrived / "config.json").read_text())["auto_map"] == {
        "AutoConfig": "configuration_pat.PatConfig",
        "AutoModel": "modeling_pat.PatForMultiLabelClassification",
        "AutoModelForImageClassification": "modeling_pat.PatForMultiLabelClassification",
    }
    assert (model_dir / "config.json").read_text() == local_config  # the local folder is left alone
    assert ModelCard.load(arrived / "README.md").data.eval_results[0].metric_value == 0.8123

    pixel_values = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.save({"x": pixel_values, "logits": model(pixel_values).logits}, tmp_path / "expected.pt")
    out = run_without_package(
        f"""
        import torch
        from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification
        expected = torch.load("expected.pt")
        model = AutoModel.from_pretrained({str(arrived)!r}, trust_remote_code=True).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(expected["x"]).logits, expected["logits"])
        assert AutoModelForImageClassification.from_pretrained({str(arrived)!r}, trust_remote_code=True)
        assert AutoImageProcessor.from_pretrained({str(arrived)!r}).size == {{"height": 16, "width": 16}}
        print(type(model).__module__)
        """,
        tmp_path,
    )
    assert out.startswith("transformers_modules.")


def test_push_cgn_to_a_private_branch(tmp_path, local_hub):
    model = save_tiny_cgn(tmp_path / "cgn")
    write_model_card(tmp_path / "cgn", "cgn", CGN_METRICS, repo_id="org/cgn-tiny")

    push_to_hub(tmp_path / "cgn", "org/cgn-tiny", private=True, token=local_hub.token, revision="v1")

    assert local_hub.repos["org/cgn-tiny"]["visibility"] == "private"
    assert ("org/cgn-tiny", "v1") in local_hub.branches
    arrived = local_hub.repo_dir("org/cgn-tiny", "v1")
    assert {"configuration_cgn.py", "modeling_cgn.py", "model.safetensors", "README.md"} <= {
        p.name for p in arrived.iterdir()
    }
    url = push_to_hub(tmp_path / "cgn", "org/cgn-tiny", token=local_hub.token)  # the repo exists now
    assert url == f"{local_hub.endpoint}/org/cgn-tiny"
    assert [(c["repo"], c["revision"]) for c in local_hub.commits] == [
        ("org/cgn-tiny", "v1"),
        ("org/cgn-tiny", "main"),
    ]
    expected = model.generate([0, 1, 2], [1, 2, 0], [2, 0, 1], seed=3).images
    torch.save(expected, tmp_path / "expected.pt")
    run_without_package(
        f"""
        import torch
        from transformers import AutoModel
        cgn = AutoModel.from_pretrained({str(arrived)!r}, trust_remote_code=True)
        images = cgn.generate([0, 1, 2], [1, 2, 0], [2, 0, 1], seed=3).images
        torch.testing.assert_close(images, torch.load("expected.pt"))
        """,
        tmp_path,
    )


def test_push_inpainter_pipeline_loads_with_diffusers_remote_code(tmp_path, local_hub):
    torch.manual_seed(0)
    pipe = InpaintingPipeline(unet=InpainterUNet(block_out_channels=(8, 16), norm_num_groups=4))
    pipe.save_pretrained(tmp_path / "inpainter")
    write_model_card(tmp_path / "inpainter", "inpainter", {"l1_dropped": {"generative": 0.06}})

    push_to_hub(tmp_path / "inpainter", "org/inpainter-tiny", token=local_hub.token)

    arrived = local_hub.repo_dir("org/inpainter-tiny")
    index = json.loads((arrived / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_inpainter", "InpaintingPipeline"]
    assert index["unet"] == ["modeling_inpainter", "InpainterUNet"]
    for name in ("pipeline_inpainter.py", "modeling_inpainter.py", "unet/modeling_inpainter.py"):
        assert (arrived / name).is_file(), name
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    torch.save(
        {"image": image, "mask": mask, "filled": pipe(image, mask, output_type="pt").images},
        tmp_path / "e.pt",
    )
    run_without_package(
        f"""
        import torch
        from diffusers import DiffusionPipeline
        e = torch.load("e.pt")
        pipe = DiffusionPipeline.from_pretrained({str(arrived)!r}, trust_remote_code=True)
        torch.testing.assert_close(pipe(e["image"], e["mask"], output_type="pt").images, e["filled"])
        """,
        tmp_path,
    )


def test_cli_push_writes_the_card_from_metrics_json_and_pushes(tmp_path, local_hub, capsys):
    model_dir = tmp_path / "pat"
    save_tiny_pat(model_dir)
    (model_dir / "metrics.json").write_text(json.dumps(PAT_METRICS))

    main(["push", "--model", str(model_dir), "--repo-id", "org/pat-cli", "--token", local_hub.token])

    assert f"pushed {model_dir} to {local_hub.endpoint}/org/pat-cli" in capsys.readouterr().out
    card = ModelCard.load(local_hub.repo_dir("org/pat-cli") / "README.md")
    assert 'AutoModel.from_pretrained("org/pat-cli", trust_remote_code=True)' in card.text
    assert {r.metric_type for r in card.data.eval_results} == {"map", "cfpr", "ctpr", "cond_auroc"}


def test_cli_card_uses_the_given_method_and_metrics(tmp_path):
    save_tiny_cgn(tmp_path / "cgn")
    (tmp_path / "m.json").write_text(json.dumps({"mask_iou": 0.5}))
    main(["card", "--model", str(tmp_path / "cgn"), "--metrics", str(tmp_path / "m.json"), "--dataset", "d"])
    card = ModelCard.load(tmp_path / "cgn" / "README.md")
    assert [(r.metric_type, r.metric_value, r.dataset_name) for r in card.data.eval_results] == [
        ("mask_iou", 0.5, "d")
    ]


# --- refusals (checked before any request: these tests run offline) --------------------------------


def test_push_refuses_a_folder_without_config(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        push_to_hub(tmp_path / "model", "org/x")


def test_push_refuses_pickled_weights(tmp_path):
    model_dir = tmp_path / "pat"
    model = save_tiny_pat(model_dir)
    torch.save(model.state_dict(), model_dir / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"non-safetensors weights \['pytorch_model.bin'\]"):
        push_to_hub(model_dir, "org/x")


def test_push_refuses_a_folder_without_weights(tmp_path):
    save_tiny_pat(tmp_path / "pat")
    (tmp_path / "pat" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no .safetensors weights"):
        push_to_hub(tmp_path / "pat", "org/x")


def test_remote_code_refuses_modules_that_import_the_rest_of_the_package():
    with pytest.raises(
        ValueError, match=r"patching_inference.py imports outside its folder \('from \.\.adapters"
    ):
        _code_files(Path(patching_inference.__file__))


def _save_tiny_ensemble(path: Path) -> torch.nn.Module:
    from hf_counterfactual.models.cgn import InvariantEnsembleConfig, InvariantEnsembleForImageClassification

    torch.manual_seed(0)
    backbone = {"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]}
    model = InvariantEnsembleForImageClassification(
        InvariantEnsembleConfig(backbone_config=backbone, num_labels=3)
    )
    model.eval().save_pretrained(path)
    return model


def _save_tiny_clip_classifier(path: Path) -> torch.nn.Module:
    from hf_counterfactual.robust import ClipImageClassifier, ClipImageClassifierConfig

    torch.manual_seed(0)
    config = ClipImageClassifierConfig(
        hidden_size=16, intermediate_size=20, num_hidden_layers=1, num_attention_heads=2, image_size=16,
        patch_size=4, projection_dim=8, num_labels=3,
    )  # fmt: skip
    model = ClipImageClassifier(config).eval()
    model.save_pretrained(path)
    return model


@pytest.mark.parametrize("save", [_save_tiny_ensemble, _save_tiny_clip_classifier])
def test_remote_code_of_the_other_classifiers_loads_without_the_package(tmp_path, save):
    from hf_counterfactual.hub import add_remote_code

    model = save(tmp_path / "model")
    add_remote_code(tmp_path / "model")
    pixel_values = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.save({"x": pixel_values, "logits": model(pixel_values).logits}, tmp_path / "expected.pt")
    run_without_package(
        f"""
        import torch
        from transformers import AutoModelForImageClassification
        expected = torch.load("expected.pt")
        model = AutoModelForImageClassification.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True)
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(expected["x"]).logits, expected["logits"])
        """,
        tmp_path,
    )
