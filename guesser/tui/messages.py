"""Messages from worker threads to the UI thread.

Workers never touch widgets: they post one of these (``post_message`` is
thread-safe) and the screen or app that started them updates the display.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from textual.message import Message

from guesser.errors import GuesserError
from guesser.recorder import Level
from guesser.tui.session import Take


class AudioStarted(Message):
    def __init__(self, device: str, samplerate: int) -> None:
        super().__init__()
        self.device, self.samplerate = device, samplerate


class AudioTick(Message):
    """New spectrogram columns [mels, k] and the current level, ~20 times a second."""

    def __init__(self, columns: np.ndarray, level: Level) -> None:
        super().__init__()
        self.columns, self.level = columns, level


class _Carrying(Message):
    """A message with one value, under the attribute its class names in ``carries``."""

    carries = "value"

    def __init__(self, value: Any) -> None:
        super().__init__()
        setattr(self, self.carries, value)


class Failed(_Carrying):
    """Something a worker (or a panel) tried failed; ``error`` says why in one line."""

    carries = "error"
    error: GuesserError


class TakeDone(_Carrying):
    """A recording was made and classified: ``take`` holds both."""

    carries = "take"
    take: Take


class AudioFailed(Failed):
    """The input device could not be opened, or stopped delivering."""


class ModelsLoaded(_Carrying):
    carries = "ensemble"
    ensemble: Any  # guesser.ensemble.Ensemble (or anything with its interface)


class ModelsFailed(Failed):
    """The ensemble could not be loaded."""


class RecordProgress(_Carrying):
    carries = "fraction"
    fraction: float


class Classifying(Message):
    """The recording is done; the ensemble is thinking."""


class Recorded(TakeDone):
    """A worker's recording, classified."""


class RecordFailed(Failed):
    """Recording or classifying failed (silence, a lost device, a model error)."""


class ListenUpdate(Message):
    """One sliding window in listen mode; ``prediction`` is None for silence.

    ``events``: the sound events (:class:`guesser.events.Event`) that ended by
    this window, times in seconds of ``end``'s clock; ``clock``: the wall clock
    (``time.time()``) at ``end``.
    """

    def __init__(self, prediction: Any | None, level: Level, end: float, events: Sequence[Any] = (),
                 clock: float = 0.0) -> None:
        super().__init__()
        self.prediction, self.level, self.end = prediction, level, end
        self.events, self.clock = list(events), clock


class Notice(Message):
    """A one-line message for the user (saved, replay failed …)."""

    def __init__(self, text: str, severity: str = "information") -> None:
        super().__init__()
        self.text, self.severity = text, severity


class Saved(Message):
    def __init__(self, take: Take, wav, json_path) -> None:
        super().__init__()
        self.take, self.wav, self.json_path = take, wav, json_path


# ---------------------------------------------------------------- personal labels (guesser.tui.personal)


class PersonalAttached(_Carrying):
    """The ensemble now scores these personal labels (a :class:`guesser.personal.matcher.PersonalSet`)."""

    carries = "found"
    found: Any


class TeachProgress(_Carrying):
    """What teaching is doing now (embedding, fitting), one short line."""

    carries = "text"
    text: str


class Taught(_Carrying):
    """A personal label was learned and stored (a :class:`guesser.personal.store.PersonalLabel`)."""

    carries = "label"
    label: Any


class TeachFailed(Failed):
    """Teaching failed; nothing was written."""


class PersonalListed(Message):
    """The store's labels, the folders that could not be read, and the stamps of the models now loaded."""

    def __init__(self, labels: list, problems: list[str], current: frozenset | None) -> None:
        super().__init__()
        self.labels, self.problems, self.current = labels, problems, current


class PersonalChanged(Message):
    """A label was forgotten or re-embedded; ``text`` says which, for a notification."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class PersonalFailed(Failed):
    """Listing, forgetting or re-embedding failed (one line)."""
