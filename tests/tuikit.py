"""Helpers for the app's tests: a fake ensemble, test clips, and waiting on a running app.

Why a fake ensemble: the app's behaviour (what is shown, how a game round is
scored) must not depend on what a model happens to answer; ``FakeEnsemble``
answers exactly what a test tells it to, and records what it was given.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Callable, Mapping, Sequence

import numpy as np

from guesser.ensemble import ModelOutput, Prediction, Scored
from guesser.events import Event
from guesser.labels import FAMILIES_6, default_label_space
from guesser.recorder import ArrayBackend
from guesser.recorder.backends import _ArrayStream

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
    """``predict`` answers the next queued ranking (or ``top``); ``calls`` keeps every waveform it got.

    Personal labels: ``models`` is empty (no checkpoints), so the app's
    :func:`guesser.personal.matcher.attach` gives it the stored labels made
    with no models (``tuikit.store_label``), and ``personal`` (the attached
    set) says which; the scores themselves are what a test queues, like the rest.
    """

    def __init__(self, top: Sequence[str] = DEFAULT_TOP, families: Sequence[str] = ("Human sounds", "Sounds of things"),
                 known: Sequence[str] = KNOWN, personal: Mapping[str, float] | None = None):
        self.top, self.families, self.known = tuple(top), tuple(families), list(known)
        self.personal_scores = dict(personal or {})
        self.queue: list[tuple[Sequence[str], Sequence[str], Mapping[str, float]]] = []
        self.calls: list[tuple[np.ndarray, int]] = []
        self.call_times: list[float] = []  # time.monotonic() of each predict()
        self.models: list = []
        self.personal = None  # set by guesser.personal.matcher.attach

    def known_labels(self) -> list[str]:
        return list(self.known)

    def answer_next(self, top: Sequence[str], families: Sequence[str] | None = None,
                    personal: Mapping[str, float] | None = None) -> None:
        self.queue.append((tuple(top), tuple(families or self.families),
                           dict(self.personal_scores if personal is None else personal)))

    def predict(self, waveform, sample_rate: int, *, timeline: bool = False, embeddings: bool = False,
                events=None) -> Prediction:
        self.calls.append((np.asarray(waveform).copy(), sample_rate))
        self.call_times.append(time.monotonic())
        top, fams, personal = self.queue.pop(0) if self.queue else (self.top, self.families, self.personal_scores)
        labels, families = ranked(top, LABELS), ranked(fams, FAMILIES_6)
        models = [ModelOutput("cnn4_fake", "cnn4", "labels", labels),
                  ModelOutput("cnn6_fake", "cnn6", "families", families)]
        duration = np.asarray(waveform).shape[-1] / sample_rate
        yours = sorted((Scored(n, v) for n, v in personal.items()), key=lambda s: -s.score)
        heard = [Event(n, "Human sounds", 0.25 * duration, 0.75 * duration, 0.9) for n in top[:1]]
        return Prediction(labels, families, models, 1.0, duration, personal=yours,
                          events=heard if events is not None else None)


def store_label(name: str, models: Sequence = (), examples: int = 4, created: str = "2026-01-02T10:00:00+00:00"):
    """Write a personal label into the user data folder (the test's own: conftest) without teaching it.

    ``models`` are :class:`guesser.personal.store.ModelStamp` s: none (the
    default) is what :class:`FakeEnsemble` runs, so the app scores it;
    anything else makes a label "made with other models".
    """
    from guesser.personal import probe
    from guesser.personal.probe import Estimate, LinearProbe
    from guesser.personal.store import PersonalLabel, Store

    d = 8

    def per_model() -> object:  # what the store keeps per model: pooled embeddings (and, once probe has View, probs)
        pooled = np.ones((examples, d), np.float32)
        view = getattr(probe, "View", None)
        return view(pooled, np.full((examples, 6), 0.1, np.float32)) if view else pooled

    label = PersonalLabel(name, tuple(models), {s.name: per_model() for s in models},
                          LinearProbe(np.zeros(d, np.float32), 0.0, 0.0), Estimate(examples - 1, examples, 0.004, 3000),
                          tuple(f"microphone take {i + 1}" for i in range(examples)), created=created)
    clips = [(chirp_clip(0.5) * (0.5 + 0.1 * i), 22050) for i in range(examples)]
    Store().write(label, clips)
    return label


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



class _TakesStream(_ArrayStream):
    def cue(self, position):
        with self.lock:
            self.clip = self.o.takes[min(self.o.heard, len(self.o.takes) - 1)]
            self.o.heard += 1
        return super().cue(position)


class TakesBackend(ArrayBackend):
    """A person making a sound several times: each capture hears the next clip of ``takes`` (then the last again).

    An :class:`ArrayBackend` whose stream swaps its clip when a capture cues
    it; ``heard`` counts the captures. The clips are at the device's rate.
    """

    def __init__(self, takes: Sequence[np.ndarray], samplerate: int = 22050, **kwargs):
        self.takes = [np.asarray(t, np.float32) for t in takes]
        self.heard = 0
        super().__init__(self.takes[0], samplerate, **kwargs)

    def open_input(self, device, samplerate, block, on_block, on_lost):
        assert samplerate == self.samplerate, "the takes are made at the device's rate"
        self.opened.append(device)
        return _TakesStream(self, device, samplerate, block, on_block, on_lost)
