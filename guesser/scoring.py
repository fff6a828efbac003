"""The one path from a log-mel to ranked scores, shared by the app and the trainer.

A reported number is what a user gets because both sides run this code, not a
copy of it: ``guesser classify``/``listen``/``play`` (through
:class:`guesser.ensemble.Ensemble`), validation during training and
``guesser evaluate`` (through :func:`trainer.inference.predict_split`), and the
benchmarks::

    log-mel [M, T]   guesser.features.log_mel of a waveform, or a clip read back from the cache
      └─ windows(logmel, cfg)             the model's windows: one (tiled or padded) for a clip up
                                          to its length, half-overlapping ones for a longer clip
                                          (``seconds``: shorter sub-windows, filled alike: sound events)
      └─ batches(clips, size)             windows of one or many clips, normalised, ``size`` at a time
      └─ model_probs(module, batches, task)
                                          sigmoid (labels) or softmax (families) per window, and
                                          optionally each window's embedding (the head's input)
      └─ clip_means(values, ids, n)       one row per clip: the mean over its windows (clip_pool: or max,
                                          linear softmax; measured in docs/benchmarks.md)
      └─ family_source(probs, task, classes)
                                          a model's family scores: a family model's softmax placed
                                          among the six families, a label model's labels folded
                                          (a family scores as its most probable label)
      └─ fuse(label_probs, family_sources, weights)
                                          the ensemble: mean of the label models' probabilities,
                                          weighted mean of the family sources

Shapes: M mel bins, T frames, W windows, K classes, D embedding width.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from guesser.features import FeatureConfig, fit_frames, normalize, window_starts
from guesser.labels import FAMILIES_6, LabelSpace, Vocabulary, default_label_space, fold_families
from guesser.models import TASK_LABELS


@dataclass(frozen=True)
class Windows:
    """Where one clip's model windows start (in frames) in its log-mel, and how to cut them."""

    logmel: torch.Tensor  # [M, T] float32
    cfg: FeatureConfig
    starts: tuple[int, ...]
    length: int | None = None  # frames cut per window: the model's window (None), or a shorter sub-window

    @property
    def frames(self) -> int:
        return self.length or self.cfg.clip_frames

    def __len__(self) -> int:
        return len(self.starts)

    def inputs(self, first: int = 0, stop: int | None = None) -> torch.Tensor:
        """Windows ``first`` to ``stop`` as normalised model inputs [n, 1, M, clip_frames].

        A sub-window (or a clip shorter than the window) is filled up to the
        model's window by its ``short`` policy, as a short clip is in training.
        """
        cfg, n = self.cfg, self.frames
        x = torch.stack([fit_frames(self.logmel[..., s : s + n], cfg.clip_frames, cfg.short) for s in self.starts[first:stop]])
        return normalize(x, cfg).unsqueeze(1)

    def spans(self, duration: float | None = None) -> list[tuple[float, float]]:
        """(start, end) of every window in seconds (ends clipped to ``duration`` when given)."""
        fps, length = self.cfg.frames_per_second, self.frames / self.cfg.frames_per_second
        out = [(s / fps, s / fps + length) for s in self.starts]
        return out if duration is None else [(a, min(b, duration)) for a, b in out]


def windows(logmel: torch.Tensor, cfg: FeatureConfig, hop_seconds: float | None = None,
            seconds: float | None = None) -> Windows:
    """A clip's [M, T] log-mel -> its model windows (hop: half a window unless ``hop_seconds``).

    ``seconds`` cuts sub-windows shorter than the model's window (sound events:
    :mod:`guesser.sed`), each filled up to the window as a short clip is.
    """
    length, hop = window_frames(cfg, seconds, hop_seconds)
    return Windows(logmel, cfg, tuple(window_starts(logmel.shape[-1], length or cfg.clip_frames, hop)), length)


def window_frames(cfg: FeatureConfig, seconds: float | None, hop_seconds: float | None) -> tuple[int | None, int | None]:
    """(window length, hop) in frames of ``cfg``; None for the model's window and the default hop."""
    fps = cfg.frames_per_second
    length = min(cfg.clip_frames, max(1, int(round(seconds * fps)))) if seconds else None
    return length, (max(1, int(round(hop_seconds * fps))) if hop_seconds else None)


def batches(clips: Iterable[Windows], size: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(clip ids [B], inputs [B, 1, M, F]) over every window of every clip, at most ``size`` windows a batch.

    Clip ids count the clips from 0 in the order given. Windows are cut only when
    their batch is due, so memory stays bounded for an hour-long file or a whole split.
    """
    size = max(1, int(size))
    ids: list[int] = []
    parts: list[torch.Tensor] = []
    for k, clip in enumerate(clips):
        i = 0
        while i < len(clip):
            take = min(size - len(ids), len(clip) - i)
            parts.append(clip.inputs(i, i + take))
            ids += [k] * take
            i += take
            if len(ids) == size:
                yield np.asarray(ids), torch.cat(parts) if len(parts) > 1 else parts[0]
                ids, parts = [], []
    if ids:
        yield np.asarray(ids), torch.cat(parts) if len(parts) > 1 else parts[0]


ATTENTION_ALPHA = 1.0
"""α of ``attention`` pooling when none is given: each window weighted by its odds p/(1-p)."""


@dataclass
class WindowProbs:
    """One model's answer for every window it was shown."""

    probs: torch.Tensor  # [W, K] float32
    clip_ids: np.ndarray  # [W]: which clip each window belongs to
    embeddings: torch.Tensor | None = None  # [W, D] float32, when asked for

    def clip_probs(self, n_clips: int, pooling: str = "mean", alpha: float = ATTENTION_ALPHA) -> torch.Tensor:
        return clip_pool(self.probs, self.clip_ids, n_clips, pooling, alpha)

    def clip_embeddings(self, n_clips: int) -> torch.Tensor | None:
        return None if self.embeddings is None else clip_means(self.embeddings, self.clip_ids, n_clips)


def head_of(module: torch.nn.Module) -> torch.nn.Module:
    """The layer(s) that turn a model's embedding into logits (``module.head`` for every guesser model)."""
    head = getattr(module, "head", None)
    if not isinstance(head, torch.nn.Module):
        raise ValueError(f"{type(module).__name__} has no head: its embedding cannot be taken")
    return head


def model_probs(module: torch.nn.Module, inputs: Iterable[tuple[np.ndarray, torch.Tensor]], task: str, *,
                device: torch.device | str | None = None, autocast_dtype: torch.dtype | None = None,
                embeddings: bool = False) -> WindowProbs:
    """Run ``module`` over batches from :func:`batches`: probabilities per window, sigmoid or softmax by ``task``.

    ``embeddings`` also keeps what each window fed the head (the vector before
    it): read in passing by a hook, so it costs no extra inference.
    ``autocast_dtype`` runs the forward pass under autocast (the trainer's
    validation in bf16/fp16); None keeps the module's own arithmetic.
    """
    device = torch.device(device) if device is not None else None
    probs: list[torch.Tensor] = []
    ids: list[np.ndarray] = []
    seen: list[torch.Tensor] = []
    hook = head_of(module).register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().float().cpu())) \
        if embeddings else None
    try:
        with torch.no_grad():
            for clip_ids, x in inputs:
                if device is not None:
                    x = x.to(device)
                x = x.contiguous(memory_format=torch.channels_last)
                autocast = (torch.autocast(x.device.type, dtype=autocast_dtype) if autocast_dtype is not None
                            else contextlib.nullcontext())
                with autocast:
                    logits = module(x).float()
                p = torch.sigmoid(logits) if task == TASK_LABELS else torch.softmax(logits, dim=-1)
                probs.append(p.cpu())
                ids.append(clip_ids)
    finally:
        if hook is not None:
            hook.remove()
    if not probs:
        return WindowProbs(torch.zeros(0, 0), np.zeros(0, np.int64), torch.zeros(0, 0) if embeddings else None)
    return WindowProbs(torch.cat(probs), np.concatenate(ids), torch.cat(seen) if embeddings else None)


def clip_means(values: torch.Tensor, clip_ids: np.ndarray, n_clips: int) -> torch.Tensor:
    """[W, K] per-window values -> [n_clips, K] float32: each clip's mean over its windows (summed in float64)."""
    sums = torch.zeros(n_clips, values.shape[-1], dtype=torch.float64)
    sums.index_add_(0, torch.as_tensor(clip_ids, dtype=torch.long), values.double())
    counts = torch.bincount(torch.as_tensor(clip_ids, dtype=torch.long), minlength=n_clips).clamp(min=1)
    return (sums / counts[:, None]).float()


POOLINGS = ("mean", "max", "linsoftmax", "attention")
"""How a clip's window probabilities become its own: their mean (the default), their maximum, the
linear-softmax mean sum(p²)/sum(p) (each window weighted by its own score; Wang et al. 2019), or
attention pooling: per class, a softmax over the clip's windows of α·logit(p) weights them (McFee et
al.'s auto-pool, 2018; α = 0 is the mean, α → ∞ the maximum; no extra parameters in the models, so
every shipped model can use it). Measured in docs/benchmarks.md#pooling-over-windows
(``benchmarks/pooling.py``)."""


def clip_pool(values: torch.Tensor, clip_ids: np.ndarray, n_clips: int, pooling: str = "mean",
              alpha: float = ATTENTION_ALPHA) -> torch.Tensor:
    """[W, K] per-window probabilities -> [n_clips, K] float32, pooled over each clip's windows by ``pooling``
    (``alpha``: the sharpness of ``attention`` pooling)."""
    if pooling == "mean":
        return clip_means(values, clip_ids, n_clips)
    ids = torch.as_tensor(clip_ids, dtype=torch.long)
    if pooling == "max":
        out = torch.zeros(n_clips, values.shape[-1], dtype=torch.float32)
        v = values.float()
        return out.scatter_reduce_(0, ids[:, None].expand_as(v), v, "amax", include_self=False)
    if pooling == "linsoftmax":
        v = values.double()
        return _weighted_means(v, v, ids, n_clips)
    if pooling == "attention":
        v = values.double()
        z = alpha * torch.logit(v.clamp(1e-7, 1 - 1e-7))
        top = torch.full((n_clips, v.shape[-1]), -torch.inf, dtype=torch.float64)
        top.scatter_reduce_(0, ids[:, None].expand_as(z), z, "amax", include_self=False)
        return _weighted_means(v, torch.exp(z - top[ids]), ids, n_clips)  # softmax shifted by its max: no overflow
    raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")


def _weighted_means(v: torch.Tensor, w: torch.Tensor, ids: torch.Tensor, n_clips: int) -> torch.Tensor:
    """[W, K] float64 values and weights -> [n_clips, K] float32: each clip's Σw·v / Σw (0 where Σw = 0)."""
    num = torch.zeros(n_clips, v.shape[-1], dtype=torch.float64).index_add_(0, ids, w * v)
    den = torch.zeros(n_clips, v.shape[-1], dtype=torch.float64).index_add_(0, ids, w)
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.zeros_like(den)).float()


# ---------------------------------------------------------------- the ensemble


@lru_cache(maxsize=4)
def _fold_matrix(classes: tuple[str, ...]) -> torch.Tensor:
    """[L, 6] label -> family membership for a label model's classes (the shipped ontology)."""
    space = default_label_space()
    if classes != space.vocabulary.names:
        space = LabelSpace(Vocabulary(classes, space.vocabulary.mids), space.ontology)
    return torch.from_numpy(space.family_matrix(FAMILIES_6))


def family_source(probs: torch.Tensor, task: str, classes: Sequence[str]) -> torch.Tensor:
    """One model's [..., K] probabilities -> its [..., 6] family scores (in :data:`FAMILIES_6` order).

    A label model's labels are folded (a family scores as its most probable
    label); a family model's softmax is placed among the six families (a family
    it does not know scores 0).
    """
    if task == TASK_LABELS:
        return fold_families(probs, _fold_matrix(tuple(classes)))
    full = torch.zeros(*probs.shape[:-1], len(FAMILIES_6), dtype=probs.dtype)
    full[..., [FAMILIES_6.index(c) for c in classes]] = probs
    return full


@dataclass
class Fused:
    labels: torch.Tensor | None  # [..., 200]: mean of the label models' probabilities (None without one)
    families: torch.Tensor  # [..., 6]: weighted mean of the family sources


def fuse(label_probs: Sequence[torch.Tensor], family_sources: Sequence[torch.Tensor],
         weights: Sequence[float], label_weights: Sequence[float] | None = None) -> Fused:
    """The ensemble's scores: label probabilities and family sources, each a weighted mean.

    ``weights`` weigh the family sources (one per model), ``label_weights`` the
    label models' probabilities (None: equal). A model's weight is its index
    entry's (``guesser select``'s forward selection on val, or the older
    ``family_weight`` of ``guesser evaluate``), the same in both means.
    """
    labels = None
    if label_probs:
        labels = weighted_mean(list(label_probs), list(label_weights) if label_weights is not None
                               else [1.0] * len(label_probs))
    return Fused(labels, weighted_mean(list(family_sources), list(weights)))


def weighted_mean(sources: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """The weighted mean of same-shape score tensors (equal weights when all are zero)."""
    w = torch.tensor(weights, dtype=torch.float32)
    if float(w.sum()) <= 0:
        w = torch.ones_like(w)
    return (torch.stack(sources) * (w / w.sum()).view(-1, *([1] * sources[0].dim()))).sum(dim=0)
