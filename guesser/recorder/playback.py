"""Playback, for the app's "replay": the default output device, or nothing where there is none."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from guesser.errors import DeviceError
from guesser.recorder.backends import import_sounddevice
from guesser.recorder.errors import map_portaudio_error


class Player(Protocol):
    available: bool

    def play(self, samples: np.ndarray, samplerate: int) -> None: ...
    def stop(self) -> None: ...


class NullPlayer:
    """No output device: replay is offered only when :attr:`available`."""

    available = False

    def play(self, samples: np.ndarray, samplerate: int) -> None:
        raise DeviceError("no output device to replay on")

    def stop(self) -> None:
        pass


class SoundDevicePlayer:
    """Blocking playback on the default output device (call it from a worker thread)."""

    def __init__(self) -> None:
        self.sd = import_sounddevice()
        try:
            out = self.sd.query_devices(kind="output")
            self.available = bool(out and out["max_output_channels"] > 0)
        except (self.sd.PortAudioError, ValueError):
            self.available = False

    def play(self, samples: np.ndarray, samplerate: int) -> None:
        try:
            self.sd.play(np.asarray(samples, np.float32), samplerate)
            self.sd.wait()
        except self.sd.PortAudioError as e:
            raise map_portaudio_error(e, "the output device") from None

    def stop(self) -> None:
        try:
            self.sd.stop()
        except self.sd.PortAudioError:
            pass


def default_player() -> Player:
    """The real output device if there is one, else a :class:`NullPlayer`."""
    try:
        player = SoundDevicePlayer()
    except DeviceError:
        return NullPlayer()
    return player if player.available else NullPlayer()
