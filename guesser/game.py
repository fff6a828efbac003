""""Guess a noise": targets, scoring, rounds and streaks, and the local high-score table.

Pure logic (no Textual, no audio, no torch) so the rules are unit-tested on
their own and the TUI only displays them.

Rules:

* a target is a label (e.g. *Clapping*), a family (e.g. *Human sounds*) or
  one of the player's own *personal* labels (``guesser teach``, the app's
  teach screen); drawn from the personal labels and the sounds a person can
  make at a desk that the models have seen (:func:`target_pool`), or picked
  by the player;
* the player makes the sound; the target's rank in the ensemble's answer
  gives the points: label rank 1 → 100, 2 → 60, 3 → 40, 4–10 → 10; family
  (one of six, so easier) rank 1 → 50, 2 → 20;
* a personal label has no rank among the 200 labels: it is either *heard*
  (its score ≥ :data:`HEARD`, the operating point every personal label is
  calibrated to) or not. Heard counts as rank 1 of a label (100 points, a
  hit); not heard is 0 points. Why not rank it among the other personal
  labels: with one or two of them, "rank 1 of 2" would reward a sound the
  label does not recognise at all;
* a *hit* is a label in the top 3, a family at rank 1 or a heard personal
  label; consecutive hits make a streak, worth +10 per earlier hit in it (at
  most +50);
* a game is :data:`ROUNDS` rounds; the total goes into the high-score table
  (top :data:`MAX_ENTRIES`), a JSON file that survives corruption: a file that
  cannot be read is moved aside (``*.corrupt``), the table starts fresh and
  says so in :attr:`HighScores.notice`.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Protocol, Sequence

from guesser.errors import GuesserError
from guesser.labels import HUMAN, MUSIC, THINGS, pretty
from guesser.present import HEARD

ROUNDS = 5
MAX_ENTRIES = 10

LABEL_POINTS = {1: 100, 2: 60, 3: 40}
LABEL_TOP10_POINTS = 10
FAMILY_POINTS = {1: 50, 2: 20}
HEARD_POINTS = LABEL_POINTS[1]  # a heard personal label scores like a label at rank 1
STREAK_STEP, STREAK_CAP = 10, 50

DESK_LABELS: tuple[str, ...] = (
    "Clapping", "Cough", "Laughter", "Sneeze", "Knock", "Typing", "Speech", "Walk_and_footsteps",
    "Breathing", "Finger_snapping", "Whistling", "Keys_jangling", "Writing", "Scissors", "Tearing",
    "Crumpling_and_crinkling", "Zipper_(clothing)", "Chewing_and_mastication", "Burping_and_eructation",
    "Sigh", "Whispering", "Singing", "Shout", "Giggle", "Gasp", "Tap", "Computer_keyboard",
    "Coin_(dropping)", "Chink_and_clink", "Packing_tape_and_duct_tape", "Drawer_open_or_close",
    "Thump_and_thud",
)
"""Labels a person can produce at a desk, most natural first."""

DESK_FAMILIES: tuple[str, ...] = (HUMAN, THINGS, MUSIC)
"""Families a person can produce at a desk (sing or hum for Music)."""

LABEL, FAMILY, PERSONAL = "label", "family", "personal"



class _Named(Protocol):
    name: str


class _Scored(Protocol):
    name: str
    score: float


class _Ranked(Protocol):
    labels: Sequence[_Named]
    families: Sequence[_Named]
    personal: Sequence[_Scored]  # may be missing: read with getattr (a prediction without personal labels)


@dataclass(frozen=True)
class Target:
    kind: str  # LABEL, FAMILY or PERSONAL
    name: str

    @property
    def title(self) -> str:
        if self.kind == PERSONAL:
            return f"your {self.name}"
        return pretty(self.name) if self.kind == LABEL else f"any {self.name.lower()}"


def target_pool(known_labels: Iterable[str], *, families: bool = True,
                personal: Iterable[str] = ()) -> list[Target]:
    """The player's personal labels (taught to be played with), then desk-makeable labels the models know
    (desk order), then the desk families."""
    known = set(known_labels)
    pool = [Target(PERSONAL, n) for n in personal]
    pool += [Target(LABEL, n) for n in DESK_LABELS if n in known]
    if families or not pool:
        pool += [Target(FAMILY, f) for f in DESK_FAMILIES]
    return pool


def draw_target(pool: Sequence[Target], rng: random.Random, avoid: Target | None = None) -> Target:
    """A random target from ``pool``, not the same as the last one when there is a choice."""
    if not pool:
        raise ValueError("no targets to draw from")
    choices = [t for t in pool if t != avoid] or list(pool)
    return rng.choice(choices)


def personal_score(target: Target, prediction: _Ranked) -> float | None:
    """The prediction's score for a personal target (None: not scored, e.g. the label was forgotten)."""
    for s in getattr(prediction, "personal", None) or ():
        if s.name == target.name:
            return float(s.score)
    return None


def rank_of(target: Target, prediction: _Ranked) -> int | None:
    """1-based rank of the target in the prediction's labels (or families); None if absent.

    A personal target is rank 1 when heard (score ≥ :data:`HEARD`), else None: see the rules above.
    """
    if target.kind == PERSONAL:
        score = personal_score(target, prediction)
        return 1 if score is not None and score >= HEARD else None
    ranked = prediction.labels if target.kind == LABEL else prediction.families
    for i, s in enumerate(ranked, start=1):
        if s.name == target.name:
            return i
    return None


def points_for(target: Target, rank: int | None) -> int:
    if rank is None:
        return 0
    if target.kind == FAMILY:
        return FAMILY_POINTS.get(rank, 0)
    if target.kind == PERSONAL:
        return HEARD_POINTS if rank == 1 else 0
    return LABEL_POINTS.get(rank, LABEL_TOP10_POINTS if rank <= 10 else 0)


def is_hit(target: Target, rank: int | None) -> bool:
    return rank is not None and rank <= (3 if target.kind == LABEL else 1)


@dataclass(frozen=True)
class RoundResult:
    target: Target
    rank: int | None
    points: int
    bonus: int
    streak: int  # length of the streak after this round (0 = missed)

    @property
    def total(self) -> int:
        return self.points + self.bonus

    @property
    def hit(self) -> bool:
        return self.streak > 0


@dataclass
class Game:
    """One game of :attr:`rounds` rounds; feed it each round's prediction."""

    rounds: int = ROUNDS
    results: list[RoundResult] = field(default_factory=list)
    streak: int = 0
    best_streak: int = 0

    @property
    def score(self) -> int:
        return sum(r.total for r in self.results)

    @property
    def round_no(self) -> int:
        """The round being played (1-based); ``rounds + 1`` once finished."""
        return len(self.results) + 1

    @property
    def finished(self) -> bool:
        return len(self.results) >= self.rounds

    def play(self, target: Target, prediction: _Ranked) -> RoundResult:
        if self.finished:
            raise ValueError("the game is over")
        rank = rank_of(target, prediction)
        points = points_for(target, rank)
        if is_hit(target, rank):
            bonus = min(STREAK_STEP * self.streak, STREAK_CAP)
            self.streak += 1
        else:
            bonus, self.streak = 0, 0
        self.best_streak = max(self.best_streak, self.streak)
        result = RoundResult(target, rank, points, bonus, self.streak)
        self.results.append(result)
        return result


# ---------------------------------------------------------------- high scores


@dataclass(frozen=True)
class HighScore:
    name: str
    score: int
    rounds: int
    best_streak: int
    date: str  # ISO date; the caller decides (tests pass a fixed one)


class HighScores:
    """The local table, best first. :meth:`load` never fails on a bad file: it sets :attr:`notice`."""

    def __init__(self, path: Path, entries: list[HighScore] | None = None, notice: str | None = None):
        self.path = Path(path)
        self.entries = sorted(entries or [], key=lambda e: -e.score)[:MAX_ENTRIES]
        self.notice = notice

    @classmethod
    def load(cls, path: str | Path) -> "HighScores":
        path = Path(path)
        if not path.exists():
            return cls(path)
        try:
            entries = _read_entries(path)
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError, GuesserError) as e:
            backup = _backup_name(path)
            try:
                path.replace(backup)
                where = f"moved to {backup.name}"
            except OSError:
                where = "left in place"
            return cls(path, notice=f"the high-score file was unreadable ({type(e).__name__}); {where}, starting a fresh table")
        return cls(path, entries)

    def qualifies(self, score: int) -> bool:
        return score > 0 and (len(self.entries) < MAX_ENTRIES or score > self.entries[-1].score)

    def add(self, entry: HighScore) -> int | None:
        """Insert (ties go below older entries); the 1-based position, or None if it did not make the table."""
        if not self.qualifies(entry.score):
            return None
        pos = next((i for i, e in enumerate(self.entries) if entry.score > e.score), len(self.entries))
        self.entries.insert(pos, entry)
        del self.entries[MAX_ENTRIES:]
        return pos + 1

    def save(self) -> None:
        """Merge with the table on disk, then write it atomically (:func:`guesser.fileio.atomic_write`).

        Another instance of the app may have saved a score since this table was
        loaded: its entries are kept (an unreadable file on disk is replaced).
        Each writer has its own uniquely named, fsynced temporary file, so two
        instances saving at once never tear or clobber the file mid-write.
        """
        from guesser.fileio import atomic_write_text

        try:
            on_disk = _read_entries(self.path) if self.path.exists() else []
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError, GuesserError):
            on_disk = []
        merged = on_disk + [e for e in self.entries if e not in on_disk]
        self.entries = sorted(merged, key=lambda e: -e.score)[:MAX_ENTRIES]
        atomic_write_text(self.path, json.dumps({"version": 1, "scores": [asdict(e) for e in self.entries]}, indent=1))


def _read_entries(path: Path) -> list[HighScore]:
    """The entries of a high-score file (only a regular file is read: a FIFO never blocks the game)."""
    from guesser.fileio import read_text

    raw = json.loads(read_text(path, GuesserError, limit=1_000_000))
    return [HighScore(str(e["name"]), int(e["score"]), int(e["rounds"]), int(e["best_streak"]), str(e["date"]))
            for e in raw["scores"]]


def _backup_name(path: Path) -> Path:
    cand = path.with_name(path.name + ".corrupt")
    i = 1
    while cand.exists():
        cand = path.with_name(f"{path.name}.corrupt.{i}")
        i += 1
    return cand
