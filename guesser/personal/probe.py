"""The classifier behind a personal label: a logistic regression on the models' embeddings.

Why this shape: with 3–10 examples, anything with more parameters than a
linear model over good embeddings overfits; the shipped models already map a
clip to vectors in which sounds of one kind lie close together. The examples
are fitted against a fixed *background sample* (embeddings of a few thousand
corpus clips, shipped beside the models), so "not this sound" is what the
classifier learns for everything else.

Why it says "no" by default: its operating threshold is set on background
clips it did *not* see while fitting (k-fold cross-fitting), at a small
false-alarm rate, so a sound unlike the examples stays below it. Scores are
shifted so that the threshold sits at 0.5: a score ≥ 0.5 means "this is your
sound" and reads the same for every personal label.

The descriptor of a clip: each model's embedding (the vector its head reads,
:func:`guesser.scoring.model_probs`) pooled over the 4×4 map to one value per
channel (mean and max), square-rooted (the values are post-ReLU averages with
a long tail) and scaled to unit length per model, then the models side by
side. Measured on fsd50k-mini by ``benchmarks/fewshot.py`` (docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

POOL_CELLS = 16  # the 4×4 map every shipped architecture flattens into its head
TARGET_FALSE_ALARMS = 0.005  # share of held-out background clips allowed above the threshold
C_REGULARISATION = 1.0
FOLDS = 5
MIN_EXAMPLES = 3


def pooled(embedding: np.ndarray) -> np.ndarray:
    """[N, C·16] head inputs -> [N, 2C] per-channel mean and max over the 4×4 map (the compact form that is stored)."""
    e = np.asarray(embedding, np.float32)
    if e.ndim == 1:
        e = e[None]
    if e.shape[1] % POOL_CELLS:
        return e  # not a pooled-map model (e.g. CNN6's 512-wide embedding): used as it is
    cells = e.reshape(len(e), -1, POOL_CELLS)
    return np.concatenate([cells.mean(-1), cells.max(-1)], axis=1)


def descriptor(pooled_by_model: Mapping[str, np.ndarray], models: Sequence[str]) -> np.ndarray:
    """Each model's pooled embeddings [N, D_m] -> one [N, ΣD] descriptor (square root, unit length per model)."""
    parts = []
    for name in models:
        e = np.sqrt(np.maximum(np.asarray(pooled_by_model[name], np.float32), 0.0))
        parts.append(e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-8))
    return np.concatenate(parts, axis=1) / math.sqrt(len(models))


@dataclass(frozen=True)
class LinearProbe:
    """``score = σ(w·x + b − threshold)``: 0.5 exactly at the operating point."""

    coef: np.ndarray  # [D] float32
    intercept: float
    threshold: float

    def decision(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) @ self.coef.astype(np.float64) + self.intercept

    def score(self, x: np.ndarray) -> np.ndarray:
        z = self.decision(x) - self.threshold
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


@dataclass(frozen=True)
class Estimate:
    """What leave-one-out says about a new label, printed when it is made."""

    recognised: int  # held-out examples scored as this sound
    examples: int
    false_alarms: float  # share of held-out background clips scored as this sound
    background: int

    def text(self) -> str:
        return (f"leave-one-out: {self.recognised} of {self.examples} examples recognised when left out; "
                f"false alarms on {self.false_alarms:.1%} of {self.background:,} other sounds")


def _fit(pos: np.ndarray, neg: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([pos, neg])
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    # balanced: 5 examples against thousands of background clips would otherwise be ignored
    return LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(x, y)


def _folds(n: int, folds: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[i::folds] for i in range(folds)]


def fit_probe(pos: np.ndarray, background: np.ndarray, *, target_false_alarms: float = TARGET_FALSE_ALARMS,
              c: float = C_REGULARISATION, folds: int = FOLDS, seed: int = 0) -> LinearProbe:
    """Fit on all examples + background; the threshold from background clips held out of each fold's fit.

    The held-out decisions of the folds' fits (each on the examples and the
    other folds) stand in for sounds the final fit never saw: the threshold is
    their ``1 − target_false_alarms`` quantile.
    """
    pos = np.asarray(pos, np.float64)
    background = np.asarray(background, np.float64)
    held_out = []
    for held in _folds(len(background), folds, seed):
        keep = np.setdiff1d(np.arange(len(background)), held)
        held_out.append(_fit(pos, background[keep], c).decision_function(background[held]))
    threshold = float(np.quantile(np.concatenate(held_out), 1.0 - target_false_alarms))
    final = _fit(pos, background, c)
    return LinearProbe(final.coef_[0].astype(np.float32), float(final.intercept_[0]), threshold)


def leave_one_out(pos: np.ndarray, background: np.ndarray, **kwargs) -> Estimate:
    """Refit without each example in turn and ask whether it is recognised; false alarms on held-out background."""
    pos = np.asarray(pos, np.float64)
    background = np.asarray(background, np.float64)
    hits = 0
    for i in range(len(pos)):
        rest = np.delete(pos, i, axis=0)
        probe = fit_probe(rest, background, **kwargs)
        hits += int(probe.score(pos[i : i + 1])[0] >= 0.5)
    # false alarms: background clips held out of a fit on all the examples
    false = []
    for held in _folds(len(background), FOLDS, 1):
        keep = np.setdiff1d(np.arange(len(background)), held)
        probe = fit_probe(pos, background[keep], **kwargs)
        false.append(probe.score(background[held]) >= 0.5)
    return Estimate(hits, len(pos), float(np.concatenate(false).mean()), len(background))
