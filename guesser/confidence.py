"""When the ensemble is unsure, say so: "not sure — maybe X or Y" instead of one confident name.

The rule is calibrated on the validation split by ``guesser select``: the
smallest top-label score ``min_top_score`` at which the ensemble's top label is
right (one of the clip's labels) for at least ``target_precision`` of the val
clips scoring that high. Below it a prediction is marked ``confident: false``.
The rule travels in the models index, next to the weights it was calibrated
for; an index without one (older, or hand-written) marks every guess confident,
as before.

"Maybe X or Y" names two guesses that are not the same thing said twice: the
second is the best-ranked label that is neither an ancestor nor a descendant of
the first in the AudioSet ontology (not "Speech or Human voice").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from guesser.checkpoint import ModelSource

TARGET_PRECISION = 0.9
MIN_CLIPS = 20


@dataclass(frozen=True)
class ConfidenceRule:
    min_top_score: float
    target_precision: float = TARGET_PRECISION
    val_precision: float | None = None  # what the rule achieved on val
    val_coverage: float | None = None  # share of val clips called confident

    def confident(self, top_score: float) -> bool:
        return top_score >= self.min_top_score

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_dict(cls, d: object) -> "ConfidenceRule | None":
        if not isinstance(d, dict):
            return None
        try:
            rule = cls(float(d["min_top_score"]), float(d.get("target_precision", TARGET_PRECISION)),
                       d.get("val_precision"), d.get("val_coverage"))
        except (KeyError, TypeError, ValueError):
            return None
        return rule if math.isfinite(rule.min_top_score) else None


def calibrate(top_scores: np.ndarray, top_correct: np.ndarray, target: float = TARGET_PRECISION,
              min_clips: int = MIN_CLIPS) -> ConfidenceRule:
    """The lowest threshold whose confident set (score >= threshold) is right at least ``target`` of the time.

    Scanned from the highest score down over the sorted val clips; the set must
    hold at least ``min_clips`` clips so a handful of lucky clips cannot set it.
    If no threshold reaches the target, the highest one (everything unsure
    below the best val clip) is returned.
    """
    s = np.asarray(top_scores, dtype=np.float64)
    c = np.asarray(top_correct, dtype=bool)
    order = np.argsort(-s, kind="stable")
    s, c = s[order], c[order]
    precision = np.cumsum(c) / np.arange(1, len(c) + 1)
    ok = [i for i in range(min(min_clips, len(s)) - 1, len(s))
          if precision[i] >= target and (i + 1 == len(s) or s[i + 1] < s[i])]
    if not ok:
        return ConfidenceRule(float(s[0]) if len(s) else 1.0, target, None, 0.0)
    i = ok[-1]
    return ConfidenceRule(float(s[i]), target, float(precision[i]), float((i + 1) / len(s)))


def rule_of(sources: Sequence["ModelSource"]) -> ConfidenceRule | None:
    """The rule in the models index when it is the one source; None for checkpoints or several sources."""
    if len(sources) != 1 or sources[0].index is None:
        return None
    return ConfidenceRule.from_dict(sources[0].index.confidence)


def read_rule(sources: Sequence[str | Path] | None) -> ConfidenceRule | None:
    """The rule of ``sources`` (as ``--models`` takes them; default: the shipped index), None if unreadable."""
    from guesser.checkpoint import ModelSource
    from guesser.errors import GuesserError

    try:
        return rule_of(ModelSource.read_all(sources))
    except GuesserError:  # the models themselves are read (and refused) from the same index
        return None


def distinct_guesses(ranked_names: Sequence[str], related) -> list[str]:
    """The top label and the best-ranked one not ``related(a, b)`` (ancestor/descendant) to it."""
    if not ranked_names:
        return []
    first = ranked_names[0]
    second = next((n for n in ranked_names[1:] if not related(first, n)), None)
    return [first] + ([second] if second else [])


def headline(prediction) -> str:
    """What the app says first: the top label, or "not sure — maybe X or Y" when the rule says unsure."""
    from guesser.labels import pretty

    if not prediction.labels:
        return "nothing"
    if getattr(prediction, "confident", True) or not getattr(prediction, "maybe", None):
        return pretty(prediction.labels[0].name)
    return "not sure — maybe " + " or ".join(pretty(n) for n in prediction.maybe)
