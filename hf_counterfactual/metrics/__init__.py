"""Metrics as plain numpy functions."""

from .multilabel import (
    average_precision_per_class,
    calibrate_thresholds,
    conditional_auroc,
    cooccurrence_rates,
    mean_average_precision,
    multilabel_report,
)

__all__ = [
    "average_precision_per_class",
    "calibrate_thresholds",
    "conditional_auroc",
    "cooccurrence_rates",
    "mean_average_precision",
    "multilabel_report",
]
