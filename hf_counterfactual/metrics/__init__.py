"""Metrics as plain functions: multi-label (numpy) and saliency-map faithfulness / localisation."""

from .multilabel import (
    average_precision_per_class,
    calibrate_thresholds,
    conditional_auroc,
    cooccurrence_rates,
    mean_average_precision,
    multilabel_report,
)
from .saliency import (
    dabkowski_gal_score,
    deletion_insertion_auc,
    mask_iou,
    pointing_game,
    randomization_sanity_check,
    randomize_model,
    rank_correlation,
)

__all__ = [
    "dabkowski_gal_score",
    "deletion_insertion_auc",
    "mask_iou",
    "pointing_game",
    "randomization_sanity_check",
    "randomize_model",
    "rank_correlation",
    "average_precision_per_class",
    "calibrate_thresholds",
    "conditional_auroc",
    "cooccurrence_rates",
    "mean_average_precision",
    "multilabel_report",
]
