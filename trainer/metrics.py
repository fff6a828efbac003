"""Evaluation metrics (minimal core; see the full module once issue 5 lands)."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score


def _with_positives(y_true: np.ndarray) -> np.ndarray:
    return np.flatnonzero(y_true.sum(axis=0) > 0)


def mean_average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Macro AP over the labels that have at least one positive."""
    cols = _with_positives(y_true)
    if len(cols) == 0:
        return float("nan")
    return float(average_precision_score(y_true[:, cols], y_score[:, cols], average="macro"))


def d_prime(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """d' = √2·Φ⁻¹(AUC) of the macro ROC AUC over labels with positives and negatives."""
    cols = [c for c in _with_positives(y_true) if y_true[:, c].min() == 0]
    if not cols:
        return float("nan")
    auc = roc_auc_score(y_true[:, cols], y_score[:, cols], average="macro")
    return float(np.sqrt(2.0) * norm.ppf(auc))
