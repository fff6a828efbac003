"""The last minute of a stream, written by the audio thread and read by anyone."""

from __future__ import annotations

import threading

import numpy as np


class RingBuffer:
    """The last ``capacity`` mono samples, addressed by absolute position since the stream began.

    Written by the audio thread, read by any other; one lock, no allocation on
    write. Absolute positions let a reader ask for "samples since I last
    looked" without coordinating with the writer.
    """

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self._buf = np.zeros(capacity, dtype=np.float32)
        self._total = 0
        self._lock = threading.Lock()
        self.capacity = capacity

    @property
    def total(self) -> int:
        """Samples written since the start (the position one past the newest sample)."""
        return self._total

    def write(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        if block.size > self.capacity:
            block = block[-self.capacity :]
        with self._lock:
            i = self._total % self.capacity
            first = min(block.size, self.capacity - i)
            self._buf[i : i + first] = block[:first]
            self._buf[: block.size - first] = block[first:]
            self._total += block.size

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples at absolute positions [start, stop); the part already overwritten is clipped away."""
        with self._lock:
            stop = min(stop, self._total)
            start = max(start, self._total - self.capacity, 0)
            if stop <= start:
                return np.zeros(0, dtype=np.float32)
            idx = np.arange(start, stop) % self.capacity
            return self._buf[idx].copy()

    def last(self, n: int) -> np.ndarray:
        return self.read(self._total - n, self._total)
