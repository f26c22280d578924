"""Recipes: YAML + key=value overrides -> configs, and a tiny end-to-end PAT run per variant."""

import json
import os

import pytest
import yaml

from hf_counterfactual.cli import main
from hf_counterfactual.training.pat_config import PatTrainConfig
from hf_counterfactual.training.recipes import load_recipe, parse_overrides

RECIPES = os.path.join(os.path.dirname(__file__), "..", "..", "recipes", "pat")
TINY = [
    "item_source=digits",
    "num_epochs=1",
    "batch_size=16",
    "mosaic.num_train=48",
    "mosaic.num_validation=32",
    "mosaic.num_test=32",
    "image_size=32",
    "mosaic.canvas_size=32",
    "backbone_config={model_type: resnet, embedding_size: 8, hidden_sizes: [8, 16], depths: [1, 1], layer_type: basic}",
    "disable_progress_bar=true",
]


def test_parse_overrides_nests_dotted_keys_and_parses_yaml_values():
    assert parse_overrides(["a=1", "mosaic.strength=0.8", "name=x", "pairs=[[1, 2]]"]) == {
        "a": 1,
        "mosaic": {"strength": 0.8},
        "name": "x",
        "pairs": [[1, 2]],
    }
    with pytest.raises(ValueError, match="not key=value"):
        parse_overrides(["oops"])


@pytest.mark.parametrize("name", sorted(os.listdir(RECIPES)))
def test_every_shipped_recipe_parses(name):
    method, train_cfg, cfg = load_recipe(os.path.join(RECIPES, name))
    assert method == "pat" and isinstance(cfg, PatTrainConfig)
    assert train_cfg.output_dir.startswith("outputs/pat/")


def test_paper_scale_coco_recipe_has_the_paper_settings():
    _, train_cfg, cfg = load_recipe(os.path.join(RECIPES, "coco2014_resnet101_448.yaml"))
    assert (cfg.image_size, cfg.grid_size, cfg.loss, cfg.backbone) == (448, 2, "asl", "microsoft/resnet-101")
    assert (cfg.asl_gamma_neg, cfg.asl_gamma_pos, cfg.asl_clip) == (4.0, 0.0, 0.05)
    assert (train_cfg.learning_rate, train_cfg.weight_decay, train_cfg.lr_scheduler) == (
        1e-4,
        1e-4,
        "onecycle",
    )
    assert train_cfg.warmup_ratio == 0.2 and train_cfg.num_epochs == 80


def test_unknown_key_and_method_are_clear_errors(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"method": "pat", "no_such_key": 1}))
    with pytest.raises(ValueError, match="no_such_key"):
        load_recipe(str(recipe))
    recipe.write_text(yaml.safe_dump({"method": "nope"}))
    with pytest.raises(ValueError, match="method"):
        load_recipe(str(recipe))
    with pytest.raises(FileNotFoundError, match="not found"):
        load_recipe(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("recipe", ["mosaics_plain_small.yaml", "mosaics_pat_t_small.yaml"])
def test_train_cli_runs_a_recipe_end_to_end(tmp_path, recipe):
    out = tmp_path / "run"
    main(["train", os.path.join(RECIPES, recipe), *TINY, f"output_dir={out}"])  # both train with zoom-crop
    metrics = json.loads((out / "metrics.json").read_text())
    variant = metrics["variant"]
    assert 0 <= metrics[variant]["map"] <= 1 and 0 <= metrics[variant]["cfpr"] <= 1
    assert metrics["pairs"] == [[1, 5], [8, 2], [7, 4], [3, 6], [9, 0]]
    if variant == "plain":
        assert "pat_i" in metrics
    assert (out / "model.safetensors").exists() and (out / "recipe.yaml").exists()
    assert load_recipe(str(out / "recipe.yaml"))[2].zoom_crop == 0.25

    # the saved model evaluates through the CLI (with PAT-I) on a saved dataset
    from hf_counterfactual.training.pat_trainer import load_pat_data

    _, _, cfg = load_recipe(str(out / "recipe.yaml"))
    data, _ = load_pat_data(cfg, seed=0)
    data.save_to_disk(str(tmp_path / "mosaics"))
    main(["evaluate", "--model", str(out), "--dataset", str(tmp_path / "mosaics"), "--pat-i", "--json",
          str(tmp_path / "eval.json")])  # fmt: skip
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert set(evaluated) == {"model", "pat_i"}
    assert evaluated["model"]["map"] == pytest.approx(metrics[variant]["map"], abs=1e-6)


def test_bf16_gradient_accumulation_checkpoints_and_resume(tmp_path):
    out = tmp_path / "run"
    common = [
        os.path.join(RECIPES, "mosaics_pat_t_small.yaml"),
        *TINY,
        f"output_dir={out}",
        "mixed_precision=bf16",
    ]
    main(["train", *common, "gradient_accumulation_steps=2", "checkpointing_steps=1"])
    # 48 canvases / batch 16 = 3 micro-batches -> 2 optimizer steps, one checkpoint each
    assert sorted(os.listdir(out / "checkpoints")) == ["checkpoint_0", "checkpoint_1"]
    first = json.loads((out / "metrics.json").read_text())["pat_t"]["map"]
    # resuming from the last checkpoint has nothing left to train and reproduces the model
    main(["train", *common, "gradient_accumulation_steps=2", "resume_from_checkpoint=latest"])
    assert json.loads((out / "metrics.json").read_text())["pat_t"]["map"] == pytest.approx(first, abs=1e-6)


def test_pat_run_counts_undecodable_training_images_also_with_zoom_crop(tmp_path):
    import datasets

    from hf_counterfactual.training.pat_trainer import load_pat_data, run_pat

    _, train_cfg, cfg = load_recipe(
        os.path.join(RECIPES, "mosaics_plain_small.yaml"), [*TINY, f"output_dir={tmp_path}", "zoom_crop=1.0"]
    )
    data, pairs = load_pat_data(cfg, seed=0)
    train = data["train"].cast_column("image", datasets.Image(decode=False))
    broken = train.map(lambda row, i: {"image": {"bytes": b"not an image", "path": None}} if i < 3 else row,
                       with_indices=True, features=train.features)  # fmt: skip
    data["train"] = broken
    results = run_pat(train_cfg, cfg, data, pairs)
    # one epoch: each broken row once, skipped by the training collator
    assert results["skipped_samples"] == 3
