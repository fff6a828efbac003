"""The recorder: an open input device feeding a ring buffer that every reader shares."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from guesser.errors import DeviceError, GuesserError
from guesser.recorder import backends
from guesser.recorder.backends import AudioBackend, DeviceInfo, InputStream, resolve_device
from guesser.recorder.errors import DeviceLostError, lost_message
from guesser.recorder.level import Level
from guesser.recorder.ring import RingBuffer

BUFFER_SECONDS = 60.0
BLOCK_SECONDS = 0.02
LIVE_HOP_SECONDS = 0.125
"""How often listening scores the newest window (``guesser listen --hop``, the app's listen mode: guesser.live)."""
LIVE_WINDOW_SECONDS = 6.0
"""How much of the newest audio one live answer looks at (``guesser listen --seconds``)."""
STALL_SECONDS = 2.5
"""No samples for this long while recording = the device is gone (unplugged, suspended, taken away)."""


@dataclass(frozen=True)
class Heard:
    """One window of :meth:`Recorder.windows`: mono samples and where they lie (seconds since it started)."""

    samples: np.ndarray
    start: float
    end: float


class Recorder:
    """An open input device feeding a ring buffer; capture, level and sliding windows read from it.

    Use as a context manager, or :meth:`open` / :meth:`close`. Thread-safe for
    one writer (the audio thread) and any number of readers.
    """

    def __init__(self, backend: AudioBackend | None = None, device: str | int | None = None, *,
                 samplerate: int | None = None, buffer_seconds: float = BUFFER_SECONDS,
                 block_seconds: float = BLOCK_SECONDS, stall_seconds: float = STALL_SECONDS):
        self.backend = backend
        self.device_spec = device
        self.requested_samplerate = samplerate
        self.buffer_seconds, self.block_seconds, self.stall_seconds = buffer_seconds, block_seconds, stall_seconds
        self.device: DeviceInfo | None = None
        self.samplerate = 0
        self.ring: RingBuffer | None = None
        self._stream: InputStream | None = None
        self._lost: str | None = None
        self._last_block = np.zeros(0, np.float32)
        self._cond = threading.Condition()
        self._close_lock = threading.Lock()

    # -- lifecycle

    def open(self) -> "Recorder":
        if self._stream is not None:
            return self
        if self.backend is None:
            self.backend = backends.SoundDeviceBackend()
        self.device = resolve_device(self.backend, self.device_spec)
        self.samplerate = int(self.requested_samplerate or self.device.default_samplerate or 44100)
        self.ring = RingBuffer(int(self.buffer_seconds * self.samplerate))
        self._lost = None
        block = max(64, int(self.block_seconds * self.samplerate))
        stream = self.backend.open_input(self.device, self.samplerate, block, self._on_block, self._on_lost)
        try:
            stream.start()
        except Exception:
            stream.close()
            raise
        self._stream = stream
        return self

    def close(self) -> None:
        """Stop and release the device (idempotent; safe from any thread)."""
        with self._close_lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> "Recorder":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    @property
    def device_name(self) -> str:
        return self.device.name if self.device else "no device"

    # -- audio thread

    def _on_block(self, block: np.ndarray) -> None:
        assert self.ring is not None
        self.ring.write(block)
        self._last_block = np.array(block, dtype=np.float32, copy=True)
        with self._cond:
            self._cond.notify_all()

    def _on_lost(self, reason: str) -> None:
        self._lost = reason
        with self._cond:
            self._cond.notify_all()

    # -- readers

    def check(self) -> None:
        """Raise :class:`DeviceLostError` if the device went away."""
        if self._lost is not None:
            raise DeviceLostError(self._lost)
        if self._stream is None:
            raise DeviceError("the recorder is not open")

    @property
    def total(self) -> int:
        return self.ring.total if self.ring else 0

    @property
    def level(self) -> Level:
        """The level of the newest block (about 20 ms): what a level meter shows."""
        return Level.of(self._last_block)

    def read(self, start: int, stop: int) -> np.ndarray:
        assert self.ring is not None, "open() the recorder first"
        return self.ring.read(start, stop)

    def last(self, seconds: float) -> np.ndarray:
        assert self.ring is not None, "open() the recorder first"
        return self.ring.last(int(seconds * self.samplerate))

    def wait_until(self, position: int, cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Block until ``position`` samples have arrived; False if cancelled. Raises if the device is lost/stalls."""
        last_total, last_change = self.total, time.monotonic()
        while self.total < position:
            self.check()
            if cancelled():
                return False
            with self._cond:
                self._cond.wait(timeout=0.05)
            if self.total != last_total:
                last_total, last_change = self.total, time.monotonic()
            elif time.monotonic() - last_change > self.stall_seconds:
                self._lost = lost_message(self.device_name)
                raise DeviceLostError(self._lost)
        return True

    def capture(self, seconds: float, on_progress: Callable[[float], None] | None = None,
                cancelled: Callable[[], bool] = lambda: False) -> np.ndarray | None:
        """Record ``seconds`` from now -> mono float32 [samples] at :attr:`samplerate`; None if cancelled."""
        if seconds <= 0:
            raise GuesserError(f"recording length must be positive, got {seconds:g} s")
        self.check()
        assert self.ring is not None
        n = int(round(seconds * self.samplerate))
        if n > self.ring.capacity:
            raise GuesserError(f"cannot record more than {self.buffer_seconds:g} s at once")
        assert self._stream is not None
        start = self._stream.cue(lambda: self.total)
        step = max(1, self.samplerate // 10)
        pos = start
        while pos < start + n:
            pos = min(pos + step, start + n)
            if not self.wait_until(pos, cancelled):
                return None
            if on_progress is not None:
                on_progress((pos - start) / n)
        return self.read(start, start + n)

    def windows(self, seconds: float, hop: float, cancelled: Callable[[], bool] = lambda: False, *,
                early: bool = False) -> Iterator[Heard]:
        """The newest ``seconds`` of audio every ``hop`` seconds, until cancelled (then the iterator ends).

        The one sliding-window rule of ``guesser listen`` and the app's listen
        mode. Windows follow each other ``hop`` apart on the stream's clock; a
        reader more than a hop behind (classifying slower than real time) jumps
        to the newest window instead of falling further behind. ``early`` gives
        the first window after one hop, on what has been heard so far (shorter
        than ``seconds``), rather than after a whole window. Times are seconds
        since the iterator started.
        """
        n, step = int(seconds * self.samplerate), max(1, int(hop * self.samplerate))
        origin = self.total
        end = origin + (min(n, step) if early else n)
        while self.wait_until(end, cancelled):
            if self.total - end > step:
                end = self.total
            start = max(origin, end - n)
            yield Heard(self.read(start, end), (start - origin) / self.samplerate, (end - origin) / self.samplerate)
            end += step
