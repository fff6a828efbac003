"""Hearing the microphone as it happens: the newest window scored every hop, only new samples processed.

``guesser listen``, the app's listen mode and anything else that follows a
microphone run one loop, :func:`listen`:

    Recorder.windows(seconds, hop)      the newest ``seconds`` every ``hop`` (a reader that falls
       │                                more than a hop behind jumps to the newest window: a
       │                                window that would start late is skipped, never queued)
    LiveScorer.feed(samples, end)       only the samples after the previous window's end go through
       │                                StreamResampler (per rate) → StreamLogMel (per front-end);
       │                                the last ``seconds`` of log-mel frames are kept rolling
    LiveScorer.predict()                quiet room cut from the window's ends (loud_span), then
                                        Ensemble.predict_log_mels on the rolling log-mels: the same
                                        windows, models and fusion as a file (guesser.scoring)

Why streaming: recomputing the resampling and the log-mel of a whole 6 s
window every 0.125 s would do 48 times the front-end work the new samples
need; the models themselves cost ~15 ms of one core per window
(``benchmarks/live_cpu.py``). Models sharing a front-end share one rolling
log-mel. Why 0.125 s: the median time from a sound's start to its family
was 0.41 s at a 0.25 s hop and 0.33 s at 0.125 s (``benchmarks/latency.py``,
docs/benchmarks.md), for CPU well within budget.

An ensemble without loaded checkpoints (the tests' stand-ins) is scored whole
window by whole window through its ``predict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

from guesser.events import Event, EventRules, EventTracker, label_families
from guesser.labels import default_label_space
from guesser.recorder import LIVE_HOP_SECONDS, LIVE_WINDOW_SECONDS, Level, Recorder
from guesser.stream import StreamLogMel, StreamResampler

QUIET_DB = 30.0
"""Frames this far below a live window's loudest are room, not sound: cut from its ends (:func:`loud_span`)."""

SOUNDING_SECONDS = 0.3
"""A window whose last loud frame is older than this holds a sound that has ended (events end there)."""


@dataclass(frozen=True)
class LiveWindow:
    """One scored hop: where it lies (seconds since listening started), its level, the answer (None: silence)."""

    start: float
    end: float
    samples: np.ndarray
    level: Level
    prediction: Any | None
    sounding: bool = True  # the window's sound lasts up to its end (False: it ended, quiet since)


class LiveScorer:
    """The newest ``seconds`` of a stream -> a :class:`~guesser.ensemble.Prediction`, new samples processed once.

    :meth:`feed` takes the newest window and its end (in samples since the
    stream started): what lies after the previous end is resampled and turned
    into log-mel frames; a gap (skipped windows longer than the window, or a
    stream that restarted) starts the front-end afresh from this window.
    The frames a centred STFT needs future samples for (the last ``n_fft / 2``,
    and what libsoxr's streaming filter holds back, ~30 ms) come with the next
    feed: the rolling log-mel lags the audio by up to five frames (~0.1 s).
    """

    def __init__(self, ensemble: Any, samplerate: int, seconds: float):
        self.ensemble, self.samplerate, self.seconds = ensemble, int(samplerate), float(seconds)
        self.configs = {m.features.key: m.features for m in ensemble.models}
        self.keep = {key: int(round(self.seconds * cfg.frames_per_second)) + 1 for key, cfg in self.configs.items()}
        self.position: int | None = None
        self.sounding = True
        self._reset()

    def _reset(self) -> None:
        rates = {cfg.sample_rate for cfg in self.configs.values()}
        self.resamplers = {rate: StreamResampler(self.samplerate, rate) for rate in rates}
        self.logmels = {key: StreamLogMel(cfg) for key, cfg in self.configs.items()}
        self.frames = {key: torch.zeros(cfg.n_mels, 0) for key, cfg in self.configs.items()}
        self.pending = {key: torch.zeros(0) for key in self.configs}  # resampled, before StreamLogMel's first block
        self.heard = 0  # samples fed since the last reset

    def feed(self, samples: np.ndarray, end: int) -> None:
        """The newest window (mono, ending ``end`` samples into the stream): take in what is new."""
        new = len(samples) if self.position is None else end - self.position
        if new < 0 or new > len(samples):  # a restarted stream, or a gap wider than the window
            self._reset()
            new = len(samples)
        self.position = end
        if new == 0:
            return
        x = torch.from_numpy(np.ascontiguousarray(samples[len(samples) - new:], dtype=np.float32))
        self.heard += new
        with torch.inference_mode():
            resampled = {rate: r.push(x) for rate, r in self.resamplers.items()}
            for key, cfg in self.configs.items():
                y = torch.cat([self.pending[key], resampled[cfg.sample_rate]])
                if self.logmels[key].buf is None and y.numel() <= cfg.n_fft // 2:
                    self.pending[key] = y  # StreamLogMel's first block must cover its reflection
                    continue
                self.pending[key] = torch.zeros(0)
                frames = self.logmels[key].push(y)
                if frames is not None:
                    self.frames[key] = torch.cat([self.frames[key], frames], dim=1)[:, -self.keep[key]:]

    def predict(self) -> Any | None:
        """The ensemble's answer for the newest window (None before its first log-mel frame)."""
        if any(f.shape[1] == 0 for f in self.frames.values()):
            return None
        duration = min(self.heard / self.samplerate, self.seconds)
        trimmed = {}
        for key, frames in self.frames.items():
            first, last = loud_span(frames)
            trimmed[key] = frames[:, first:last]
            fps = self.configs[key].frames_per_second
            self.sounding = (frames.shape[1] - last) / fps <= SOUNDING_SECONDS
        return self.ensemble.predict_log_mels(trimmed, duration)


def loud_span(logmel: torch.Tensor, below: float = QUIET_DB) -> tuple[int, int]:
    """[M, T] log-mel -> (first, stop): its frames without the leading and trailing ones ``below`` dB under the loudest.

    Training clips are trimmed to their sound and short ones are tiled
    (:func:`guesser.features.fit_frames`); a live window holding 0.3 s of a clap
    after seconds of a quiet room would be mostly quiet room. Cut to the
    sound, the clap is tiled as a short training clip was.
    """
    loudness = logmel.max(dim=0).values  # [T]: each frame's loudest mel band, dB
    loud = torch.nonzero(loudness >= loudness.max() - below).flatten()
    return int(loud[0]), int(loud[-1]) + 1


class WholeWindowScorer:
    """For an ensemble that only has ``predict`` (no checkpoints): each window scored whole."""

    def __init__(self, ensemble: Any, samplerate: int):
        self.ensemble, self.samplerate = ensemble, samplerate
        self.samples: np.ndarray | None = None
        self.sounding = True

    def feed(self, samples: np.ndarray, end: int) -> None:
        self.samples = samples

    def predict(self) -> Any | None:
        return None if self.samples is None else self.ensemble.predict(self.samples, self.samplerate)


def live_scorer(ensemble: Any, samplerate: int, seconds: float) -> LiveScorer | WholeWindowScorer:
    """The streaming scorer where the ensemble has models with front-ends, else whole windows."""
    if getattr(ensemble, "models", None) and hasattr(ensemble, "predict_log_mels"):
        return LiveScorer(ensemble, samplerate, seconds)
    return WholeWindowScorer(ensemble, samplerate)


def listen(recorder: Recorder, ensemble: Any, seconds: float = LIVE_WINDOW_SECONDS, hop: float = LIVE_HOP_SECONDS,
           cancelled: Callable[[], bool] = lambda: False) -> Iterator[LiveWindow]:
    """Score the newest ``seconds`` every ``hop`` until cancelled; silent windows come without a prediction.

    The first answer comes after one hop, on what has been heard so far. The
    ensemble runs in this thread: while it works, audio keeps arriving in the
    recorder's ring buffer, and a window whose time has passed by more than a
    hop is skipped (:meth:`Recorder.windows`), so answers never fall behind.

    Torch runs on one thread meanwhile: one window per hop gains nothing from
    a second, whose OpenMP threads spin between calls: on a busy 2-core
    machine a hop cost 17 ms of CPU on one thread and 244 ms on two
    (docs/benchmarks.md, "Listening live").
    """
    sr = recorder.samplerate
    scorer = live_scorer(ensemble, sr, seconds)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for heard in recorder.windows(seconds, hop, cancelled, early=True):
            scorer.feed(heard.samples, int(round(heard.end * sr)))
            level = Level.of(heard.samples)
            prediction = None if level.silent else scorer.predict()
            yield LiveWindow(heard.start, heard.end, heard.samples, level, prediction,
                             prediction is not None and scorer.sounding)
    finally:
        torch.set_num_threads(threads)


RECENT_SECONDS = 10.0


def _ancestor_names(space: Any, label: str) -> set[str]:
    names = space.vocabulary.names
    return {names[i] for i in space.ancestors[space.vocabulary.index[label]]}


class LiveEvents:
    """Sound events of a live stream (:class:`guesser.events.EventTracker` over the 200 labels).

    Each window's label scores describe its end time while its sound lasts;
    a silent window, or one whose sound has ended (:attr:`LiveWindow.sounding`),
    counts as all zeros, so an event ends with its sound rather than when the
    sound leaves the window.
    """

    def __init__(self, rules: EventRules | None = None):
        names = default_label_space().vocabulary.names
        self.index = {n: i for i, n in enumerate(names)}
        self.tracker = EventTracker(names, label_families(names), rules or EventRules())
        self.recent: list[Event] = []

    def scores(self, prediction: Any) -> np.ndarray:
        row = np.zeros(len(self.index))
        for s in prediction.labels:
            if s.name in self.index:
                row[self.index[s.name]] = s.score
        return row

    def push(self, w: LiveWindow) -> list[Event]:
        """The events that ended by this window."""
        row = self.scores(w.prediction) if w.sounding and w.prediction is not None else np.zeros(len(self.index))
        return self.tracker.push(w.end, row)

    def finish(self, end: float) -> list[Event]:
        """Listening stopped at ``end``: the events still open, closed there."""
        return self.tracker.finish(end)

    def specific(self, events: list[Event]) -> list[Event]:
        """``events`` without those a more specific one explains (*Dog* when *Bark* was heard then): what a log shows.

        Compared with each other and with the events of the last
        :data:`RECENT_SECONDS` given here, since a sound's labels may end a hop apart.
        """
        space = default_label_space()
        pool = self.recent + events
        keep = [e for e in events
                if not any(o.start < e.end and e.start < o.end and e.label in _ancestor_names(space, o.label)
                           for o in pool)]
        latest = max((e.end for e in pool), default=0.0)
        self.recent = [e for e in pool if e.end >= latest - RECENT_SECONDS]
        return keep
