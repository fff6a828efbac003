"""trainer.metrics against independent, written-out computations (no scikit-learn in the references)."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from guesser.labels import FAMILIES_6, default_label_space, fold_families
from guesser.scoring import family_source
from trainer import metrics as M

# ---------------------------------------------------------------- references


def ap_by_hand(t: np.ndarray, s: np.ndarray) -> float:
    """AP = Σ_n (R_n − R_{n−1})·P_n over the distinct scores, highest first (tied clips enter together)."""
    n_pos = t.sum()
    ap, prev_r = 0.0, 0.0
    for thr in sorted(set(s.tolist()), reverse=True):
        sel = s >= thr
        tp = t[sel].sum()
        p, r = tp / sel.sum(), tp / n_pos
        ap += (r - prev_r) * p
        prev_r = r
    return ap


def auc_mann_whitney(t: np.ndarray, s: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + ½·P(tie), counting every pair."""
    pos, neg = s[t == 1], s[t == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def lwlrap_dcase(truth: np.ndarray, scores: np.ndarray) -> float:
    """The DCASE 2019 Task 2 reference (per-class lwlrap and class weights), written out; assumes no ties."""
    n, c = scores.shape
    prec = np.zeros((n, c))
    for i in range(n):
        pos = np.flatnonzero(truth[i] > 0)
        if not len(pos):
            continue
        retrieved = np.argsort(scores[i])[::-1]
        rank = np.zeros(c, dtype=int)
        rank[retrieved] = np.arange(c)
        hit = np.zeros(c, dtype=bool)
        hit[rank[pos]] = True
        cum = np.cumsum(hit)
        prec[i, pos] = cum[rank[pos]] / (1 + rank[pos])
    per_class_n = (truth > 0).sum(axis=0)
    weight = per_class_n / per_class_n.sum()
    per_class = prec.sum(axis=0) / np.maximum(1, per_class_n)
    return float((per_class * weight).sum())


def lwlrap_ge(truth: np.ndarray, scores: np.ndarray) -> float:
    """lwlrap from its definition with ties: precision of a positive = positives at-or-above / labels at-or-above."""
    total, pairs = 0.0, 0
    for i in range(len(truth)):
        for c in np.flatnonzero(truth[i]):
            above = scores[i] >= scores[i, c]
            total += truth[i][above].sum() / above.sum()
            pairs += 1
    return total / pairs


def prf_by_hand(y: np.ndarray, pred: np.ndarray):
    tp = ((y == 1) & (pred == 1)).sum(axis=0).astype(float)
    fp = ((y == 0) & (pred == 1)).sum(axis=0).astype(float)
    fn = ((y == 1) & (pred == 0)).sum(axis=0).astype(float)
    safe = lambda a, b: a / b if b > 0 else 0.0
    p_mi, r_mi = safe(tp.sum(), tp.sum() + fp.sum()), safe(tp.sum(), tp.sum() + fn.sum())
    f_mi = safe(2 * p_mi * r_mi, p_mi + r_mi)
    cols = np.flatnonzero(y.sum(axis=0) > 0)
    p = [safe(tp[k], tp[k] + fp[k]) for k in cols]
    r = [safe(tp[k], tp[k] + fn[k]) for k in cols]
    f = [safe(2 * a * b, a + b) for a, b in zip(p, r)]
    return p_mi, r_mi, f_mi, np.mean(p), np.mean(r), np.mean(f), dict(zip(cols.tolist(), f))


@pytest.fixture
def data():
    """60 clips × 7 labels; label 3 has no positive, scores rounded to 1 decimal so ties abound."""
    rng = np.random.default_rng(7)
    y = (rng.random((60, 7)) < 0.3).astype(np.uint8)
    y[:, 3] = 0
    y[0, 0] = 1
    s = np.clip(0.5 * y + rng.random((60, 7)) * 0.8, 0, 1).round(1)
    return y, s


# ---------------------------------------------------------------- ranking metrics


def test_per_label_ap_and_map_match_hand_ap_with_ties_and_an_empty_label(data):
    y, s = data
    ap = M.per_label_ap(y, s)
    assert math.isnan(ap[3])
    for k in (0, 1, 2, 4, 5, 6):
        assert ap[k] == pytest.approx(ap_by_hand(y[:, k], s[:, k]), abs=1e-12)
    expected = np.mean([ap_by_hand(y[:, k], s[:, k]) for k in (0, 1, 2, 4, 5, 6)])
    assert M.mean_average_precision(y, s) == pytest.approx(expected, abs=1e-12)


def test_map_is_nan_without_positives_and_one_for_a_perfect_ranking():
    assert math.isnan(M.mean_average_precision(np.zeros((4, 3), np.uint8), np.random.rand(4, 3)))
    y = np.eye(4, dtype=np.uint8)
    assert M.mean_average_precision(y, y * 0.9 + 0.05) == pytest.approx(1.0)


def test_d_prime_from_mann_whitney_auc(data):
    y, s = data
    cols = [k for k in range(7) if 0 < y[:, k].sum() < len(y)]
    aucs = [auc_mann_whitney(y[:, k], s[:, k]) for k in cols]
    auc = float(np.mean(aucs))
    assert M.macro_auc(y, s) == pytest.approx(auc, abs=1e-12)
    assert M.d_prime(y, s) == pytest.approx(math.sqrt(2) * NormalDist().inv_cdf(auc), abs=1e-9)
    per = M.per_label_auc(y, s)
    assert math.isnan(per[3])
    assert [per[k] for k in cols] == pytest.approx(aucs, abs=1e-12)


def test_macros_from_per_label_scores_are_the_macro_metrics_exactly(data):
    """guesser evaluate computes each label's AP and AUC once and averages them: the same numbers, bit for bit."""
    y, s = data
    assert M.macro_of(M.per_label_auc(y, s)) == M.macro_auc(y, s)
    assert M.macro_of(M.per_label_ap(y, s)) == M.mean_average_precision(y, s)
    assert math.isnan(M.macro_of(np.full(3, np.nan)))
    assert M.micro_roc(y, s)["auc"] == roc_auc_score(y.ravel(), s.ravel())


def test_d_prime_of_a_chance_ranking_is_zero_and_grows_with_separation():
    y = np.array([[1], [0], [1], [0]], np.uint8)
    assert M.d_prime(y, np.full((4, 1), 0.3)) == pytest.approx(0.0, abs=1e-12)  # all tied: AUC ½
    assert M.d_prime(y, np.array([[0.9], [0.1], [0.6], [0.7]])) > 0


def test_lwlrap_equals_dcase_reference_without_ties():
    rng = np.random.default_rng(3)
    y = (rng.random((40, 9)) < 0.25).astype(np.uint8)
    y[5] = 0  # a clip without labels: carries no pair
    s = rng.random((40, 9))
    assert M.lwlrap(y, s) == pytest.approx(lwlrap_dcase(y, s), abs=1e-12)


def test_lwlrap_counts_tied_labels_as_ranked_above(data):
    y, s = data
    assert M.lwlrap(y, s) == pytest.approx(lwlrap_ge(y, s), abs=1e-12)


def test_one_clip():
    y = np.array([[1, 0, 1, 0]], np.uint8)
    s = np.array([[0.9, 0.8, 0.1, 0.2]])
    assert M.mean_average_precision(y, s) == pytest.approx(1.0)  # one clip: a positive is always first in its column
    assert math.isnan(M.d_prime(y, s))  # no label has both a positive and a negative
    assert M.lwlrap(y, s) == pytest.approx((1 / 1 + 2 / 4) / 2)
    th = M.tune_thresholds(y, s)
    assert 0 < th[0] <= 0.9 and 0 < th[2] <= 0.1  # the one positive must fire
    sc = M.threshold_scores(y, s, th)
    assert sc.subset_accuracy == 0.0  # labels 1 and 3 keep the default 0.5: 0.8 fires on label 1
    assert sc.f1_macro == pytest.approx(1.0)


# ---------------------------------------------------------------- families


def fold_by_hand(p: np.ndarray) -> np.ndarray:
    fams = default_label_space().label_families(FAMILIES_6)
    out = np.zeros((len(p), len(FAMILIES_6)))
    for i in range(len(p)):
        for label, fs in enumerate(fams):
            for f in fs:
                out[i, f] = max(out[i, f], p[i, label])
    return out


def test_fold_matches_loops_and_is_the_apps_fold():
    rng = np.random.default_rng(1)
    fm = default_label_space().family_matrix(FAMILIES_6)
    p = rng.random((5, len(fm))).astype(np.float32)
    folded = fold_families(p, fm)
    assert np.allclose(folded, fold_by_hand(p))
    app = family_source(torch.from_numpy(p[2]), "labels", default_label_space().vocabulary.names)
    assert np.allclose(app.numpy(), folded[2])


def test_family_map_scores_folded_labels_against_family_truth():
    rng = np.random.default_rng(2)
    space = default_label_space()
    fm = space.family_matrix(FAMILIES_6)
    fams = space.label_families(FAMILIES_6)
    y = np.zeros((30, len(fm)), np.uint8)
    for i in range(30):
        y[i, rng.choice(len(fm), size=rng.integers(1, 3), replace=False)] = 1
    p = rng.random(y.shape)
    truth = np.zeros((30, 6), np.uint8)
    for i, k in zip(*np.nonzero(y)):
        truth[i, list(fams[k])] = 1
    folded = fold_by_hand(p)
    cols = [f for f in range(6) if truth[:, f].any()]
    expected = np.mean([ap_by_hand(truth[:, f], folded[:, f]) for f in cols])
    assert M.family_map(y, p, fm) == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- thresholds and F1


def test_tuned_thresholds_reach_the_best_f1_of_any_threshold(data):
    y, s = data
    th = M.tune_thresholds(y, s, default=0.42)
    assert th[3] == 0.42  # no positive: nothing to tune
    for k in (0, 1, 2, 4, 5, 6):
        best = max(prf_by_hand(y[:, [k]], (s[:, [k]] >= c).astype(np.uint8))[2] for c in set(s[:, k].tolist()))
        got = prf_by_hand(y[:, [k]], (s[:, [k]] >= th[k]).astype(np.uint8))[2]
        assert got == pytest.approx(best, abs=1e-12)


def test_threshold_scores_match_counts(data):
    y, s = data
    rng = np.random.default_rng(5)
    th = rng.uniform(0.3, 0.8, 7)
    pred = (s >= th).astype(np.uint8)
    p_mi, r_mi, f_mi, p_ma, r_ma, f_ma, per = prf_by_hand(y, pred)
    sc = M.threshold_scores(y, s, th)
    assert (sc.precision_micro, sc.recall_micro, sc.f1_micro) == pytest.approx((p_mi, r_mi, f_mi), abs=1e-12)
    assert (sc.precision_macro, sc.recall_macro, sc.f1_macro) == pytest.approx((p_ma, r_ma, f_ma), abs=1e-12)
    assert sc.subset_accuracy == pytest.approx(np.mean([(pred[i] == y[i]).all() for i in range(len(y))]))
    assert sc.per_label_accuracy == pytest.approx([(pred[:, k] == y[:, k]).mean() for k in range(7)])
    assert sc.label_accuracy == pytest.approx((pred == y).mean())
    assert math.isnan(sc.per_label_f1[3])
    assert [sc.per_label_f1[k] for k in per] == pytest.approx(list(per.values()))


# ---------------------------------------------------------------- single-label


def test_single_label_scores_with_soft_targets():
    # 3 classes; clip 4 belongs to classes 0 and 2 (half each), class 1 is never the truth
    y = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1], [0.5, 0, 0.5]])
    s = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .1, .8], [.6, .3, .1], [.1, .2, .7]])
    sc = M.single_label_scores(y, s)
    pred = s.argmax(1)
    cm = np.zeros((3, 3))
    for i in range(len(y)):
        for c in range(3):
            cm[c, pred[i]] += y[i, c]
    rows = cm.sum(1, keepdims=True)
    expected = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    assert np.allclose(sc.confusion, expected)
    assert np.allclose(sc.confusion.sum(1), [1, 0, 1])
    assert sc.accuracy == pytest.approx(sum(y[i, pred[i]] for i in range(len(y))) / len(y))
    f1 = []
    for c in (0, 2):  # classes present in the truth
        tp = sum(y[i, c] for i in range(len(y)) if pred[i] == c)
        fp = sum(y[i].sum() - y[i, c] for i in range(len(y)) if pred[i] == c)
        fn = sum(y[i, c] for i in range(len(y)) if pred[i] != c)
        f1.append(2 * tp / (2 * tp + fp + fn))
    assert sc.f1_macro == pytest.approx(np.mean(f1))
    assert sc.support == pytest.approx([2.5, 0, 2.5])


# ---------------------------------------------------------------- curves


def test_micro_roc_pools_every_decision(data):
    y, s = data
    roc = M.micro_roc(y, s, max_points=15)
    assert roc["auc"] == pytest.approx(auc_mann_whitney(y.ravel(), s.ravel()), abs=1e-12)
    assert len(roc["fpr"]) <= 15 and roc["fpr"][0] == 0.0 and roc["fpr"][-1] == 1.0 and roc["tpr"][-1] == 1.0
    assert all(a <= b for a, b in zip(roc["fpr"], roc["fpr"][1:]))
    assert M.micro_roc(np.zeros((3, 2)), np.random.rand(3, 2))["auc"] is None


def test_per_class_roc_skips_undefined_classes(data):
    y, s = data
    names = [f"c{k}" for k in range(7)]
    curves = M.per_class_roc(y, s, names)
    assert "c3" not in curves and set(curves) == {n for k, n in enumerate(names) if k != 3}
    assert curves["c1"]["auc"] == pytest.approx(auc_mann_whitney(y[:, 1], s[:, 1]), abs=1e-12)


def test_downsample_keeps_ends():
    x = np.linspace(0, 1, 1000)
    xs, ys = M.downsample_curve(x, x**2, 11)
    assert len(xs) == 11 and xs[0] == 0 and xs[-1] == 1 and ys[-1] == 1
