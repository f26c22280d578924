"""Robust fine-tuning on data from `load_dataset`: extra evaluation sets with class subsets (ImageNet-R / -A /
ObjectNet style), held-out selection images, named class sets, and the paper-scale ImageNet recipe."""

import io
import json
import os
import tarfile

import datasets
import numpy as np
import pytest
import torch

from hf_counterfactual.data import ImageClassificationCollator
from hf_counterfactual.robust import ClipImageClassifier
from hf_counterfactual.training import TrainingConfig
from hf_counterfactual.training.recipes import load_recipe
from hf_counterfactual.training.robust_ft_config import RobustFtConfig
from hf_counterfactual.training.robust_ft_trainer import (
    hold_out_selection,
    load_robust_ft_data,
    prompt_classes,
    run_robust_ft,
)
from tests.robust.tiny_clip import one_thread  # noqa: F401 (a fixture)
from tests.training.test_robust_ft_trainer import save_base, synthetic_data

RECIPE = os.path.join(
    os.path.dirname(__file__), "..", "..", "recipes", "robust_ft", "imagenet_clip_vit_b32.yaml"
)
pytestmark = pytest.mark.usefixtures("one_thread")


def write_hub_style(folder) -> tuple[str, str, str]:
    """Data as Hub repos hold it: the 3-class train / test splits as parquet files with plain-int labels
    ("jpg", "cls"), and, as a webdataset tar like clip-benchmark's ImageNet-R ("webp" + "cls" per sample), a
    2-class subset of the OOD split whose class 0 is the model's class 2 ("bird") and class 1 the model's
    class 0 ("cat"), with the JSON of those class groups."""
    data = synthetic_data()
    features = datasets.Features({"jpg": datasets.Image(), "cls": datasets.Value("int64")})
    full, subset = folder / "full", folder / "subset"
    for split, source in (("train", "train"), ("test", "test_id")):
        rows = data[source].rename_columns({"image": "jpg", "label": "cls"}).cast(features)
        rows.to_parquet(str(full / f"{split}.parquet"))
    (subset / "test").mkdir(parents=True)
    with tarfile.open(subset / "test" / "0.tar", "w") as tar:
        for i, row in enumerate(r for r in data["test_ood_shuffled"] if r["label"] in (2, 0)):
            image = io.BytesIO()
            row["image"].save(image, format="webp", lossless=True)
            for ext, payload in (
                ("webp", image.getvalue()),
                ("cls", str({2: 0, 0: 1}[row["label"]]).encode()),
            ):
                info = tarfile.TarInfo(f"{i:06d}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    groups = folder / "groups.json"
    groups.write_text(json.dumps([[2], [0]]))
    return str(full), str(subset), str(groups)


@pytest.fixture
def hub_style(tmp_path, tiny_clip_tokenizer):
    return save_base(tmp_path / "base", tiny_clip_tokenizer), *write_hub_style(tmp_path)


def config(base, full, subset, groups, **kwargs) -> RobustFtConfig:
    sub = {"path": subset, "image_column": "webp", "label_column": "cls", "class_groups": groups}
    return RobustFtConfig(
        base_model=base, dataset_name=full, image_column="jpg", label_column="cls",
        class_names=["cat", "dog", "bird"], eval_splits=["test"], id_split="test",
        eval_datasets={"sub_ood": sub}, wise_alphas=[], **kwargs,
    )  # fmt: skip


def test_eval_datasets_are_scored_over_their_class_groups(hub_style, tmp_path):
    base, full, subset, groups = hub_style
    train_cfg = TrainingConfig(output_dir=str(tmp_path / "out"), batch_size=8, max_steps=2, learning_rate=1e-2,
                               eval_steps=1, disable_progress_bar=True)  # fmt: skip
    metrics = run_robust_ft(
        train_cfg, config(base, full, subset, groups, variant="vanilla_ft", selection_size=6)
    )
    scores = metrics["vanilla_ft"]
    assert set(scores["accuracy"]) == {"test", "sub_ood"}
    assert scores["id_accuracy"] == scores["accuracy"]["test"]
    assert scores["ood_accuracy"] == scores["accuracy"]["sub_ood"]  # "test" is not OOD

    # By hand: the saved student's logits on the subset, restricted to model classes (2, 0) in that order.
    model = ClipImageClassifier.from_pretrained(tmp_path / "out").eval()
    rows = datasets.load_dataset(subset, split="test")
    collator = ImageClassificationCollator(2, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), image_column="webp",
                                           label_column="cls")  # fmt: skip
    batch = collator(list(rows))
    with torch.no_grad():
        logits = model(pixel_values=batch["pixel_values"]).logits
    hits = (logits[:, [2, 0]].argmax(1) == batch["labels"]).sum().item()
    assert scores["accuracy"]["sub_ood"] == pytest.approx(hits / len(rows), abs=1e-9)

    # selection on 6 held-out train images, every step
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["eval_history"]] == [1, 2]
    assert all(
        e["validation_accuracy"] * 6 == round(e["validation_accuracy"] * 6) for e in state["eval_history"]
    )


def test_selection_images_are_held_out_of_train(hub_style):
    base, full, subset, groups = hub_style
    cfg = config(base, full, subset, groups, selection_size=6)
    data = hold_out_selection(cfg, load_robust_ft_data(cfg, 16), seed=3)
    assert (len(data["train"]), len(data["validation"]), len(data["test"])) == (18, 6, 8)
    pixels = {np.asarray(image).tobytes() for image in data["train"]["jpg"]}
    assert not pixels & {np.asarray(image).tobytes() for image in data["validation"]["jpg"]}
    again = hold_out_selection(cfg, load_robust_ft_data(cfg, 16), seed=3)
    assert again["validation"]["cls"] == data["validation"]["cls"]  # the run's seed fixes the draw
    cfg.selection_size = 24
    with pytest.raises(ValueError, match="leaves nothing of 24 train images"):
        hold_out_selection(cfg, load_robust_ft_data(cfg, 16), seed=0)


def test_class_names_and_templates_of_the_zero_shot_head(hub_style):
    base, full, subset, groups = hub_style
    plain = datasets.Features({"cls": datasets.Value("int64")})
    named = datasets.Features({"cls": datasets.ClassLabel(names=["Cat", "Dog"])})
    cfg = RobustFtConfig(base_model=base, label_column="cls", class_set="imagenet")
    names, templates = prompt_classes(cfg, plain)
    assert (len(names), names[1], len(templates), templates[0]) == (
        1000,
        "goldfish",
        80,
        "a bad photo of a {}.",
    )
    cfg = RobustFtConfig(base_model=base, label_column="cls")
    assert prompt_classes(cfg, named) == (["cat", "dog"], ["a photo of a {}."])
    with pytest.raises(ValueError, match="not a ClassLabel; set class_names or class_set"):
        prompt_classes(cfg, plain)
    cfg.class_names = ["cat"]
    with pytest.raises(ValueError, match="1 class_names for 2 labels"):
        prompt_classes(cfg, named)


def test_bad_eval_datasets(hub_style, tmp_path):
    base, full, subset, groups = hub_style
    train_cfg = TrainingConfig(output_dir=str(tmp_path / "out"), batch_size=8, max_steps=1)
    cfg = config(base, full, subset, groups, variant="zero_shot")
    cfg.eval_datasets["sub_ood"]["label_column"] = "label"
    with pytest.raises(
        ValueError, match=r"eval dataset 'sub_ood' has columns \['webp', 'cls', .*\], no 'label'"
    ):
        run_robust_ft(train_cfg, cfg)
    cfg.eval_datasets = {"test": cfg.eval_datasets["sub_ood"]}
    with pytest.raises(ValueError, match="eval dataset 'test' has the name of a split of the data"):
        run_robust_ft(train_cfg, cfg)
    (tmp_path / "wide.json").write_text(json.dumps([[2], [3]]))
    cfg = config(base, full, subset, str(tmp_path / "wide.json"), variant="zero_shot")
    with pytest.raises(ValueError, match=r"class group \[3\] .* outside \[0, 3\)"):
        run_robust_ft(train_cfg, cfg)
    for bad, match in [
        ({"split": "test"}, "needs a path"),
        ({"path": subset, "labels": "cls"}, "needs a path and takes"),
        ({"path": subset, "class_groups": "imagenet_z"}, "neither a known subset"),
    ]:
        with pytest.raises(ValueError, match=match):
            RobustFtConfig(base_model=base, eval_datasets={"x": bad})
    with pytest.raises(ValueError, match="not both"):
        RobustFtConfig(base_model=base, dataset_path=full, dataset_name=full)
    with pytest.raises(ValueError, match="class_set must be one of imagenet"):
        RobustFtConfig(base_model=base, class_set="cifar")
    with pytest.raises(ValueError, match="selection_size must be >= 0"):
        RobustFtConfig(base_model=base, selection_size=-1)


def test_imagenet_recipe_has_the_paper_settings():
    method, train_cfg, cfg = load_recipe(RECIPE)
    assert method == "robust_ft" and cfg.base_model == "openai/clip-vit-base-patch32"
    assert (cfg.dataset_name, cfg.class_set, cfg.center_crop, cfg.id_split) == (
        "ILSVRC/imagenet-1k", "imagenet", True, "validation")  # fmt: skip
    assert set(cfg.eval_datasets) == {"ood_v2", "ood_sketch", "ood_r", "ood_a"}
    assert (cfg.eval_datasets["ood_r"]["class_groups"], cfg.eval_datasets["ood_a"]["class_groups"]) == (
        "imagenet_r", "imagenet_a")  # fmt: skip
    assert (cfg.variant, cfg.masking_strategy, cfg.masking_refill, cfg.distill_weight) == (
        "masked_cf", "object", "single", 30.0)  # fmt: skip
    assert cfg.masking().threshold == 0.3
    assert (train_cfg.learning_rate, train_cfg.batch_size, train_cfg.num_epochs) == (3e-5, 512, 10)
    assert (train_cfg.weight_decay, train_cfg.lr_scheduler, train_cfg.warmup_ratio) == (0.1, "onecycle", 0.02)
    assert (train_cfg.max_grad_norm, train_cfg.adam_beta1, train_cfg.adam_beta2) == (1.0, 0.9, 0.999)
    assert (
        train_cfg.metric_for_best_model == f"{cfg.selection_split}_accuracy" and cfg.selection_size == 10_000
    )
    assert train_cfg.load_best_model_at_end
