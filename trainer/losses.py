"""Losses: BCE-with-logits (optionally per-label positive weights), focal loss, cross-entropy.

The student project studied focal loss and label weighting for the rare labels
of FSD50K's long tail; both are here, plus the prior-bias initialisation that
focal loss needs to start stably (Lin et al. 2017: with b = log(π/(1-π)) the
first predictions equal the label prior instead of 0.5).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Binary focal loss, mean over all entries.

    FL = -α_t (1 - p_t)^γ log(p_t), with p_t = p for positives and 1 - p for
    negatives, α_t = α for positives and 1 - α for negatives; soft targets
    (mixup) interpolate both terms. α < 0 disables the weighting.
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t).pow(gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean()


def positive_weights(targets: np.ndarray, mode: str, cap: float = 10.0) -> torch.Tensor | None:
    """Per-label BCE positive weights from train counts: ``inverse`` = neg/pos, ``sqrt`` = its square root; capped."""
    if mode == "none":
        return None
    pos = targets.sum(axis=0).astype(np.float64)
    neg = len(targets) - pos
    w = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
    if mode == "sqrt":
        w = np.sqrt(w)
    elif mode != "inverse":
        raise ValueError(f"unknown pos_weight mode {mode!r}")
    return torch.as_tensor(np.clip(w, 1.0, cap), dtype=torch.float32)


def prior_bias(targets: np.ndarray, floor: float = 1e-3) -> torch.Tensor:
    """Output biases log(π/(1-π)) from train label frequencies π (clamped away from 0 and 1)."""
    pi = np.clip(targets.mean(axis=0), floor, 1 - floor)
    return torch.as_tensor(np.log(pi / (1 - pi)), dtype=torch.float32)


class Criterion(nn.Module):
    """One callable for every recipe: ``bce`` / ``focal`` (multi-label) or ``ce`` (soft single-label)."""

    def __init__(self, kind: str, pos_weight: torch.Tensor | None = None, alpha: float = 0.25, gamma: float = 2.0):
        super().__init__()
        if kind not in ("bce", "focal", "ce"):
            raise ValueError(f"unknown loss {kind!r}")
        self.kind, self.alpha, self.gamma = kind, alpha, gamma
        self.register_buffer("pos_weight", pos_weight if pos_weight is not None else torch.empty(0))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.kind == "ce":
            return F.cross_entropy(logits, targets)
        if self.kind == "focal":
            return focal_loss(logits, targets, self.alpha, self.gamma)
        pw = self.pos_weight if self.pos_weight.numel() else None
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pw)


def entropy_floor(n: int) -> float:
    """Loss of a uniform guess over ``n`` classes (a reference line for CE curves)."""
    return math.log(n)
