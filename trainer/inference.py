"""Scoring cached clips the way the app scores files: sliding windows, averaged.

Validation and ``guesser evaluate`` read frames from the cache instead of
decoding audio, but cut them into the same windows as :func:`guesser.features.model_windows`
(tile when short, half-overlapping windows when long) and aggregate the same
way as the ensemble, so a reported mAP is what ``guesser classify`` delivers.
"""

from __future__ import annotations

import numpy as np
import torch

from guesser.features import FeatureConfig, fit_frames, normalize, window_starts
from trainer.cache import CachedSplit


def window_batches(split: CachedSplit, cfg: FeatureConfig, batch_size: int):
    """Yield (clip ids [W], windows [W, 1, M, T] normalised) over every window of every clip."""
    ids: list[int] = []
    wins: list[torch.Tensor] = []
    for i in range(len(split)):
        lm = torch.from_numpy(split.clip(i))
        for s in window_starts(lm.shape[-1], cfg.clip_frames):
            ids.append(i)
            wins.append(fit_frames(lm, cfg.clip_frames, cfg.short, s))
            if len(wins) == batch_size:
                yield np.asarray(ids), normalize(torch.stack(wins), cfg).unsqueeze(1)
                ids, wins = [], []
    if wins:
        yield np.asarray(ids), normalize(torch.stack(wins), cfg).unsqueeze(1)


@torch.no_grad()
def predict_split(
    model: torch.nn.Module,
    split: CachedSplit,
    cfg: FeatureConfig,
    task: str,
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Per-clip probabilities [N, K]: sigmoid (labels) or softmax (families), mean over windows."""
    model.eval()
    device = torch.device(device)
    sums: np.ndarray | None = None
    counts = np.zeros(len(split), np.float64)
    for ids, x in window_batches(split, cfg, batch_size):
        x = x.to(device)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            logits = model(x).float()
        p = (torch.sigmoid(logits) if task == "labels" else torch.softmax(logits, dim=-1)).cpu().numpy()
        if sums is None:
            sums = np.zeros((len(split), p.shape[1]), np.float64)
        np.add.at(sums, ids, p)
        np.add.at(counts, ids, 1)
    if sums is None:
        return np.zeros((0, 0), np.float32)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
