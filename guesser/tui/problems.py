"""What went wrong, in words a user can act on: one :class:`Problem` per failure kind.

The recorder and the ensemble raise typed errors; this module is the single
place that turns them into a failure screen's title, message and advice, so
the wording is consistent and testable without a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass

from guesser.errors import CheckpointError, GuesserError
from guesser.recorder import (DeviceLostError, NoInputDeviceError, PermissionDeniedError, SILENCE_DBFS,
                              SilentInputError)

NO_DEVICE, PERMISSION, LOST, SILENT, NO_MODELS, OTHER = "no-device", "permission", "lost", "silent", "no-models", "other"


@dataclass(frozen=True)
class Problem:
    kind: str
    title: str
    message: str
    advice: str
    fatal: bool = False  # nothing useful left to do but quit or retry


def problem_for(error: GuesserError) -> Problem:
    msg = str(error)
    if isinstance(error, NoInputDeviceError):
        return Problem(NO_DEVICE, "No microphone", msg,
                       "Plug in or enable a microphone, then press r to retry or d to pick a device.\n"
                       "No microphone at all? Run the same flow on a file: guesser play --file clip.wav")
    if isinstance(error, PermissionDeniedError):
        return Problem(PERMISSION, "Microphone access denied", msg,
                       "macOS: System Settings → Privacy & Security → Microphone → allow your terminal.\n"
                       "Linux: close other programs that record, or add yourself to the 'audio' group.\n"
                       "Then press r to retry, or d to pick another device.")
    if isinstance(error, DeviceLostError):
        return Problem(LOST, "The microphone went away", msg,
                       "Reconnect it and press r to retry, or d to pick another device.")
    if isinstance(error, SilentInputError):
        return Problem(SILENT, "I heard nothing", msg,
                       f"The recording stayed below {SILENCE_DBFS:.0f} dBFS. Unmute the microphone, turn its input\n"
                       "volume up, come closer, or press d to pick another device; then record again.")
    if isinstance(error, CheckpointError):
        return Problem(NO_MODELS, "No models to guess with", msg,
                       "Train them with 'guesser train multi --out runs' and start with --models runs/index.json,\n"
                       "or reinstall guesser with its shipped models (assets/models/index.json).\n"
                       "Until then the level meter and spectrogram still work; recording is off.")
    return Problem(OTHER, "Something went wrong", msg, "Press escape to go back, or q to quit.")
