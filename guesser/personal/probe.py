"""The classifier behind a personal label: a logistic regression on what the models hear.

Why this shape: with 3–20 examples, anything with more parameters than a
linear model over good features overfits, and the shipped models already map
a clip to vectors in which sounds of one kind lie together. The examples are
fitted against a fixed *background sample* (a few thousand corpus clips,
shipped beside the models), so "not this sound" is what the classifier learns
for everything else.

What it reads of a clip, per model (:class:`View`): its embedding (the vector
its head reads) pooled over the 4×4 map to one mean per channel, and its
class probabilities; each square-rooted (post-ReLU averages and probabilities
have long tails) and scaled to unit length, the models side by side. On
fsd50k-mini the probabilities carry most of it for sounds the models were
trained on and the embedding the acoustic detail for sounds they were not
(``benchmarks/fewshot.py``, docs/benchmarks.md).

Why it says "no" by default: its threshold is set where only
:data:`TARGET_FALSE_ALARMS` of background clips that a fit did *not* see score
above it. Folds of the background are held out in turn; how much higher the
held-out clips score than the fit's own background clips at that quantile
(the fit's optimism) is added to the final fit's own quantile. Scores are
shifted so that the threshold sits at 0.5: a score ≥ 0.5 means "this is your
sound" and reads the same for every label.

Why some background clips are set aside first: the corpus may hold the very
sound being taught (a cough, clapping). Those clips, labelled "not this",
would push the threshold above the sound itself (taught from five Speech clips,
the label fired on 2 % of the eval speech, at an AP of 0.93). A first fit finds the
background clips that score at least as high as the weakest example, and they
are left out of the fit and the calibration (5-shot recall at the operating point
45.9 % instead of 23.7 %, false alarms 0.70 % instead of 0.08 %; fsd50k-mini, docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

POOL_CELLS = 16  # the 4×4 map every shipped architecture flattens into its head
TARGET_FALSE_ALARMS = 0.005  # share of unseen background clips allowed above the threshold
C_REGULARISATION = 1.0
FOLDS = 3
MIN_EXAMPLES = 3


@dataclass(frozen=True)
class View:
    """What one model says about clips: pooled embeddings [N, C] and class probabilities [N, K]."""

    pooled: np.ndarray
    probs: np.ndarray

    @classmethod
    def of(cls, embedding: np.ndarray, probs: np.ndarray) -> "View":
        return cls(pool(embedding), np.atleast_2d(np.asarray(probs, np.float32)))

    def __len__(self) -> int:
        return len(self.probs)

    def rows(self, index) -> "View":
        return View(self.pooled[index], self.probs[index])

    @staticmethod
    def stack(views: Sequence["View"]) -> "View":
        return View(np.concatenate([v.pooled for v in views]), np.concatenate([v.probs for v in views]))

    def tensors(self, model: str, dtype=np.float32) -> dict:
        """As stored in a safetensors file: ``pooled.<model>``, ``probs.<model>``."""
        import torch

        return {f"pooled.{model}": torch.from_numpy(np.asarray(self.pooled, dtype)),
                f"probs.{model}": torch.from_numpy(np.asarray(self.probs, dtype))}

    @classmethod
    def from_tensors(cls, tensors: Mapping, model: str) -> "View":
        """Read back what :meth:`tensors` stored (a missing key is a KeyError for the reader to report)."""
        return cls(tensors[f"pooled.{model}"].float().numpy(), tensors[f"probs.{model}"].float().numpy())


def pool(embedding: np.ndarray) -> np.ndarray:
    """[N, C·16] head inputs -> [N, C] per-channel means over the 4×4 map (other widths: as they are)."""
    e = np.atleast_2d(np.asarray(embedding, np.float32))
    if e.shape[1] % POOL_CELLS:
        return e  # not a pooled-map model (e.g. CNN6's 512-wide embedding)
    return e.reshape(len(e), -1, POOL_CELLS).mean(-1)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.sqrt(np.maximum(np.asarray(x, np.float32), 0.0))
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)


def descriptor(views: Mapping[str, View], models: Sequence[str]) -> np.ndarray:
    """Each model's :class:`View` -> one [N, D] descriptor (square root, unit length per part)."""
    parts = [p for name in models for p in (_unit(views[name].pooled), _unit(views[name].probs))]
    return np.concatenate(parts, axis=1) / math.sqrt(len(parts))


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
    """What cross-validation says about a new label, printed when it is made."""

    recognised: int  # examples scored as this sound by a fit that left them out
    examples: int
    false_alarms: float  # share of background clips a fit did not see scored as this sound
    background: int
    set_aside: int = 0  # background clips that sounded like the examples, left out of the fit

    def text(self) -> str:
        aside = f" ({self.set_aside} that sound like your examples set aside)" if self.set_aside else ""
        return (f"leave-one-out: {self.recognised} of {self.examples} examples recognised when left out; "
                f"false alarms on {self.false_alarms:.1%} of {self.background:,} other sounds{aside}")


def _fit(pos: np.ndarray, neg: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    x = np.concatenate([pos, neg])
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    # One BLAS thread: these fits are small, and threads waiting on a busy machine made them 10x slower.
    # Balanced: 5 examples against thousands of background clips would otherwise be ignored.
    with threadpool_limits(1):
        return LogisticRegression(C=c, class_weight="balanced", max_iter=1000).fit(x, y)


def _folds(n: int, folds: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(order[i::folds]) for i in range(folds)]


@dataclass(frozen=True)
class Fitted:
    probe: LinearProbe
    estimate: Estimate


def set_aside(pos: np.ndarray, background: np.ndarray, c: float = C_REGULARISATION) -> np.ndarray:
    """Which background rows score at least as high as the weakest example in a first fit (likely the same sound)."""
    clf = _fit(pos, background, c)
    return clf.decision_function(background) >= clf.decision_function(pos).min()


def fit_probe(pos: np.ndarray, background: np.ndarray, *, target_false_alarms: float = TARGET_FALSE_ALARMS,
              c: float = C_REGULARISATION, folds: int = FOLDS, seed: int = 0, leave_one_out: bool = True,
              prune: bool = True) -> Fitted:
    """The probe for examples ``pos`` [k, D] against ``background`` [N, D], and its cross-validated estimate.

    ``leave_one_out`` refits once per example to ask whether it is recognised
    when left out (the benchmark, which scores held-out clips anyway, skips it).
    """
    pos = np.asarray(pos, np.float64)
    background = np.asarray(background, np.float64)
    aside = set_aside(pos, background, c) if prune else np.zeros(len(background), bool)
    background = background[~aside]
    q = 1.0 - target_false_alarms
    optimism, held_scores = [], []
    for held in _folds(len(background), folds, seed):
        keep = np.setdiff1d(np.arange(len(background)), held)
        clf = _fit(pos, background[keep], c)
        inside = float(np.quantile(clf.decision_function(background[keep]), q))
        outside = clf.decision_function(background[held])
        optimism.append(float(np.quantile(outside, q)) - inside)
        held_scores.append((outside, inside))
    final = _fit(pos, background, c)
    shift = float(np.mean(optimism))
    threshold = float(np.quantile(final.decision_function(background), q)) + shift
    probe = LinearProbe(final.coef_[0].astype(np.float32), float(final.intercept_[0]), threshold)
    # false alarms: each fold's unseen clips against that fit's threshold, its optimism taken from the other folds
    alarms = []
    for i, (outside, inside) in enumerate(held_scores):
        others = [o for j, o in enumerate(optimism) if j != i] or optimism
        alarms.append(outside >= inside + float(np.mean(others)))
    recognised = 0
    if leave_one_out:
        for i in range(len(pos)):
            rest = np.delete(pos, i, axis=0)
            if not len(rest):
                break
            clf = _fit(rest, background, c)
            t = float(np.quantile(clf.decision_function(background), q)) + shift
            recognised += int(clf.decision_function(pos[i : i + 1])[0] >= t)
    estimate = Estimate(recognised, len(pos), float(np.concatenate(alarms).mean()), len(background), int(aside.sum()))
    return Fitted(probe, estimate)
