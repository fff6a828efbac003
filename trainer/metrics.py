"""Evaluation metrics: one small function per quantity, scikit-learn wherever it computes it.

Conventions shared by every function here:

* ``y_true`` is a 0/1 matrix [N clips, K classes]; ``y_score`` a float matrix of
  the same shape (probabilities). Nothing is thresholded unless a function says so.
* Ranking metrics (AP, AUC, lwlrap) ignore the classes they cannot be defined on
  (AP: no positive; AUC: no positive or no negative) instead of counting them as
  0 or 1, because FSD50K's eval split has rare labels and a subset of it (the
  mini corpus) misses some entirely. Per-class arrays hold NaN there.
* Ties are scored as scikit-learn does: tied clips enter a ranking together
  (AP/ROC step over distinct thresholds, AUC counts a tie as half a win,
  lwlrap counts every tied label as ranked above).

Single-label quantities (accuracy, macro F1, confusion matrix of a family model)
take *soft* targets like the ones the model was trained on
(:func:`trainer.fsd50k.family_targets`): a clip under two families counts half
for each, so a clip-weighted accuracy is the mean target mass on the predicted class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm
from sklearn.metrics import (
    accuracy_score,
    auc,
    average_precision_score,
    confusion_matrix,
    f1_score,
    label_ranking_average_precision_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from guesser.labels import fold_families


def _with_positives(y_true: np.ndarray) -> np.ndarray:
    return np.flatnonzero(y_true.sum(axis=0) > 0)


def _with_both(y_true: np.ndarray) -> np.ndarray:
    """Columns with at least one positive and one negative: where an AUC exists."""
    pos = y_true.sum(axis=0)
    return np.flatnonzero((pos > 0) & (pos < len(y_true)))


# ---------------------------------------------------------------- ranking metrics

def per_label_ap(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """AP of every class [K]; NaN for classes without a positive."""
    out = np.full(y_true.shape[1], np.nan)
    for k in _with_positives(y_true):
        out[k] = average_precision_score(y_true[:, k], y_score[:, k])
    return out


def mean_average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Macro AP over the labels that have at least one positive."""
    cols = _with_positives(y_true)
    if len(cols) == 0:
        return float("nan")
    return float(average_precision_score(y_true[:, cols], y_score[:, cols], average="macro"))


def per_label_auc(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """ROC AUC of every class [K]; NaN where a class has no positive or no negative."""
    out = np.full(y_true.shape[1], np.nan)
    for k in _with_both(y_true):
        out[k] = roc_auc_score(y_true[:, k], y_score[:, k])
    return out


def d_prime_from_auc(auc: float) -> float:
    """d' = √2·Φ⁻¹(AUC): the separation of two unit Gaussians that would give this AUC."""
    return float(np.sqrt(2.0) * norm.ppf(auc))


def d_prime(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """d' = √2·Φ⁻¹(AUC) of the macro ROC AUC over labels with positives and negatives.

    As in the FSD50K paper (and AudioSet's): the macro AUC is converted once,
    not averaged per label, so one label with AUC 1.0 cannot make it infinite.
    """
    cols = _with_both(y_true)
    if len(cols) == 0:
        return float("nan")
    return d_prime_from_auc(roc_auc_score(y_true[:, cols], y_score[:, cols], average="macro"))


def macro_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    cols = _with_both(y_true)
    if len(cols) == 0:
        return float("nan")
    return float(roc_auc_score(y_true[:, cols], y_score[:, cols], average="macro"))


def macro_of(per_label: np.ndarray) -> float:
    """The macro average of per-label scores (NaN labels left out): :func:`macro_auc` from
    :func:`per_label_auc`'s result without computing every AUC again (the same mean of the same numbers)."""
    defined = per_label[~np.isnan(per_label)]
    return float(defined.mean()) if len(defined) else float("nan")


def lwlrap(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Label-weighted label-ranking average precision (DCASE 2019 Task 2).

    For every (clip, positive label) pair: the share of labels ranked at or
    above it in that clip's scores that are positive; averaged over all pairs,
    so each positive label counts equally (clips with many labels weigh more).
    That is scikit-learn's LRAP with each clip weighted by its number of labels;
    clips without a label carry no pair and are left out.
    """
    n_pos = y_true.sum(axis=1)
    keep = n_pos > 0
    if not keep.any():
        return float("nan")
    return float(label_ranking_average_precision_score(y_true[keep], y_score[keep], sample_weight=n_pos[keep]))


# ---------------------------------------------------------------- families

def family_truth(y_true: np.ndarray, family_matrix: np.ndarray) -> np.ndarray:
    """[N, L] label targets -> [N, F] 0/1 family targets: a clip is in every family of its labels."""
    return ((y_true.astype(np.float32) @ family_matrix) > 0).astype(np.uint8)


def family_map(y_true: np.ndarray, y_score: np.ndarray, family_matrix: np.ndarray) -> float:
    """mAP over families of label scores folded as the app folds them (max over a family's labels)."""
    return mean_average_precision(family_truth(y_true, family_matrix), fold_families(y_score, family_matrix))


# ---------------------------------------------------------------- thresholded (multi-label)

def tune_thresholds(y_true: np.ndarray, y_score: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Per-label decision thresholds [K] that maximise each label's F1 on (validation) data.

    A clip is predicted positive for label k when ``score >= threshold[k]``.
    The best cut lies between two distinct validation scores; the threshold is
    put halfway between them (halfway to 0 below the lowest score) rather than
    on the score itself, so a clip scoring a hair differently elsewhere (float
    rounding, another batch) is decided the same way. Among equally good cuts
    the lowest is taken. Labels without a positive keep ``default``.
    """
    th = np.full(y_true.shape[1], float(default))
    for k in _with_positives(y_true):
        p, r, t = precision_recall_curve(y_true[:, k], y_score[:, k])  # t: distinct scores, ascending
        p, r = p[:-1], r[:-1]  # the last point (recall 0) has no threshold
        f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
        i = int(np.argmax(f1))
        below = t[i - 1] if i > 0 else 0.0
        th[k] = float((t[i] + below) / 2)
    return th


@dataclass
class ThresholdScores:
    """Scores of thresholded multi-label predictions."""

    precision_micro: float
    recall_micro: float
    f1_micro: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    subset_accuracy: float  # clips whose whole label set is predicted exactly
    label_accuracy: float  # mean over labels of the per-label accuracy (1 - Hamming loss)
    per_label_f1: np.ndarray  # [K], NaN for labels without a positive
    per_label_accuracy: np.ndarray  # [K]


def threshold_scores(y_true: np.ndarray, y_score: np.ndarray, thresholds: np.ndarray) -> ThresholdScores:
    """Precision/recall/F1 (micro and macro), subset and per-label accuracy at ``thresholds``.

    Macro averages run over the labels with a positive in ``y_true`` (as mAP
    does); micro averages pool every label's decisions.
    """
    y_pred = (y_score >= np.asarray(thresholds)[None, :]).astype(np.uint8)
    cols = _with_positives(y_true)
    mi = precision_recall_fscore_support(y_true, y_pred, average="micro", zero_division=0)
    if len(cols):
        ma = precision_recall_fscore_support(y_true, y_pred, labels=cols, average="macro", zero_division=0)
        per = precision_recall_fscore_support(y_true, y_pred, labels=cols, average=None, zero_division=0)[2]
    else:
        ma, per = (float("nan"),) * 3, []
    per_f1 = np.full(y_true.shape[1], np.nan)
    per_f1[cols] = per
    per_acc = (y_pred == y_true).mean(axis=0)
    return ThresholdScores(
        float(mi[0]), float(mi[1]), float(mi[2]), float(ma[0]), float(ma[1]), float(ma[2]),
        float(accuracy_score(y_true, y_pred)), float(per_acc.mean()), per_f1, per_acc,
    )


# ---------------------------------------------------------------- single-label (families)

@dataclass
class SingleLabelScores:
    """Scores of a single-label (argmax) classifier against soft targets."""

    accuracy: float
    f1_macro: float
    confusion: np.ndarray  # [C, C] rows: true class, columns: predicted; each row sums to 1 (0 if no clip)
    support: np.ndarray  # [C] target mass per true class


def _expand_soft(y_soft: np.ndarray, y_score: np.ndarray):
    """One (true class, predicted class, weight) row per clip and class the clip belongs to."""
    pred = np.argmax(y_score, axis=1)
    rows, cols = np.nonzero(y_soft > 0)
    return cols, pred[rows], y_soft[rows, cols].astype(np.float64)


def single_label_scores(y_soft: np.ndarray, y_score: np.ndarray) -> SingleLabelScores:
    """Accuracy, macro F1 and the row-normalised confusion matrix of ``argmax(y_score)``.

    ``y_soft`` [N, C] rows sum to 1 (one-hot for a clip of one class). Macro F1
    averages over the classes that occur in the targets.
    """
    c = y_soft.shape[1]
    t, p, w = _expand_soft(y_soft, y_score)
    if len(t) == 0:
        return SingleLabelScores(float("nan"), float("nan"), np.zeros((c, c)), np.zeros(c))
    classes = np.arange(c)
    cm = confusion_matrix(t, p, labels=classes, sample_weight=w, normalize="true")
    present = np.unique(t)
    return SingleLabelScores(
        float(accuracy_score(t, p, sample_weight=w)),
        float(f1_score(t, p, labels=present, average="macro", sample_weight=w, zero_division=0)),
        np.nan_to_num(cm),
        np.bincount(t, weights=w, minlength=c),
    )


# ---------------------------------------------------------------- curves

def downsample_curve(x: np.ndarray, y: np.ndarray, max_points: int = 101) -> tuple[list[float], list[float]]:
    """Keep at most ``max_points`` points of a curve, first and last included (for JSON and charts)."""
    if len(x) > max_points:
        idx = np.unique(np.linspace(0, len(x) - 1, max_points).round().astype(int))
        x, y = x[idx], y[idx]
    return [round(float(v), 5) for v in x], [round(float(v), 5) for v in y]


def micro_roc(y_true: np.ndarray, y_score: np.ndarray, max_points: int = 101) -> dict:
    """ROC curve of every (clip, class) decision pooled: {"fpr", "tpr", "auc"} downsampled."""
    t, s = np.asarray(y_true).ravel(), np.asarray(y_score).ravel()
    if t.min(initial=1) == t.max(initial=0):
        return {"fpr": [], "tpr": [], "auc": None}
    fpr, tpr, _ = roc_curve(t, s)
    xs, ys = downsample_curve(fpr, tpr, max_points)
    return {"fpr": xs, "tpr": ys, "auc": float(auc(fpr, tpr))}  # what roc_auc_score computes, without a second sort


def per_class_roc(y_true: np.ndarray, y_score: np.ndarray, names, max_points: int = 51) -> dict[str, dict]:
    """One-vs-rest ROC curve of each class that has positives and negatives."""
    out = {}
    for k in _with_both(y_true):
        fpr, tpr, _ = roc_curve(y_true[:, k], y_score[:, k])
        xs, ys = downsample_curve(fpr, tpr, max_points)
        out[names[k]] = {"fpr": xs, "tpr": ys, "auc": float(auc(fpr, tpr))}
    return out
