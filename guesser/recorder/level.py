"""How loud a block of audio is, and whether a recording heard anything at all."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from guesser.errors import GuesserError

SILENCE_DBFS = -60.0
"""RMS below which a recording counts as "heard nothing": quieter than a quiet room through any microphone."""

DB_FLOOR = -120.0
"""dBFS reported for digital silence (log of zero)."""


def dbfs(value: float) -> float:
    """Amplitude (1.0 = full scale) -> dBFS, floored at :data:`DB_FLOOR` for zero."""
    return max(DB_FLOOR, 20.0 * math.log10(value)) if value > 0 else DB_FLOOR


@dataclass(frozen=True)
class Level:
    """How loud a block is: RMS and peak, in dBFS (0 = full scale)."""

    rms_db: float = DB_FLOOR
    peak_db: float = DB_FLOOR

    @classmethod
    def of(cls, samples: np.ndarray) -> "Level":
        x = np.asarray(samples, dtype=np.float32)
        if x.size == 0:
            return cls()
        return cls(dbfs(float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))), dbfs(float(np.abs(x).max())))

    @property
    def silent(self) -> bool:
        return self.rms_db < SILENCE_DBFS


class SilentInputError(GuesserError):
    """A recording with nothing in it; carries its :class:`Level` for the message."""

    exit_code = 3

    def __init__(self, level: Level, name: str = "the microphone"):
        self.level = level
        super().__init__(
            f"heard nothing from {name} (RMS {level.rms_db:.0f} dBFS, below {SILENCE_DBFS:.0f}): "
            "check it is unmuted, its input volume, the right --device, and that guesser may use it"
        )


def check_not_silent(samples: np.ndarray, name: str = "the microphone") -> Level:
    """The recording's :class:`Level`; :class:`SilentInputError` when it is below :data:`SILENCE_DBFS`."""
    level = Level.of(samples)
    if level.silent:
        raise SilentInputError(level, name)
    return level
