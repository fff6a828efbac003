"""Messages from worker threads to the UI thread.

Workers never touch widgets: they post one of these (``post_message`` is
thread-safe) and the screen or app that started them updates the display.
"""

from __future__ import annotations

from typing import Any

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


class AudioFailed(Message):
    def __init__(self, error: GuesserError) -> None:
        super().__init__()
        self.error = error


class ModelsLoaded(Message):
    def __init__(self, ensemble: Any) -> None:
        super().__init__()
        self.ensemble = ensemble


class ModelsFailed(Message):
    def __init__(self, error: GuesserError) -> None:
        super().__init__()
        self.error = error


class RecordProgress(Message):
    def __init__(self, fraction: float) -> None:
        super().__init__()
        self.fraction = fraction


class Classifying(Message):
    """The recording is done; the ensemble is thinking."""


class Recorded(Message):
    def __init__(self, take: Take) -> None:
        super().__init__()
        self.take = take


class RecordFailed(Message):
    def __init__(self, error: GuesserError) -> None:
        super().__init__()
        self.error = error


class ListenUpdate(Message):
    """One sliding window in listen mode; ``prediction`` is None for silence."""

    def __init__(self, prediction: Any | None, level: Level, end: float) -> None:
        super().__init__()
        self.prediction, self.level, self.end = prediction, level, end


class Notice(Message):
    """A one-line message for the user (saved, replay failed …)."""

    def __init__(self, text: str, severity: str = "information") -> None:
        super().__init__()
        self.text, self.severity = text, severity


class Saved(Message):
    def __init__(self, take: Take, wav, json_path) -> None:
        super().__init__()
        self.take, self.wav, self.json_path = take, wav, json_path
