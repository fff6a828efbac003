"""The FSD50K data layer: ground-truth CSVs, audio files, splits and targets.

A data root looks like FSD50K's release::

    FSD50K.ground_truth/vocabulary.csv   idx,label,mid          (no header)
    FSD50K.ground_truth/dev.csv          fname,labels,mids,split (split: train|val)
    FSD50K.ground_truth/eval.csv         fname,labels,mids
    FSD50K.dev_audio/<fname>.wav|.flac|.ogg
    FSD50K.eval_audio/<fname>.wav|.flac|.ogg
    ontology.json                        optional; guesser ships AudioSet's

Every problem in it (a missing folder, a malformed row, an unknown label) is a
:class:`DataError` naming the file and the row. An audio file that is missing
is not an error here: the clip is listed in ``Split.missing`` and the cache
builder reports it with the undecodable ones.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from guesser.errors import DataError
from guesser.fileio import open_regular
from guesser.labels import FAMILY_SETS, LabelSpace, Ontology, Vocabulary, default_label_space

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
SPLITS = ("train", "val", "eval")
GT = "FSD50K.ground_truth"


@dataclass(frozen=True)
class Clip:
    fname: str
    path: Path | None  # None: no audio file found
    labels: tuple[int, ...]  # vocabulary indices, as listed (leaves first)


@dataclass
class Split:
    name: str
    clips: list[Clip]
    missing: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.clips)


def _audio_index(folder: Path) -> dict[str, Path]:
    """fname (stem) -> path for every audio file in ``folder``; one directory listing, not 51k stats."""
    out: dict[str, Path] = {}
    rank: dict[str, int] = {}
    try:
        entries = list(os.scandir(folder))
    except OSError as e:
        raise DataError(f"{folder}: cannot list the audio folder ({e.strerror or e})") from None
    for e in entries:
        stem, dot, ext = e.name.rpartition(".")
        suffix = "." + ext.lower()
        if dot and suffix in AUDIO_SUFFIXES:
            # Directory order is arbitrary: if a clip exists in two formats, the
            # earlier suffix in AUDIO_SUFFIXES wins, so every machine picks the same file.
            r = AUDIO_SUFFIXES.index(suffix)
            if r < rank.get(stem, len(AUDIO_SUFFIXES)):
                out[stem], rank[stem] = Path(e.path), r
    return out


def _read_rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    if not path.exists():
        raise DataError(f"{path}: ground-truth file not found")
    # utf-8-sig: a CSV re-saved by a spreadsheet starts with a BOM that would hide the 'fname' column.
    # open_regular: a FIFO or a device is refused, never read (it could block forever)
    with io.TextIOWrapper(open_regular(path, DataError), encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, strict=True)
        rows = []
        last = 0  # the line the last good record ended on: a bad record starts on the next one
        try:
            header = [h.strip() for h in reader.fieldnames or []]
            last = reader.line_num
            reader.fieldnames = header
            missing = [c for c in required if c not in header]
            if missing:
                raise DataError(f"{path}: missing column(s) {', '.join(missing)} (header is {','.join(header) or 'empty'})")
            for row in reader:
                if None in row or any(row.get(c) is None for c in required):
                    extra = len(row.get(None) or ())  # type: ignore[call-overload]
                    n = len(header) + extra - sum(v is None for k, v in row.items() if k is not None)
                    raise DataError(f"{path}:{last + 1}: expected {len(header)} fields, got {n}")
                rows.append((reader.line_num, row))
                last = reader.line_num
        except csv.Error as e:
            raise DataError(f"{path}:{last + 1}: malformed CSV ({e})") from None
        except UnicodeDecodeError:
            raise DataError(f"{path}:{last + 1}: not a UTF-8 text file") from None
    return rows


@dataclass
class Fsd50k:
    """An opened FSD50K root: the label space and the train/val/eval splits."""

    root: Path
    labels: LabelSpace
    splits: dict[str, Split]

    @property
    def vocabulary(self) -> Vocabulary:
        return self.labels.vocabulary

    @classmethod
    def open(cls, root: str | Path) -> "Fsd50k":
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: data root not found")
        gt = root / GT
        if not gt.is_dir():
            raise DataError(f"{root}: not an FSD50K root (no {GT}/ folder)")
        vocab = Vocabulary.from_csv(gt / "vocabulary.csv")
        onto_path = root / "ontology.json"
        ontology = Ontology.from_json(onto_path) if onto_path.is_file() else default_label_space().ontology
        space = LabelSpace(vocab, ontology)

        splits: dict[str, Split] = {}
        dev_rows = _read_rows(gt / "dev.csv", ("fname", "labels", "split"))
        eval_rows = _read_rows(gt / "eval.csv", ("fname", "labels"))
        for audio_dir, rows, names in (
            ("FSD50K.dev_audio", dev_rows, ("train", "val")),
            ("FSD50K.eval_audio", eval_rows, ("eval",)),
        ):
            folder = root / audio_dir
            if not folder.is_dir():
                raise DataError(f"{root}: audio folder {audio_dir}/ not found")
            audio = _audio_index(folder)
            csv_path = gt / ("dev.csv" if names[0] == "train" else "eval.csv")
            for name in names:
                splits[name] = Split(name, [])
            seen: set[str] = set()
            for line, row in rows:
                fname = row["fname"].strip()
                if not fname:
                    raise DataError(f"{csv_path}:{line}: empty fname")
                if fname in seen:
                    raise DataError(f"{csv_path}:{line}: duplicate fname {fname}")
                seen.add(fname)
                split = row.get("split", "eval").strip() if names[0] == "train" else "eval"
                if split not in names:
                    raise DataError(f"{csv_path}:{line}: split must be one of {'/'.join(names)}, got {split!r}")
                if not row["labels"].strip():
                    raise DataError(f"{csv_path}:{line}: clip {fname} has no labels")
                labels = []
                for lab in row["labels"].split(","):
                    lab = lab.strip()
                    if lab not in vocab.index:
                        raise DataError(f"{csv_path}:{line}: unknown label {lab!r} (not in vocabulary.csv)")
                    labels.append(vocab.index[lab])
                path = audio.get(fname)
                splits[split].clips.append(Clip(fname, path, tuple(labels)))
                if path is None:
                    splits[split].missing.append(fname)
        return cls(root, space, {s: splits[s] for s in SPLITS})

    def targets(self, split: str) -> np.ndarray:
        """Multi-hot [N, 200] uint8 targets of ``split`` in CSV order."""
        return multi_hot([c.labels for c in self.splits[split].clips], len(self.vocabulary))


def multi_hot(label_lists: list[tuple[int, ...]], n_labels: int) -> np.ndarray:
    y = np.zeros((len(label_lists), n_labels), dtype=np.uint8)
    for i, labs in enumerate(label_lists):
        y[i, list(labs)] = 1
    return y


def family_targets(targets: np.ndarray, labels: LabelSpace, families: str = "6") -> np.ndarray:
    """[N, 200] multi-hot -> [N, F] float32 soft single-label targets (mass split over a clip's families).

    A clip under one family gets a one-hot row; a clip under two (a dog barking
    over music) gets 0.5/0.5, which cross-entropy accepts as a soft target. A
    clip with no family in the chosen set (only possible with the 5-family set)
    gets a zero row: the trainer drops such clips.
    """
    fam = labels.family_matrix(FAMILY_SETS[families])  # [200, F]
    hits = (targets.astype(np.float32) @ fam) > 0
    rows = hits.sum(axis=1, keepdims=True)
    return np.where(rows > 0, hits / np.maximum(rows, 1), 0.0).astype(np.float32)
