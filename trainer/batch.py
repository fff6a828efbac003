"""What one training step reads: the task's targets and a batch built from the cache, seeded.

:func:`make_batch` is a pure function of its arguments (every random draw
comes from the step's seed), which is what makes a resumed run identical to
an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from guesser.features import FeatureConfig, normalize
from guesser.labels import FAMILY_SETS, LabelSpace
from trainer.augment import augment_db, augment_normalised
from trainer.cache import CachedSplit
from trainer.fsd50k import family_targets
from trainer.recipe import Recipe


def step_seed(seed: int, epoch: int, step: int, rank: int = 0) -> int:
    """The seed of one step on one rank: batch crops, augmentation and dropout all derive from it."""
    return (seed * 1_000_003 + epoch * 10_007 + step * 101 + rank) % (2**63 - 1)


@dataclass
class Targets:
    """What the model learns from a split: a [N, K] float32 matrix and the clips to use."""

    y: np.ndarray
    keep: np.ndarray  # indices into the split
    classes: tuple[str, ...]
    soft: np.ndarray | None = None  # [N, K] a teacher's probabilities (distillation), rows as ``y``
    known: np.ndarray | None = None  # [K] bool: the classes the teacher learned


def task_targets(recipe: Recipe, split: CachedSplit, labels: LabelSpace) -> Targets:
    if recipe.task == "labels":
        return Targets(split.targets.astype(np.float32), np.arange(len(split)), split.vocabulary)
    fam = family_targets(split.targets, labels, recipe.train.families)
    keep = np.flatnonzero(fam.sum(axis=1) > 0)
    return Targets(fam, keep, FAMILY_SETS[recipe.train.families])


def smooth_positives(t: Targets, eps: float, rows: np.ndarray | None = None) -> Targets:
    """``t`` with the positive targets of ``rows`` (every row if None) lowered to 1 - ``eps``.

    One-sided label smoothing: a clip labelled from a recording prompt
    (Coswara's "breathe deeply") may hold the sound faintly or not at all, so
    its positives should not be pushed to certainty; its negatives stay 0,
    which keeps every "is it a positive" test (``y > 0``: oversampling, the
    trained labels, positive weights) as it was.
    """
    y = t.y.astype(np.float32)  # a copy
    sel = slice(None) if rows is None else rows
    y[sel] = np.where(y[sel] > 0, y[sel] * np.float32(1.0 - eps), y[sel])
    return replace(t, y=y)


def make_batch(split: CachedSplit, targets: Targets, idx: np.ndarray, cfg: FeatureConfig, recipe: Recipe,
               seed: int, background: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch: crops -> dB augmentation -> normalise -> SpecAugment/mixup; [B, 1, M, T], [B, K].

    ``background`` holds the indices (into ``split``) of the ambient clips that
    ``augment.background_p`` may put under a clip (:mod:`trainer.background`).
    """
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed) if recipe.train.random_crop else None
    t = recipe.train
    frames = int(round(t.crop_seconds * cfg.frames_per_second)) if t.crop_seconds else cfg.clip_frames
    x = torch.from_numpy(split.crops(idx, frames, rng, policy=cfg.short))
    y = torch.from_numpy(targets.y[idx])
    if targets.soft is not None:  # the teacher's columns ride along, so mixing treats them as the labels
        y = torch.cat([y, torch.from_numpy(targets.soft[idx])], dim=1)
    multilabel = recipe.task == "labels"
    bg = None
    if recipe.augment.background_p and background is not None and len(background):
        bg_rng = np.random.default_rng([seed, 1])
        bg = torch.from_numpy(split.crops(bg_rng.choice(background, len(idx)), frames, bg_rng, policy="tile"))
    x, y = augment_db(x, y, g, recipe.augment, multilabel, background=bg, frames_per_second=cfg.frames_per_second)
    x = normalize(x, cfg)
    x, y = augment_normalised(x, y, g, recipe.augment, fill="mean" if cfg.norm == "none" else 0.0)
    return x.unsqueeze(1), y
