"""The ensemble: the best model of each member, one prediction for a waveform.

Shared by ``guesser classify`` and ``guesser play``. How scores combine:

* labels: per-label probabilities averaged over the multi-label models
  (each model on its own features, sliding windows averaged over the clip);
* families: each label model's probabilities are folded into family scores
  (a family scores as its most probable label, see :mod:`guesser.labels`), and
  averaged with the softmax of every family model, each weighted by its index
  entry's ``family_weight`` (default 1; chosen on val by ``guesser evaluate``).

Models with the same front-end share one log-mel computation (they differ only
in normalisation statistics), so the ensemble costs little more than its
networks.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from guesser.checkpoint import load_checkpoint
from guesser.errors import CheckpointError
from guesser.features import FeatureConfig, fit_frames, log_mel_long, normalize, resampler, to_mono, window_starts
from guesser.fileio import read_text
from guesser.labels import FAMILIES_6, default_label_space, fold_families
from guesser.models import TASK_FAMILIES, TASK_LABELS, build_model

INDEX_NAME = "index.json"
BATCH_WINDOWS = 16  # windows per forward pass: all of a clip up to ~50 s, bounded memory beyond


@dataclass(frozen=True)
class Scored:
    name: str
    score: float


@dataclass
class ModelOutput:
    """What one model said: its ranked classes (labels or families)."""

    name: str
    member: str
    task: str
    ranking: list[Scored]

    def to_json(self, top_k: int = 5) -> dict:
        key = "label" if self.task == TASK_LABELS else "family"
        return {"name": self.name, "member": self.member, "task": self.task,
                "top": [{key: s.name, "score": round(s.score, 6)} for s in self.ranking[:top_k]]}


@dataclass
class Window:
    start: float  # seconds
    end: float
    labels: list[Scored]


@dataclass
class Prediction:
    labels: list[Scored]  # all labels, ranked
    families: list[Scored]  # ranked
    models: list[ModelOutput]
    agreement: float  # share of models whose top family is the ensemble's
    duration: float
    windows: list[Window] = field(default_factory=list)
    seconds: float = 0.0  # compute time

    def top(self, k: int) -> list[Scored]:
        return self.labels if k <= 0 else self.labels[:k]

    def to_json(self, file: str | None = None, top_k: int = 10) -> dict:
        out: dict = {}
        if file is not None:
            out["file"] = file
        out["labels"] = [{"label": s.name, "score": round(s.score, 6)} for s in self.top(top_k)]
        out["families"] = [{"family": s.name, "score": round(s.score, 6)} for s in self.families]
        out["models"] = [m.to_json() for m in self.models]
        out["agreement"] = round(self.agreement, 4)
        out["duration"] = round(self.duration, 3)
        if self.windows:
            out["timeline"] = [{"start": round(w.start, 3), "end": round(w.end, 3),
                                "labels": [{"label": s.name, "score": round(s.score, 6)} for s in w.labels]}
                               for w in self.windows]
        return out


@dataclass
class LoadedModel:
    name: str
    member: str
    task: str
    classes: tuple[str, ...]
    features: FeatureConfig
    module: torch.nn.Module
    path: Path
    meta: dict
    family_weight: float = 1.0  # how much its family scores count in the ensemble's (from the models index)


def load_model(path: str | Path, *, precision: str | None = None, optimize: bool = True) -> LoadedModel:
    """A checkpoint -> ready-to-run module, checked against its own metadata.

    With ``optimize`` (the default) the module is rewritten for inference by
    :func:`guesser.fastpath.optimize_for_inference` (BatchNorm folded, ReLU
    fused, channels-last, bf16 convolutions where native): the same logits to
    float32 rounding (~1e-3 relative in bf16), 1.6-1.8x faster on a bf16 CPU.
    ``optimize=False`` keeps the module as trained.
    """
    path = Path(path)
    tensors, meta = load_checkpoint(path, dtype=torch.float32)
    if meta.get("kind") != "model":
        raise CheckpointError(f"{path}: a {meta.get('kind', 'unknown')} checkpoint, not a model (use best.safetensors)")
    try:
        features = FeatureConfig.from_dict(meta["features"])
        task, classes = meta["task"], tuple(meta["classes"])
        # Built on the meta device: no memory and no random initialisation (a third of loading
        # time), since every parameter and buffer is then taken from the checkpoint as it is.
        with torch.device("meta"):
            module = build_model(meta["arch"], len(classes), **meta.get("model_hparams", {}))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: metadata does not describe a guesser model ({e})") from None
    if task not in (TASK_LABELS, TASK_FAMILIES):
        raise CheckpointError(f"{path}: unknown task {task!r}")
    if not features.has_stats:
        raise CheckpointError(f"{path}: feature config lacks normalisation statistics")
    try:
        module.load_state_dict(tensors, assign=True)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        # torch's first line is only "Error(s) in loading state_dict for Cnn3:"; the second names the tensor
        first = (lines[1] if len(lines) > 1 and lines[0].startswith("Error(s)") else lines[0]) if lines else "mismatch"
        raise CheckpointError(f"{path}: weights do not match its metadata ({first[:200]})") from None
    if any(t.is_meta for t in (*module.parameters(), *module.buffers())):
        raise CheckpointError(f"{path}: weights do not match its metadata (tensors missing)")
    damaged = next((k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
    if damaged is not None:
        raise CheckpointError(f"{path}: weights contain NaN or infinite values ({damaged}); the checkpoint is damaged")
    module.eval()
    if optimize:
        from guesser.fastpath import optimize_for_inference

        module = optimize_for_inference(module, precision, inplace=True)
    else:
        module = module.to(memory_format=torch.channels_last)
    return LoadedModel(meta.get("name", path.stem), meta.get("member", meta.get("arch")), task,
                       classes, features, module, path, meta)


def default_models_index() -> Path:
    """Where the shipped models are: $GUESSER_MODELS, else ``assets/models/index.json`` beside the package."""
    env = os.environ.get("GUESSER_MODELS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "assets" / "models" / INDEX_NAME, here / "_assets" / "models" / INDEX_NAME):
        if cand.is_file():
            return cand
    return here.parent / "assets" / "models" / INDEX_NAME


def resolve_model_paths(sources: Iterable[str | Path] | None) -> list[Path]:
    """Index files and/or checkpoints (or a folder holding index.json) -> checkpoint paths."""
    return [p for p, _ in resolve_models(sources)]


def resolve_models(sources: Iterable[str | Path] | None) -> list[tuple[Path, float]]:
    """Index files and/or checkpoints -> (checkpoint, family weight) pairs.

    An index entry may carry ``family_weight`` (default 1): ``guesser evaluate``
    chooses it on the validation split, because a family model and the family
    scores folded from a label model are not equally reliable.
    """
    sources = list(sources or [default_models_index()])
    paths: list[tuple[Path, float]] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            p = p / INDEX_NAME
        if not p.exists():
            raise CheckpointError(f"{p}: no models found there (train some with 'guesser train multi', or pass --models)")
        if p.suffix == ".json":
            try:
                index = json.loads(read_text(p, CheckpointError))  # a regular file only: a FIFO never blocks
                entries = index["models"]
                paths += [((p.parent / e["path"]).resolve(), float(e.get("family_weight", 1.0))) for e in entries]
            except (ValueError, KeyError, TypeError):
                raise CheckpointError(f"{p}: not a guesser models index") from None
            if not all(0 <= w < math.inf for _, w in paths):
                raise CheckpointError(f"{p}: a family_weight must be a finite number >= 0")
        else:
            paths.append((p, 1.0))
    if not paths:
        raise CheckpointError("no models to run")
    return paths


class Ensemble:
    """Load once, then :meth:`predict` any number of waveforms."""

    def __init__(self, models: list[LoadedModel], window_hop_seconds: float | None = None,
                 batch_windows: int = BATCH_WINDOWS):
        if not models:
            raise CheckpointError("an ensemble needs at least one model")
        self.models = models
        self.space = default_label_space()
        self.label_names: tuple[str, ...] = self.space.vocabulary.names
        self.family_names: tuple[str, ...] = FAMILIES_6
        self._fold = torch.from_numpy(self.space.family_matrix(FAMILIES_6))  # [200, 6]
        self.window_hop_seconds = window_hop_seconds
        self.batch_windows = max(1, int(batch_windows))
        for m in models:
            if m.task == TASK_LABELS and m.classes != self.label_names:
                raise CheckpointError(f"{m.path}: its labels are not FSD50K's 200-label vocabulary")
            if m.task == TASK_FAMILIES and not set(m.classes) <= set(FAMILIES_6):
                raise CheckpointError(f"{m.path}: unknown families {sorted(set(m.classes) - set(FAMILIES_6))}")
        # No torch.set_grad_enabled(False) here: predict() runs under inference_mode, and a global
        # switch would silently break autograd for everything else in the process (the trainer, tests).
        _fit_threads()

    @classmethod
    def load(cls, sources: Iterable[str | Path] | None = None, *, precision: str | None = None,
             optimize: bool = True, **kwargs) -> "Ensemble":
        """Load every model of ``sources`` (index files, folders, checkpoints; default: the shipped index)."""
        models = []
        for path, weight in resolve_models(sources):
            m = load_model(path, precision=precision, optimize=optimize)
            m.family_weight = weight
            models.append(m)
        return cls(models, **kwargs)

    @property
    def label_models(self) -> list[LoadedModel]:
        return [m for m in self.models if m.task == TASK_LABELS]

    @property
    def window_seconds(self) -> float:
        return max(m.features.clip_seconds for m in self.models)

    def known_labels(self) -> list[str]:
        """Labels the shipped models have actually seen in training (from their metadata), else all."""
        seen: set[str] = set()
        for m in self.label_models:
            seen |= set(m.meta.get("trained_labels", []))
        return [n for n in self.label_names if n in seen] if seen else list(self.label_names)

    def predict(self, waveform: np.ndarray | torch.Tensor, sample_rate: int, *, timeline: bool = False) -> Prediction:
        """[samples] or [channels, samples] at any rate -> :class:`Prediction`.

        The whole waveform is in memory here; :func:`guesser.stream.predict_source`
        scores a file of any length in bounded memory, block by block, and ends in
        the same :meth:`combine`.
        """
        t0 = time.perf_counter()
        with torch.inference_mode():
            wav = to_mono(waveform)
            duration = wav.shape[-1] / sample_rate
            resampled: dict[int, torch.Tensor] = {}
            logmels: dict[str, torch.Tensor] = {}
            scored: list[tuple[LoadedModel, torch.Tensor, list[int]]] = []
            for m in self.models:
                cfg = m.features
                if cfg.key not in logmels:
                    if cfg.sample_rate not in resampled:
                        resampled[cfg.sample_rate] = resampler(sample_rate, cfg.sample_rate)(wav)
                    logmels[cfg.key] = log_mel_long(resampled[cfg.sample_rate], cfg)
                lm = logmels[cfg.key]
                starts = window_starts(lm.shape[-1], cfg.clip_frames, self.window_hop_frames(cfg))
                scored.append((m, self._run(m, lm, starts), starts))  # logits [W, K]
            return self.combine(scored, duration, timeline=timeline, t0=t0)

    def window_hop_frames(self, cfg: FeatureConfig) -> int | None:
        """The sliding windows' hop in frames (None: half a window, :func:`window_starts`' default)."""
        return int(round(self.window_hop_seconds * cfg.frames_per_second)) if self.window_hop_seconds else None

    def combine(self, scored: list[tuple[LoadedModel, torch.Tensor, list[int]]], duration: float, *,
                timeline: bool = False, t0: float | None = None) -> Prediction:
        """Every model's window logits ([W, K], with the windows' starts in frames) -> one :class:`Prediction`.

        Scores that are not finite (a checkpoint with damaged weights) are one
        :class:`CheckpointError` naming the model, never a NaN in the output.
        """
        t0 = time.perf_counter() if t0 is None else t0
        with torch.inference_mode():
            label_probs: list[torch.Tensor] = []
            window_probs: list[torch.Tensor] = []
            starts_for_timeline: tuple[list[int], FeatureConfig] | None = None
            family_sources: list[torch.Tensor] = []
            outputs: list[ModelOutput] = []
            tops: list[int] = []  # each model's top family
            for m, logits, starts in scored:
                if not bool(torch.isfinite(logits).all()):
                    raise CheckpointError(f"{m.path}: model {m.name} gives NaN or infinite scores "
                                          "(its weights are damaged); remove it from --models or retrain it")
                cfg = m.features
                if m.task == TASK_LABELS:
                    pw = torch.sigmoid(logits)  # [W, 200]
                    p = pw.mean(dim=0)
                    label_probs.append(p)
                    window_probs.append(pw)
                    if starts_for_timeline is None:
                        starts_for_timeline = (starts, cfg)
                    fam = self._fold_families(p)
                    family_sources.append(fam)
                    tops.append(int(fam.argmax()))
                    outputs.append(ModelOutput(m.name, m.member, m.task, _rank(self.label_names, p)))
                else:
                    p = torch.softmax(logits, dim=-1).mean(dim=0)
                    full = torch.zeros(len(self.family_names))
                    for i, c in enumerate(m.classes):
                        full[self.family_names.index(c)] = p[i]
                    family_sources.append(full)
                    tops.append(int(full.argmax()))
                    outputs.append(ModelOutput(m.name, m.member, m.task, _rank(m.classes, p)))
            labels = torch.stack(label_probs).mean(dim=0) if label_probs else torch.zeros(len(self.label_names))
            families = weighted_mean(family_sources, [m.family_weight for m, _, _ in scored])
            fam_rank = _rank(self.family_names, families)
            agreement = sum(t == int(families.argmax()) for t in tops) / len(tops)
            windows: list[Window] = []
            if timeline and starts_for_timeline is not None:
                starts, cfg = starts_for_timeline
                per_window = torch.stack([wp for wp in window_probs if wp.shape[0] == len(starts)]).mean(dim=0)
                for s, pw in zip(starts, per_window):
                    a = s / cfg.frames_per_second
                    windows.append(Window(a, min(a + cfg.clip_seconds, duration), _rank(self.label_names, pw)[:5]))
        return Prediction(_rank(self.label_names, labels), fam_rank, outputs, agreement, duration, windows,
                          time.perf_counter() - t0)

    def _run(self, m: LoadedModel, logmel: torch.Tensor, starts: list[int]) -> torch.Tensor:
        """One model over the windows at ``starts`` of a [M, T] log-mel -> float32 logits [W, K].

        Windows go through the network ``batch_windows`` at a time: one batch
        for any clip up to a minute, and bounded memory for an hour-long file
        (a window's first activation is ~8 MB).
        """
        cfg = m.features
        out = []
        for i in range(0, len(starts), self.batch_windows):
            chunk = starts[i : i + self.batch_windows]
            x = torch.stack([fit_frames(logmel, cfg.clip_frames, cfg.short, s) for s in chunk])
            x = normalize(x, cfg).unsqueeze(1).contiguous(memory_format=torch.channels_last)
            try:
                out.append(m.module(x).float())
            except RuntimeError as e:  # metadata that does not fit the weights (n_mels, window) shows up here
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise CheckpointError(f"{m.path}: model {m.name} cannot run on its own feature settings ({first})") from None
        return torch.cat(out) if len(out) > 1 else out[0]

    def _fold_families(self, p: torch.Tensor) -> torch.Tensor:
        """[200] label probabilities -> [6] family scores: the most probable label of each family."""
        return fold_families(p, self._fold)


def weighted_mean(sources: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """The weighted mean of same-shape score tensors (equal weights when all are zero)."""
    w = torch.tensor(weights, dtype=torch.float32)
    if float(w.sum()) <= 0:
        w = torch.ones_like(w)
    return (torch.stack(sources) * (w / w.sum()).view(-1, *([1] * sources[0].dim()))).sum(dim=0)


def _fit_threads() -> None:
    """Use no more intra-op threads than the CPUs this process may run on (containers, taskset)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return
    if 0 < usable < torch.get_num_threads():
        torch.set_num_threads(usable)


def _rank(names, probs: torch.Tensor) -> list[Scored]:
    order = torch.argsort(probs, descending=True, stable=True).tolist()
    return [Scored(names[i], float(probs[i])) for i in order]

