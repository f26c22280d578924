"""`hf-counterfactual bench robust-ft`: masked-image counterfactual fine-tuning vs the usual baselines.

Per seed: build the spurious-background benchmark, pre-train a CLIP contrastively on its diverse split (the
"pre-trained model", so the zero-shot path is real), then from that one model score zero-shot, and train a
linear probe, vanilla fine-tuning (WiSE-FT mixes it with zero-shot), FT + feature distillation on clean
images, and masked-CF fine-tuning on the background-biased train split, with the same optimiser budget.
ID accuracy is on `test_id` (background tied to the class as in train), OOD accuracy the mean over shuffled
and unseen backgrounds; `step_cost_vs_vanilla` is seconds per optimizer step over vanilla FT's.

Scales: `quick` (a tiny CLIP, bias 0.95, 4 epochs: minutes on a CPU), `tiny_full` (the same with 10 epochs,
3 seeds, every strategy x refill), `medium` (a CLIP of 0.8 M vision parameters, bias 0.8, 20 fine-tuning
epochs, w = 2, object / single: about half an hour per seed on one CPU core) and `full` (`medium` with every
strategy x refill: about an hour per seed on 2 CPU cores). A run can go on from an earlier one into the same
output dir (`resume`) and run some of a scale's models only (`models`), so the full scale's models split over
processes or device calls.
"""

import logging
import os
import time

import numpy as np
import torch

from ..data.background_shift import BackgroundShiftConfig, build_background_shift
from ..data.sources import FASHION_MNIST_LABELS
from ..hub import finished_metrics
from ..training import TrainingConfig
from ..training.clip_pretrain_config import ClipPretrainConfig
from ..training.clip_pretrain_trainer import run_clip_pretrain
from ..training.robust_ft_config import RobustFtConfig
from ..training.robust_ft_trainer import run_robust_ft
from .resume import check_resumable

logger = logging.getLogger(__name__)

QUICK_MASKING = [("object", "single")]
ALL_MASKING = [(s, r) for s in ("object", "context", "random") for r in ("none", "single", "multi")]
MEDIUM_CLIP = {"vision_hidden_size": 128, "vision_layers": 4, "vision_heads": 2, "vision_intermediate_size": 512,
               "text_hidden_size": 64, "text_layers": 3, "text_heads": 1, "text_intermediate_size": 256,
               "projection_dim": 128}  # fmt: skip
TINY_CLIP = {"vision_hidden_size": 16, "vision_layers": 1, "vision_heads": 2, "vision_intermediate_size": 32,
             "text_hidden_size": 16, "text_layers": 1, "text_heads": 2, "text_intermediate_size": 32,
             "projection_dim": 16}  # fmt: skip
# The medium design: a CLIP whose vision tower fine-tuning can push far on the items (so vanilla FT's ID gain
# is not only the background shortcut), a moderate bias, and w = 2 (w = 30 holds the student at the teacher).
MEDIUM = {"shift": {"num_pretrain": 20_000, "num_train": 8000, "bias": 0.8}, "clip": MEDIUM_CLIP,
          "pretrain_epochs": 10, "pretrain_lr": 1e-3, "pretrain_batch_size": 256, "ft_epochs": 20,
          "distill_weight": 2.0}  # fmt: skip
SCALES = {
    "smoke": {"seeds": [0], "shift": {"num_pretrain": 96, "num_train": 64, "num_validation": 16, "num_test": 32},
              "pretrain_epochs": 1, "ft_epochs": 1, "masking": QUICK_MASKING, "clip": TINY_CLIP, "batch_size": 16},
    "quickstart": {"seeds": [0], "shift": {"num_pretrain": 5000, "num_train": 1500, "num_test": 600},
                   "pretrain_epochs": 4, "ft_epochs": 3, "masking": QUICK_MASKING},
    "quick": {"seeds": [0, 1], "shift": {}, "pretrain_epochs": 4, "ft_epochs": 4, "masking": QUICK_MASKING},
    "tiny_full": {"seeds": [0, 1, 2], "shift": {}, "pretrain_epochs": 10, "ft_epochs": 10, "masking": ALL_MASKING},
    "medium": {"seeds": [0, 1, 2], **MEDIUM, "masking": QUICK_MASKING},
    "full": {"seeds": [0, 1, 2], **MEDIUM, "masking": ALL_MASKING},
}  # fmt: skip
TARGETS = {"ood_gain_points": 5.0, "id_drop_points": 1.0, "step_cost_vs_vanilla": 2.5}
WISE_ALPHA = 0.5
EVAL_SPLITS = ["validation", "test_id", "test_ood_shuffled", "test_ood_unseen"]


def _train_config(
    output_dir: str, seed: int, epochs: int, show_progress: bool, **overrides
) -> TrainingConfig:
    settings = {
        "output_dir": output_dir,
        "seed": seed,
        "num_epochs": epochs,
        "batch_size": 64,
        "learning_rate": 1e-4,
        "weight_decay": 0.1,
        "lr_scheduler": "onecycle",
        "warmup_ratio": 0.02,
        "max_grad_norm": 1.0,
        "disable_progress_bar": not show_progress,
        **overrides,
    }
    return TrainingConfig(**settings)


def _scores(metrics: dict, key: str) -> dict:
    return {"id_acc": metrics[key]["id_accuracy"], "ood_acc": metrics[key]["ood_accuracy"]}


def _masked_models(scale: str) -> dict[str, dict]:
    """A scale's masked-image counterfactual FT models by name, each with the RobustFtConfig fields it sets."""
    return {
        f"masked_cf_{s}_{r}": {"masking_strategy": s, "masking_refill": r}
        for s, r in SCALES[scale]["masking"]
    }


def scale_models(scale: str) -> list[str]:
    """The models a scale trains and scores, in the order it runs them (WiSE-FT comes with vanilla_ft)."""
    return ["zero_shot", "linear_probe", "vanilla_ft", "ft_distill", *_masked_models(scale)]


def seed_settings(scale: str, seed: int, item_source: str) -> dict:
    """What a seed's models are measured with: the scale's settings but its seeds and its list of masking
    combinations, so that `medium` and `full` share their models."""
    sc = {k: v for k, v in SCALES[scale].items() if k not in ("seeds", "masking")}
    return {"seed": seed, "items": item_source, **sc}


def _finished(folder: str, resume: bool) -> dict | None:
    """The metrics of the run an earlier call finished in `folder`, if resuming (`finished_metrics`)."""
    metrics = finished_metrics(folder) if resume else None
    if metrics is not None:
        logger.info("robust FT bench: %s was finished by an earlier run", folder)
    return metrics


def run_robust_ft_seed(
    seed: int,
    scale: str,
    output_dir: str,
    show_progress: bool = True,
    item_source: str = "auto",
    models: list[str] | None = None,
    resume: bool = False,
) -> dict:
    """`models` (default: all of the scale's) of one seed: id_acc, ood_acc (and step_seconds for trained ones).

    With `resume` the pre-trained CLIP and every model an earlier run into `output_dir` finished (same settings)
    are loaded, not trained; their step_seconds are those measured then.
    """
    sc = SCALES[scale]
    every = scale_models(scale)
    models = models or every
    unknown = set(models) - set(every)
    if unknown:
        raise ValueError(f"scale {scale!r} has no model {sorted(unknown)}; it has {', '.join(every)}.")
    out = os.path.join(output_dir, f"seed{seed}")
    earlier_work = finished_metrics(os.path.join(out, "clip_pretrain")) is not None
    check_resumable(out, seed_settings(scale, seed, item_source), resume, earlier_work)
    pretrain_cfg = ClipPretrainConfig(**sc.get("clip", {}))
    data = build_background_shift(
        BackgroundShiftConfig(
            **{"seed": seed, "source": item_source, "image_size": pretrain_cfg.image_size, **sc["shift"]}
        )
    )
    base = os.path.join(out, "clip_pretrain")
    pretrain = _finished(base, resume) or run_clip_pretrain(
        _train_config(
            base,
            seed,
            sc["pretrain_epochs"],
            show_progress,
            learning_rate=sc.get("pretrain_lr", 3e-3),
            weight_decay=0.1,
            warmup_ratio=0.1,
            batch_size=sc.get("pretrain_batch_size", 64),
        ),
        pretrain_cfg,
        data,
    )
    runs = {}
    masking = _masked_models(scale)
    weight = {"distill_weight": sc["distill_weight"]} if "distill_weight" in sc else {}
    for name in [m for m in every if m in models]:
        variant = "masked_cf" if name.startswith("masked_cf") else name
        cfg = RobustFtConfig(
            base_model=base,
            variant=variant,
            eval_splits=EVAL_SPLITS,
            wise_alphas=[WISE_ALPHA],
            **masking.get(name, {}),
            **weight,
        )
        folder = os.path.join(out, name)
        ft_cfg = _train_config(
            folder, seed, sc["ft_epochs"], show_progress, batch_size=sc.get("batch_size", 64)
        )
        metrics = _finished(folder, resume) or run_robust_ft(ft_cfg, cfg, data)
        runs[name] = {**_scores(metrics, variant), "step_seconds": metrics.get("step_seconds")}
        if variant == "vanilla_ft":
            runs["wise_ft"] = _scores(metrics["wise_ft"], str(WISE_ALPHA))
        logger.info("robust FT seed %d, %s: %s", seed, name, runs[name])
    vanilla = runs.get("vanilla_ft", {}).get("step_seconds")
    for run in runs.values():
        if run.get("step_seconds") is not None and vanilla:
            run["step_cost_vs_vanilla"] = run["step_seconds"] / vanilla
    names = tuple(data["train"].features["label"].names)
    items = "fashion_mnist" if names == FASHION_MNIST_LABELS else "digits"  # what "auto" found
    return {
        "seed": seed,
        "items": items,
        "pretrain_zero_shot": pretrain["zero_shot_accuracy"],
        "models": runs,
    }


def run_robust_ft_benchmark(
    scale: str = "quick",
    seeds: list[int] | None = None,
    output_dir: str = "outputs/bench/robust_ft",
    show_progress: bool = True,
    item_source: str = "auto",
    models: list[str] | None = None,
    resume: bool = False,
) -> dict:
    """Mean over seeds of every model's figures, the per-seed figures, and whether the targets are met (these
    two with vanilla_ft among the models). `models` and `resume`: see `run_robust_ft_seed`."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}.")
    start = time.perf_counter()
    per_seed = [
        run_robust_ft_seed(s, scale, output_dir, show_progress, item_source, models, resume)
        for s in seeds or SCALES[scale]["seeds"]
    ]
    seconds = time.perf_counter() - start  # this call's: models an earlier run finished are not counted
    return summarize_robust_ft(per_seed, scale, seconds)


def summarize_robust_ft(per_seed: list[dict], scale: str, seconds: float) -> dict:
    """The benchmark's JSON from `run_robust_ft_seed` results (also of seeds run in separate processes)."""
    names = list(per_seed[0]["models"])
    models = {
        name: {
            key: float(np.mean([r["models"][name][key] for r in per_seed]))
            for key in per_seed[0]["models"][name]
            if per_seed[0]["models"][name][key] is not None
        }
        for name in names
    }
    vanilla = models.get("vanilla_ft")
    gains = {
        name: {
            "ood_gain_points": 100 * (m["ood_acc"] - vanilla["ood_acc"]),
            "id_delta_points": 100 * (m["id_acc"] - vanilla["id_acc"]),
        }
        for name, m in models.items()
        if name.startswith("masked_cf") and vanilla is not None
    }
    targets_met = {
        name: g["ood_gain_points"] >= TARGETS["ood_gain_points"]
        and g["id_delta_points"] >= -TARGETS["id_drop_points"]
        and models[name]["step_cost_vs_vanilla"] <= TARGETS["step_cost_vs_vanilla"]
        for name, g in gains.items()
    }
    return {
        "benchmark": "robust_ft",
        "scale": scale,
        "seeds": [r["seed"] for r in per_seed],
        "items": sorted({r["items"] for r in per_seed}),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        "models": models,
        "masked_cf_vs_vanilla": gains,
        "targets": TARGETS,
        "targets_met": targets_met,
        "per_seed": per_seed,
        "seconds": seconds,
    }


__all__ = [
    "SCALES",
    "run_robust_ft_benchmark",
    "run_robust_ft_seed",
    "scale_models",
    "seed_settings",
    "summarize_robust_ft",
]
