"""The files the trainer writes, one typed and versioned record each, in the style of ``ModelMeta``.

    run.json        RunSummary    what ``guesser train`` ends with; ``train multi`` indexes it, ``report`` shows it
    metrics.jsonl   MetricsRow    one line per epoch (also in ``last.safetensors``' history)
    eval.json       EvalResult    ``guesser evaluate``: one model's (or ``ensemble_eval.json``: the ensemble's) metrics
    selected.json   Selection     the ``selection`` of the models index ``guesser select`` writes

Every writer builds the record and calls ``to_json``; every reader calls
``read``/``from_json``, which checks each field the way
:class:`guesser.checkpoint.HeaderFields` does: a file of the wrong shape is one
line naming the file and the field, never a traceback or a ``KeyError`` later.
Fields a reader does not know are ignored (a newer guesser may add some); a
``version`` above the one this code writes is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from guesser.checkpoint import _MISSING, HeaderFields, atomic_write_text
from guesser.errors import CheckpointError, GuesserError

RECORD_VERSION = 1


def _is_real(v: Any) -> bool:
    """A JSON number, NaN and infinities included."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Fields(HeaderFields):
    """:class:`HeaderFields` plus the checks the trainer's records need."""

    def real(self, key: str, default: Any = _MISSING) -> Any:
        """A number that may be NaN or infinite (a diverged run's loss; a best score never set)."""
        v = self._get(key, default, _is_real, "a number")
        return v if v is None else float(v)

    def version(self) -> int:
        v = self.int("version", RECORD_VERSION)
        if v > RECORD_VERSION:
            raise CheckpointError(f"{self.where}: written by a newer guesser (version {v}); please upgrade")
        return v

    def numbers(self, key: str, default: Any = None) -> list | None:
        """A list of numbers or nulls (NaN is written as null)."""
        v = self.list(key, default)
        if v is not None and not all(x is None or _is_real(x) for x in v):
            raise CheckpointError(f"{self.where}: {key} must be a list of numbers")
        return v


def read_object(path: Path, what: str) -> dict:
    """A JSON object from ``path``; anything else (unreadable, not JSON, a list) is one line naming the file."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise GuesserError(f"{path}: cannot read it as JSON ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not isinstance(data, dict):
        raise GuesserError(f"{path}: not a {what} (not a JSON object: a {type(data).__name__})")
    return data


def _without_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


# ---------------------------------------------------------------- run.json

@dataclass(frozen=True)
class RunSummary:
    """``run.json``: the recipe, the best validation score and epoch, time and size of a finished run."""

    recipe: dict
    member: str
    name: str
    task: str
    score_name: str
    best_score: float
    best_epoch: int
    epochs_run: int
    early_stopped: bool
    trained_seconds: float
    params: int | None = None
    cache: str | None = None
    commit: str | None = None
    world_size: int = 1
    version: int = RECORD_VERSION

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        return {"version": d.pop("version"), **d}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "RunSummary":
        f = Fields(data, where, "a run summary")
        return cls(version=f.version(), recipe=f.dict("recipe", {}), member=f.str("member"), name=f.str("name"),
                   task=f.str("task"), score_name=f.str("score_name", "val_map"), best_score=f.real("best_score"),
                   best_epoch=f.int("best_epoch"), epochs_run=f.int("epochs_run"),
                   early_stopped=f.bool("early_stopped", False), trained_seconds=f.number("trained_seconds", 0.0),
                   params=f.int("params", None), cache=f.str("cache", None), commit=f.str("commit", None),
                   world_size=f.int("world_size", 1))

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_json(), indent=1))

    @classmethod
    def read(cls, path: Path) -> "RunSummary":
        return cls.from_json(read_object(path, "run summary"), str(path))


# ---------------------------------------------------------------- metrics.jsonl

@dataclass(frozen=True)
class MetricsRow:
    """One epoch: its train loss and learning rate, and (when it was validated) the val loss and score."""

    epoch: int  # 1, 2, … (the epoch this row ends)
    train_loss: float  # mean over the epoch's steps and every rank
    lr: float | None = None
    val_loss: float | None = None
    val_map: float | None = None  # a labels model's score (guesser.checkpoint.score_name)
    val_family_map: float | None = None  # a families model's
    seconds: float | None = None  # training time up to the end of this epoch

    def score(self, name: str) -> float | None:
        """The validation score called ``name`` (``val_map`` or ``val_family_map``), None if not validated."""
        return getattr(self, name) if name in ("val_map", "val_family_map") else None

    def to_json(self) -> dict:
        return _without_none({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_json(cls, data: Any, where: str) -> "MetricsRow":
        f = Fields(data, where, "an epoch's metrics")
        return cls(epoch=f.int("epoch"), train_loss=f.real("train_loss"), lr=f.real("lr", None),
                   val_loss=f.real("val_loss", None), val_map=f.real("val_map", None),
                   val_family_map=f.real("val_family_map", None), seconds=f.real("seconds", None))

    @staticmethod
    def write_lines(path: Path, rows: list["MetricsRow"]) -> None:
        atomic_write_text(path, "".join(json.dumps(r.to_json()) + "\n" for r in rows))

    @classmethod
    def read_lines(cls, path: Path) -> list["MetricsRow"]:
        """Every epoch of a ``metrics.jsonl``; a line that is not one is one error naming the file and line."""
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise GuesserError(f"{path}: cannot read it ({e})") from None
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except (ValueError, RecursionError):
                raise GuesserError(f"{path}:{n}: not a JSON line") from None
            rows.append(cls.from_json(data, f"{path}:{n}"))
        return rows


# ---------------------------------------------------------------- eval.json

@dataclass(frozen=True)
class Summary:
    """The headline metrics of one result (None: not computed for this task, or not a number)."""

    map: float | None = None
    d_prime: float | None = None
    auc: float | None = None
    lwlrap: float | None = None
    f1_micro: float | None = None
    f1_macro: float | None = None
    precision_micro: float | None = None
    recall_micro: float | None = None
    precision_macro: float | None = None
    recall_macro: float | None = None
    subset_accuracy: float | None = None
    label_accuracy: float | None = None
    family_map: float | None = None
    family_accuracy: float | None = None
    family_f1_macro: float | None = None
    present: tuple[str, ...] = ()  # the keys the file had, in its order (null ones included)

    @property
    def has_labels(self) -> bool:
        return "f1_micro" in self.present

    @property
    def f1(self) -> float | None:
        """Macro F1 over labels, or for a families model over families."""
        return self.f1_macro if "f1_macro" in self.present else self.family_f1_macro

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.present}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "Summary":
        scores = Fields({"summary": data}, where, "").scores("summary")
        known = {f.name for f in fields(cls)} - {"present"}
        return cls(**{k: v for k, v in scores.items() if k in known}, present=tuple(k for k in scores if k in known))


@dataclass(frozen=True)
class PerClass:
    """Per-class metrics (``labels`` / ``families``): names with their AP and positives, and the rest by name."""

    names: tuple[str, ...]
    ap: list
    positives: list
    support: list | None = None  # families: clips of each true family (a clip of two counts ½ in each)
    other: dict = field(default_factory=dict)  # auc, f1, accuracy, threshold (labels)

    def to_json(self) -> dict:
        return _without_none({"names": list(self.names), "ap": self.ap, **self.other, "positives": self.positives,
                              "support": self.support})

    @classmethod
    def from_json(cls, data: Any, where: str) -> "PerClass":
        f = Fields(data, where, "per-class metrics")
        names, ap, pos = f.list("names"), f.numbers("ap", []), f.numbers("positives", [])
        if not (len(names) == len(ap) == len(pos)):
            raise CheckpointError(f"{where}: names, ap and positives must be of one length")
        return cls(tuple(map(str, names)), ap, pos, f.numbers("support", None),
                   {k: v for k, v in data.items() if k not in ("names", "ap", "positives", "support")})


@dataclass(frozen=True)
class Confusion:
    """The top-family decision's confusion matrix, row-normalised (rows: true family)."""

    classes: tuple[str, ...]
    matrix: list[list[float]]

    def to_json(self) -> dict:
        return {"classes": list(self.classes), "matrix": self.matrix}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "Confusion":
        f = Fields(data, where, "a confusion matrix")
        classes, matrix = f.list("classes"), f.list("matrix")
        if len(matrix) != len(classes) or not all(
                isinstance(row, list) and len(row) == len(classes) and all(_is_real(v) for v in row) for row in matrix):
            raise CheckpointError(f"{where}: must hold classes and a square matrix of numbers")
        return cls(tuple(map(str, classes)), matrix)


@dataclass(frozen=True)
class Roc:
    """ROC curves: the micro average (every clip × class decision pooled) and per class."""

    fpr: list[float] | None = None  # the micro curve
    tpr: list[float] | None = None
    auc: float | None = None
    per_class: Any = None

    def to_json(self) -> dict:
        micro = {"fpr": self.fpr, "tpr": self.tpr, "auc": self.auc} if self.fpr is not None else None
        return _without_none({"micro": micro, "per_class": self.per_class})

    @classmethod
    def from_json(cls, data: Any, where: str) -> "Roc":
        f = Fields(data, where, "ROC curves")
        micro = f.dict("micro", None)
        if micro is None:
            return cls(per_class=data.get("per_class"))
        m = Fields(micro, f"{where}.micro", "a ROC curve")
        fpr, tpr = m.list("fpr"), m.list("tpr")
        if len(fpr) != len(tpr) or not all(_is_real(v) for v in fpr + tpr):
            raise CheckpointError(f"{where}.micro: must hold fpr and tpr of one length")
        return cls(fpr, tpr, m.real("auc", None), data.get("per_class"))


@dataclass(frozen=True)
class EvalResult:
    """``eval.json`` (one model) or ``ensemble_eval.json``: what ``guesser evaluate`` measured on one split."""

    name: str
    summary: Summary
    kind: str | None = None  # the task, or "ensemble"
    member: str | None = None
    arch: str | None = None
    task: str | None = None
    checkpoint: str | None = None
    run: str | None = None
    split: str | None = None
    cache: str | None = None
    models: tuple[str, ...] | None = None  # an ensemble's members
    checkpoints: tuple[str, ...] | None = None
    clips: int | None = None
    params: int | None = None
    thresholds_from: str | None = None
    evaluated_at: str | None = None
    seconds: float | None = None
    labels: PerClass | None = None
    roc_labels: Roc | None = None
    families: PerClass | None = None
    confusion: Confusion | None = None
    roc_families: Roc | None = None
    family_weights: dict | None = None  # the ensemble's family models' weights, chosen on val
    groups: dict | None = None  # per-group scores (guesser evaluate --groups; trainer.groups)
    version: int = RECORD_VERSION

    SECTIONS = {"labels": PerClass, "roc_labels": Roc, "families": PerClass, "confusion": Confusion,
                "roc_families": Roc}
    ORDER = ("version", "kind", "name", "member", "arch", "task", "checkpoint", "run", "split", "cache", "models",
             "checkpoints", "clips", "params", "thresholds_from", "evaluated_at", "seconds", "summary", "labels",
             "roc_labels", "families", "confusion", "roc_families", "family_weights", "groups")  # as written

    def to_json(self) -> dict:
        out: dict = {}
        for key in self.ORDER:
            v = getattr(self, key)
            if v is not None:
                out[key] = v.to_json() if hasattr(v, "to_json") else list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> "EvalResult":
        f = Fields(data, where, "a guesser evaluation result")
        text = {k: f.str(k, None) for k in ("kind", "member", "arch", "task", "checkpoint", "run", "split", "cache",
                                            "thresholds_from", "evaluated_at")}
        sections = {k: kind.from_json(data[k], f"{where}: {k}") for k, kind in cls.SECTIONS.items()
                    if data.get(k) is not None}
        return cls(version=f.version(), name=f.str("name", Path(where).parent.name or "result"),
                   summary=Summary.from_json(data.get("summary", {}), where), **text,
                   models=f.strings("models", None), checkpoints=f.strings("checkpoints", None),
                   clips=f.int("clips", None), params=f.int("params", None), seconds=f.number("seconds", None),
                   family_weights=f.dict("family_weights", None), groups=f.dict("groups", None), **sections)

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_json(), indent=1))

    @classmethod
    def read(cls, path: Path) -> "EvalResult":
        return cls.from_json(read_object(path, "guesser evaluation result"), str(path))

    @property
    def split_note(self) -> str:
        return f"{self.split}, {self.clips} clips"


# ---------------------------------------------------------------- selected.json's selection

@dataclass(frozen=True)
class SelectionStep:
    """One step of forward selection: the run added and the ensemble's scores on val after it."""

    step: int
    added: str
    objective: float
    val_map: float
    val_family_map: float

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "SelectionStep":
        f = Fields(data, where, "a selection step")
        return cls(f.int("step"), f.str("added"), f.real("objective"), f.real("val_map"), f.real("val_family_map"))


@dataclass
class Selection:
    """How ``guesser select`` chose the ensemble (the models index's ``selection``), and the weights it chose."""

    weights: dict[str, int]  # run name -> times picked (not saved: the index's entries carry them)
    objective: float
    history: list[SelectionStep] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"objective": self.objective, "steps": [s.to_json() for s in self.history]}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "Selection":
        f = Fields(data, where, "a selection")
        steps = [SelectionStep.from_json(s, f"{where}: step {i + 1}") for i, s in enumerate(f.list("steps", []))]
        return cls({}, f.real("objective"), steps)

