"""Multi-label metrics for PAT: mAP, recall-calibrated thresholds, co-occurrence CFPR / CTPR, conditional AUROC.

All functions take ``scores`` and ``labels`` of shape ``(n_samples, n_classes)`` as numpy arrays or torch
tensors (converted on the CPU). ``pairs`` are ``(i, j)`` class-index pairs read as "class i given class j":
in PAT's co-occurrence benchmark, j is the context class that the model may wrongly use as evidence for i.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "average_precision_per_class",
    "calibrate_thresholds",
    "conditional_auroc",
    "cooccurrence_rates",
    "mean_average_precision",
    "multilabel_report",
]


def _to_numpy(x: Any) -> np.ndarray:
    """Convert an array-like or torch tensor (any device, any float dtype, grad or not) to numpy."""
    if hasattr(x, "detach"):  # torch tensor: bfloat16 and CUDA tensors have no direct numpy view
        x = x.detach().cpu().double()
    return np.asarray(x)


def _check_inputs(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return (float64 scores, bool labels), both 2-D of equal shape; errors name the problem."""
    s = _to_numpy(scores)
    y = _to_numpy(labels)
    if s.ndim != 2 or y.ndim != 2:
        raise ValueError(f"scores and labels must be 2-D (n_samples, n_classes); got {s.shape} and {y.shape}")
    if s.shape != y.shape:
        raise ValueError(f"scores and labels must have the same shape; got {s.shape} and {y.shape}")
    if s.shape[0] == 0:
        raise ValueError("scores and labels have no rows")
    try:
        s = s.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"scores must be numeric; got dtype {s.dtype}") from err
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be binary (0 or 1)")
    return s, y.astype(bool)


def _check_pairs(pairs: Sequence[Sequence[int]], n_classes: int) -> list[tuple[int, int]]:
    """Validate ``pairs`` as a non-empty list of (i, j) class indices in range with i != j."""
    p = np.asarray(pairs)
    if p.size == 0 or p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"pairs must be a non-empty list of (i, j) class-index pairs; got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"pairs must hold integer class indices; got dtype {p.dtype}")
    out_of_range = ((p < 0) | (p >= n_classes)).any(axis=1)
    if out_of_range.any():
        raise ValueError(f"pair index out of range for {n_classes} classes: {p[out_of_range][0].tolist()}")
    if (p[:, 0] == p[:, 1]).any():
        raise ValueError(f"pair (i, j) needs i != j; got {p[p[:, 0] == p[:, 1]][0].tolist()}")
    return [(int(i), int(j)) for i, j in p]


def _nanmean(values: Sequence[float]) -> float:
    """Mean ignoring NaN; NaN (without a warning) when every value is NaN."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def _average_precision(s: np.ndarray, y: np.ndarray) -> float:
    """Non-interpolated AP of one class: sum over distinct thresholds of (R_n - R_{n-1}) * P_n."""
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # Tied scores form one threshold: keep only the last index of each run of equal scores.
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall_gain = np.diff(tp, prepend=0) / n_pos
    return float(np.sum(recall_gain * precision))


def average_precision_per_class(scores: Any, labels: Any) -> np.ndarray:
    """Per-class non-interpolated average precision (sklearn's definition); NaN for classes with no positive.

    AP_c = sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds of class c, tied scores forming one
    threshold, exactly as ``sklearn.metrics.average_precision_score`` computes it (not VOC 11-point).
    """
    s, y = _check_inputs(scores, labels)
    return np.array([_average_precision(s[:, c], y[:, c]) for c in range(s.shape[1])])


def mean_average_precision(scores: Any, labels: Any) -> float:
    """mAP: the mean of non-interpolated per-class AP over the classes that have at least one positive.

    AP is sklearn's ``average_precision_score`` definition, sum_n (R_n - R_{n-1}) P_n, without the VOC
    11-point or all-point precision interpolation; classes with no positive label are left out of the mean.
    """
    ap = average_precision_per_class(scores, labels)
    if np.isnan(ap).all():
        raise ValueError("no class has a positive label; mAP is undefined")
    return float(np.nanmean(ap))


def calibrate_thresholds(scores: Any, labels: Any, recall: float = 0.9) -> np.ndarray:
    """Per-class threshold: the largest t with recall of (score >= t) >= ``recall``; fit it on validation data.

    Models trained with different losses score on different scales, so comparing them at one fixed threshold
    is unfair; fixing the recall instead makes their false-positive rates comparable. For a class with P
    positives this is the k-th largest positive score, k the smallest count with k / P >= ``recall``.
    Classes with no positive get ``+inf``, so they are never predicted.
    """
    if not 0.0 < recall <= 1.0:
        raise ValueError(f"recall must be in (0, 1]; got {recall}")
    s, y = _check_inputs(scores, labels)
    thresholds = np.full(s.shape[1], np.inf)
    for c in range(s.shape[1]):
        pos = np.sort(s[y[:, c], c])[::-1]
        if pos.size:
            k = int(np.searchsorted(np.arange(1, pos.size + 1) / pos.size, recall, side="left"))
            thresholds[c] = pos[k]
    return thresholds


def cooccurrence_rates(
    scores: Any, labels: Any, pairs: Sequence[Sequence[int]], thresholds: Any
) -> dict[str, Any]:
    """Co-occurrence false / true positive rates CFPR(i|j) and CTPR(i|j) (PAT, arXiv 2404.06287) per pair.

    With pred_i = scores[:, i] >= thresholds[i]:
    CFPR(i|j) = #{y_j=1, y_i=0, pred_i=1} / #{y_j=1, y_i=0}  (i predicted only because j is there),
    CTPR(i|j) = #{y_j=1, y_i=1, pred_i=1} / #{y_j=1, y_i=1}.
    A zero denominator gives NaN for that entry, and NaN entries are left out of the means.
    Returns {"cfpr": mean, "ctpr": mean, "per_pair": [{"pair", "cfpr", "ctpr", "support_neg", "support_pos"}]}.
    """
    s, y = _check_inputs(scores, labels)
    checked = _check_pairs(pairs, s.shape[1])
    t = _to_numpy(thresholds).astype(np.float64)
    if t.shape != (s.shape[1],):
        raise ValueError(f"thresholds must have shape ({s.shape[1]},), one per class; got {t.shape}")
    if np.isnan(t).any():
        raise ValueError("thresholds contain NaN")
    pred = s >= t
    per_pair = []
    for i, j in checked:
        neg = y[:, j] & ~y[:, i]
        pos = y[:, j] & y[:, i]
        per_pair.append(
            {
                "pair": [i, j],
                "cfpr": float(pred[neg, i].mean()) if neg.any() else float("nan"),
                "ctpr": float(pred[pos, i].mean()) if pos.any() else float("nan"),
                "support_neg": int(neg.sum()),
                "support_pos": int(pos.sum()),
            }
        )
    return {
        "cfpr": _nanmean([p["cfpr"] for p in per_pair]),
        "ctpr": _nanmean([p["ctpr"] for p in per_pair]),
        "per_pair": per_pair,
    }


def _auroc(s: np.ndarray, y: np.ndarray) -> float:
    """AUROC by the Mann-Whitney rank formula (average ranks, so ties get half credit); NaN if a side is empty."""
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based average rank of each distinct score
    rank_sum = avg_rank[inverse][y].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def conditional_auroc(scores: Any, labels: Any, pairs: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Threshold-free co-occurrence metric: AUROC of class-i scores vs labels i among the rows where y_j = 1.

    Computed with the Mann-Whitney rank formula (ties get half credit); NaN for a pair when those rows hold
    no positive or no negative of class i, and NaN pairs are left out of the mean.
    Returns {"cond_auroc": mean, "per_pair": [{"pair", "cond_auroc", "support_neg", "support_pos"}]}.
    """
    s, y = _check_inputs(scores, labels)
    per_pair = []
    for i, j in _check_pairs(pairs, s.shape[1]):
        rows = y[:, j]
        yi = y[rows, i]
        per_pair.append(
            {
                "pair": [i, j],
                "cond_auroc": _auroc(s[rows, i], yi),
                "support_neg": int((~yi).sum()),
                "support_pos": int(yi.sum()),
            }
        )
    return {"cond_auroc": _nanmean([p["cond_auroc"] for p in per_pair]), "per_pair": per_pair}


def multilabel_report(
    val_scores: Any,
    val_labels: Any,
    test_scores: Any,
    test_labels: Any,
    pairs: Sequence[Sequence[int]],
    recall: float = 0.9,
) -> dict[str, Any]:
    """PAT benchmark bundle: thresholds calibrated to ``recall`` on val; mAP, CFPR, CTPR, conditional AUROC on test.

    Returns {"map", "cfpr", "ctpr", "cond_auroc", "recall_target", "thresholds", "per_pair"}, where
    ``per_pair`` merges the entries of :func:`cooccurrence_rates` and :func:`conditional_auroc`.
    """
    thresholds = calibrate_thresholds(val_scores, val_labels, recall=recall)
    n_test = _to_numpy(test_scores).shape[-1]
    if n_test != thresholds.size:
        raise ValueError(f"val has {thresholds.size} classes but test has {n_test}")
    rates = cooccurrence_rates(test_scores, test_labels, pairs, thresholds)
    auroc = conditional_auroc(test_scores, test_labels, pairs)
    return {
        "map": mean_average_precision(test_scores, test_labels),
        "cfpr": rates["cfpr"],
        "ctpr": rates["ctpr"],
        "cond_auroc": auroc["cond_auroc"],
        "recall_target": float(recall),
        "thresholds": [float(t) for t in thresholds],
        "per_pair": [r | a for r, a in zip(rates["per_pair"], auroc["per_pair"], strict=True)],
    }
