"""Helpers for the app's tests: a fake ensemble, test clips, and waiting on a running app.

Why a fake ensemble: the app's behaviour (what is shown, how a game round is
scored) must not depend on what a model happens to answer; ``FakeEnsemble``
answers exactly what a test tells it to, and records what it was given.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Callable, Sequence

import numpy as np

from guesser.ensemble import ModelOutput, Prediction, Scored
from guesser.labels import FAMILIES_6, default_label_space

LABELS = default_label_space().vocabulary.names
DEFAULT_TOP = ("Clapping", "Speech", "Knock")
KNOWN = ("Clapping", "Cough", "Knock", "Speech", "Typing", "Laughter", "Dog", "Piano")


def ranked(top: Sequence[str], names: Sequence[str]) -> list[Scored]:
    """All ``names`` ranked: ``top`` first with 0.9, 0.6, 0.4 …, the rest in vocabulary order below."""
    top = list(dict.fromkeys(top))  # a name once, at its first place
    first = [Scored(n, round(0.9 * 0.67 ** i, 4)) for i, n in enumerate(top)]
    rest = [n for n in names if n not in set(top)]
    low = 0.9 * 0.67 ** len(top)
    return first + [Scored(n, round(low * (1 - (i + 1) / (len(rest) + 1)), 4)) for i, n in enumerate(rest)]


class FakePlayer:
    """Remembers what it was asked to play (a :class:`guesser.recorder.Player` without a sound card)."""

    available = True

    def __init__(self) -> None:
        self.played: list[tuple[np.ndarray, int]] = []

    def play(self, samples: np.ndarray, samplerate: int) -> None:
        self.played.append((np.asarray(samples), samplerate))

    def stop(self) -> None:
        pass


class FakeEnsemble:
    """``predict`` answers the next queued ranking (or ``top``); ``calls`` keeps every waveform it got."""

    def __init__(self, top: Sequence[str] = DEFAULT_TOP, families: Sequence[str] = ("Human sounds", "Sounds of things"),
                 known: Sequence[str] = KNOWN):
        self.top, self.families, self.known = tuple(top), tuple(families), list(known)
        self.queue: list[tuple[Sequence[str], Sequence[str]]] = []
        self.calls: list[tuple[np.ndarray, int]] = []
        self.call_times: list[float] = []  # time.monotonic() of each predict()

    def known_labels(self) -> list[str]:
        return list(self.known)

    def answer_next(self, top: Sequence[str], families: Sequence[str] | None = None) -> None:
        self.queue.append((tuple(top), tuple(families or self.families)))

    def predict(self, waveform, sample_rate: int, *, timeline: bool = False) -> Prediction:
        self.calls.append((np.asarray(waveform).copy(), sample_rate))
        self.call_times.append(time.monotonic())
        top, fams = self.queue.pop(0) if self.queue else (self.top, self.families)
        labels, families = ranked(top, LABELS), ranked(fams, FAMILIES_6)
        models = [ModelOutput("cnn4_fake", "cnn4", "labels", labels),
                  ModelOutput("cnn6_fake", "cnn6", "families", families)]
        duration = np.asarray(waveform).shape[-1] / sample_rate
        return Prediction(labels, families, models, 1.0, duration)


def chirp_clip(seconds: float = 1.0, sr: int = 22050, amp: float = 0.3) -> np.ndarray:
    """A deterministic, clearly audible test sound: a rising tone with a few clicks."""
    t = np.arange(int(seconds * sr)) / sr
    x = amp * np.sin(2 * np.pi * (300 * t + 1500 * t ** 2))
    x[:: sr // 4] += 0.5
    return np.clip(x, -1, 1).astype(np.float32)


async def until(pilot, condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Let the app run until ``condition()`` holds (fail after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (screen: {pilot.app.screen!r})")
        await pilot.pause(0.02)
    # then let the app handle what is queued: a screen that has just been pushed may still be
    # mounting, and a test that ends now would tear it down under its own on_mount
    await pilot.pause()


def pilot_test(fn):
    """Run an ``async def`` test with asyncio.run (no pytest-asyncio needed); fixtures still resolve."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper
