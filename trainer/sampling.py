"""Which clips a training epoch visits, in which order, on which rank.

One sampler serves plain shuffling, oversampling of rare labels (the student
project's remedy for FSD50K's long tail) and DistributedDataParallel: the
epoch's order is drawn from (seed, epoch) alone, then rank r takes every
world-th item, so all ranks agree without talking, and a resumed run redraws
exactly the order it was interrupted in.
"""

from __future__ import annotations

import numpy as np


def oversampling_weights(targets: np.ndarray, power: float = 0.5) -> np.ndarray:
    """Per-clip weights: the rarest label of a clip decides, weight ∝ (1 / label count)^power.

    ``targets`` is [N, K] (multi-hot or soft); clips without any label get the
    median weight. Returns probabilities summing to 1.
    """
    has = targets > 0
    counts = has.sum(axis=0).astype(np.float64)
    inv = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0) ** power
    w = (has * inv[None, :]).max(axis=1)
    if (w == 0).any():
        w[w == 0] = np.median(w[w > 0]) if (w > 0).any() else 1.0
    return w / w.sum()


class EpochSampler:
    """Indices for (epoch, rank): a shuffle, or a weighted draw with replacement; same length on every rank."""

    def __init__(self, n: int, seed: int, weights: np.ndarray | None = None, rank: int = 0, world: int = 1):
        self.n, self.seed, self.weights, self.rank, self.world = n, seed, weights, rank, world

    def __len__(self) -> int:
        return self.n // self.world

    def indices(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch, 0x5A3])
        if self.weights is None:
            order = rng.permutation(self.n)
        else:
            order = rng.choice(self.n, size=self.n, replace=True, p=self.weights)
        per_rank = self.n // self.world
        return order[self.rank :: self.world][:per_rank]
