"""Messages from worker threads to the UI thread.

Workers never touch widgets: they post one of these (``post_message`` is
thread-safe) and the screen or app that started them updates the display.
Each is a dataclass with typed fields, as Textual's own messages are
(``Message.__post_init__`` initialises the message behind the dataclass
``__init__``). What needs torch (the ensemble, a prediction) is named for the
type checker only: the TUI never imports torch itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from textual.message import Message

from guesser.errors import GuesserError
from guesser.recorder import Level
from guesser.tui.session import Take

if TYPE_CHECKING:
    from guesser.ensemble import Ensemble, Prediction
    from guesser.events import Event
    from guesser.personal.matcher import PersonalSet
    from guesser.personal.store import PersonalLabel


@dataclass
class AudioStarted(Message):
    device: str
    samplerate: int


@dataclass
class AudioTick(Message):
    """New spectrogram columns [mels, k] and the current level, ~20 times a second."""

    columns: np.ndarray
    level: Level


@dataclass
class Failed(Message):
    """Something a worker (or a panel) tried failed; ``error`` says why in one line."""

    error: GuesserError


class AudioFailed(Failed):
    """The input device could not be opened, or stopped delivering."""


@dataclass
class ModelsLoaded(Message):
    ensemble: Ensemble  # (or anything with its interface)


class ModelsFailed(Failed):
    """The ensemble could not be loaded."""


@dataclass
class RecordProgress(Message):
    fraction: float


class Classifying(Message):
    """The recording is done; the ensemble is thinking."""


@dataclass
class TakeDone(Message):
    """A recording was made and classified: ``take`` holds both."""

    take: Take


class Recorded(TakeDone):
    """A worker's recording, classified."""


class RecordFailed(Failed):
    """Recording or classifying failed (silence, a lost device, a model error)."""


@dataclass
class ListenUpdate(Message):
    """One sliding window in listen mode; ``prediction`` is None for silence.

    ``events``: the sound events that ended by this window, times in seconds of
    ``end``'s clock; ``clock``: the wall clock (``time.time()``) at ``end``.
    """

    prediction: Prediction | None
    level: Level
    end: float
    events: Sequence[Event] = ()
    clock: float = 0.0


@dataclass
class Notice(Message):
    """A one-line message for the user (saved, replay failed …)."""

    text: str
    severity: str = "information"


@dataclass
class Saved(Message):
    take: Take
    wav: Path
    json_path: Path


# ---------------------------------------------------------------- personal labels (guesser.tui.personal)


@dataclass
class PersonalAttached(Message):
    """The ensemble now scores these personal labels."""

    found: PersonalSet


@dataclass
class TeachProgress(Message):
    """What teaching is doing now (embedding, fitting), one short line."""

    text: str


@dataclass
class Taught(Message):
    """A personal label was learned and stored."""

    label: PersonalLabel


class TeachFailed(Failed):
    """Teaching failed; nothing was written."""


@dataclass
class PersonalListed(Message):
    """The store's labels, the folders that could not be read, and the stamps of the models now loaded."""

    labels: list[PersonalLabel]
    problems: list[str]
    current: frozenset | None


@dataclass
class PersonalChanged(Message):
    """A label was forgotten or re-embedded; ``text`` says which, for a notification."""

    text: str


class PersonalFailed(Failed):
    """Listing, forgetting or re-embedding failed (one line)."""
