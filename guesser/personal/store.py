"""Where personal labels live: one folder each in the user data folder, written whole or not at all.

Layout (``$GUESSER_DATA_DIR/personal`` or the platform's user data folder)::

    personal/<slug>/label.safetensors   the examples' views (pooled embeddings, probabilities) and the
                                        classifier's weights (tensors), and
                                        in its JSON header: the name, when and from what it was made, the
                                        models it was made with (name + SHA-256 of each checkpoint), their
                                        feature settings, the threshold and the leave-one-out estimate
    personal/<slug>/clips/NN.wav        the examples as heard (mono, 16-bit): kept so that a label made
                                        with other models can be embedded again (``guesser teach --reembed``)

Why a folder renamed into place: a label is several files, and a crash or a
full disk while teaching must leave either the old label or the new one,
never half of either. Nothing here is unpickled (:mod:`guesser.checkpoint`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from guesser.errors import CheckpointError, GuesserError
from guesser.fileio import shown
from guesser.personal.probe import Estimate, LinearProbe, View

KIND = "personal-label"
LABEL_FILE = "label.safetensors"
CLIPS = "clips"
MAX_NAME = 40
_NAME_OK = re.compile(r"^[\w][\w .'()&+-]*$")


def personal_dir() -> Path:
    from guesser.userdata import data_dir

    return data_dir() / "personal"


def slug(name: str) -> str:
    """'My Kettle' -> 'my-kettle': the folder name (two names with one slug are one label)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def check_name(name: str) -> str:
    """A usable label name (trimmed), or a one-line GuesserError saying why not."""
    from guesser.labels import FAMILIES_6, default_label_space

    clean = " ".join(name.split())
    if not clean or not slug(clean):
        raise GuesserError(f"{name!r} is not a usable name: use letters or digits (e.g. 'kettle')")
    if len(clean) > MAX_NAME or not _NAME_OK.match(clean):
        raise GuesserError(f"{clean!r} is not a usable name: at most {MAX_NAME} letters, digits, spaces, - _ . ' ( ) & +")
    key = clean.lower().replace("_", " ")
    for known in (*default_label_space().vocabulary.names, *FAMILIES_6):
        if known.lower().replace("_", " ") == key:
            raise GuesserError(f"{clean!r} is an AudioSet label guesser already knows; "
                               f"choose another name (e.g. 'my {clean.lower()}')")
    return clean


@dataclass(frozen=True)
class ModelStamp:
    """Which model an embedding came from: its name and the SHA-256 of its checkpoint file."""

    name: str
    sha256: str

    @classmethod
    def of(cls, name: str, path: str | Path) -> "ModelStamp":
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return cls(name, h.hexdigest())

    def to_json(self) -> dict:
        return {"name": self.name, "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: dict) -> "ModelStamp":
        return cls(str(data["name"]), str(data["sha256"]))


def stamps_of(models: Iterable[Any]) -> tuple[ModelStamp, ...]:
    """Stamps of an ensemble's loaded models (name and checkpoint path), in their order; cached per file."""
    return tuple(_stamp(m.name, str(Path(m.path).resolve()), os.stat(m.path).st_mtime_ns) for m in models)


_STAMPS: dict[tuple[str, str, int], ModelStamp] = {}


def _stamp(name: str, path: str, mtime: int) -> ModelStamp:
    key = (name, path, mtime)
    if key not in _STAMPS:
        _STAMPS[key] = ModelStamp.of(name, path)
    return _STAMPS[key]


@dataclass
class PersonalLabel:
    """One taught sound: its classifier, the examples' embeddings, and how it was made."""

    name: str
    models: tuple[ModelStamp, ...]
    views: dict[str, View]  # model name -> its view of the examples (pooled embeddings, probabilities)
    probe: LinearProbe
    estimate: Estimate
    sources: tuple[str, ...]  # where each example came from (a file, or "microphone take 3")
    features: dict[str, dict] = field(default_factory=dict)  # model name -> its FeatureConfig (provenance)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    folder: Path | None = None  # where it was read from

    @property
    def examples(self) -> int:
        return len(self.sources)

    def clip_paths(self) -> list[Path]:
        if self.folder is None:
            return []
        return sorted((self.folder / CLIPS).glob("*.wav"))

    def header(self) -> dict:
        e = self.estimate
        return {"kind": KIND, "name": self.name, "created": self.created,
                "models": [s.to_json() for s in self.models], "features": self.features,
                "sources": list(self.sources), "intercept": self.probe.intercept,
                "threshold": self.probe.threshold,
                "estimate": {"recognised": e.recognised, "examples": e.examples,
                             "false_alarms": e.false_alarms, "background": e.background, "set_aside": e.set_aside}}

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"probe.coef": torch.from_numpy(np.asarray(self.probe.coef, np.float32))}
        for name, v in self.views.items():
            out.update(v.tensors(name))
        return out

    @classmethod
    def read(cls, folder: Path) -> "PersonalLabel":
        """Read and check one label folder; anything wrong is one CheckpointError naming the file."""
        from guesser.checkpoint import load_checkpoint

        path = folder / LABEL_FILE
        tensors, meta = load_checkpoint(path)
        try:
            if meta.get("kind") != KIND:
                raise ValueError(f"a {meta.get('kind', 'unknown')} file, not a personal label")
            models = tuple(ModelStamp.from_json(m) for m in meta["models"])
            views = {s.name: View.from_tensors(tensors, s.name) for s in models}
            e = meta["estimate"]
            label = cls(str(meta["name"]), models, views,
                        LinearProbe(tensors["probe.coef"].float().numpy(), float(meta["intercept"]),
                                    float(meta["threshold"])),
                        Estimate(int(e["recognised"]), int(e["examples"]), float(e["false_alarms"]),
                                 int(e["background"]), int(e.get("set_aside", 0))),
                        tuple(str(s) for s in meta["sources"]), dict(meta.get("features", {})),
                        str(meta["created"]), folder)
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{shown(path)}: not a readable personal label ({err})") from None
        if len({len(v) for v in views.values()} | {len(v.pooled) for v in views.values()}) > 1 \
                or label.probe.coef.ndim != 1:
            raise CheckpointError(f"{shown(path)}: not a readable personal label (inconsistent shapes)")
        return label


class Store:
    """The personal labels on this machine (``root`` defaults to the user data folder's ``personal/``)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else personal_dir()

    def folder(self, name: str) -> Path:
        return self.root / slug(name)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and (p / LABEL_FILE).is_file())

    def read_all(self) -> tuple[list[PersonalLabel], list[str]]:
        """(labels, one line per label folder that could not be read): a damaged label never stops the others."""
        labels, problems = [], []
        for s in self.names():
            try:
                labels.append(PersonalLabel.read(self.root / s))
            except GuesserError as e:
                problems.append(str(e))
        return labels, problems

    def get(self, name: str) -> PersonalLabel:
        folder = self.folder(name)
        if not (folder / LABEL_FILE).is_file():
            known = ", ".join(self.names()) or "none yet"
            raise GuesserError(f"no personal label {name!r} (known: {known})")
        return PersonalLabel.read(folder)

    def exists(self, name: str) -> bool:
        return (self.folder(name) / LABEL_FILE).is_file()

    def write(self, label: PersonalLabel, clips: Sequence[tuple[np.ndarray, int]] | None = None, *,
              replace: bool = False) -> Path:
        """Write ``label`` (and its example clips) as one folder, atomically; returns the folder.

        ``clips`` None keeps the clips of the label being replaced (re-embedding).
        """
        from guesser.checkpoint import save_checkpoint

        final = self.folder(label.name)
        if final.exists() and not replace:
            raise GuesserError(f"a personal label {label.name!r} exists already: "
                               f"'guesser teach --forget {label.name}' first, or choose another name")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{slug(label.name)}-", dir=self.root))
        except OSError as e:
            raise GuesserError(f"cannot write personal labels into {shown(self.root)}: {e.strerror or e}") from None
        try:
            (tmp / CLIPS).mkdir()
            if clips is None:
                for p in (final / CLIPS).glob("*.wav"):
                    shutil.copy2(p, tmp / CLIPS / p.name)
            else:
                for i, (samples, rate) in enumerate(clips, start=1):
                    _write_wav(tmp / CLIPS / f"{i:02d}.wav", samples, rate)
            save_checkpoint(tmp / LABEL_FILE, label.tensors(), label.header())
            _fsync_tree(tmp)
            old = None
            if final.exists():
                old = self.root / f".old-{tmp.name.lstrip('.')}"
                os.replace(final, old)
            os.replace(tmp, final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise GuesserError(f"cannot write the personal label {label.name!r} into {shown(self.root)}: "
                               f"{e.strerror or e} (nothing was changed)") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        label.folder = final
        return final

    def forget(self, name: str) -> None:
        folder = self.folder(name)
        if not (folder / LABEL_FILE).is_file():
            known = ", ".join(self.names()) or "none yet"
            raise GuesserError(f"no personal label {name!r} to forget (known: {known})")
        gone = self.root / f".gone-{folder.name}-{os.getpid()}"
        try:
            os.replace(folder, gone)  # one step: the label disappears whole, then its files go
        except OSError as e:
            raise GuesserError(f"cannot forget {name!r}: {e.strerror or e}") from None
        shutil.rmtree(gone, ignore_errors=True)


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    import soundfile as sf

    x = np.clip(np.asarray(samples, np.float32).reshape(-1), -1.0, 1.0)
    with open(path, "wb") as f:
        sf.write(f, x, int(rate), subtype="PCM_16", format="WAV")


def _fsync_tree(folder: Path) -> None:
    """Every file and folder of a new label on disk before it is renamed into place."""
    from guesser.fileio import fsync_path

    for p in [*folder.rglob("*"), folder]:
        fsync_path(p)
