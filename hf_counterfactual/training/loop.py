"""The one Accelerate training loop. Methods bring a model, a dataset, a collator and a step function.

A step function maps (model, batch) to (loss, logs): `model(**batch).loss` for models that compute
their own loss, something else for methods with extra terms. An optional evaluation function maps the
model to metrics, run every `eval_steps` (and ranked by `metric_for_best_model` to keep the best
weights). Everything else -- devices, mixed precision, gradient accumulation, DDP, checkpoints and
resume, logging -- lives here, once.
"""

import json
import logging
import math
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import (
    DataLoaderConfiguration,
    ProjectConfiguration,
    TorchDynamoPlugin,
    broadcast_object_list,
    set_seed,
)
from safetensors.torch import load_model, save_model
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from .config import TrainingConfig

logger = logging.getLogger(__name__)

StepFn = Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict[str, float]]]
EvalFn = Callable[[torch.nn.Module], dict[str, float]]
BEST_MODEL_FILE = os.path.join("best_model", "model.safetensors")


def model_loss_step(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Default step: the model computes its own loss from the batch."""
    loss = model(**batch).loss
    return loss, {"loss": loss.item()}


@dataclass
class TrainProgress:
    """Optimizer steps done and the evaluations so far; saved in every checkpoint so a resumed run knows
    where it stopped and which evaluated weights were best."""

    step: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    eval_history: list[dict] = field(default_factory=list)

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self.best_metric, self.best_step = state.get("best_metric"), state.get("best_step")
        self.eval_history = list(state.get("eval_history", []))


def _rng_states() -> tuple:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda


def _set_rng_states(states: tuple) -> None:
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])
    if states[3] is not None:
        torch.cuda.set_rng_state_all(states[3])


def run_evaluation(
    evaluate: EvalFn,
    model: torch.nn.Module,
    accelerator: Accelerator,
    progress: TrainProgress,
    config: TrainingConfig,
) -> dict[str, float]:
    """Evaluate `model` (unwrapped, in eval mode) and rank it; the best weights go to output_dir/best_model.

    `evaluate` runs on every process and the main process's metrics count (so a function may gather
    across processes, or work on the main process alone and return {} elsewhere). The random state is
    put back afterwards: a run that evaluates trains the same weights as one that does not.
    """
    states = _rng_states()
    unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)
    unwrapped.eval()
    metrics = evaluate(unwrapped)
    model.train()
    _set_rng_states(states)
    metrics = broadcast_object_list([metrics])[0]
    progress.eval_history.append({"step": progress.step, **metrics})
    accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=progress.step)
    logger.info("step %d evaluation: %s", progress.step, metrics)
    key = config.metric_for_best_model
    if key is None:
        return metrics
    if key not in metrics:
        raise ValueError(
            f"metric_for_best_model={key!r} is not among the evaluation's metrics {sorted(metrics)}."
        )
    value = float(metrics[key])
    best = progress.best_metric
    if best is None or (value > best if config.greater_is_better else value < best):
        progress.best_metric, progress.best_step = value, progress.step
        if accelerator.is_main_process:
            os.makedirs(os.path.join(config.output_dir, "best_model"), exist_ok=True)
            save_model(unwrapped, os.path.join(config.output_dir, BEST_MODEL_FILE))
        accelerator.wait_for_everyone()
    return metrics


def make_accelerator(config: TrainingConfig) -> Accelerator:
    """An Accelerator with the loop's conventions: global batch split across processes, seeded order.

    With `torch_compile`, `prepare` compiles the model; otherwise Accelerate's own settings apply (e.g.
    `accelerate launch --dynamo_backend inductor`).
    """
    dynamo = None
    if config.torch_compile:
        dynamo = TorchDynamoPlugin(backend=config.torch_compile_backend, mode=config.torch_compile_mode)
    return Accelerator(
        dynamo_plugin=dynamo,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision,
        log_with=config.log_with,
        project_config=ProjectConfiguration(
            project_dir=config.output_dir,
            automatic_checkpoint_naming=True,
            total_limit=config.checkpoints_total_limit,
        ),
        dataloader_config=DataLoaderConfiguration(split_batches=True, use_seedable_sampler=True),
    )


def _resolve_checkpoint(config: TrainingConfig) -> str | None:
    if config.resume_from_checkpoint != "latest":
        return config.resume_from_checkpoint
    root = os.path.join(config.output_dir, "checkpoints")
    names = [n for n in os.listdir(root) if n.startswith("checkpoint_")] if os.path.isdir(root) else []
    if not names:
        return None
    return os.path.join(root, max(names, key=lambda n: int(n.split("_")[-1])))


def train(
    config: TrainingConfig,
    model: torch.nn.Module,
    train_dataset,
    collate_fn: Callable,
    step_fn: StepFn = model_loss_step,
    accelerator: Accelerator | None = None,
    tracker_name: str = "hf-counterfactual",
    evaluate: EvalFn | None = None,
) -> torch.nn.Module:
    """Train `model` on `train_dataset` and return the unwrapped model (also saved to output_dir).

    Pass an `accelerator` to keep using it afterwards (e.g. for `predict`); its owner then calls
    `end_training()`, which also closes the process group. With `config.eval_steps`, `evaluate(model)`
    runs every eval_steps optimizer steps and at the last one (see `run_evaluation`); the evaluations
    and the best step go to output_dir/trainer_state.json.
    """
    if config.eval_steps and evaluate is None:
        raise ValueError("eval_steps is set but this method passed no evaluation function to train().")
    owns_accelerator = accelerator is None
    accelerator = accelerator or make_accelerator(config)
    if config.batch_size % accelerator.num_processes:
        raise ValueError(
            f"batch_size={config.batch_size} must be divisible by the {accelerator.num_processes} processes."
        )
    set_seed(config.seed)
    dataloader = DataLoader(
        train_dataset,
        batch_size=config.batch_size,
        shuffle=True,
        collate_fn=collate_fn,
        num_workers=config.num_workers,
        # its own generator: starting an epoch must not draw from the global RNG, or a resumed run
        # (which starts one extra, batch-skipping iterator) gets a shifted dropout / augmentation stream
        generator=torch.Generator().manual_seed(config.seed),
        drop_last=config.dataloader_drop_last,
    )
    if not len(dataloader):
        drop = " and dataloader_drop_last=True" if config.dataloader_drop_last else ""
        raise ValueError(
            f"no batch to train on: {len(train_dataset)} examples with batch_size={config.batch_size}{drop}."
        )
    steps_per_epoch = math.ceil(len(dataloader) / config.gradient_accumulation_steps)
    total_steps = config.max_steps or config.num_epochs * steps_per_epoch
    num_epochs = math.ceil(total_steps / steps_per_epoch)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params,
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.weight_decay,
    )
    if config.lr_scheduler == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.learning_rate, total_steps=total_steps, pct_start=config.warmup_ratio
        )
    else:
        scheduler = get_scheduler(
            config.lr_scheduler,
            optimizer,
            num_warmup_steps=int(config.warmup_ratio * total_steps),
            num_training_steps=total_steps,
        )
    model, optimizer, dataloader, scheduler = accelerator.prepare(model, optimizer, dataloader, scheduler)
    progress = TrainProgress()
    accelerator.register_for_checkpointing(progress)

    checkpoint = _resolve_checkpoint(config)
    stale = os.path.join(config.output_dir, "checkpoints")
    if not checkpoint and config.checkpointing_steps and os.path.isdir(stale) and os.listdir(stale):
        # caught here, not at the first save_state (which refuses an existing checkpoint_0) hours later
        raise ValueError(
            f"{stale} holds checkpoints of an earlier run: resume it with resume_from_checkpoint='latest' "
            "or train into another output_dir."
        )
    if checkpoint:
        accelerator.load_state(checkpoint)
        # automatic checkpoint naming continues from the folder we resumed
        accelerator.project_configuration.iteration = int(checkpoint.rstrip("/").split("_")[-1]) + 1
        logger.info("resumed from %s at step %d", checkpoint, progress.step)
    if config.log_with:
        accelerator.init_trackers(
            tracker_name, config={k: v for k, v in asdict(config).items() if v is not None}
        )

    bar = tqdm(
        total=total_steps,
        initial=progress.step,
        desc="train",
        disable=config.disable_progress_bar or not accelerator.is_local_main_process,
    )
    start_epoch = progress.step // steps_per_epoch
    skip_batches = (progress.step % steps_per_epoch) * config.gradient_accumulation_steps
    model.train()
    for epoch in range(start_epoch, num_epochs):
        dataloader.set_epoch(epoch)
        batches = dataloader
        if epoch == start_epoch and skip_batches:
            batches = accelerator.skip_first_batches(dataloader, skip_batches)
        for batch in batches:
            if progress.step >= total_steps:
                break
            with accelerator.accumulate(model):
                loss, logs = step_fn(model, batch)
                if not torch.isfinite(loss):
                    accelerator.save_state()
                    raise FloatingPointError(
                        f"loss is {loss.item()} at step {progress.step}; state saved under {config.output_dir}/checkpoints."
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            progress.step += 1
            bar.update(1)
            if progress.step % config.logging_steps == 0 or progress.step == total_steps:
                logs = {**logs, "lr": scheduler.get_last_lr()[0], "epoch": epoch}
                bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()})
                accelerator.log(logs, step=progress.step)
            if config.eval_steps and (progress.step % config.eval_steps == 0 or progress.step == total_steps):
                run_evaluation(evaluate, model, accelerator, progress, config)
            if config.checkpointing_steps and progress.step % config.checkpointing_steps == 0:
                accelerator.save_state()
    bar.close()

    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)
    if config.load_best_model_at_end and progress.best_step is not None:
        load_model(unwrapped, os.path.join(config.output_dir, BEST_MODEL_FILE))
        logger.info(
            "loaded the best model: step %d, %s = %s",
            progress.best_step,
            config.metric_for_best_model,
            progress.best_metric,
        )
    if config.eval_steps and accelerator.is_main_process:
        os.makedirs(config.output_dir, exist_ok=True)
        with open(os.path.join(config.output_dir, "trainer_state.json"), "w") as f:
            json.dump(progress.state_dict(), f, indent=1)
    if hasattr(unwrapped, "save_pretrained"):
        unwrapped.save_pretrained(
            config.output_dir, is_main_process=accelerator.is_main_process, save_function=accelerator.save
        )
    if owns_accelerator:
        accelerator.end_training()
    return unwrapped


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    dataset,
    collate_fn: Callable,
    score_fn: Callable[[torch.nn.Module, dict], torch.Tensor],
    batch_size: int = 64,
    accelerator: Accelerator | None = None,
    desc: str = "predict",
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels for every example, gathered across processes (duplicates from padding dropped);
    `num_workers` DataLoader processes decode the images."""
    accelerator = accelerator or Accelerator()
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_fn, num_workers=num_workers)
    dataloader = accelerator.prepare(loader)
    model = model.to(accelerator.device).eval()
    scores, labels = [], []
    for batch in tqdm(dataloader, desc=desc, disable=not accelerator.is_local_main_process, leave=False):
        with accelerator.autocast():
            batch_scores = score_fn(model, batch).float()
        batch_scores, batch_labels = accelerator.gather_for_metrics((batch_scores, batch["labels"]))
        scores.append(batch_scores.cpu())
        labels.append(batch_labels.cpu())
    return torch.cat(scores).numpy(), torch.cat(labels).numpy()
