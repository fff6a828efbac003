"""Sound events from a sequence of scores: what was heard, from when to when.

A score sequence (one row of class scores per hop, from a file or the
microphone) becomes events by hysteresis, the "double threshold" of sound event
detection (DCASE baselines, PANNs' SED): a region is a run of scores at or above
``off``; it is an event when its score reaches ``on`` somewhere (so a sound is
not cut in two by a score that dips just below ``on``, and a score that only
hovers near ``off`` is not an event). Two events of one class closer than
``min_gap`` seconds are one event (a dog's barks with short pauses between
them), and what is shorter than ``min_duration`` after that is dropped (a single
stray hop).

:class:`EventTracker` does it online, one hop at a time, with constant memory
per class (a microphone, or a two-hour file scored block by block);
:func:`detect_events` is the same tracker over a whole sequence, so batch and
streamed answers are equal by construction.

Times: ``push(t, scores)`` takes the scores that describe time ``t`` (the
caller's choice: :func:`guesser.scoring` passes the start of the hop each row
stands for, see :func:`event_times`). A region starts at the first ``t`` whose
score is at or above ``off`` and ends at the first ``t`` below it, so a run of
``n`` rows ``h`` seconds apart lasts ``n·h`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Event:
    """One sound heard: its label, the label's family, start and end (seconds) and peak score."""

    label: str
    family: str
    start: float
    end: float
    score: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_json(self) -> dict:
        return {"label": self.label, "family": self.family, "start": round(self.start, 3),
                "end": round(self.end, 3), "score": round(self.score, 6)}


@dataclass(frozen=True)
class EventRules:
    """When scores make an event: it starts above ``on``, ends below ``off`` (< ``on``).

    It must last ``min_duration`` seconds, and gaps shorter than ``min_gap``
    seconds between two events of one class are bridged. ``off``,
    ``min_duration`` and ``min_gap`` are the best on scenes built from the
    validation split (``benchmarks/scenes.py``, docs/benchmarks.md#sound-events-in-scenes);
    there ``on`` = 0.7 was best for files' sub-window scores (:class:`guesser.sed.EventSettings`).
    """

    on: float = 0.5
    off: float = 0.3
    min_duration: float = 0.25
    min_gap: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.off < self.on <= 1.0:
            raise ValueError(f"event thresholds need 0 <= off < on <= 1, got on={self.on} off={self.off}")
        if self.min_duration < 0 or self.min_gap < 0:
            raise ValueError("min_duration and min_gap must not be negative")


@dataclass
class _Track:
    """One class's state: the open region (if any) and the last event, held while a gap may still bridge it."""

    region_start: float | None = None
    region_peak: float = 0.0
    region_on: bool = False  # the open region reached `on`
    held: list[float] | None = None  # [start, end, peak] of the last event, not yet emitted


@dataclass
class EventTracker:
    """Events of one source (a file or the microphone), fed one row of scores per hop.

    ``names`` are the classes' names (labels, or the six families), ``families``
    each class's family (the family itself for a family class).
    """

    names: Sequence[str]
    families: Sequence[str]
    rules: EventRules = field(default_factory=EventRules)

    def __post_init__(self) -> None:
        if len(self.names) != len(self.families):
            raise ValueError(f"{len(self.names)} names but {len(self.families)} families")
        self.names, self.families = tuple(self.names), tuple(self.families)
        self._tracks = [_Track() for _ in self.names]
        self._last_t: float | None = None

    def push(self, t: float, scores: np.ndarray) -> list[Event]:
        """The scores describing time ``t`` (seconds, increasing) -> the events that are over.

        An event is returned once no gap bridging can extend it: ``min_gap``
        seconds after its end (the hop on which that becomes certain).
        """
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape[0] != len(self.names):
            raise ValueError(f"expected {len(self.names)} scores, got {scores.shape[0]}")
        if self._last_t is not None and t <= self._last_t:
            raise ValueError(f"times must increase: {t} after {self._last_t}")
        self._last_t = t
        r = self.rules
        out: list[Event] = []
        # Only classes with something open or held, or at/above `off` now, need a look.
        busy = np.flatnonzero(scores >= r.off).tolist()
        idle = [k for k, tr in enumerate(self._tracks) if tr.region_start is not None or tr.held is not None]
        for k in sorted(set(busy) | set(idle)):
            tr, s = self._tracks[k], float(scores[k])
            if s >= r.off:
                if tr.region_start is None:
                    tr.region_start, tr.region_peak, tr.region_on = t, s, False
                tr.region_peak = max(tr.region_peak, s)
                if s >= r.on and not tr.region_on:
                    tr.region_on = True
                    self._confirm(k, tr)
                elif tr.region_on and tr.held is not None:
                    tr.held[2] = max(tr.held[2], s)
            elif tr.region_start is not None:
                self._close_region(tr, t)
            self._release(k, tr, t, out)
        return sorted(out, key=lambda e: (e.start, e.label))

    def finish(self, t_end: float) -> list[Event]:
        """The end of the source at ``t_end``: close what is open, emit what is held."""
        out: list[Event] = []
        for k, tr in enumerate(self._tracks):
            if tr.region_start is not None:
                self._close_region(tr, max(t_end, tr.region_start))
            if tr.held is not None:
                self._emit(k, tr, out)
        self._last_t = None
        return sorted(out, key=lambda e: (e.start, e.label))

    # The open region, once it reaches `on`, becomes the held event: merged into the
    # previous one if the gap between them is short, else it replaces it (which is emitted).
    def _confirm(self, k: int, tr: _Track) -> None:
        assert tr.region_start is not None
        if tr.held is not None and tr.region_start - tr.held[1] < self.rules.min_gap:
            tr.held[1] = float("inf")  # open again: ends when the region ends
            tr.held[2] = max(tr.held[2], tr.region_peak)
        else:
            tr.held = [tr.region_start, float("inf"), tr.region_peak]

    def _close_region(self, tr: _Track, t: float) -> None:
        if tr.region_on and tr.held is not None:
            tr.held[1] = t
            tr.held[2] = max(tr.held[2], tr.region_peak)
        tr.region_start, tr.region_peak, tr.region_on = None, 0.0, False

    def _release(self, k: int, tr: _Track, t: float, out: list[Event]) -> None:
        """Emit the held event once nothing can bridge to it any more."""
        h = tr.held
        if h is None or h[1] == float("inf"):
            return
        gap = self.rules.min_gap
        could_bridge = tr.region_start is not None and tr.region_start - h[1] < gap
        if not could_bridge and t - h[1] >= gap:
            self._emit(k, tr, out)

    def _emit(self, k: int, tr: _Track, out: list[Event]) -> None:
        start, end, peak = tr.held
        tr.held = None
        if end - start >= self.rules.min_duration:
            out.append(Event(self.names[k], self.families[k], float(start), float(end), float(peak)))


def detect_events(times: Sequence[float], scores: np.ndarray, names: Sequence[str], families: Sequence[str],
                  rules: EventRules = EventRules(), t_end: float | None = None) -> list[Event]:
    """[T] times and [T, K] scores -> every event, sorted by start: an :class:`EventTracker` over all of them.

    ``t_end`` is where the source ends (default: one hop after the last time,
    or the last time for a single row).
    """
    scores = np.asarray(scores, dtype=np.float64)
    times = [float(t) for t in times]
    if scores.ndim != 2 or scores.shape[0] != len(times):
        raise ValueError(f"scores must be [len(times), classes], got {scores.shape} for {len(times)} times")
    tracker = EventTracker(names, families, rules)
    out: list[Event] = []
    for t, row in zip(times, scores):
        out += tracker.push(t, row)
    if t_end is None:
        t_end = times[-1] + (times[-1] - times[-2]) if len(times) > 1 else (times[-1] if times else 0.0)
    out += tracker.finish(t_end)
    return sorted(out, key=lambda e: (e.start, e.label))


def label_families(names: Sequence[str] | None = None) -> tuple[str, ...]:
    """Each label's family for events (the first of its families in :data:`FAMILIES_6` order).

    A label in two families (*Bell*: Music and Sounds of things) is shown in
    the first; ``names`` default to the shipped 200-label vocabulary.
    """
    from guesser.labels import FAMILIES_6, LabelSpace, Vocabulary, default_label_space

    space = default_label_space()
    if names is not None and tuple(names) != space.vocabulary.names:
        vocab = space.vocabulary
        space = LabelSpace(Vocabulary(tuple(names), tuple(vocab.mids[vocab.index[n]] for n in names)), space.ontology)
    return tuple(FAMILIES_6[f[0]] if f else FAMILIES_6[-1] for f in space.label_families(FAMILIES_6))
