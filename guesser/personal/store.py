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
import unicodedata
from contextlib import contextmanager
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
NAME_PUNCTUATION = " .'()&+-_"
LOCK = ".lock"


def personal_dir() -> Path:
    from guesser.userdata import data_dir

    return data_dir() / "personal"


def normal(name: str) -> str:
    """A name as compared: NFC, case-folded, spaces collapsed ('Café ' and 'CAFÉ' are one name)."""
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())
    return " ".join(folded.replace("_", " ").split())


def slug(name: str) -> str:
    """'My Kettle' -> 'my-kettle', 'Чайник' -> 'чайник', 'café' -> 'café': the folder, one per normalised name.

    Letters, marks and digits of every script stay; any run of anything else is
    one '-'. Two names with one slug are one label.
    """
    kept = "".join(c if unicodedata.category(c)[0] in "LMN" else "-" for c in normal(name))
    return re.sub("-+", "-", kept).strip("-")


def _name_chars_ok(name: str) -> bool:
    """Letters, marks and digits of any script, and a little punctuation; a letter or digit first."""
    def kind(c: str) -> str:
        return unicodedata.category(c)[0]

    return (kind(name[0]) in "LN"
            and all(kind(c) in "LMN" or c in NAME_PUNCTUATION for c in name))


def check_name(name: str) -> str:
    """A usable label name (NFC, trimmed), or a one-line GuesserError saying why not.

    Refused: no letter or digit, more than :data:`MAX_NAME` characters, other
    punctuation or control characters, and any name that is, or looks like
    (Unicode TR39 confusable skeletons: 'Dоg' with a Cyrillic о), an
    AudioSet label or family guesser already shows.
    """
    from guesser.labels import FAMILIES_6, default_label_space

    clean = " ".join(unicodedata.normalize("NFC", name).split())
    if not clean or not slug(clean):
        raise GuesserError(f"{name!r} is not a usable name: use letters or digits (e.g. 'kettle')")
    if len(clean) > MAX_NAME or not _name_chars_ok(clean):
        raise GuesserError(f"{clean!r} is not a usable name: at most {MAX_NAME} letters, digits, spaces, - _ . ' ( ) & +")
    key = skeleton(normal(clean))
    for known in (*default_label_space().vocabulary.names, *FAMILIES_6):
        if skeleton(normal(known)) == key:
            same = normal(known) == normal(clean)
            raise GuesserError(f"{clean!r} {'is' if same else 'looks like'} the AudioSet label {known!r}, which guesser "
                               f"already knows; choose another name (e.g. 'my {known.lower().replace('_', ' ')}')")
    return clean


def skeleton(text: str) -> str:
    """Unicode TR39's confusable skeleton, as far as a name can pass for an AudioSet label (case-folded).

    NFD, then each character that looks like an ASCII letter or digit becomes
    it (Unicode's confusables data, from ``confusable_homoglyphs``: Cyrillic
    'о' -> 'o', Greek 'Ο' -> 'O', '0' -> 'O'), NFD again, case-folded.
    """
    from confusable_homoglyphs.confusables import confusables_data

    def prototype(c: str) -> str:
        if c.isascii() and c.isalpha():
            return c
        look = confusables_data.get(c)
        first = look[0]["c"] if look else c
        return first if first.isascii() and first.isalnum() else c

    mapped = "".join(prototype(c) for c in unicodedata.normalize("NFD", text))
    return unicodedata.normalize("NFD", mapped).casefold()


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
        """Read and check one label folder; anything wrong is one CheckpointError naming the file.

        Checked: the kinds and types of every header field, finite numbers,
        each model once, one row per example in every view, and weights as long
        as the descriptor the views make (``probe.descriptor``), so a label that
        loads can always be scored.
        """
        path = folder / LABEL_FILE
        tensors, meta, models, views = read_stamped(path, KIND, "personal label", MAX_LABEL_VALUES)
        try:
            e = meta["estimate"]
            label = cls(_text(meta["name"], "name"), models, views,
                        LinearProbe(tensors["probe.coef"].float().numpy(), _finite(meta["intercept"], "intercept"),
                                    _finite(meta["threshold"], "threshold")),
                        Estimate(_count(e["recognised"]), _count(e["examples"]), _finite(e["false_alarms"], "false_alarms"),
                                 _count(e["background"]), _count(e.get("set_aside", 0))),
                        tuple(_text(s, "source") for s in _list(meta["sources"], "sources")),
                        dict(meta.get("features", {})), _text(meta["created"], "created"), folder)
            _check_shapes(label)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(f"{shown(path)}: not a readable personal label ({err})") from None
        return label


MAX_LABEL_VALUES = 4_000_000
"""More numbers than any label holds (20 examples of a few thousand values per model, weights to match)."""


def read_stamped(path: Path, kind: str, what: str, max_values: int
                 ) -> tuple[dict[str, torch.Tensor], dict, tuple[ModelStamp, ...], dict[str, View]]:
    """(tensors, header, model stamps, each model's View) of a file of what models said about clips.

    The one reader of the two such files, a personal label and the background
    sample: readable, no more than ``max_values`` numbers (checked from the
    header, before any tensor is read), the right ``kind``, its models listed
    each once, and a view for each. Anything else is one CheckpointError
    naming the file and ``what`` it should have been.
    """
    from guesser.checkpoint import load_checkpoint, tensor_shapes

    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise CheckpointError(f"{shown(path)}: cannot read it ({e.strerror or e})") from None
    total = sum(int(np.prod(s)) for s in tensor_shapes(path).values())
    if total > max_values:
        raise CheckpointError(f"{shown(path)}: not a readable {what} ({total:,} values; at most {max_values:,})")
    tensors, meta = load_checkpoint(path)
    try:
        if meta.get("kind") != kind:
            raise ValueError(f"a {meta.get('kind', 'unknown')} file, not a {what}")
        models = tuple(ModelStamp.from_json(m) for m in _list(meta["models"], "models"))
        if len({m.name for m in models}) != len(models):
            raise ValueError("its models must be listed each once")
        views = {s.name: View.from_tensors(tensors, s.name) for s in models}
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{shown(path)}: not a readable {what} ({err})") from None
    return tensors, meta, models, views


def _list(v: Any, what: str) -> list:
    if not isinstance(v, list):
        raise ValueError(f"{what} must be a list")
    return v


def _text(v: Any, what: str) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"{what} must be text")
    return v


def _finite(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
        raise ValueError(f"{what} must be a finite number, got {v!r}")
    return float(v)


def _count(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"counts must be whole numbers, got {v!r}")
    return v


def _check_shapes(label: PersonalLabel) -> None:
    """One row per example in every view, finite values, weights as long as the descriptor."""
    k = len(label.sources)
    width = 0
    for name, v in label.views.items():
        for part, x in (("pooled", v.pooled), ("probs", v.probs)):
            if x.ndim != 2 or len(x) != k or x.shape[1] == 0:
                raise ValueError(f"{part}.{name} has shape {list(x.shape)}, not [{k} examples, width]")
            if not np.isfinite(x).all():
                raise ValueError(f"{part}.{name} holds NaN or infinite values")
            width += x.shape[1]
    coef = label.probe.coef
    if coef.ndim != 1 or len(coef) != width:
        raise ValueError(f"its weights have shape {list(coef.shape)}; its models' views need [{width}]")
    if not np.isfinite(coef).all():
        raise ValueError("its weights hold NaN or infinite values")
    if k < 1:
        raise ValueError("no examples")


def repair_hint(folder: Path) -> str:
    """The command that clears a damaged label folder (it can then be taught again)."""
    return f"remove it with: guesser teach --forget {_quoted(folder.name)}"


def _quoted(text: str) -> str:
    import shlex

    return shlex.quote(text)


class Store:
    """The personal labels on this machine (``root`` defaults to the user data folder's ``personal/``).

    Writers (teach, ``--replace``, ``--reembed``, ``--forget``) hold the store's
    lock (``flock`` on ``personal/.lock``; the kernel drops it when its holder
    dies, so a crash leaves no stale lock). Under it, a new label is made in a
    hidden folder and renamed into place; a replaced one is first renamed to
    ``.old.<id>.<slug>``. Whatever a crash leaves between those steps is put
    right by the next writer (or reader that can take the lock):
    :meth:`recover` brings the old label back when the new one never got into
    place, else finishes removing it, and removes half-made folders.
    """

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else personal_dir()

    def folder(self, name: str) -> Path:
        return self.root / slug(name)

    def names(self) -> list[str]:
        """Label folders (slugs), sorted; [] when there is no store yet (OSError when it cannot be listed)."""
        return [p.name for p in self._entries()[0]]

    def _entries(self) -> tuple[list[Path], list[str]]:
        """(label folders, one line per folder that cannot be looked into)."""
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except FileNotFoundError:
            return [], []
        except OSError as e:
            raise GuesserError(f"cannot read personal labels in {shown(self.root)}: {e.strerror or e}; "
                               f"fix with: chmod u+rwx {_quoted(str(self.root))}") from None
        folders, problems = [], []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                os.stat(os.path.join(entry.path, LABEL_FILE))
            except FileNotFoundError:
                continue  # not a label folder
            except OSError as e:
                problems.append(f"{shown(entry.path)}: cannot read it ({e.strerror or e}); "
                                f"fix with: chmod -R u+rwX {_quoted(entry.path)}")
                continue
            folders.append(Path(entry.path))
        return folders, problems

    def read_all(self) -> tuple[list[PersonalLabel], list[str]]:
        """(labels, one line per label that cannot be used, naming it and its repair): a bad label never stops the rest."""
        self.recover(wait=False)
        try:
            folders, problems = self._entries()
        except GuesserError as e:
            return [], [str(e)]
        labels = []
        for folder in folders:
            try:
                labels.append(PersonalLabel.read(folder))
            except GuesserError as e:
                problems.append(f"{e}; {repair_hint(folder)}")
        return labels, problems

    def get(self, name: str) -> PersonalLabel:
        self.recover(wait=False)
        folder = self.folder(name)
        self._check_in_the_way(folder)
        if not (folder / LABEL_FILE).is_file():
            raise GuesserError(f"no personal label {name!r} (known: {self._known()})")
        return PersonalLabel.read(folder)

    def exists(self, name: str) -> bool:
        """Whether ``name`` is taken: by a label, or by anything else sitting where its folder goes."""
        return os.path.lexists(self.folder(name))

    def check_free(self, name: str, *, replace: bool = False) -> None:
        """A one-line GuesserError unless ``name`` can be written (``replace``: over its own label only)."""
        self.recover(wait=False)
        folder = self.folder(name)
        try:
            self._check_in_the_way(folder)
            taken = folder.exists()
        except OSError as e:
            raise GuesserError(f"cannot read personal labels in {shown(self.root)}: {e.strerror or e}; "
                               f"fix with: chmod u+rwx {_quoted(str(self.root))}") from None
        if taken and not replace:
            raise GuesserError(f"a personal label {name!r} exists already: "
                               f"'guesser teach --forget {name}' first, or --replace it")

    def _known(self) -> str:
        try:
            return ", ".join(self.names()) or "none yet"
        except GuesserError:
            return "unknown: the folder cannot be read"

    def _check_in_the_way(self, folder: Path) -> None:
        if os.path.lexists(folder) and (folder.is_symlink() or not folder.is_dir()):
            raise GuesserError(f"{shown(folder)} is in the way: not a personal label folder; move it elsewhere")

    # ---------------------------------------------------------------- writing

    def write(self, label: PersonalLabel, clips: Sequence[tuple[np.ndarray, int]] | None = None, *,
              replace: bool = False) -> Path:
        """Write ``label`` (and its example clips) as one folder, atomically; returns the folder.

        ``clips`` None keeps the clips of the label being replaced (copied as
        they are: a symbolic link stays a link). Without ``replace`` the
        folder is created exclusively: of two writers of one name, the second
        is told that it exists.
        """
        from guesser.checkpoint import save_checkpoint

        final = self.folder(label.name)
        with self._locked():
            self._recover()
            self.check_free(label.name, replace=replace)
            tmp = self._hidden("new", final.name)
            try:
                (tmp / CLIPS).mkdir()
                if clips is None:
                    for p in sorted((final / CLIPS).glob("*.wav")):
                        shutil.copy2(p, tmp / CLIPS / p.name, follow_symlinks=False)
                else:
                    for i, (samples, rate) in enumerate(clips, start=1):
                        _write_wav(tmp / CLIPS / f"{i:02d}.wav", samples, rate)
                save_checkpoint(tmp / LABEL_FILE, label.tensors(), label.header())
                _fsync_tree(tmp)
                self._swap(tmp, final)
            except OSError as e:
                shutil.rmtree(tmp, ignore_errors=True)
                raise GuesserError(f"cannot write the personal label {label.name!r} into {shown(self.root)}: "
                                   f"{e.strerror or e} (nothing was changed)") from None
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        label.folder = final
        return final

    def _swap(self, tmp: Path, final: Path) -> None:
        """``tmp`` into ``final``'s place: the old label aside, the new one in, the old one gone (each a rename)."""
        old = None
        if final.exists():
            old = self.root / f".old.{tmp.name.split('.')[2]}.{final.name}"
            os.rename(final, old)
        os.rename(tmp, final)  # a folder never replaces a non-empty one: the exclusive create
        from guesser.fileio import fsync_path

        fsync_path(self.root)
        if old is not None:
            shutil.rmtree(old)

    def _hidden(self, what: str, slug_: str) -> Path:
        try:
            return Path(tempfile.mkdtemp(prefix=f".{what}.", suffix=f".{slug_}", dir=self.root))
        except OSError as e:
            raise GuesserError(f"cannot write personal labels into {shown(self.root)}: {e.strerror or e}") from None

    def forget(self, name: str) -> None:
        folder = self.folder(name)
        self.recover(wait=False)
        self._check_in_the_way(folder)
        if not folder.is_dir():
            raise GuesserError(f"no personal label {name!r} to forget (known: {self._known()})")
        with self._locked():
            gone = self.root / f".gone.{os.getpid()}.{folder.name}"
            try:
                os.rename(folder, gone)  # one step: the label disappears whole, then its files go
            except OSError as e:
                raise GuesserError(f"cannot forget {name!r}: {e.strerror or e}") from None
            shutil.rmtree(gone, ignore_errors=True)

    # ---------------------------------------------------------------- the lock and crash recovery

    @contextmanager
    def _locked(self, wait: bool = True):
        """Hold the store's lock (yields False, holding nothing, when ``wait`` is False and another holds it)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if not wait:
                yield False
                return
            raise GuesserError(f"cannot write personal labels into {shown(self.root)}: {e.strerror or e}") from None
        try:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - Windows: one writer at a time is the user's job
                yield True
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def recover(self, wait: bool = True) -> None:
        """Put right what a crashed writer left (see the class); a no-op when the store is busy or read-only."""
        if not self._debris():
            return  # the common case: nothing to put right, so nothing is locked or created
        try:
            with self._locked(wait=wait) as held:
                if held:
                    self._recover()
        except (GuesserError, OSError):
            pass

    def _debris(self) -> list[str]:
        """Hidden folders a writer makes (``.new.*``, ``.old.*``, ``.gone.*``) found in the store."""
        try:
            return sorted(e.name for e in os.scandir(self.root)
                          if e.name.startswith((".new.", ".old.", ".gone.")) and e.name.count(".") >= 3)
        except OSError:
            return []

    def _recover(self) -> None:
        for name in self._debris():
            what, _, slug_ = name[1:].split(".", 2)
            path, final = self.root / name, self.root / slug_
            if what == "old" and not os.path.lexists(final):
                os.rename(path, final)  # the new label never got into place: the old one comes back
            elif what in ("old", "new", "gone"):
                shutil.rmtree(path, ignore_errors=True)  # replaced, half made, or forgotten


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
