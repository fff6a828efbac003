"""DCASE event-based metrics (Mesaros, Heittola & Virtanen 2016, as ``sed_eval.sound_event.EventBasedMetrics``).

``sed_eval`` itself needs ``dcase_util``, which pulls in librosa, matplotlib and
more than guesser's lock should carry for a benchmark, so the same definitions
are written here (and tested against worked examples, tests/test_event_metrics.py):

* an estimated event is a hit for a reference event when the labels are equal,
  the onsets are within ``t_collar`` seconds, and (with ``offset``) the offsets
  are within ``max(t_collar, percentage_of_length × reference length)``;
* per file, references and estimates are paired by a maximum matching of hits
  (sed_eval's ``event_matching_type='optimal'``): each event counts once;
* overall (micro) precision Ntp/Nsys, recall Ntp/Nref, F1 = 2·Ntp/(Nref + Nsys)
  summed over files; class-wise F1 per label and their mean (macro).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class Span:
    """One event in a file: label, onset and offset in seconds."""

    label: str
    onset: float
    offset: float


@dataclass
class Counts:
    ref: int = 0
    sys: int = 0
    tp: int = 0

    def add(self, ref: int, sys: int, tp: int) -> None:
        self.ref, self.sys, self.tp = self.ref + ref, self.sys + sys, self.tp + tp

    @property
    def precision(self) -> float:
        return self.tp / self.sys if self.sys else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.ref if self.ref else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.tp / (self.ref + self.sys) if self.ref + self.sys else 0.0


@dataclass
class EventBasedMetrics:
    """Accumulates files; read :attr:`overall` (micro) and :meth:`class_wise_f1` (macro)."""

    t_collar: float = 0.25
    offset: bool = False
    percentage_of_length: float = 0.5
    overall: Counts = field(default_factory=Counts)
    per_class: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))

    def hit(self, ref: Span, est: Span) -> bool:
        if ref.label != est.label or abs(ref.onset - est.onset) > self.t_collar:
            return False
        if self.offset:
            length = ref.offset - ref.onset
            return abs(ref.offset - est.offset) <= max(self.t_collar, self.percentage_of_length * length)
        return True

    def evaluate(self, reference: Sequence[Span], estimated: Sequence[Span]) -> int:
        """Add one file's events; returns its true positives."""
        matched = self._matching(reference, estimated)
        self.overall.add(len(reference), len(estimated), len(matched))
        for label in {s.label for s in reference} | {s.label for s in estimated}:
            self.per_class[label].add(sum(s.label == label for s in reference), sum(s.label == label for s in estimated),
                                      sum(reference[j].label == label for j, _ in matched))
        return len(matched)

    def class_wise_f1(self) -> float:
        """Mean F1 over the classes that occur in the references."""
        scores = [c.f1 for c in self.per_class.values() if c.ref]
        return float(np.mean(scores)) if scores else 0.0

    def _matching(self, reference: Sequence[Span], estimated: Sequence[Span]) -> list[tuple[int, int]]:
        """A maximum set of (reference, estimate) hits, each event in at most one pair."""
        if not reference or not estimated:
            return []
        hits = np.array([[self.hit(r, e) for e in estimated] for r in reference], dtype=bool)
        if not hits.any():
            return []
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(hits, maximize=True)
        return [(int(r), int(c)) for r, c in zip(rows, cols) if hits[r, c]]


def merge_spans(spans: Iterable[Span], gap: float = 0.0) -> list[Span]:
    """Spans of one label that overlap (or are closer than ``gap``) joined: label events -> family events."""
    out: list[Span] = []
    for s in sorted(spans, key=lambda s: (s.label, s.onset)):
        if out and out[-1].label == s.label and s.onset - out[-1].offset < gap + 1e-9:
            out[-1] = Span(s.label, out[-1].onset, max(out[-1].offset, s.offset))
        else:
            out.append(s)
    return sorted(out, key=lambda s: (s.onset, s.label))
