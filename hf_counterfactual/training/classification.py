"""Single-label image classifiers on the shared loop: the models that FIDO explains in its benchmark.

Any `AutoModelForImageClassification` config works; the model computes its own cross-entropy loss, so
the loop's default step function trains it.
"""

import time

import datasets
import PIL.Image
import torch
from accelerate import PartialState
from accelerate.utils import set_seed
from transformers import AutoConfig, AutoModelForImageClassification
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from ..data import ImageClassificationCollator
from ..hub import save_metrics_and_card
from ..models.adapters import classifier_logits
from .config import TrainingConfig
from .loop import predict, train


def build_image_classifier(backbone_config: dict, label_names: list[str]) -> torch.nn.Module:
    """A randomly initialised `AutoModelForImageClassification` from a config dict with a 'model_type'."""
    config = dict(backbone_config)
    if "model_type" not in config:
        raise ValueError(f"backbone_config needs a 'model_type' (e.g. 'resnet'); got keys {sorted(config)}.")
    config = AutoConfig.for_model(
        config.pop("model_type"),
        **config,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
    )
    return AutoModelForImageClassification.from_config(config)


def image_processor_for(
    collator: ImageClassificationCollator,
) -> ViTImageProcessorPil | CLIPImageProcessorPil:
    """The HF image processor that prepares images as `collator` does (bilinear resize, scale, normalise)."""
    if collator.center_crop:
        return CLIPImageProcessorPil(
            size={"shortest_edge": collator.image_size},
            crop_size={"height": collator.image_size, "width": collator.image_size},
            resample=PIL.Image.Resampling.BILINEAR,
            image_mean=list(collator.image_mean),
            image_std=list(collator.image_std),
        )
    return ViTImageProcessorPil(
        size={"height": collator.image_size, "width": collator.image_size},
        resample=PIL.Image.Resampling.BILINEAR,
        image_mean=list(collator.image_mean),
        image_std=list(collator.image_std),
    )


def accuracy(model: torch.nn.Module, dataset: datasets.Dataset, collator, batch_size: int = 64) -> float:
    """Top-1 accuracy of `model` on `dataset`."""
    logits, labels = predict(
        model, dataset, collator, lambda m, b: classifier_logits(m, b["pixel_values"]), batch_size
    )
    return float((logits.argmax(-1) == labels).mean()) if len(labels) else float("nan")


def card_metrics_of(metrics: dict) -> dict:
    """`{split}_accuracy` entries regrouped as {"accuracy": {split: value}}, the model card's layout."""
    accuracy = {k.removesuffix("_accuracy"): v for k, v in metrics.items() if k.endswith("_accuracy")}
    rest = {k: v for k, v in metrics.items() if not k.endswith("_accuracy")}
    return {"accuracy": accuracy, **rest}


def fit_classifier(
    train_cfg: TrainingConfig,
    model: torch.nn.Module,
    collator: ImageClassificationCollator,
    train_data: datasets.Dataset,
    eval_data: dict[str, datasets.Dataset],
) -> tuple[torch.nn.Module, dict]:
    """Train `model` on the shared loop, save its image processor and model card; accuracy per eval split.

    Undecodable rows skipped by `collator` in training or evaluation are counted in `skipped_samples`.
    """
    start = time.perf_counter()
    model = train(train_cfg, model, train_data, collator)
    if PartialState().is_main_process:  # so AutoImageProcessor.from_pretrained(output_dir) prepares inputs
        image_processor_for(collator).save_pretrained(train_cfg.output_dir)
    metrics = {"train_seconds": time.perf_counter() - start}
    for split, dataset in eval_data.items():
        metrics[f"{split}_accuracy"] = accuracy(model, dataset, collator, train_cfg.eval_batch_size)
    if collator.skipped:
        metrics["skipped_samples"] = collator.skipped
    if PartialState().is_main_process:
        save_metrics_and_card(train_cfg.output_dir, "classifier", card_metrics_of(metrics))
    return model, metrics


def train_image_classifier(
    train_cfg: TrainingConfig,
    data: datasets.DatasetDict,
    backbone_config: dict,
    image_size: int,
    label_column: str = "label",
) -> tuple[torch.nn.Module, dict]:
    """Train a classifier on `data["train"]`; returns it (saved to output_dir) and its accuracy per split."""
    names = data["train"].features[label_column].names
    collator = ImageClassificationCollator(len(names), image_size, label_column=label_column)
    set_seed(train_cfg.seed)
    model = build_image_classifier(backbone_config, names)
    eval_data = {split: data[split] for split in data if split != "train"}
    return fit_classifier(train_cfg, model, collator, data["train"], eval_data)
