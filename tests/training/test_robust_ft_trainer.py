"""Robust fine-tuning runs end to end on a tiny CLIP and synthetic data: every variant, metrics, resume, DDP."""

import json
import os
import subprocess
import sys

import datasets
import numpy as np
import pytest
import safetensors.torch
import torch
from accelerate.state import AcceleratorState, GradientState
from transformers import AutoModelForImageClassification

from hf_counterfactual.data import ImageClassificationCollator
from hf_counterfactual.robust import ClipImageClassifier, MaskedCounterfactualFineTuner
from hf_counterfactual.training import TrainingConfig
from hf_counterfactual.training.classification import image_processor_for
from hf_counterfactual.training.recipes import load_recipe
from hf_counterfactual.training.robust_ft_config import RobustFtConfig
from hf_counterfactual.training.robust_ft_trainer import mean_step_seconds, run_robust_ft
from tests.robust.tiny_clip import one_thread, tiny_clip  # noqa: F401 (one_thread: a fixture)

RECIPE = os.path.join(os.path.dirname(__file__), "..", "..", "recipes", "robust_ft", "masked_cf_small.yaml")
pytestmark = pytest.mark.usefixtures("one_thread")

SPLITS = {"train": 24, "validation": 8, "test_id": 8, "test_ood_shuffled": 8}


def synthetic_data(seed: int = 0) -> datasets.DatasetDict:
    """16 px images: class c is a bright square in quadrant c on a noisy background."""
    rng = np.random.default_rng(seed)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["Cat", "Dog", "Bird"])}
    )
    out = {}
    for split, n in SPLITS.items():
        labels = np.arange(n) % 3
        images = rng.integers(0, 90, (n, 16, 16, 3), dtype=np.uint8)
        for image, c in zip(images, labels, strict=True):
            image[8 * (c // 2) : 8 * (c // 2) + 8, 8 * (c % 2) : 8 * (c % 2) + 8] = 230
        out[split] = datasets.Dataset.from_dict(
            {"image": list(images), "label": labels.tolist()}, features=features
        )
    return datasets.DatasetDict(out)


def save_base(folder, tokenizer) -> str:
    """A tiny CLIPModel saved with its tokenizer and an image processor, as a pre-training run leaves it."""
    tiny_clip().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    collator = ImageClassificationCollator(3, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    image_processor_for(collator).save_pretrained(folder)
    return str(folder)


@pytest.fixture
def base(tmp_path, tiny_clip_tokenizer):
    return save_base(tmp_path / "base", tiny_clip_tokenizer)


def configs(out, base, variant="masked_cf", wise_alphas=(0.0, 0.5), eval_splits=None, **train_kwargs):
    """(TrainingConfig, RobustFtConfig) of a 3-step run, batch 8; `train_kwargs` override the former."""
    train_kwargs = {**dict(output_dir=str(out), batch_size=8, max_steps=3, learning_rate=1e-3, weight_decay=0.1,
                           max_grad_norm=1.0, warmup_ratio=0.02, disable_progress_bar=True), **train_kwargs}  # fmt: skip
    cfg = RobustFtConfig(
        base_model=base, variant=variant, wise_alphas=list(wise_alphas), eval_splits=eval_splits
    )
    return TrainingConfig(**train_kwargs), cfg


def _reset_accelerate():
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def test_masked_cf_and_vanilla_write_metrics_and_save_the_student(base, tmp_path):
    data = synthetic_data()
    masked = run_robust_ft(*configs(tmp_path / "masked_cf", base), data)
    _reset_accelerate()
    vanilla = run_robust_ft(*configs(tmp_path / "vanilla", base, "vanilla_ft", (), ["test_id"]), data)

    written = json.loads((tmp_path / "masked_cf" / "metrics.json").read_text())
    assert written == json.loads(json.dumps(masked))
    for metrics in (written["masked_cf"], written["zero_shot"], written["wise_ft"]["0.5"]):
        assert set(metrics["accuracy"]) == {
            "validation",
            "test_id",
            "test_ood_shuffled",
        }  # every split but train
        assert metrics["id_accuracy"] == metrics["accuracy"]["test_id"]
        assert metrics["ood_accuracy"] == metrics["accuracy"]["test_ood_shuffled"]
    assert written["wise_ft"]["0.0"] == written["zero_shot"]  # alpha 0 is the zero-shot model
    assert 0 < written["masked_fraction"] < 1 and written["distill_skipped_steps"] == 0
    for run in (masked, vanilla):
        assert run["steps"] == 3 and run["step_seconds"] > 0
    assert "masked_fraction" not in vanilla and set(vanilla["vanilla_ft"]["accuracy"]) == {"test_id"}
    print("step cost masked_cf / vanilla_ft:", masked["step_seconds"] / vanilla["step_seconds"])

    model = AutoModelForImageClassification.from_pretrained(tmp_path / "masked_cf")  # the student alone
    assert isinstance(model, ClipImageClassifier) and model.config.id2label[2] == "bird"
    assert (tmp_path / "masked_cf" / "preprocessor_config.json").is_file()
    card = (tmp_path / "masked_cf" / "README.md").read_text()  # the model card shows ID / OOD per model
    assert "| out-of-distribution accuracy | wise_ft / 0.5 |" in card and "| masked_cf |" in card
    vanilla_model = ClipImageClassifier.from_pretrained(tmp_path / "vanilla")
    assert not torch.equal(model.classifier.weight, vanilla_model.classifier.weight)  # distillation acted


def test_zero_shot_and_linear_probe_variants(base, tmp_path):
    data = synthetic_data()
    cheap = {"wise_alphas": (), "eval_splits": ["test_id"]}
    zero_shot = run_robust_ft(*configs(tmp_path / "zs", base, "zero_shot", **cheap), data)
    _reset_accelerate()
    assert (
        set(zero_shot) == {"variant", "zero_shot"}
        and zero_shot["zero_shot"]["accuracy"].keys() == {"test_id"}
        and (tmp_path / "zs" / "config.json").is_file()
    )
    probe = run_robust_ft(*configs(tmp_path / "lp", base, "linear_probe", **cheap), data)
    assert probe["trainable_parameters"] == 3 * 8 + 3  # the head only
    assert probe["zero_shot"] == zero_shot["zero_shot"]


def test_resume_from_checkpoint_equals_uninterrupted_run(base, tmp_path, monkeypatch):
    """Interrupted after the step-2 checkpoint, resumed with 'latest': the same student (masks included)."""
    data = synthetic_data()
    run = {"max_steps": 4, "checkpointing_steps": 2, "wise_alphas": (), "eval_splits": ["test_id"]}
    run_robust_ft(*configs(tmp_path / "full", base, **run), data)
    _reset_accelerate()

    forward, calls = MaskedCounterfactualFineTuner.forward, []

    def crashing_forward(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated interruption")
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(MaskedCounterfactualFineTuner, "forward", crashing_forward)
    train_cfg, cfg = configs(tmp_path / "resumed", base, **run)
    with pytest.raises(KeyboardInterrupt):
        run_robust_ft(train_cfg, cfg, data)
    _reset_accelerate()
    monkeypatch.setattr(MaskedCounterfactualFineTuner, "forward", forward)
    train_cfg.resume_from_checkpoint = "latest"
    resumed = run_robust_ft(train_cfg, cfg, data)
    assert resumed["steps"] == 2  # only the two steps after the checkpoint ran

    full = ClipImageClassifier.from_pretrained(tmp_path / "full").state_dict()
    got = ClipImageClassifier.from_pretrained(tmp_path / "resumed").state_dict()
    for name, value in full.items():
        torch.testing.assert_close(got[name], value, atol=1e-6, rtol=0, msg=name)


def test_model_selection_keeps_the_best_validation_accuracy(base, tmp_path):
    """Scored on the validation split after each of 4 steps: the saved student is the first best-scoring one
    (not the last), and its validation accuracy in metrics.json is that best score."""
    data = synthetic_data()
    run = {"max_steps": 4, "learning_rate": 1e-2, "wise_alphas": (), "eval_splits": ["validation"]}
    train_cfg, cfg = configs(tmp_path / "run", base, **run, eval_steps=1, load_best_model_at_end=True,
                             metric_for_best_model="validation_accuracy")  # fmt: skip
    metrics = run_robust_ft(train_cfg, cfg, data)
    _reset_accelerate()
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    scores = [e["validation_accuracy"] for e in state["eval_history"]]
    assert [e["step"] for e in state["eval_history"]] == [1, 2, 3, 4]
    assert state["best_metric"] == max(scores) == metrics["masked_cf"]["accuracy"]["validation"]
    assert state["best_step"] == 1 + scores.index(max(scores))
    assert metrics["steps"] == 4 and metrics["step_seconds"] > 0
    best = safetensors.torch.load_file(str(tmp_path / "run" / "best_model" / "model.safetensors"))
    saved = ClipImageClassifier.from_pretrained(tmp_path / "run").state_dict()
    for name, value in saved.items():
        torch.testing.assert_close(best[f"student.{name}"], value, atol=0, rtol=0, msg=name)

    cfg.selection_split = "heldout"
    with pytest.raises(ValueError, match=r"missing \['heldout'\]"):
        run_robust_ft(train_cfg, cfg, data)


def test_step_seconds_leave_out_warm_up_and_evaluations():
    starts = [0.0, 5.0, 6.0, 9.5, 10.5]  # warm-up 5 s; a 2.5 s evaluation after the third step
    assert mean_step_seconds(starts, 1, {2: 2.5}) == 1.0
    assert mean_step_seconds(starts, 2, {2: 2.5}) == 2.0  # two micro-steps per optimizer step


def test_recipe_has_the_paper_settings():
    method, train_cfg, cfg = load_recipe(RECIPE)
    assert method == "robust_ft" and isinstance(cfg, RobustFtConfig)
    assert (cfg.variant, cfg.masking_strategy, cfg.masking_refill, cfg.distill_weight) == (
        "masked_cf", "object", "single", 30.0)  # fmt: skip
    assert cfg.masking().threshold == 0.3
    assert (train_cfg.max_grad_norm, train_cfg.weight_decay, train_cfg.lr_scheduler) == (1.0, 0.1, "onecycle")
    assert (train_cfg.adam_beta1, train_cfg.adam_beta2, train_cfg.warmup_ratio) == (0.9, 0.999, 0.02)


def test_config_errors(base):
    with pytest.raises(ValueError, match="variant must be one of"):
        RobustFtConfig(base_model=base, variant="wise")
    with pytest.raises(ValueError, match="set base_model"):
        RobustFtConfig()
    with pytest.raises(ValueError, match="unknown strategy"):
        RobustFtConfig(base_model=base, masking_strategy="edges")
    with pytest.raises(ValueError, match=r"wise_alphas must lie in \[0, 1\]"):
        RobustFtConfig(base_model=base, wise_alphas=[2.0])
    os.remove(os.path.join(base, "preprocessor_config.json"))
    with pytest.raises(ValueError, match="no image processor to read the normalisation from"):
        run_robust_ft(*configs(os.path.join(base, "..", "out"), base), synthetic_data())


def ddp_worker(folder: str) -> None:
    """Runs in each debug_launcher process: masked_cf on 2 CPU processes, 4 images each per step."""
    out, base = os.path.join(folder, "ddp"), os.path.join(folder, "base")
    run_robust_ft(
        *configs(out, base, wise_alphas=(), eval_splits=["test_id", "test_ood_shuffled"]), synthetic_data()
    )


# debug_launcher forks; a fork of a process whose OpenMP pool already ran (this pytest process) hangs
# in libgomp, so the launcher runs from a fresh interpreter that computes nothing before forking.
LAUNCH = """
import sys
sys.path.insert(0, sys.argv[1])
from accelerate import debug_launcher
from tests.training.test_robust_ft_trainer import ddp_worker
debug_launcher(ddp_worker, args=(sys.argv[2],), num_processes=2)
"""


def test_two_processes_train_masked_cf(tmp_path, tiny_clip_tokenizer):
    save_base(tmp_path / "base", tiny_clip_tokenizer)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    launched = subprocess.run(
        [sys.executable, "-c", LAUNCH, root, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["steps"] == 3 and 0 < metrics["masked_fraction"] < 1
    assert set(metrics["masked_cf"]["accuracy"]) == {"test_id", "test_ood_shuffled"}
    assert isinstance(AutoModelForImageClassification.from_pretrained(tmp_path / "ddp"), ClipImageClassifier)
