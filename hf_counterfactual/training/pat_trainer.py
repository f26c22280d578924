"""PAT runs on the shared loop: build data and model, train PAT-T or a plain model, evaluate with PAT-I."""

import dataclasses
import logging
import time
from dataclasses import asdict

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import AutoConfig, AutoModelForImageClassification

from ..data import (
    CooccurrenceMosaicConfig,
    MultiLabelCollator,
    MultiLabelZoomCrop,
    build_cooccurrence_mosaics,
    load_coco_multilabel,
    load_item_source,
    load_voc_multilabel,
    mosaic_config_of,
)
from ..hub import save_metrics_and_card
from ..metrics import multilabel_report
from ..models.adapters import classifier_logits
from ..models.pat import PatchingInference, PatConfig, PatForMultiLabelClassification, multilabel_loss
from .config import TrainingConfig
from .loop import make_accelerator, predict, train
from .pat_config import PatTrainConfig

logger = logging.getLogger(__name__)


def top_cooccurring_pairs(labels: np.ndarray, k: int, min_support: int = 20) -> list[list[int]]:
    """The k pairs [i, j] with the highest P(y_i = 1 | y_j = 1) in `labels` (n, C), j seen >= min_support times."""
    counts = labels.T @ labels  # counts[i, j] = #{y_i = 1, y_j = 1}
    support = np.diag(counts)
    cond = counts / np.maximum(support[None, :], 1)
    np.fill_diagonal(cond, -1)
    cond[:, support < min_support] = -1
    order = np.argsort(-cond, axis=None)[:k]
    return [
        [int(i), int(j)] for i, j in zip(*np.unravel_index(order, cond.shape), strict=True) if cond[i, j] > 0
    ]


def _multi_hot(dataset: datasets.Dataset, num_labels: int) -> np.ndarray:
    out = np.zeros((len(dataset), num_labels), dtype=np.float32)
    for row, labels in enumerate(dataset["labels"]):
        out[row, labels] = 1
    return out


def load_pat_data(cfg: PatTrainConfig, seed: int = 0) -> tuple[datasets.DatasetDict, list[list[int]]]:
    """train / validation / test splits with a `labels` column of class ids, and the pairs to evaluate."""
    pairs = cfg.eval_pairs
    if cfg.dataset == "mosaics":
        mosaic = CooccurrenceMosaicConfig(**{"seed": seed, **cfg.mosaic})
        data = build_cooccurrence_mosaics(mosaic, load_item_source(cfg.item_source, cfg.item_source_path))
        return data, pairs or mosaic.biased_pairs
    if cfg.dataset == "disk":
        if not cfg.dataset_path:
            raise ValueError("dataset='disk' needs dataset_path (a DatasetDict saved with save_to_disk).")
        data = datasets.load_from_disk(cfg.dataset_path)
        if pairs is None:
            try:
                pairs = mosaic_config_of(data["test"]).biased_pairs
            except ValueError:
                pass
    else:
        if cfg.dataset == "coco":
            if not (cfg.train_annotations and cfg.train_images and cfg.test_annotations and cfg.test_images):
                raise ValueError(
                    "dataset='coco' needs train_annotations, train_images, test_annotations, test_images."
                )
            trainval = load_coco_multilabel(cfg.train_annotations, cfg.train_images)
            test = load_coco_multilabel(cfg.test_annotations, cfg.test_images)
        else:
            if not cfg.dataset_path:
                raise ValueError("dataset='voc' needs dataset_path (the folder holding VOCdevkit).")
            trainval = load_voc_multilabel(cfg.dataset_path, "trainval")
            test = load_voc_multilabel(cfg.dataset_path, "test")
        split = trainval.train_test_split(test_size=cfg.validation_fraction, seed=seed)
        data = datasets.DatasetDict(train=split["train"], validation=split["test"], test=test)
    missing = {"train", "validation", "test"} - set(data)
    if missing:
        raise ValueError(f"the dataset needs train, validation and test splits; missing {sorted(missing)}.")
    if pairs is None:
        num_labels = len(data["train"].features["labels"].feature.names)
        pairs = top_cooccurring_pairs(_multi_hot(data["train"], num_labels), cfg.num_eval_pairs)
    return data, pairs


def build_pat_model(cfg: PatTrainConfig, label_names: list[str]) -> torch.nn.Module:
    """PAT-T model, or a plain multi-label `AutoModelForImageClassification` on the same backbone."""
    labels = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
    }
    if cfg.variant == "pat_t":
        pat = {"grid_size": cfg.grid_size, "loss": cfg.loss, "asl_gamma_neg": cfg.asl_gamma_neg,
               "asl_gamma_pos": cfg.asl_gamma_pos, "asl_clip": cfg.asl_clip, **labels}  # fmt: skip
        if cfg.backbone:
            return PatForMultiLabelClassification.from_backbone(cfg.backbone, **pat)
        return PatForMultiLabelClassification(PatConfig(backbone_config=cfg.backbone_config, **pat))
    labels["problem_type"] = "multi_label_classification"
    if cfg.backbone:
        return AutoModelForImageClassification.from_pretrained(
            cfg.backbone, ignore_mismatched_sizes=True, **labels
        )
    backbone = dict(cfg.backbone_config)
    config = AutoConfig.for_model(backbone.pop("model_type"), **backbone, **labels)
    return AutoModelForImageClassification.from_config(config)


def pat_step_fn(cfg: PatTrainConfig):
    """Step function: PAT-T computes ASL(z0) + ASL(z_pat) itself; a plain model gets the same loss on z0."""

    def step(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        if cfg.variant == "pat_t":
            loss = model(**batch).loss
        else:
            loss = multilabel_loss(classifier_logits(model, batch["pixel_values"]), batch["labels"], cfg)
        return loss, {"loss": loss.item()}

    return step


def sigmoid_scores(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Scores for metrics: sigmoid of the logits (for PAT, of the TDE logits)."""
    return torch.sigmoid(classifier_logits(model, batch["pixel_values"]))


def evaluate_multilabel(
    model: torch.nn.Module,
    data: datasets.DatasetDict,
    collator: MultiLabelCollator,
    pairs: list[list[int]],
    recall: float,
    batch_size: int = 64,
    accelerator: Accelerator | None = None,
) -> dict:
    """mAP, CFPR / CTPR at thresholds calibrated on validation, conditional AUROC; plus seconds spent."""
    start = time.perf_counter()
    val = predict(model, data["validation"], collator, sigmoid_scores, batch_size, accelerator, "validation")
    test = predict(model, data["test"], collator, sigmoid_scores, batch_size, accelerator, "test")
    report = multilabel_report(*val, *test, pairs=pairs, recall=recall)
    report["eval_seconds"] = time.perf_counter() - start
    return report


def run_pat(
    train_cfg: TrainingConfig, cfg: PatTrainConfig, data: datasets.DatasetDict | None = None, pairs=None
) -> dict:
    """Train one PAT variant and evaluate it; writes metrics.json next to the saved model."""
    accelerator = make_accelerator(train_cfg)
    if data is None:
        data, pairs = load_pat_data(cfg, seed=train_cfg.seed)
    label_names = data["train"].features["labels"].feature.names
    collator = MultiLabelCollator(
        len(label_names), cfg.image_size, tuple(cfg.image_mean), tuple(cfg.image_std)
    )
    train_collator = collator
    if cfg.zoom_crop > 0:
        zoom_crop = MultiLabelZoomCrop(cfg.zoom_crop, tuple(cfg.zoom_crop_scale))
        train_collator = dataclasses.replace(collator, augment=zoom_crop)
    set_seed(train_cfg.seed)  # the same initial weights in every run and process
    model = build_pat_model(cfg, label_names)

    start = time.perf_counter()
    model = train(train_cfg, model, data["train"], train_collator, pat_step_fn(cfg), accelerator)
    results = {"variant": cfg.variant, "train_seconds": time.perf_counter() - start, "pairs": pairs}
    evaluate = {"collator": collator, "pairs": pairs, "recall": cfg.recall, "batch_size": train_cfg.eval_batch_size,
                "accelerator": accelerator}  # fmt: skip
    results[cfg.variant] = evaluate_multilabel(model, data, **evaluate)
    if cfg.variant == "plain":
        results["pat_i"] = evaluate_multilabel(PatchingInference(model, cfg.grid_size), data, **evaluate)
    skipped = collator.skipped + (train_collator.skipped if train_collator is not collator else 0)
    if skipped:
        results["skipped_samples"] = skipped
    if accelerator.is_main_process:
        save_metrics_and_card(
            train_cfg.output_dir,
            "pat" if cfg.variant == "pat_t" else "classifier",
            results,
            dataset="co-occurrence mosaics",
            training_config={**asdict(train_cfg), **asdict(cfg)},
        )
    accelerator.end_training()
    return results
