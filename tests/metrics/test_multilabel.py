"""Tests for the PAT multi-label metrics (arXiv 2404.06287): mAP, calibrated thresholds, CFPR / CTPR, cond. AUROC."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from hf_counterfactual.metrics import (
    average_precision_per_class,
    calibrate_thresholds,
    conditional_auroc,
    cooccurrence_rates,
    mean_average_precision,
    multilabel_report,
)


def _random_case(seed: int = 0, n: int = 200, c: int = 6):
    """Quantised scores (many ties) and labels; the last class has no positive."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, c)) < 0.3).astype(int)
    labels[:, -1] = 0
    scores = np.round(0.5 * labels + rng.random((n, c)), 1)
    return scores, labels


# The 6-row hand case: columns are classes 0, 1, 2 (class 2 never present); thresholds 0.5 for all.
#   row  y0 y1 y2   s0    s1
#   r1    0  1  0   0.7   0.1
#   r2    0  1  0   0.2   0.1
#   r3    0  1  0   0.5   0.1
#   r4    1  1  0   0.9   0.6
#   r5    1  1  0   0.4   0.3
#   r6    1  0  0   0.8   0.55
HAND_LABELS = np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0], [1, 1, 0], [1, 1, 0], [1, 0, 0]])
HAND_SCORES = np.array(
    [[0.7, 0.1, 0.0], [0.2, 0.1, 0.0], [0.5, 0.1, 0.0], [0.9, 0.6, 0.0], [0.4, 0.3, 0.0], [0.8, 0.55, 0.0]]
)
HAND_THRESHOLDS = np.array([0.5, 0.5, 0.5])


@pytest.mark.parametrize("seed", [0, 1])
def test_average_precision_matches_sklearn_with_ties(seed):
    # Non-interpolated AP = sum_n (R_n - R_{n-1}) P_n (PAT's mAP, sklearn's definition); ties = one threshold.
    scores, labels = _random_case(seed)
    ap = average_precision_per_class(scores, labels)
    expected = [average_precision_score(labels[:, c], scores[:, c]) for c in range(labels.shape[1] - 1)]
    np.testing.assert_allclose(ap[:-1], expected, rtol=1e-12)
    assert np.isnan(ap[-1])
    assert mean_average_precision(scores, labels) == pytest.approx(np.mean(expected), rel=1e-12)


def test_average_precision_hand_case_with_tie():
    # Scores [0.9, 0.5, 0.5, 0.1], labels [1, 0, 1, 0]: thresholds 0.9 -> (R=1/2, P=1), 0.5 -> (R=1, P=2/3).
    ap = average_precision_per_class(np.array([[0.9], [0.5], [0.5], [0.1]]), np.array([[1], [0], [1], [0]]))
    assert ap[0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_torch_tensors_accepted():
    scores, labels = _random_case(2)
    t_scores = torch.tensor(scores, dtype=torch.float64, requires_grad=True)
    assert mean_average_precision(t_scores, torch.tensor(labels)) == mean_average_precision(scores, labels)


def test_calibrate_thresholds_hand_case():
    # Class 0 positives scored [0.9, 0.8, 0.3, 0.2]: recall 0.75 needs 3 of 4 -> 0.3; recall 1.0 -> 0.2.
    # Negatives (0.95, 0.5) do not move the threshold; class 1 has no positive -> +inf.
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.3], [0.2, 0.4], [0.95, 0.5], [0.5, 0.6]])
    labels = np.array([[1, 0], [1, 0], [1, 0], [1, 0], [0, 0], [0, 0]])
    np.testing.assert_array_equal(calibrate_thresholds(scores, labels, recall=0.75), [0.3, np.inf])
    np.testing.assert_array_equal(calibrate_thresholds(scores, labels, recall=1.0), [0.2, np.inf])
    assert calibrate_thresholds(scores, labels, recall=0.5)[0] == 0.8


@pytest.mark.parametrize("recall", [0.1, 0.7, 0.9, 1.0])
def test_calibrate_thresholds_is_largest_reaching_recall(recall):
    scores, labels = _random_case(3)
    thresholds = calibrate_thresholds(scores, labels, recall=recall)
    for c in range(labels.shape[1] - 1):
        pos = scores[labels[:, c] == 1, c]
        assert np.mean(pos >= thresholds[c]) >= recall
        higher = pos[pos > thresholds[c]]  # the next larger candidate threshold misses the target
        if higher.size:
            assert np.mean(pos >= higher.min()) < recall


def test_cooccurrence_rates_hand_case():
    out = cooccurrence_rates(HAND_SCORES, HAND_LABELS, [(0, 1), (1, 0), (0, 2)], HAND_THRESHOLDS)
    p01, p10, p02 = out["per_pair"]
    # CFPR(0|1): rows with y1=1, y0=0 are r1, r2, r3 with s0 0.7, 0.2, 0.5; pred (>= 0.5) for r1, r3 -> 2/3.
    # CTPR(0|1): rows with y1=1, y0=1 are r4, r5 with s0 0.9, 0.4; pred for r4 only -> 1/2. r6 has no class 1.
    assert p01 == {
        "pair": [0, 1],
        "cfpr": pytest.approx(2 / 3),
        "ctpr": 0.5,
        "support_neg": 3,
        "support_pos": 2,
    }
    # CFPR(1|0): rows with y0=1, y1=0: r6 (s1 0.55, pred) -> 1/1. CTPR(1|0): r4 (0.6, pred), r5 (0.3) -> 1/2.
    assert p10 == {"pair": [1, 0], "cfpr": 1.0, "ctpr": 0.5, "support_neg": 1, "support_pos": 2}
    # Class 2 is never present: both denominators are 0 -> NaN, left out of the means.
    assert (
        math.isnan(p02["cfpr"]) and math.isnan(p02["ctpr"]) and p02["support_neg"] == p02["support_pos"] == 0
    )
    assert out["cfpr"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["ctpr"] == pytest.approx(0.5)


def test_conditional_auroc_hand_case_and_nan():
    out = conditional_auroc(HAND_SCORES, HAND_LABELS, [(0, 1), (0, 2)])
    # Rows with y1=1 (r1..r5): positives s0 {0.9, 0.4}, negatives {0.7, 0.2, 0.5}; 0.9 beats 3, 0.4 beats 1 -> 4/6.
    assert out["per_pair"][0]["cond_auroc"] == pytest.approx(4 / 6)
    assert math.isnan(out["per_pair"][1]["cond_auroc"])
    assert out["cond_auroc"] == pytest.approx(4 / 6)


def test_conditional_auroc_matches_sklearn_on_subset():
    scores, labels = _random_case(4)
    pairs = [(0, 1), (2, 3), (4, 0), (1, 4)]
    out = conditional_auroc(scores, labels, pairs)
    for (i, j), entry in zip(pairs, out["per_pair"], strict=True):
        rows = labels[:, j] == 1
        assert entry["cond_auroc"] == pytest.approx(
            roc_auc_score(labels[rows, i], scores[rows, i]), rel=1e-12
        )
        assert entry["support_pos"] + entry["support_neg"] == rows.sum()


def test_multilabel_report_bundles_val_thresholds_and_test_metrics():
    val_scores, val_labels = _random_case(5, c=3)
    thresholds = calibrate_thresholds(val_scores, val_labels, recall=0.8)
    out = multilabel_report(val_scores, val_labels, HAND_SCORES, HAND_LABELS, [(0, 1)], recall=0.8)
    assert out["thresholds"] == thresholds.tolist() and out["thresholds"][2] == math.inf
    assert out["recall_target"] == 0.8
    assert out["map"] == pytest.approx(mean_average_precision(HAND_SCORES, HAND_LABELS))
    assert out["cfpr"] == cooccurrence_rates(HAND_SCORES, HAND_LABELS, [(0, 1)], thresholds)["cfpr"]
    assert set(out["per_pair"][0]) == {"pair", "cfpr", "ctpr", "cond_auroc", "support_neg", "support_pos"}
    assert out["cond_auroc"] == pytest.approx(4 / 6)


@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        (np.zeros(4), np.zeros(4), "must be 2-D"),
        (np.zeros((4, 2)), np.zeros((4, 3)), "same shape"),
        (np.zeros((0, 2)), np.zeros((0, 2)), "no rows"),
        (np.zeros((2, 2)), np.array([[0, 2], [1, 0]]), "binary"),
        (np.array([[0.1, np.nan], [0.2, 0.3]]), np.zeros((2, 2)), "NaN or inf"),
    ],
)
def test_input_errors(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        average_precision_per_class(scores, labels)


def test_argument_errors():
    s, y = HAND_SCORES, HAND_LABELS
    for recall in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"recall must be in \(0, 1\]"):
            calibrate_thresholds(s, y, recall=recall)
    with pytest.raises(ValueError, match="out of range for 3 classes"):
        conditional_auroc(s, y, [(0, 3)])
    with pytest.raises(ValueError, match="i != j"):
        cooccurrence_rates(s, y, [(1, 1)], HAND_THRESHOLDS)
    with pytest.raises(ValueError, match="non-empty"):
        conditional_auroc(s, y, [])
    with pytest.raises(ValueError, match="integer"):
        conditional_auroc(s, y, [(0.0, 1.0)])
    with pytest.raises(ValueError, match="one per class"):
        cooccurrence_rates(s, y, [(0, 1)], [0.5, 0.5])
    with pytest.raises(ValueError, match="mAP is undefined"):
        mean_average_precision(s, np.zeros_like(y))
    with pytest.raises(ValueError, match="val has 3 classes but test has 2"):
        multilabel_report(s, y, s[:, :2], y[:, :2], [(0, 1)])
