"""The ensemble: the best model of each member, one prediction for a waveform.

Shared by ``guesser classify`` and ``guesser play``. How scores combine:

* labels: per-label probabilities averaged over the multi-label models, each
  weighted by its index entry's weight (each model on its own features, sliding
  windows averaged over the clip);
* families: each label model's probabilities are folded into family scores
  (a family scores as its most probable label, see :mod:`guesser.labels`), and
  averaged with the softmax of every family model, with the same weights
  (``weight``: chosen on val by ``guesser select``; older indexes'
  ``family_weight``; default 1);
* the label shown first is the most specific clear one (:mod:`guesser.ranking`),
  and below the val-calibrated threshold the answer is "not sure — maybe X or Y"
  (:mod:`guesser.confidence`).

Models with the same front-end share one log-mel computation (they differ only
in normalisation statistics), so the ensemble costs little more than its
networks. Windows, probabilities and the fusion are :mod:`guesser.scoring`'s,
the code ``guesser evaluate`` scores with.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from guesser.checkpoint import (INDEX_NAME, ModelMeta, ModelSource, default_models_index,  # noqa: F401
                                load_model_checkpoint, read_model_meta, tensor_shapes)
from guesser.errors import CheckpointError
from guesser.events import Event
from guesser.features import FeatureConfig, log_mel, resample, to_mono
from guesser.confidence import ConfidenceRule, distinct_guesses, rule_of
from guesser.labels import FAMILIES_6, default_label_space
from guesser.models import TASK_FAMILIES, TASK_LABELS, build_model
from guesser.present import is_heard
from guesser.ranking import specific_first
from guesser.sed import EventFeed, EventSettings
from guesser.scoring import Fused, Windows, WindowProbs, batches, family_source, fuse, model_probs, weighted_mean, windows

__all__ = ["INDEX_NAME", "BATCH_WINDOWS", "Ensemble", "LoadedModel", "ModelOutput", "Prediction", "Scored", "Window",
           "default_models_index", "load_model", "resolve_model_paths", "resolve_models", "weighted_mean"]

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
    embeddings: dict[str, torch.Tensor] = field(default_factory=dict)  # model name -> [D], when asked for
    confident: bool = True  # the label shown first cleared the val-calibrated rule (guesser.confidence)
    maybe: list[str] = field(default_factory=list)  # when not confident: two distinct guesses, best first
    personal: list[Scored] = field(default_factory=list)  # the user's own labels (guesser.personal), best first
    clip_probs: dict[str, torch.Tensor] = field(default_factory=dict)  # model name -> [K], with the embeddings
    events: list[Event] | None = None  # the sounds heard with start and end, when asked for (guesser.sed)

    @property
    def heard_personal(self) -> list[Scored]:
        """Personal labels at or above their operating point (:data:`guesser.present.HEARD`): "this is your sound"."""
        return [s for s in self.personal if is_heard(s.score)]

    def top(self, k: int) -> list[Scored]:
        return self.labels if k <= 0 else self.labels[:k]

    def to_json(self, file: str | None = None, top_k: int = 10) -> dict:
        out: dict = {}
        if file is not None:
            out["file"] = file
        out["labels"] = [{"label": s.name, "score": round(s.score, 6)} for s in self.top(top_k)]
        out["families"] = [{"family": s.name, "score": round(s.score, 6)} for s in self.families]
        out["personal"] = [{"label": s.name, "score": round(s.score, 6)} for s in self.personal]
        out["models"] = [m.to_json() for m in self.models]
        out["confident"] = self.confident
        if not self.confident:
            out["maybe"] = list(self.maybe)
        out["agreement"] = round(self.agreement, 4)
        out["duration"] = round(self.duration, 3)
        if self.events is not None:
            out["events"] = [e.to_json() for e in self.events]
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
    meta: ModelMeta
    family_weight: float = 1.0  # its weight in the ensemble: in the label mean and the family mean (models index)


def load_model(path: str | Path, *, precision: str | None = None, optimize: bool = True) -> LoadedModel:
    """A checkpoint -> ready-to-run module, checked against its own metadata.

    With ``optimize`` (the default) the module is rewritten for inference by
    :func:`guesser.fastpath.optimize_for_inference` (BatchNorm folded, ReLU
    fused, channels-last, bf16 convolutions where native): the same logits to
    float32 rounding (~1e-3 relative in bf16), 1.6-1.8x faster on a bf16 CPU.
    ``optimize=False`` keeps the module as trained.
    """
    path = Path(path)
    meta = read_model_meta(path)
    try:
        # Built on the meta device: no memory and no random initialisation (a third of loading
        # time), since every parameter and buffer is then taken from the checkpoint as it is.
        with torch.device("meta"):
            module = build_model(meta.arch, len(meta.classes), **meta.model_hparams)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: metadata does not describe a guesser model ({e})") from None
    if not meta.features.has_stats:
        raise CheckpointError(f"{path}: feature config lacks normalisation statistics")
    _check_sizes(path, module)
    tensors, _ = load_model_checkpoint(path, dtype=torch.float32)
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
    return LoadedModel(meta.name, meta.member, meta.task, meta.classes, meta.features, module, path, meta)


def _check_sizes(path: Path, module: torch.nn.Module) -> None:
    """The header's tensor names and shapes against the module's, before any weight is read."""
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    for name, shape in tensor_shapes(path).items():
        if want.get(name, shape) != shape:
            raise CheckpointError(f"{path}: weights do not match its metadata ({name} has shape {list(shape)}, "
                                  f"the model needs {list(want[name])})")
        if name not in want:
            raise CheckpointError(f"{path}: weights do not match its metadata (unexpected tensor {name} "
                                  f"of shape {list(shape)})")

def resolve_model_paths(sources: Iterable[str | Path] | None) -> list[Path]:
    """Index files and/or checkpoints (or a folder holding index.json) -> checkpoint paths."""
    return [p for p, _ in resolve_models(sources)]

def resolve_models(sources: Iterable[str | Path] | None) -> list[tuple[Path, float]]:
    """Index files and/or checkpoints (or a folder holding index.json) -> (checkpoint, family weight) pairs.

    An index entry's weight is its ``weight`` (``guesser select``: how often forward
    selection on val picked it) or else its ``family_weight`` (default 1): ``guesser evaluate``
    chooses it on the validation split, because a family model and the family
    scores folded from a label model are not equally reliable.
    """
    return checkpoints_of(ModelSource.read_all(sources))


def checkpoints_of(read: Sequence[ModelSource]) -> list[tuple[Path, float]]:
    """(checkpoint, family weight) pairs of sources already read; a model named twice is one line."""
    paths = [pair for source in read for pair in source.checkpoints()]
    if not paths:
        raise CheckpointError("no models to run")
    seen: dict[str, Path] = {}
    for p, _ in paths:  # one model twice would count its vote twice and break what is keyed by its name
        real = os.path.realpath(p)
        if real in seen:
            raise CheckpointError(f"{p}: the same model is listed twice; give each model once "
                                  "(a folder and its index.json are one source)")
        seen[real] = p
    return paths


class Ensemble:
    """Load once, then :meth:`predict` any number of waveforms."""

    def __init__(self, models: list[LoadedModel], window_hop_seconds: float | None = None,
                 batch_windows: int = BATCH_WINDOWS, confidence: ConfidenceRule | None = None):
        if not models:
            raise CheckpointError("an ensemble needs at least one model")
        self.models = models
        self.space = default_label_space()
        self.label_names: tuple[str, ...] = self.space.vocabulary.names
        self.family_names: tuple[str, ...] = FAMILIES_6
        self.window_hop_seconds = window_hop_seconds
        self.batch_windows = max(1, int(batch_windows))
        self.confidence = confidence
        self.personal = None  # the user's own labels, when guesser.personal.matcher.attach gave some
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
        read = ModelSource.read_all(sources)  # each index once: its models and its "not sure" rule
        models = []
        for path, weight in checkpoints_of(read):
            m = load_model(path, precision=precision, optimize=optimize)
            m.family_weight = weight
            models.append(m)
        kwargs.setdefault("confidence", rule_of(read))
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
            seen |= set(m.meta.trained_labels or ())
        return [n for n in self.label_names if n in seen] if seen else list(self.label_names)

    def predict(self, waveform: np.ndarray | torch.Tensor, sample_rate: int, *, timeline: bool = False,
                embeddings: bool = False, events: EventSettings | None = None) -> Prediction:
        """[samples] or [channels, samples] at any rate -> :class:`Prediction`.

        ``embeddings`` adds each model's embedding of the clip (the mean over its
        windows of what its head reads), taken in passing: no extra inference.
        ``events`` also scores sub-windows and lists the sounds heard with their
        start and end (:mod:`guesser.sed`; costs one more pass per sub-window).
        They are always taken when personal labels are attached (they are scored from them).
        The whole waveform is in memory here; :func:`guesser.stream.predict_source`
        scores a file of any length in bounded memory, block by block, and ends in
        the same :meth:`combine`.
        """
        t0 = time.perf_counter()
        with torch.inference_mode():
            wav = to_mono(waveform)
            logmels = self._log_mels(wav, sample_rate)
        return self.predict_log_mels(logmels, wav.shape[-1] / sample_rate, timeline=timeline,
                                     embeddings=embeddings, t0=t0, events=events)

    def predict_log_mels(self, logmels: dict[str, torch.Tensor], duration: float, *, timeline: bool = False,
                         embeddings: bool = False, t0: float | None = None,
                         events: EventSettings | None = None) -> Prediction:
        """One log-mel per front-end (``FeatureConfig.key``) -> :class:`Prediction`: what :meth:`predict` scores.

        :class:`guesser.live.LiveScorer` calls it with rolling log-mels, so the
        microphone's newest window is windowed, scored and fused exactly as a file is.
        """
        t0 = time.perf_counter() if t0 is None else t0
        with torch.inference_mode():
            embeddings = embeddings or bool(self.personal)
            scored = []
            for m in self.models:
                wins = windows(logmels[m.features.key], m.features, self.window_hop_seconds)
                scored.append((m, model_probs(m.module, batches([wins], self.batch_windows), m.task,
                                              embeddings=embeddings), wins))
            heard = None
            if events is not None:
                feed = EventFeed(self, events)
                for i, m in enumerate(self.models):
                    sub = windows(logmels[m.features.key], m.features, events.hop, events.window)
                    feed.add(i, list(sub.starts), model_probs(m.module, batches([sub], self.batch_windows), m.task).probs)
                heard = feed.finish(duration)
        return self.combine(scored, duration, timeline=timeline, t0=t0, events=heard)

    def window_hop_frames(self, cfg: FeatureConfig) -> int | None:
        """The sliding windows' hop in frames (None: half a window, :func:`guesser.features.window_starts`' default)."""
        return int(round(self.window_hop_seconds * cfg.frames_per_second)) if self.window_hop_seconds else None

    def window_probs(self, m: LoadedModel, logmel: torch.Tensor, starts: Sequence[int],
                     length: int | None = None) -> WindowProbs:
        """Model ``m``'s answer for the windows of ``logmel`` at ``starts`` (the streaming path's step).

        ``length`` cuts sub-windows of that many frames (sound events). With
        personal labels attached, each model window's embedding comes too.
        """
        wins = Windows(logmel, m.features, tuple(starts), length)
        return model_probs(m.module, batches([wins], self.batch_windows), m.task,
                           embeddings=bool(self.personal) and length is None)

    def combine(self, scored: list[tuple[LoadedModel, WindowProbs, Windows]], duration: float, *,
                timeline: bool = False, t0: float | None = None, events: list[Event] | None = None) -> Prediction:
        """Every model's per-window probabilities (with its windows) -> one :class:`Prediction`.

        Scores that are not finite (a checkpoint with damaged weights) are one
        :class:`CheckpointError` naming the model, never a NaN in the output.
        """
        t0 = time.perf_counter() if t0 is None else t0
        clip_probs: list[torch.Tensor] = []
        label_windows: list[tuple] = []  # (windows, per-window probabilities, weight) of each label model
        family_sources: list[torch.Tensor] = []
        outputs: list[ModelOutput] = []
        embedded: dict[str, torch.Tensor] = {}
        model_clip_probs: dict[str, torch.Tensor] = {}
        for m, out, wins in scored:
            if not bool(torch.isfinite(out.probs).all()):
                raise CheckpointError(f"{m.path}: model {m.name} gives NaN or infinite scores "
                                      "(its weights are damaged); remove it from --models or retrain it")
            p = out.clip_probs(1)[0]
            clip_probs.append(p)
            family_sources.append(family_source(p, m.task, m.classes))
            if m.task == TASK_LABELS:
                label_windows.append((wins, out.probs, m.family_weight))
            outputs.append(ModelOutput(m.name, m.member, m.task, _rank(m.classes, p)))
            if out.embeddings is not None:
                embedded[m.name] = out.clip_embeddings(1)[0]
                model_clip_probs[m.name] = p
        fused = self.fuse_models([m for m, _, _ in scored], clip_probs)
        if not bool(torch.isfinite(fused.families).all()):
            raise CheckpointError("the ensemble's weights give no finite family scores; check the models index")
        labels = fused.labels if fused.labels is not None else torch.zeros(len(self.label_names))
        top = int(fused.families.argmax())
        agreement = sum(int(src.argmax()) == top for src in family_sources) / len(family_sources)
        timeline_windows = self._timeline(label_windows, duration) if timeline else []
        ranked = _rank(self.label_names, labels)
        confident = self.confidence is None or self.confidence.confident(ranked[0].score)
        maybe = [] if confident else distinct_guesses([s.name for s in ranked], self.space.related)
        personal = ([Scored(n, v) for n, v in self.personal.score(embedded, model_clip_probs)]
                    if self.personal and embedded else [])
        return Prediction(ranked, _rank(self.family_names, fused.families), outputs, agreement, duration,
                          timeline_windows, time.perf_counter() - t0, embedded, confident, maybe, personal,
                          model_clip_probs, events)

    def fuse_models(self, models: Sequence[LoadedModel], probs: Sequence[torch.Tensor]) -> Fused:
        """Each model's [..., K] probabilities -> the ensemble's labels and families (:func:`guesser.scoring.fuse`).

        Clip scores and per-hop scores (sound events, :mod:`guesser.sed`) are fused alike.
        """
        return fuse([p for m, p in zip(models, probs) if m.task == TASK_LABELS],
                    [family_source(p, m.task, m.classes) for m, p in zip(models, probs)],
                    [m.family_weight for m in models],
                    [m.family_weight for m in models if m.task == TASK_LABELS])

    def _log_mels(self, wav: torch.Tensor, sample_rate: int) -> dict[str, torch.Tensor]:
        """One log-mel per distinct front-end among the models (one resampling per distinct rate)."""
        resampled: dict[int, torch.Tensor] = {}
        out: dict[str, torch.Tensor] = {}
        for m in self.models:
            cfg = m.features
            if cfg.key not in out:
                if cfg.sample_rate not in resampled:
                    resampled[cfg.sample_rate] = resample(wav, sample_rate, cfg.sample_rate)
                out[cfg.key] = log_mel(resampled[cfg.sample_rate], cfg.sample_rate, cfg)
        return out

    def _timeline(self, label_windows: list[tuple], duration: float) -> list[Window]:
        """Top labels of each window of the first label model (fused with the label models cut alike).

        Weighted as :func:`guesser.scoring.fuse` weighs the whole clip, so a
        one-window file's timeline says what its answer says.
        """
        if not label_windows:
            return []
        wins = label_windows[0][0]
        alike = [(p, w) for _, p, w in label_windows if p.shape[0] == len(wins)]
        per_window = weighted_mean([p for p, _ in alike], [w for _, w in alike])
        return [Window(a, b, _rank(self.label_names, pw)[:5]) for (a, b), pw in zip(wins.spans(duration), per_window)]

def _fit_threads() -> None:
    """Use no more intra-op threads than the CPUs this process may run on (containers, taskset)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return
    if 0 < usable < torch.get_num_threads():
        torch.set_num_threads(usable)

def _rank(names, probs: torch.Tensor) -> list[Scored]:
    """Scored classes in display order: most specific clear label first (:mod:`guesser.ranking`)."""
    p = probs.float().numpy()
    return [Scored(names[i], float(p[i])) for i in specific_first(tuple(names), p).tolist()]
