"""Checkpoints: safetensors for tensors, JSON in the header for everything else.

Why not ``torch.save``: a pickle can run code when it is loaded, and a sound
model is something people download and share. A safetensors file holds only
tensors plus a string-to-string header; guesser puts one JSON document under
``"guesser"`` in that header (architecture, task, labels, feature config with
its normalisation statistics, recipe, metrics, commit).

Writes are atomic (temp file in the same folder, fsync, rename), so a crash or a
full disk leaves the previous checkpoint intact, never a torn file.

Nested state (an optimizer's ``state_dict``) is stored by :func:`flatten`: every
tensor goes into the safetensors body under its path, and the rest of the tree
into the JSON, so resuming a run needs no pickle either.

Two typed contracts live here, each read and written in exactly one place and
checked field by field on read (a bad field is one :class:`CheckpointError` line):

* :class:`ModelMeta`, the header of a model checkpoint
  (:func:`read_model_meta`, :func:`load_model_checkpoint`, :func:`save_model_checkpoint`);
* :class:`ModelsIndex`, a models index ``index.json`` (:meth:`ModelsIndex.read`, :meth:`ModelsIndex.write`).

This is also the only module that opens safetensors files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from guesser.errors import CheckpointError
from guesser.features import FeatureConfig
# The one atomic writer (high scores and recordings use it too) lives in guesser.fileio; re-exported here.
from guesser.fileio import atomic_write, atomic_write_text, check_regular, native_path  # noqa: F401
from guesser.models import TASK_LABELS, TASKS

FORMAT = "guesser-checkpoint"
FORMAT_VERSION = 1
_TENSOR = "__tensor__"


def flatten(tree: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested dict/list tree into (JSON skeleton, {path: tensor})."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().cpu().contiguous()
            return {_TENSOR: path}
        if isinstance(node, dict):
            return {"__dict__": [[walk(k, f"{path}.k{i}"), walk(v, f"{path}.{i}")] for i, (k, v) in enumerate(node.items())]}
        if isinstance(node, (list, tuple)):
            return {"__list__": [walk(v, f"{path}.{i}") for i, v in enumerate(node)], "tuple": isinstance(node, tuple)}
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"cannot store {type(node).__name__} at {path or '<root>'}")

    return walk(tree, prefix), tensors


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten`."""
    if isinstance(skeleton, dict):
        if _TENSOR in skeleton:
            return tensors[skeleton[_TENSOR]]
        if "__dict__" in skeleton:
            return {unflatten(k, tensors): unflatten(v, tensors) for k, v in skeleton["__dict__"]}
        if "__list__" in skeleton:
            items = [unflatten(v, tensors) for v in skeleton["__list__"]]
            return tuple(items) if skeleton.get("tuple") else items
    return skeleton


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Atomically write ``tensors`` and the JSON-able ``meta`` to a safetensors file."""
    from safetensors.torch import save_file

    header = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    text = json.dumps(header, sort_keys=True)
    clean = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    def write(p: Path) -> None:
        try:
            str(p).encode("utf-8")
        except UnicodeEncodeError:  # a folder whose name is not UTF-8: safetensors takes only str paths
            from safetensors.torch import save

            p.write_bytes(save(clean, metadata={"guesser": text}))
            return
        save_file(clean, str(p), metadata={"guesser": text})

    atomic_write(Path(path), write)


def read_meta(path: str | Path) -> dict[str, Any]:
    """Only the JSON header, as a dict (any kind of checkpoint): cheap, no tensor is read."""
    from safetensors import safe_open

    p = Path(path)
    if not p.exists() or p.is_dir():
        raise CheckpointError(f"{p}: no such checkpoint")
    check_regular(p, CheckpointError)  # a FIFO or a device is refused, never opened
    try:
        with native_path(p) as name, safe_open(name, framework="pt") as f:
            header = f.metadata() or {}
    except Exception:
        raise CheckpointError(f"{p}: not a guesser checkpoint (not a safetensors file)") from None
    if "guesser" not in header:
        raise CheckpointError(f"{p}: not a guesser checkpoint (safetensors without guesser metadata)")
    meta = _json(header["guesser"], f"{p}: corrupt guesser metadata")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a guesser checkpoint")
    version = meta.get("format_version", 0)
    if not _is_int(version) or version < 0:
        raise CheckpointError(f"{p}: corrupt guesser metadata (format_version {_shown(version)})")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{p}: written by a newer guesser (format {version}); please upgrade")
    return meta


def tensor_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's name and shape, from the header alone: what a reader checks before reading any data.

    A file whose sizes do not fit what the reader expects is refused before a
    byte of its tensors is read (an extra 1 GiB tensor costs nothing).
    """
    from safetensors import safe_open

    try:
        with native_path(path) as name, safe_open(name, framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{path}: corrupt checkpoint ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def load_checkpoint(path: str | Path, dtype: torch.dtype | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta); tensors optionally cast (fp16 shipped weights -> fp32 for CPU math)."""
    meta = read_meta(path)
    return _tensors(path, dtype), meta


def _tensors(path: str | Path, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        with native_path(path) as name:
            tensors = load_file(name)
    except Exception as e:
        raise CheckpointError(f"{path}: corrupt checkpoint ({str(e).splitlines()[0]})") from None
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    return tensors


def _json(text: str, error: str) -> Any:
    """Parse JSON; anything unparsable, including nesting deep enough to exhaust the recursion limit, is ``error``."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise CheckpointError(error) from None


# ---------------------------------------------------------------- field checks (one line each)

_MISSING = object()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _shown(v: Any) -> str:
    text = repr(v) if not isinstance(v, (dict, list)) else type(v).__name__
    return text if len(text) <= 40 else text[:37] + "..."


class HeaderFields:
    """Typed reads of one JSON object; a wrong or missing field is one :class:`CheckpointError` line."""

    def __init__(self, data: Any, where: str, what: str):
        if not isinstance(data, dict):
            raise CheckpointError(f"{where}: {what} must be a JSON object, got {type(data).__name__}")
        self.data, self.where = data, where

    def _get(self, key: str, default: Any, check, want: str) -> Any:
        v = self.data.get(key, _MISSING)
        if v is _MISSING or (v is None and default is None):
            if default is _MISSING:
                raise CheckpointError(f"{self.where}: {key} is missing")
            return default
        if not check(v):
            raise CheckpointError(f"{self.where}: {key} must be {want}, got {_shown(v)}")
        return v

    def str(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, default, lambda v: isinstance(v, str) and v != "", "a non-empty string")

    def int(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, default, _is_int, "an integer")

    def number(self, key: str, default: Any = _MISSING) -> Any:
        v = self._get(key, default, _is_number, "a finite number")
        return v if v is None else float(v)

    def bool(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, default, lambda v: isinstance(v, bool), "true or false")

    def dict(self, key: str, default: Any = _MISSING) -> Any:
        v = self._get(key, default, lambda v: isinstance(v, dict), "a JSON object")
        return dict(v) if v is not None else None

    def list(self, key: str, default: Any = _MISSING) -> Any:
        v = self._get(key, default, lambda v: isinstance(v, list), "a JSON list")
        return list(v) if v is not None else None

    def any(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, default, lambda v: True, "present")

    def strings(self, key: str, default: Any = _MISSING) -> Any:
        v = self._get(key, default, lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
                      "a list of strings")
        return tuple(v) if v is not None else None

    def scores(self, key: str, default: Any = _MISSING, text: tuple[str, ...] = ()) -> Any:
        """A JSON object of numbers (or null), with strings only under the keys in ``text``."""
        v = self.dict(key, default)
        if v is not None:
            bad = next((k for k, x in v.items()
                        if not (_is_number(x) or x is None or (k in text and isinstance(x, str)))), None)
            if bad is not None:
                raise CheckpointError(f"{self.where}: {key}.{bad} must be a finite number, got {_shown(v[bad])}")
        return v

    def one_of(self, key: str, choices, default: Any = _MISSING) -> Any:
        return self._get(key, default, lambda v: v in choices, "one of " + ", ".join(map(str, choices)))


# ---------------------------------------------------------------- a model checkpoint's header

def score_name(task: str) -> str:
    """The validation score a run of ``task`` is judged by: its name in metrics rows, run.json and the index."""
    return "val_map" if task == TASK_LABELS else "val_family_map"


@dataclass(frozen=True)
class ModelMeta:
    """The JSON header of a model checkpoint: everything the app needs to run it, and where it came from."""

    name: str
    member: str
    arch: str
    task: str  # "labels" (sigmoid over the vocabulary) or "families" (softmax)
    classes: tuple[str, ...]
    features: FeatureConfig
    model_hparams: dict = field(default_factory=dict)
    families_set: str | None = None  # "6" or "5" for a families model
    recipe: dict = field(default_factory=dict)
    params: int | None = None
    commit: str | None = None
    metrics: dict = field(default_factory=dict)  # the best epoch's metrics row
    best_epoch: int | None = None
    trained_seconds: float | None = None
    trained_labels: tuple[str, ...] | None = None
    world_size: int | None = None
    eval: dict | None = None  # headline numbers of guesser evaluate (exported models)
    exported_from: str | None = None
    weights_dtype: str | None = None
    random_weights: bool = False
    extra: dict = field(default_factory=dict)  # fields this version does not know, kept as they are

    @property
    def score_name(self) -> str:
        return score_name(self.task)

    @property
    def val_score(self) -> float | None:
        v = self.metrics.get(self.score_name)
        return float(v) if _is_number(v) else None

    @classmethod
    def from_header(cls, header: dict, where: str | Path) -> "ModelMeta":
        """Check every field of a model header; :class:`CheckpointError` (one line) on the first bad one."""
        f = HeaderFields(header, str(where), "the checkpoint metadata")
        kind = header.get("kind")
        if kind != "model":
            raise CheckpointError(f"{where}: a {kind if isinstance(kind, str) else 'unknown'} checkpoint, "
                                  "not a model (use best.safetensors)")
        arch = f.str("arch")
        task = f.str("task")
        if task not in TASKS:
            raise CheckpointError(f"{where}: unknown task {task!r}")
        classes = f.strings("classes")
        if not classes:
            raise CheckpointError(f"{where}: classes is empty")
        try:
            features = FeatureConfig.from_dict(f.dict("features"))
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{where}: metadata does not describe a guesser model "
                                  f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        known = {x.name for x in fields(cls)} | {"kind", "format", "format_version"}
        return cls(
            name=f.str("name"), member=f.str("member", arch), arch=arch, task=task, classes=classes,
            features=features, model_hparams=f.dict("model_hparams", {}),
            families_set=f.one_of("families_set", ("6", "5"), None), recipe=f.dict("recipe", {}),
            params=f.int("params", None), commit=f.str("commit", None), metrics=f.scores("metrics", {}),
            best_epoch=f.int("best_epoch", None), trained_seconds=f.number("trained_seconds", None),
            trained_labels=f.strings("trained_labels", None), world_size=f.int("world_size", None),
            eval=f.scores("eval", None, text=("split",)), exported_from=f.str("exported_from", None),
            weights_dtype=f.str("weights_dtype", None), random_weights=f.bool("random_weights", False),
            extra={k: v for k, v in header.items() if k not in known and k != "extra"},
        )

    def to_header(self) -> dict:
        out: dict[str, Any] = {"kind": "model"}
        for x in fields(self):
            v = getattr(self, x.name)
            if x.name == "extra":
                continue
            if x.name == "features":
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            if v is not None and not (x.name == "random_weights" and v is False):
                out[x.name] = v
        return {**self.extra, **out}

    def with_(self, **changes) -> "ModelMeta":
        return replace(self, **changes)


def read_model_meta(path: str | Path) -> ModelMeta:
    """A model checkpoint's checked header; no tensor is read."""
    return ModelMeta.from_header(read_meta(path), path)


def load_model_checkpoint(path: str | Path, dtype: torch.dtype | None = None) -> tuple[dict[str, torch.Tensor], ModelMeta]:
    """(tensors, checked header) of a model checkpoint."""
    meta = read_model_meta(path)
    return _tensors(path, dtype), meta


def save_model_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: ModelMeta,
                          dtype: torch.dtype | None = None) -> None:
    """Write a model checkpoint (floating-point tensors cast to ``dtype`` when given)."""
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    save_checkpoint(path, tensors, meta.to_header())


# ---------------------------------------------------------------- the models index

INDEX_NAME = "index.json"
INDEX_VERSION = 1


@dataclass(frozen=True)
class IndexEntry:
    """One model of an index: its checkpoint (relative to the index) and its weight in the family ranking."""

    path: str
    member: str | None = None
    name: str | None = None
    task: str | None = None
    score_name: str | None = None
    val_score: float | None = None
    family_weight: float = 1.0  # chosen on val by guesser evaluate; label models count 1
    eval: dict | None = None
    weight: float | None = None  # chosen on val by guesser select (times picked); when set, it is the model's weight

    @classmethod
    def from_json(cls, data: Any, where: str) -> "IndexEntry":
        f = HeaderFields(data, where, "a models index entry")
        weight = f.number("family_weight", 1.0)
        if weight < 0:
            raise CheckpointError(f"{where}: a family_weight must be a finite number >= 0, got {weight:g}")
        chosen = f.number("weight", None)
        if chosen is not None and chosen < 0:
            raise CheckpointError(f"{where}: a weight must be a finite number >= 0, got {chosen:g}")
        return cls(path=f.str("path"), member=f.str("member", None), name=f.str("name", None),
                   task=f.one_of("task", TASKS, None), score_name=f.str("score_name", None),
                   val_score=f.number("val_score", None), family_weight=weight, eval=f.scores("eval", None, text=("split",)),
                   weight=chosen)

    @property
    def ensemble_weight(self) -> float:
        """How much the model counts in the ensemble's label and family means."""
        return self.weight if self.weight is not None else self.family_weight

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in ("member", "name", "task", "score_name", "val_score")}
        out = {k: v for k, v in out.items() if v is not None}
        if self.weight is not None:
            out["weight"] = self.weight
        if self.family_weight != 1.0:
            out["family_weight"] = self.family_weight
        out["path"] = self.path
        if self.eval is not None:
            out["eval"] = self.eval
        return out


@dataclass(frozen=True)
class ModelsIndex:
    """``index.json``: the models an ensemble runs (what ``guesser train multi`` and ``guesser export`` write)."""

    models: tuple[IndexEntry, ...]
    version: int = INDEX_VERSION
    confidence: dict | None = None  # the "not sure" rule calibrated on val (guesser.confidence), if any
    selection: dict | None = None  # how guesser select chose the models (its steps on val), if it did

    @classmethod
    def read(cls, path: str | Path) -> "ModelsIndex":
        from guesser.fileio import read_text

        p = Path(path)
        text = read_text(p, CheckpointError)  # regular files only: a FIFO never blocks
        data = _json(text, f"{p}: not a guesser models index (not JSON)")
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise CheckpointError(f"{p}: not a guesser models index (no list of models)")
        version = data.get("version", INDEX_VERSION)
        if not _is_int(version):
            raise CheckpointError(f"{p}: version must be an integer, got {_shown(version)}")
        if version > INDEX_VERSION:
            raise CheckpointError(f"{p}: written by a newer guesser (index version {version}); please upgrade")
        entries = tuple(IndexEntry.from_json(e, f"{p}: model {i + 1}") for i, e in enumerate(data["models"]))
        extra = {k: data.get(k) if isinstance(data.get(k), dict) else None for k in ("confidence", "selection")}
        return cls(entries, version, **extra)

    def write(self, path: str | Path) -> Path:
        """Write atomically; the one writer of index files."""
        path = Path(path)
        doc: dict = {"version": self.version}
        for k in ("selection", "confidence"):
            if getattr(self, k) is not None:
                doc[k] = getattr(self, k)
        doc["models"] = [e.to_json() for e in self.models]
        atomic_write_text(path, json.dumps(doc, indent=1))
        return path

    def checkpoints(self, folder: str | Path) -> list[tuple[Path, float]]:
        """(checkpoint path, family weight) of every entry, paths resolved against the index's ``folder``."""
        return [((Path(folder) / e.path).resolve(), e.ensemble_weight) for e in self.models]

    def with_weights(self, folder: str | Path, weights: dict[Path, float]) -> "ModelsIndex":
        """The index with the family weights of the checkpoints in ``weights`` (resolved paths) replaced."""
        return replace(self, models=tuple(
            replace(e, family_weight=weights.get((Path(folder) / e.path).resolve(), e.family_weight))
            for e in self.models))


def default_models_index() -> Path:
    """Where the shipped models are: $GUESSER_MODELS, else ``assets/models/index.json`` beside the package."""
    import os

    env = os.environ.get("GUESSER_MODELS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "assets" / "models" / INDEX_NAME, here / "_assets" / "models" / INDEX_NAME):
        if cand.is_file():
            return cand
    return here.parent / "assets" / "models" / INDEX_NAME


def index_file(source: str | Path) -> Path:
    """A folder stands for the models index in it (``folder/index.json``); anything else is itself."""
    p = Path(source)
    return p / INDEX_NAME if p.is_dir() else p


@dataclass(frozen=True)
class ModelSource:
    """One source of models as given (``--models``): a models index, read once, or a single checkpoint."""

    path: Path
    index: ModelsIndex | None  # None: ``path`` is a checkpoint

    @classmethod
    def read_all(cls, sources) -> list["ModelSource"]:
        """Index files, folders holding one, or checkpoints (default: the shipped index), each read once."""
        out = []
        for s in list(sources or [default_models_index()]):
            p = index_file(s)
            if not p.exists():
                raise CheckpointError(f"{p}: no models found there (train some with 'guesser train multi', "
                                      "or pass --models)")
            out.append(cls(p, ModelsIndex.read(p) if p.suffix == ".json" else None))
        return out

    def checkpoints(self) -> list[tuple[Path, float]]:
        """(checkpoint path, family weight) of every model this source names."""
        return self.index.checkpoints(self.path.parent) if self.index is not None else [(self.path, 1.0)]
