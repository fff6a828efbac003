"""Sound event detection: the ensemble on short sub-windows, fused per hop, then hysteresis.

A model window is 6 s; a clap is 0.3 s. To say *when* something sounded, each
model also scores sub-windows of :attr:`EventSettings.window` seconds every
:attr:`EventSettings.hop` seconds (:func:`guesser.scoring.windows` with
``seconds``: each sub-window filled up to the model's window by its ``short``
policy, as a short clip is in training). The models' rows are paired by window
index, fused as a clip's scores are (:meth:`guesser.ensemble.Ensemble.fuse_models`)
and fed to one :class:`guesser.events.EventTracker`, so a file of any length
keeps only a few rows in memory (:func:`guesser.stream.predict_source` feeds it
block by block; :meth:`guesser.ensemble.Ensemble.predict` all at once).

Row times: sub-window k of length L stands for the hop ending at its anchor
(``start + anchor·L - hop/2``; the first one from 0). The anchor is 3/4 of the
sub-window, not its centre: a sound shows in a sub-window before it fills it,
and centred onsets came out early. Every default was chosen on scenes from the
validation split (``benchmarks/scenes.py``, docs/benchmarks.md#sound-events-in-scenes).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import torch

from guesser.events import Event, EventRules, EventTracker, label_families
from guesser.scoring import window_frames

if TYPE_CHECKING:  # pragma: no cover
    from guesser.ensemble import Ensemble


@dataclass(frozen=True)
class EventSettings:
    """Where events are looked for (sub-windows of ``window`` s every ``hop`` s) and when scores make one."""

    window: float = 1.0
    hop: float = 0.25
    rules: EventRules = field(default_factory=lambda: EventRules(on=0.7))  # off 0.3, min_duration 0.25 s, min_gap 0.5 s
    anchor: float = 0.75  # a sub-window's row stands for the hop ending this far into it (0.5: its centre)


class EventFeed:
    """Sub-window probabilities of every model of ``ensemble`` -> label events, as the rows arrive."""

    def __init__(self, ensemble: "Ensemble", settings: EventSettings = EventSettings(), record: bool = False):
        self.ensemble, self.settings = ensemble, settings
        names = ensemble.label_names
        self.tracker = EventTracker(names, label_families(names), settings.rules)
        self.pending: list[deque] = [deque() for _ in ensemble.models]  # (start frame, [K] probs) per model
        self.rows = 0
        self.events: list[Event] = []
        self.record = record  # keep every fused row (benchmarks tune EventRules on them: detect_events)
        self.times: list[float] = []
        self.scores: list[torch.Tensor] = []
        self.family_scores: list[torch.Tensor] = []

    def add(self, model: int, starts: Sequence[int], probs: torch.Tensor) -> None:
        """Model ``model``'s sub-windows at ``starts`` (frames) with their [n, K] probabilities."""
        self.pending[model].extend(zip(starts, probs))
        while all(self.pending):
            row = [q.popleft() for q in self.pending]
            fused = self.ensemble.fuse_models(self.ensemble.models, [p for _, p in row])
            if fused.labels is None:  # an ensemble of family models names no labels
                continue
            t = self.time(row[0][0])
            self.events += self.tracker.push(t, fused.labels.numpy())
            if self.record:
                self.times.append(t)
                self.scores.append(fused.labels)
                self.family_scores.append(fused.families)
            self.rows += 1

    def time(self, start: int) -> float:
        """The time a sub-window starting at frame ``start`` (of the first model's front-end) stands for."""
        if self.rows == 0:
            return 0.0
        cfg = self.ensemble.models[0].features
        length, hop = window_frames(cfg, self.settings.window, self.settings.hop)
        return (start + (length or cfg.clip_frames) * self.settings.anchor - (hop or 0) / 2) / cfg.frames_per_second

    def finish(self, duration: float) -> list[Event]:
        """Every event of the source, sorted by start (the source ended at ``duration`` seconds)."""
        self.events += self.tracker.finish(duration)
        return sorted(self.events, key=lambda e: (e.start, e.label))
