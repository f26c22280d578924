"""The one Accelerate loop: it learns, resumes to the same weights, and runs as 1 or 2 processes."""

import json
import os
import subprocess
import sys

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from torch.utils.data import default_collate
from transformers import ResNetConfig, ViTConfig

from hf_counterfactual import PatConfig, PatForMultiLabelClassification
from hf_counterfactual.training import TrainingConfig, model_loss_step, train


def toy_dataset(n: int = 16, num_labels: int = 3, seed: int = 0) -> list[dict]:
    """Label c is on when channel c is shifted up: learnable from pixels in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, num_labels, generator=g) < 0.5).float()
    pixels = torch.randn(n, 3, 16, 16, generator=g) * 0.5 + 1.5 * labels[:, :, None, None]
    return [{"pixel_values": pixels[i], "labels": labels[i]} for i in range(n)]


def tiny_vit_pat(seed: int = 0, dropout: float = 0.0) -> PatForMultiLabelClassification:
    """No BatchNorm, so 1 and 2 processes compute the same gradients up to float error."""
    torch.manual_seed(seed)
    backbone = ViTConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=16,
        patch_size=8,
        hidden_dropout_prob=dropout,
    )
    config = PatConfig(backbone_config=backbone, num_labels=3, classifier_dropout=dropout)
    return PatForMultiLabelClassification(config)


def run_config(output_dir, **kwargs) -> TrainingConfig:
    defaults = dict(
        output_dir=str(output_dir), batch_size=4, learning_rate=1e-2, disable_progress_bar=True, seed=0
    )
    return TrainingConfig(**{**defaults, **kwargs})


def interrupted_at(call: int, step_fn=model_loss_step):
    """`step_fn`, raising KeyboardInterrupt at its `call`-th call: a run stopped mid-training."""
    calls = 0

    def step(model, batch):
        nonlocal calls
        calls += 1
        if calls == call:
            raise KeyboardInterrupt("simulated interruption")
        return step_fn(model, batch)

    return step


def test_training_reduces_loss_and_saves_safetensors(tmp_path):
    torch.manual_seed(0)
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    model = PatForMultiLabelClassification(PatConfig(backbone_config=backbone, num_labels=3))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    losses = []

    def recording_step(model, batch):
        loss, logs = model_loss_step(model, batch)
        losses.append(loss.item())
        return loss, logs

    config = run_config(tmp_path, num_epochs=3, lr_scheduler="constant")
    trained = train(config, model, toy_dataset(16), default_collate, step_fn=recording_step)

    assert len(losses) == 12  # 3 epochs of 16 / 4 batches
    first_epoch, last_epoch = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last_epoch < 0.75 * first_epoch, losses
    assert not torch.equal(trained.classifier.weight, initial["classifier.weight"])
    assert not torch.equal(
        trained.backbone.embedder.embedder.convolution.weight,
        initial["backbone.embedder.embedder.convolution.weight"],
    )
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.json").is_file()
    reloaded = PatForMultiLabelClassification.from_pretrained(tmp_path)
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in reloaded.state_dict().items())


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path):
    """Interrupted after the step-3 checkpoint, then resumed with 'latest': same weights as one run.

    16 samples / batch 4 = 4 steps an epoch, so the 6 steps cross an epoch and the resume starts
    mid-epoch (skipped batches); dropout makes the restored RNG matter.
    """
    data = toy_dataset(16)

    full = train(
        run_config(tmp_path / "a", max_steps=6, checkpointing_steps=3),
        tiny_vit_pat(dropout=0.2),
        data,
        default_collate,
    )

    config_b = run_config(tmp_path / "b", max_steps=6, checkpointing_steps=3)
    with pytest.raises(KeyboardInterrupt):
        train(config_b, tiny_vit_pat(dropout=0.2), data, default_collate, step_fn=interrupted_at(4))
    assert os.listdir(tmp_path / "b" / "checkpoints") == ["checkpoint_0"]
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()

    config_b.resume_from_checkpoint = "latest"
    resumed = train(config_b, tiny_vit_pat(seed=1, dropout=0.2), data, default_collate)

    expected, got = full.state_dict(), resumed.state_dict()
    assert not torch.equal(expected["classifier.weight"], tiny_vit_pat(seed=1).classifier.weight)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=0, msg=name)
    # the resumed run kept numbering checkpoints after the one it resumed from
    assert sorted(os.listdir(tmp_path / "b" / "checkpoints")) == ["checkpoint_0", "checkpoint_1"]


def test_fresh_run_into_a_folder_with_checkpoints_is_refused_before_training(tmp_path):
    """Accelerate would refuse to overwrite checkpoint_0 only at the first save, steps into the run."""
    data = toy_dataset(8)
    train(run_config(tmp_path, max_steps=2, checkpointing_steps=1), tiny_vit_pat(), data, default_collate)
    calls = []

    def counting_step(model, batch):
        calls.append(1)
        return model_loss_step(model, batch)

    with pytest.raises(ValueError, match="checkpoints of an earlier run: resume it"):
        train(
            run_config(tmp_path, max_steps=2, checkpointing_steps=1), tiny_vit_pat(), data, default_collate,
            step_fn=counting_step,
        )  # fmt: skip
    assert not calls
    # without checkpointing the folder's old checkpoints are left alone and the run goes ahead
    train(run_config(tmp_path, max_steps=1), tiny_vit_pat(), data, default_collate)


def ddp_worker(folder: str) -> None:
    """Runs in each debug_launcher process (module level, so the launcher script can import it)."""
    data = toy_dataset(16)
    try:
        train(run_config(os.path.join(folder, "odd"), batch_size=3), tiny_vit_pat(), data, default_collate)
        error = None
    except ValueError as e:
        error = str(e)
    train(run_config(os.path.join(folder, "ddp"), max_steps=6), tiny_vit_pat(), data, default_collate)
    # an evaluation that only the main process computes: its metrics reach the other process
    scores = iter([1.0, 3.0, 2.0])
    rank = torch.distributed.get_rank()
    config = run_config(
        os.path.join(folder, "eval"), max_steps=6, eval_steps=2, metric_for_best_model="score",
        load_best_model_at_end=True,
    )  # fmt: skip
    train(config, tiny_vit_pat(), data, default_collate, evaluate=lambda m: {"score": next(scores)} if rank == 0 else {})  # fmt: skip
    if rank == 0:
        with open(os.path.join(folder, "result.json"), "w") as f:
            json.dump({"world_size": torch.distributed.get_world_size(), "odd_batch_error": error}, f)


# debug_launcher forks; a fork of a process whose OpenMP pool already ran (this pytest process) hangs
# in libgomp, so the launcher runs from a fresh interpreter that computes nothing before forking.
LAUNCH = """
import sys
sys.path.insert(0, sys.argv[1])
from accelerate import debug_launcher
from test_loop import ddp_worker
debug_launcher(ddp_worker, args=(sys.argv[2],), num_processes=2)
"""


def test_two_processes_match_one_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    here = os.path.dirname(os.path.abspath(__file__))
    launched = subprocess.run(
        [sys.executable, "-c", LAUNCH, here, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]

    single = train(
        run_config(tmp_path / "single", max_steps=6), tiny_vit_pat(), toy_dataset(16), default_collate
    )

    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world_size"] == 2
    assert json.loads((tmp_path / "eval" / "trainer_state.json").read_text())["best_step"] == 4
    assert result["odd_batch_error"] == "batch_size=3 must be divisible by the 2 processes."
    two = PatForMultiLabelClassification.from_pretrained(tmp_path / "ddp").state_dict()
    one = single.state_dict()
    assert two.keys() == one.keys()
    assert not torch.equal(one["classifier.weight"], tiny_vit_pat().classifier.weight)  # it did train
    # Attention logits (the PAT patch-attention head, ViT keys) enter only through a softmax, which
    # ignores a shift shared by all patches / keys: those directions have zero true gradient, so Adam
    # turns float noise there into lr-sized steps. They cannot change any output; all else must match.
    shift_invariant = [n for n in one if n.startswith("patch_attention.") or n.endswith("k_proj.bias")]
    for name in one.keys() - shift_invariant:
        torch.testing.assert_close(two[name], one[name], atol=1e-5, rtol=1e-4, msg=name)
    model_two = tiny_vit_pat().eval()
    model_two.load_state_dict(two)
    batch = default_collate(toy_dataset(16))
    with torch.no_grad():
        expected, got = single.eval()(**batch), model_two(**batch)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got.pivot_logits, expected.pivot_logits, atol=1e-6, rtol=1e-5)


def test_compiled_model_trains_like_the_eager_one(tmp_path):
    """torch_compile goes through Accelerate's dynamo plugin ("aot_eager": traced forward and backward,
    no code generation, so the test is fast); the returned model is the plain module, and its weights match
    an eager run's."""
    torch._dynamo.reset()
    trained = {}
    for compile_ in (False, True):
        config = run_config(
            tmp_path / str(compile_), max_steps=3, torch_compile=compile_, torch_compile_backend="aot_eager"
        )
        trained[compile_] = train(config, tiny_vit_pat(), toy_dataset(12), default_collate)
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    assert type(trained[True]) is PatForMultiLabelClassification
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    for name, value in trained[False].state_dict().items():
        torch.testing.assert_close(trained[True].state_dict()[name], value, atol=1e-4, rtol=1e-3)


def test_drop_last_skips_the_incomplete_batch(tmp_path):
    sizes = []

    def recording_step(model, batch):
        sizes.append(len(batch["labels"]))
        return model_loss_step(model, batch)

    train(run_config(tmp_path, num_epochs=2, dataloader_drop_last=True), tiny_vit_pat(), toy_dataset(10), default_collate, recording_step)  # fmt: skip
    assert sizes == [4, 4, 4, 4]  # 10 examples: two full batches of 4 an epoch, the 2 left over dropped
    with pytest.raises(
        ValueError, match="no batch to train on: 3 examples with batch_size=4 and dataloader_drop_last"
    ):
        train(
            run_config(tmp_path, dataloader_drop_last=True), tiny_vit_pat(), toy_dataset(3), default_collate
        )


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="mixed_precision must be 'no', 'fp16' or 'bf16', got 'fp8'"):
        TrainingConfig(mixed_precision="fp8")
    with pytest.raises(ValueError, match="batch_size and gradient_accumulation_steps must be >= 1"):
        TrainingConfig(batch_size=0)


def weights_after(tmp_path, steps: int) -> dict:
    model = train(
        run_config(tmp_path, max_steps=steps, lr_scheduler="constant"), tiny_vit_pat(dropout=0.2), toy_dataset(16), default_collate
    )  # fmt: skip
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return model.state_dict()


def test_evaluation_keeps_the_best_weights_and_does_not_change_training(tmp_path):
    """Evaluations at steps 2, 4, 6, 8 score 1, 3, 2, 0: the returned (and saved) weights are step 4's,
    equal to a 4-step run's. The evaluation draws random numbers and switches to eval mode, yet a run
    that evaluates without keeping the best ends on the same weights as one that never evaluates."""
    scores = iter([1.0, 3.0, 2.0, 0.0])
    modes = []

    def evaluate(model):
        modes.append(model.training)
        torch.randn(100)  # the loop puts the random state back
        return {"score": next(scores), "other": 0.5}

    config = run_config(
        tmp_path / "best", max_steps=8, lr_scheduler="constant", eval_steps=2,
        metric_for_best_model="score", load_best_model_at_end=True,
    )  # fmt: skip
    best = train(config, tiny_vit_pat(dropout=0.2), toy_dataset(16), default_collate, evaluate=evaluate)
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    assert modes == [False] * 4
    state = json.loads((tmp_path / "best" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["eval_history"]] == [2, 4, 6, 8]
    assert (state["best_step"], state["best_metric"]) == (4, 3.0)
    four, eight = weights_after(tmp_path / "four", 4), weights_after(tmp_path / "eight", 8)
    saved = PatForMultiLabelClassification.from_pretrained(tmp_path / "best").state_dict()
    for name, value in four.items():
        torch.testing.assert_close(best.state_dict()[name], value, atol=1e-6, rtol=0, msg=name)
        torch.testing.assert_close(saved[name], value, atol=1e-6, rtol=0, msg=name)

    config = run_config(tmp_path / "last", max_steps=8, lr_scheduler="constant", eval_steps=3)
    last = train(config, tiny_vit_pat(dropout=0.2), toy_dataset(16), default_collate, evaluate=lambda m: {"x": torch.rand(()).item()})  # fmt: skip
    assert [e["step"] for e in json.loads((tmp_path / "last" / "trainer_state.json").read_text())["eval_history"]] == [3, 6, 8]  # fmt: skip
    assert not torch.equal(four["classifier.weight"], eight["classifier.weight"])
    for name, value in eight.items():
        torch.testing.assert_close(last.state_dict()[name], value, atol=1e-6, rtol=0, msg=name)


def test_resumed_run_remembers_the_best_evaluation(tmp_path):
    """Evaluated at steps 2 (score 5) and 4 (score 1), interrupted at step 5, resumed: step 6 scores 0, so
    the best is still step 2's weights, saved before the interruption."""
    scores = iter([5.0, 1.0, 0.0])
    config = run_config(
        tmp_path / "run", max_steps=6, lr_scheduler="constant", eval_steps=2, checkpointing_steps=2,
        metric_for_best_model="score", load_best_model_at_end=True,
    )  # fmt: skip

    def evaluate(model):
        return {"score": next(scores)}

    with pytest.raises(KeyboardInterrupt):
        train(config, tiny_vit_pat(dropout=0.2), toy_dataset(16), default_collate, interrupted_at(5), evaluate=evaluate)  # fmt: skip
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    config.resume_from_checkpoint = "latest"
    resumed = train(config, tiny_vit_pat(dropout=0.2), toy_dataset(16), default_collate, evaluate=evaluate)
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert [(e["step"], e["score"]) for e in state["eval_history"]] == [(2, 5.0), (4, 1.0), (6, 0.0)]
    assert state["best_step"] == 2
    for name, value in weights_after(tmp_path / "two", 2).items():
        torch.testing.assert_close(resumed.state_dict()[name], value, atol=1e-6, rtol=0, msg=name)


def test_evaluation_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="eval_steps is set but this method passed no evaluation function"):
        train(run_config(tmp_path, eval_steps=1), tiny_vit_pat(), toy_dataset(4), default_collate)
    config = run_config(tmp_path, max_steps=1, eval_steps=1, metric_for_best_model="accuracy")
    with pytest.raises(ValueError, match=r"metric_for_best_model='accuracy' is not among .*\['loss'\]"):
        train(config, tiny_vit_pat(), toy_dataset(4), default_collate, evaluate=lambda m: {"loss": 1.0})
    with pytest.raises(ValueError, match="eval_steps must be >= 1, got 0"):
        TrainingConfig(eval_steps=0)
    with pytest.raises(ValueError, match="load_best_model_at_end needs eval_steps and metric_for_best_model"):
        TrainingConfig(eval_steps=5, load_best_model_at_end=True)


def test_predict_gathers_every_score_in_order_with_worker_processes():
    """Scores of a linear model over 10 rows, by hand; DataLoader workers decode without changing them."""
    from hf_counterfactual.training.loop import predict

    rows = [{"x": torch.full((2,), float(i)), "labels": torch.tensor(i % 3)} for i in range(10)]
    model = torch.nn.Linear(2, 3)
    expected = model(torch.stack([r["x"] for r in rows])).detach().numpy()
    for workers in (0, 2):
        scores, labels = predict(model, rows, default_collate, lambda m, b: m(b["x"]), 4, num_workers=workers)
        assert scores.shape == (10, 3) and labels.tolist() == [i % 3 for i in range(10)]
        torch.testing.assert_close(torch.from_numpy(scores), torch.from_numpy(expected))
