"""What one run of the app knows: its settings and the recordings made so far.

Kept apart from the widgets so screens share one history and tests can build
an app with any settings (a fake audio backend, a fixed date, no countdown).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable

import numpy as np

from guesser.recorder import AudioBackend, Level, Player


@dataclass
class Take:
    """One recording and the ensemble's answer; ``number`` is given when it joins the history."""

    samples: np.ndarray
    samplerate: int
    source: str
    level: Level
    prediction: Any  # guesser.ensemble.Prediction (or anything with its interface)
    spectrum: np.ndarray  # [mels, T] display spectrogram, computed in the worker
    number: int = 0
    target: str | None = None  # the game's target, when it was a game round
    saved_to: Path | None = None

    @property
    def duration(self) -> float:
        return self.samples.shape[-1] / self.samplerate


@dataclass
class Settings:
    """Everything ``guesser play`` was started with, plus the hooks tests replace."""

    seconds: float = 6.0
    device: str | int | None = None
    models: list[Path] | None = None
    file: Path | None = None
    backend: AudioBackend | None = None  # None: the real sound card (sounddevice)
    player: Player | None = None  # None: the default output device, if any
    load_ensemble: Callable[[list[Path] | None], Any] | None = None  # None: Ensemble.load
    countdown: int = 3  # seconds before a recording starts
    save_dir: Path | None = None  # None: userdata.recordings_dir()
    highscores: Path | None = None  # None: userdata.highscores_path()
    seed: int | None = None  # game target draws
    today: Callable[[], str] = field(default=lambda: date.today().isoformat())
    player_name: str | None = None  # default name in the high-score table
    teach: Callable[..., Any] | None = None  # None: guesser.personal.teach.teach (tests pass a fake)

    @property
    def file_mode(self) -> bool:
        return self.file is not None


@dataclass
class Session:
    settings: Settings
    takes: list[Take] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)

    def add(self, take: Take) -> Take:
        take.number = len(self.takes) + 1
        self.takes.append(take)
        return take

    @property
    def last(self) -> Take | None:
        return self.takes[-1] if self.takes else None
