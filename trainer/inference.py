"""Scoring cached clips the way the app scores files: the same windows, the same code.

Validation and ``guesser evaluate`` read frames from the cache instead of
decoding audio (the cached frames are bit-identical to what the app computes),
then go through :mod:`guesser.scoring` exactly as the app's ensemble does:
:func:`~guesser.scoring.windows` (tile when short, half-overlapping windows
when long), :func:`~guesser.scoring.model_probs` and the mean over each clip's
windows. So a reported mAP is what ``guesser classify`` delivers.
"""

from __future__ import annotations

import numpy as np
import torch

from guesser.ensemble import BATCH_WINDOWS
from guesser.features import FeatureConfig
from guesser.scoring import batches, model_probs, windows
from trainer.cache import CachedSplit


def split_windows(split: CachedSplit, cfg: FeatureConfig, rows=None):
    """Every clip of ``split`` (or those at ``rows``) as :class:`guesser.scoring.Windows`, in order, read lazily."""
    return (windows(torch.from_numpy(split.clip(int(i))), cfg) for i in (range(len(split)) if rows is None else rows))


def default_batch_size(device: torch.device | str) -> int:
    """Windows per forward pass: the app's 16 on a CPU, 64 on a GPU.

    On a CPU a batch's activations should stay in the caches: 64 windows of a
    compact-front-end model put 39 MB through the first layer (bf16) and cost
    1.6-1.8x the CPU time per clip of 16 (``benchmarks/evaluate.py``); a GPU
    wants larger batches to fill it.
    """
    return 64 if torch.device(device).type == "cuda" else BATCH_WINDOWS


def predict_split(
    model: torch.nn.Module,
    split: CachedSplit,
    cfg: FeatureConfig,
    task: str,
    *,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Per-clip probabilities [N, K]: sigmoid (labels) or softmax (families), mean over windows.

    ``batch_size`` (windows per forward pass) defaults to :func:`default_batch_size` for ``device``.
    """
    model.eval()
    size = batch_size or default_batch_size(device)
    out = model_probs(model, batches(split_windows(split, cfg), size), task, device=device,
                      autocast_dtype=autocast_dtype)
    if len(out.clip_ids) == 0:
        return np.zeros((0, 0), np.float32)
    return out.clip_probs(len(split)).numpy()
