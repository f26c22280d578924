"""Robust fine-tuning runs on the shared loop: zero-shot, linear probe, vanilla FT, FT + feature distillation,
masked-image counterfactual FT (arXiv 2303.03052), each scored with WiSE-FT weight interpolation.

The student starts as the base model's zero-shot classifier (`ClipImageClassifier.from_zero_shot` of a saved
`CLIPModel`, eager attention for the CAMs; or a saved image classifier as is). A frozen copy of it is the
teacher of the distillation variants and the zero-shot end of WiSE-FT. The loop trains a
`MaskedCounterfactualFineTuner` around the student and saves the student alone to `output_dir` (with an image
processor), loadable with `AutoModelForImageClassification.from_pretrained` once `hf_counterfactual.robust` is
imported. metrics.json (and the model card built from it) holds the accuracy per split of the trained model,
the zero-shot model and each WiSE-FT mix, and `step_seconds`, the mean wall time of an optimizer step, for
step-cost comparisons between variants. With `TrainingConfig.eval_steps` the student is scored on
`selection_split` along the way (trainer_state.json), for the paper's model selection on held-out images.
"""

import copy
import dataclasses
import logging
import os
import time
from dataclasses import asdict, dataclass

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

from ..data import ImageClassificationCollator
from ..data.background_shift import BackgroundShiftConfig, build_background_shift
from ..data.imagenet import class_groups, grouped_logits, imagenet_class_names, imagenet_templates
from ..hub import save_metrics_and_card
from ..models.adapters import classifier_logits
from ..models.clip_zero_shot import ClipZeroShotClassifier
from ..robust.clip_classifier import ClipImageClassifier
from ..robust.distillation import MaskedCounterfactualFineTuner
from ..robust.wise_ft import freeze_all_but_head, wise_ft
from .classification import image_processor_for
from .config import TrainingConfig
from .loop import make_accelerator, predict, train
from .robust_ft_config import EvalDataset, RobustFtConfig

logger = logging.getLogger(__name__)


def load_zero_shot_model(
    cfg: RobustFtConfig, class_names: list[str], templates: list[str], device: torch.device | None = None
) -> torch.nn.Module:
    """The model fine-tuning starts from: CLIP's zero-shot classifier with a trainable head (its prompts
    embedded on `device`), or the classifier."""
    if AutoConfig.from_pretrained(cfg.base_model).model_type == "clip":
        zero_shot = ClipZeroShotClassifier.from_pretrained(
            cfg.base_model, class_names, tuple(templates), device, attn_implementation="eager"
        )
        return ClipImageClassifier.from_zero_shot(zero_shot)
    model = AutoModelForImageClassification.from_pretrained(cfg.base_model, attn_implementation="eager")
    if model.config.num_labels != len(class_names):
        raise ValueError(
            f"{cfg.base_model} has {model.config.num_labels} classes, the data {len(class_names)}; "
            "fine-tune from a CLIPModel or from a classifier of the data's classes."
        )
    return model


def input_settings(cfg: RobustFtConfig) -> tuple[int, tuple, tuple]:
    """(image_size, mean, std): the config's, else the base model's `image_size` and its image processor's."""
    config = AutoConfig.from_pretrained(cfg.base_model)
    config = config.vision_config if config.model_type == "clip" else config
    image_size = cfg.image_size or getattr(config, "image_size", None)
    if not isinstance(image_size, int):
        raise ValueError(f"cannot tell the input size of {cfg.base_model}; set image_size.")
    mean, std = cfg.image_mean, cfg.image_std
    if mean is None or std is None:
        try:
            processor = AutoImageProcessor.from_pretrained(cfg.base_model)
        except (OSError, ValueError) as e:
            raise ValueError(
                f"{cfg.base_model} has no image processor to read the normalisation from; set image_mean "
                "and image_std."
            ) from e
        mean, std = mean or processor.image_mean, std or processor.image_std
    return image_size, tuple(mean), tuple(std)


def load_robust_ft_data(cfg: RobustFtConfig, image_size: int, seed: int = 0) -> datasets.DatasetDict:
    """`dataset_path` from disk, `dataset_name` with `load_dataset`, or the background-shift benchmark."""
    if cfg.dataset_path is not None:
        return datasets.load_from_disk(cfg.dataset_path)
    if cfg.dataset_name is not None:
        return datasets.load_dataset(cfg.dataset_name)
    shift = BackgroundShiftConfig(**{"seed": seed, "image_size": image_size, **cfg.background_shift})
    return build_background_shift(shift)


def hold_out_selection(cfg: RobustFtConfig, data: datasets.DatasetDict, seed: int) -> datasets.DatasetDict:
    """`data` with `selection_size` train images (drawn with `seed`) moved to `selection_split`, when the data
    has no such split; else `data` as is."""
    if not cfg.selection_size or cfg.selection_split in data or cfg.train_split not in data:
        return data
    train = data[cfg.train_split]
    if cfg.selection_size >= len(train):
        raise ValueError(f"selection_size {cfg.selection_size} leaves nothing of {len(train)} train images.")
    held = train.train_test_split(test_size=cfg.selection_size, seed=seed)
    return datasets.DatasetDict({**data, cfg.train_split: held["train"], cfg.selection_split: held["test"]})


def prompt_classes(cfg: RobustFtConfig, features: datasets.Features) -> tuple[list[str], list[str]]:
    """(class names, prompt templates) of the zero-shot head: the config's, its class set's, or the names of
    the label column's `ClassLabel` (lower case) and "a photo of a {}."."""
    label = features[cfg.label_column]
    imagenet = cfg.class_set == "imagenet"
    names = cfg.class_names or (imagenet_class_names() if imagenet else None)
    if names is None:
        if not isinstance(label, datasets.ClassLabel):
            raise ValueError(
                f"column {cfg.label_column!r} holds {label}, not a ClassLabel; set class_names or class_set."
            )
        names = [name.lower() for name in label.names]
    if isinstance(label, datasets.ClassLabel) and label.num_classes != len(names):
        raise ValueError(f"{len(names)} class_names for {label.num_classes} labels.")
    templates = cfg.templates or (imagenet_templates() if imagenet else ["a photo of a {}."])
    return list(names), list(templates)


@dataclass
class ScoredSet:
    """A dataset `split_accuracies` scores: its collator, its class groups (None: the model's classes) and
    whether it counts into `ood_accuracy`."""

    data: datasets.Dataset
    collator: ImageClassificationCollator
    groups: list[list[int]] | None = None
    ood: bool = False


def scored_sets(
    cfg: RobustFtConfig, data: datasets.DatasetDict, splits: list[str], collator: ImageClassificationCollator
) -> dict[str, ScoredSet]:
    """The splits of `data` (OOD: named *ood*) and the config's `eval_datasets`, loaded with `load_dataset`."""
    sets = {split: ScoredSet(data[split], collator, ood="ood" in split) for split in splits}
    for name, spec in cfg.eval_datasets.items():
        if name in sets:
            raise ValueError(f"eval dataset {name!r} has the name of a split of the data; rename it.")
        spec = EvalDataset(**spec)
        groups = class_groups(spec.class_groups, collator.num_labels) if spec.class_groups else None
        dataset = datasets.load_dataset(spec.path, spec.name, split=spec.split)
        for column in (spec.image_column, spec.label_column):
            if column not in dataset.column_names:
                raise ValueError(f"eval dataset {name!r} has columns {dataset.column_names}, no {column!r}.")
        set_collator = dataclasses.replace(
            collator,
            num_labels=len(groups) if groups else collator.num_labels,
            image_column=spec.image_column,
            label_column=spec.label_column,
        )
        sets[name] = ScoredSet(dataset, set_collator, groups, spec.ood)
    return sets


def split_accuracies(
    model: torch.nn.Module,
    sets: dict[str, ScoredSet],
    batch_size: int,
    accelerator: Accelerator,
    id_split: str | None,
    num_workers: int = 0,
) -> dict:
    """Top-1 accuracy per set (over its class groups, if any); `id_accuracy` on `id_split`, `ood_accuracy` the
    mean over the OOD sets."""
    accuracy = {}
    for name, scored in sets.items():

        def score(m: torch.nn.Module, batch: dict, groups=scored.groups) -> torch.Tensor:
            logits = classifier_logits(m, batch["pixel_values"])
            return logits if groups is None else grouped_logits(logits, groups)

        logits, labels = predict(
            model, scored.data, scored.collator, score, batch_size, accelerator, name, num_workers
        )
        accuracy[name] = float((logits.argmax(-1) == labels).mean()) if len(labels) else float("nan")
    out = {"accuracy": accuracy}
    if id_split in accuracy:
        out["id_accuracy"] = accuracy[id_split]
    ood = [accuracy[name] for name, scored in sets.items() if scored.ood]
    if ood:
        out["ood_accuracy"] = float(np.mean(ood))
    return out


def build_fine_tuner(
    cfg: RobustFtConfig, zero_shot: torch.nn.Module, seed: int
) -> MaskedCounterfactualFineTuner:
    """The student (a copy of `zero_shot`) under the variant's objective; `zero_shot` becomes the teacher."""
    student = copy.deepcopy(zero_shot).requires_grad_(True)
    if cfg.variant == "linear_probe":
        freeze_all_but_head(student)
    distill_on = {"ft_distill": "clean", "masked_cf": "masked"}.get(cfg.variant)
    return MaskedCounterfactualFineTuner(
        student,
        teacher=zero_shot if distill_on else None,
        masking=cfg.masking() if distill_on == "masked" else None,
        distill_weight=cfg.distill_weight,
        distill_on=distill_on,
        seed=seed,
    )


def mean_step_seconds(
    starts: list[float], accumulation: int, pauses: dict[int, float] | None = None
) -> float:
    """Mean seconds per optimizer step from the start times of the micro-steps; the first interval (warm-up)
    is left out when there are others. `pauses` maps an interval's index to seconds spent in it on other
    work (evaluations), which are taken out."""
    intervals = np.diff(starts)
    for index, seconds in (pauses or {}).items():
        if index < len(intervals):
            intervals[index] -= seconds
    intervals = intervals[1:] if len(intervals) > 1 else intervals
    return float(intervals.mean() * accumulation) if len(intervals) else float("nan")


def run_robust_ft(
    train_cfg: TrainingConfig, cfg: RobustFtConfig, data: datasets.DatasetDict | None = None
) -> dict:
    """Train one variant from `cfg.base_model`, score it, the zero-shot model and WiSE-FT; write metrics.json.

    `data` (a DatasetDict with `cfg.train_split` and the eval splits, an image column and a label column of
    class ids, a `ClassLabel` unless `cfg` names the classes) replaces the data `cfg` describes and gets its
    `selection_size` held-out split too; the config's `eval_datasets` are scored besides its splits. Returns the metrics: per model (the variant, "zero_shot",
    "wise_ft" / alpha) the accuracy per split, `id_accuracy` and `ood_accuracy`; and for trained variants
    `step_seconds` (mean seconds per optimizer step, the first left out as warm-up), `steps`, `train_seconds`,
    `trainable_parameters`, and for masked_cf `masked_fraction` (mean) and `distill_skipped_steps`. A model card
    (README.md) built from them goes next to the saved model.
    """
    accelerator = make_accelerator(train_cfg)
    image_size, mean, std = input_settings(cfg)
    dataset_name = None if data is not None else cfg.dataset_path or cfg.dataset_name or "background shift"
    if data is None:
        data = load_robust_ft_data(cfg, image_size, seed=train_cfg.seed)
    data = hold_out_selection(cfg, data, train_cfg.seed)
    splits = cfg.eval_splits or [s for s in data if s != cfg.train_split]
    selection = [cfg.selection_split] if train_cfg.eval_steps else []
    missing = {cfg.train_split, *splits, *selection} - set(data)
    if missing:
        raise ValueError(f"the dataset has splits {sorted(data)}; missing {sorted(missing)}.")
    for column in (cfg.image_column, cfg.label_column):
        if column not in data[cfg.train_split].column_names:
            raise ValueError(
                f"{cfg.train_split} has columns {data[cfg.train_split].column_names}, no {column!r}."
            )
    class_names, templates = prompt_classes(cfg, data[cfg.train_split].features)
    collator = ImageClassificationCollator(
        len(class_names), image_size, mean, std, image_column=cfg.image_column, label_column=cfg.label_column,
        center_crop=cfg.center_crop,
    )  # fmt: skip
    sets = scored_sets(cfg, data, splits, collator)
    set_seed(train_cfg.seed)  # the same initial weights in every run and process
    zero_shot = load_zero_shot_model(cfg, class_names, templates, accelerator.device).eval()
    zero_shot.requires_grad_(False)
    results: dict = {"variant": cfg.variant}
    evaluate = {"sets": sets, "batch_size": train_cfg.eval_batch_size, "accelerator": accelerator,
                "id_split": cfg.id_split, "num_workers": train_cfg.num_workers}  # fmt: skip

    if cfg.variant == "zero_shot":
        model = zero_shot
        if accelerator.is_main_process:
            zero_shot.save_pretrained(train_cfg.output_dir)
    else:
        fine_tuner = build_fine_tuner(cfg, zero_shot, seed=train_cfg.seed + accelerator.process_index)
        starts, masked = [], []

        def step(model, batch):
            starts.append(time.perf_counter())
            out = model(**batch)
            logs = {"loss": out.loss.item(), "ce_loss": out.ce_loss.item()}
            if out.distill_loss is not None:
                logs["distill_loss"] = out.distill_loss.item()
            if out.masked_fraction is not None:
                logs["masked_fraction"] = out.masked_fraction.item()
                masked.append(logs["masked_fraction"])
            return out.loss, logs

        pauses = {}

        held_out = {split: ScoredSet(data[split], collator) for split in selection}

        def select(fine_tuner: MaskedCounterfactualFineTuner) -> dict[str, float]:
            begin = time.perf_counter()
            scores = split_accuracies(fine_tuner.student, **{**evaluate, "sets": held_out})
            pauses[len(starts) - 1] = time.perf_counter() - begin  # not a training step's time
            return {f"{cfg.selection_split}_accuracy": scores["accuracy"][cfg.selection_split]}

        start = time.perf_counter()
        fine_tuner = train(
            train_cfg, fine_tuner, data[cfg.train_split], collator, step, accelerator, evaluate=select
        )
        results.update(
            step_seconds=mean_step_seconds(starts, train_cfg.gradient_accumulation_steps, pauses),
            steps=len(starts) // train_cfg.gradient_accumulation_steps,
            train_seconds=time.perf_counter() - start,
            trainable_parameters=sum(p.numel() for p in fine_tuner.parameters() if p.requires_grad),
        )
        if cfg.variant == "masked_cf":
            results["masked_fraction"] = float(np.mean(masked)) if masked else float("nan")
            results["distill_skipped_steps"] = fine_tuner.distill_skipped
        model = fine_tuner.student.eval()
    os.makedirs(train_cfg.output_dir, exist_ok=True)
    if accelerator.is_main_process:  # so AutoImageProcessor.from_pretrained(output_dir) prepares inputs
        image_processor_for(collator).save_pretrained(train_cfg.output_dir)

    results[cfg.variant] = split_accuracies(model, **evaluate)
    if cfg.variant != "zero_shot":
        results["zero_shot"] = split_accuracies(zero_shot, **evaluate)
        results["wise_ft"] = {
            str(alpha): split_accuracies(wise_ft(zero_shot, model, alpha).eval(), **evaluate)
            for alpha in cfg.wise_alphas
        }
    skipped = sum({id(s.collator): s.collator.skipped for s in sets.values()}.values())
    if skipped:
        results["skipped_samples"] = skipped
    if accelerator.is_main_process:
        logger.info("robust fine-tuning: %s", results)
        save_metrics_and_card(
            train_cfg.output_dir,
            "robust_ft",
            results,
            dataset=dataset_name,
            training_config={**asdict(train_cfg), **asdict(cfg)},
        )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results
