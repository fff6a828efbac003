"""FSD50K's 200-label vocabulary, the AudioSet ontology, and the label families.

Both files ship inside the package (``guesser/data``) so that a label name or a
family is never "not found" on a user's machine; a data root may bring its own
copies (the real FSD50K does) and they are read the same way.

Families are the AudioSet top-level categories. How a label gets its families:

1. its families are the top-level categories reachable upwards from it through
   every parent (AudioSet is a DAG: *Bell* sits under Music and Sounds of things);
2. "Source-ambiguous sounds" is dropped when the label also has a concrete
   family (a *Knock* has a known source: Sounds of things);
3. "Channel, environment and background" holds none of the 200 labels, so the
   six families below are all that occur.

The five-family variant leaves out "Source-ambiguous sounds" altogether; the
four labels that live only there have no family in it.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

from guesser.errors import DataError

HUMAN, ANIMAL, MUSIC, NATURAL, THINGS, AMBIGUOUS = (
    "Human sounds",
    "Animal",
    "Music",
    "Natural sounds",
    "Sounds of things",
    "Source-ambiguous sounds",
)
FAMILIES_6: tuple[str, ...] = (HUMAN, ANIMAL, MUSIC, NATURAL, THINGS, AMBIGUOUS)
FAMILIES_5: tuple[str, ...] = (HUMAN, ANIMAL, MUSIC, NATURAL, THINGS)
FAMILY_SETS = {"6": FAMILIES_6, "5": FAMILIES_5}


def _data_file(name: str) -> Path:
    return Path(__file__).resolve().parent / "data" / name


@dataclass(frozen=True)
class Vocabulary:
    """The ordered label names and AudioSet mids; index i is column i of every target matrix."""

    names: tuple[str, ...]
    mids: tuple[str, ...]

    @classmethod
    def from_csv(cls, path: str | Path) -> "Vocabulary":
        """Read FSD50K's ``vocabulary.csv`` (``idx,label,mid``, no header)."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: vocabulary file not found")
        rows: list[tuple[int, str, str]] = []
        from guesser.fileio import read_text

        lineno = 0
        try:
            for lineno, row in enumerate(csv.reader(io.StringIO(read_text(path, DataError), newline="")), start=1):
                if not row:
                    continue
                if len(row) != 3 or not row[0].strip().isdigit():
                    raise DataError(f"{path}:{lineno}: expected 'idx,label,mid', got {','.join(row)[:80]!r}")
                rows.append((int(row[0]), row[1].strip(), row[2].strip()))
        except csv.Error as e:
            raise DataError(f"{path}:{lineno + 1}: malformed CSV ({e})") from None
        if not rows:
            raise DataError(f"{path}: vocabulary is empty")
        rows.sort()
        if [r[0] for r in rows] != list(range(len(rows))):
            raise DataError(f"{path}: indices must run 0..{len(rows) - 1} without gaps")
        names = tuple(r[1] for r in rows)
        if len(set(names)) != len(names):
            raise DataError(f"{path}: duplicate label names")
        return cls(names=names, mids=tuple(r[2] for r in rows))

    def __len__(self) -> int:
        return len(self.names)

    @cached_property
    def index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    @cached_property
    def mid_index(self) -> dict[str, int]:
        return {m: i for i, m in enumerate(self.mids)}


@dataclass(frozen=True)
class Ontology:
    """The AudioSet ontology graph: names and parents of every class id."""

    names: dict[str, str]
    children: dict[str, tuple[str, ...]]
    parents: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, path: str | Path) -> "Ontology":
        path = Path(path)
        from guesser.fileio import read_text

        if not path.exists():
            raise DataError(f"{path}: ontology file not found")
        try:
            nodes = json.loads(read_text(path, DataError))
            names = {n["id"]: n["name"] for n in nodes}
            children = {n["id"]: tuple(n.get("child_ids", ())) for n in nodes}
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            raise DataError(f"{path}: not an AudioSet ontology ({type(e).__name__})") from None
        parents: dict[str, list[str]] = {}
        for pid, kids in children.items():
            for k in kids:
                parents.setdefault(k, []).append(pid)
        return cls(names=names, children=children, parents={k: tuple(v) for k, v in parents.items()})

    def ancestors(self, mid: str) -> set[str]:
        """Every class above ``mid`` through all of its parents (not ``mid`` itself)."""
        out: set[str] = set()
        stack = list(self.parents.get(mid, ()))
        while stack:
            p = stack.pop()
            if p not in out:
                out.add(p)
                stack.extend(self.parents.get(p, ()))
        return out

    def roots_of(self, mid: str) -> set[str]:
        """The top-level categories reachable upwards from ``mid`` (itself, if it is one)."""
        up = self.ancestors(mid) | {mid}
        return {m for m in up if not self.parents.get(m)}


@dataclass(frozen=True)
class LabelSpace:
    """Vocabulary + ontology: ancestors within the vocabulary and families of every label."""

    vocabulary: Vocabulary
    ontology: Ontology

    @cached_property
    def ancestors(self) -> tuple[tuple[int, ...], ...]:
        """For label i, the indices of its in-vocabulary ancestors."""
        vi = self.vocabulary.mid_index
        return tuple(
            tuple(sorted(vi[a] for a in self.ontology.ancestors(mid) if a in vi)) for mid in self.vocabulary.mids
        )

    def related(self, a: str, b: str) -> bool:
        """True when label ``a`` is ``b``, or one is an in-vocabulary ancestor of the other (Speech, Human voice)."""
        ia, ib = self.vocabulary.index.get(a), self.vocabulary.index.get(b)
        if ia is None or ib is None:
            return a == b
        return ia == ib or ia in self.ancestors[ib] or ib in self.ancestors[ia]

    def label_families(self, families: tuple[str, ...] = FAMILIES_6) -> tuple[tuple[int, ...], ...]:
        """For label i, the indices (into ``families``) of its families, by the rules in the module doc."""
        out = []
        for mid in self.vocabulary.mids:
            names = {self.ontology.names[r] for r in self.ontology.roots_of(mid)}
            if len(names) > 1:
                names.discard(AMBIGUOUS)
            out.append(tuple(i for i, f in enumerate(families) if f in names))
        return tuple(out)

    def family_matrix(self, families: tuple[str, ...] = FAMILIES_6):
        """A [labels, families] 0/1 numpy matrix: entry (i, f) is 1 when label i belongs to family f."""
        import numpy as np

        m = np.zeros((len(self.vocabulary), len(families)), dtype=np.float32)
        for i, fams in enumerate(self.label_families(families)):
            m[i, list(fams)] = 1.0
        return m


def fold_families(label_scores, family_matrix):
    """[..., L] label scores -> [..., F] family scores: a family scores as its most probable label.

    The one fold used by the app (:class:`guesser.ensemble.Ensemble`) and by
    ``guesser evaluate``, so a reported family mAP is what the app shows. Works
    on numpy arrays and torch tensors alike; ``family_matrix`` is
    :meth:`LabelSpace.family_matrix` (same array type as the scores). Scores
    must be non-negative (probabilities): a family with no label scores 0.
    """
    prod = label_scores[..., :, None] * family_matrix  # [..., L, F]
    return prod.amax(dim=-2) if hasattr(prod, "amax") else prod.max(axis=-2)


@lru_cache(maxsize=1)
def default_label_space() -> LabelSpace:
    """The label space shipped with guesser (FSD50K's vocabulary, AudioSet's ontology)."""
    return LabelSpace(
        Vocabulary.from_csv(_data_file("vocabulary.csv")),
        Ontology.from_json(_data_file("ontology.json")),
    )


def pretty(label: str) -> str:
    """'Walk_and_footsteps' -> 'Walk and footsteps' for people; JSON keeps the FSD50K name."""
    return label.replace("_", " ")
