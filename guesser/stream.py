"""Scoring a file of any length in bounded memory: decode, resample, log-mel and score block by block.

:meth:`guesser.ensemble.Ensemble.predict` holds the whole waveform, each
resampled copy and each log-mel: fine for a clip, but a two-hour file would
need gigabytes. :func:`predict_source` reads a file up to
:data:`IN_MEMORY_SECONDS` and, if it ends there, hands it to ``predict``
(what every clip gets). A longer file is streamed: each block of samples goes
through

    mono ─ StreamResampler (per rate) ─ StreamLogMel (per front-end) ─ WindowScorer (per model)

and only the window logits are kept (200 floats per window: 2 MB for two
hours), so memory stays flat whatever the length. Each stage computes exactly
what its one-pass counterpart computes (:class:`guesser.features.ChunkedResampler`,
:func:`guesser.features.log_mel_long`, :func:`guesser.features.window_starts`):
the same samples and weights per output, the same frames, the same windows,
the last one flush with the end, so the scores and the timeline agree with
``predict`` to float32 rounding. Everything ends in
:meth:`~guesser.ensemble.Ensemble.combine`, as ``predict`` does.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from guesser.audio import SILENCE_PEAK, AudioSource, check_waveform
from guesser.errors import AudioError
from guesser.features import FeatureConfig, _log_mel_frames, window_starts
from guesser.scoring import WindowProbs, Windows, window_frames

if TYPE_CHECKING:  # pragma: no cover
    from guesser.ensemble import Ensemble, LoadedModel, Prediction
    from guesser.sed import EventSettings

IN_MEMORY_SECONDS = 30.0
"""Files up to this long are scored in one piece by ``Ensemble.predict``; longer ones are streamed."""

STREAM_BATCH_WINDOWS = 4
"""Windows per forward pass when streaming. A window's activations take ~20 MB in the first layers;
``Ensemble.predict``'s 16 at a time add ~340 MB to the process's peak (on top of ~560 MB for torch
and the models), 4 add ~130 MB and cost no measurable speed (the convolutions dominate)."""


class StreamResampler:
    """torchaudio's sinc resampler (the kernel of ``torchaudio.transforms.Resample``), fed block by block.

    Output block i of ``new`` samples comes from padded input ``[i*orig, i*orig + k)``,
    as in the one-pass convolution; the input is zero-padded by the kernel's
    width at the start and ``width + orig`` at the end, as torchaudio pads it.
    """

    def __init__(self, orig_sr: int, new_sr: int):
        self.identity = orig_sr == new_sr
        self.seen = 0  # input samples
        self.emitted = 0  # output samples
        if self.identity:
            return
        import torchaudio.transforms as T

        t = T.Resample(orig_sr, new_sr, dtype=torch.float32)
        self.kernel, self.width = t.kernel, t.width
        g = math.gcd(orig_sr, new_sr)
        self.orig, self.new = orig_sr // g, new_sr // g
        self.k = self.kernel.shape[-1]
        self.buf = torch.zeros(self.width)

    def push(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.numel()
        if self.identity:
            return x
        self.buf = torch.cat([self.buf, x])
        return self._drain()

    def finish(self) -> torch.Tensor:
        if self.identity:
            return torch.zeros(0)
        self.buf = torch.cat([self.buf, torch.zeros(self.width + self.orig)])
        out = self._drain()
        target = math.ceil(self.new * self.seen / self.orig)
        return out[: max(0, target - (self.emitted - out.numel()))]

    def _drain(self) -> torch.Tensor:
        o, k = self.orig, self.k
        if self.buf.numel() < k:
            return torch.zeros(0)
        blocks = (self.buf.numel() - k) // o + 1
        seg = self.buf[: (blocks - 1) * o + k]
        out = torch.nn.functional.conv1d(seg[None, None], self.kernel, stride=o)[0].t().reshape(-1)
        self.buf = self.buf[blocks * o :].clone()
        self.emitted += out.numel()
        return out


class StreamLogMel:
    """:func:`guesser.features.log_mel_long` of a signal arriving in blocks (longer than one FFT window).

    The signal is reflect-padded by ``n_fft // 2`` at both ends, as the centred
    STFT pads it; frame t is the uncentred frame at ``t * hop`` of the padded
    signal, and there are ``1 + samples // hop`` frames in all.
    """

    def __init__(self, cfg: FeatureConfig):
        self.cfg = cfg
        self.half = cfg.n_fft // 2
        self.buf: torch.Tensor | None = None  # padded signal from frame `self.frames`' first sample on
        self.frames = 0
        self.seen = 0
        self.tail = torch.zeros(0)  # the last half + 1 samples of the signal (for the end's reflection)

    def push(self, x: torch.Tensor) -> torch.Tensor | None:
        if x.numel() == 0:
            return None
        self.seen += x.numel()
        self.tail = torch.cat([self.tail, x])[-(self.half + 1):]
        if self.buf is None:
            if x.numel() <= self.half:
                raise ValueError("the first block must be longer than half an FFT window")
            self.buf = torch.cat([x[1 : self.half + 1].flip(0), x])
        else:
            self.buf = torch.cat([self.buf, x])
        return self._drain(None)

    def finish(self) -> torch.Tensor | None:
        if self.buf is None:
            return None
        self.buf = torch.cat([self.buf, self.tail[:-1].flip(0)[: self.half]])
        return self._drain(1 + self.seen // self.cfg.hop_length)

    def _drain(self, total: int | None) -> torch.Tensor | None:
        hop, n_fft = self.cfg.hop_length, self.cfg.n_fft
        ready = 0 if self.buf.numel() < n_fft else (self.buf.numel() - n_fft) // hop + 1
        if total is not None:
            ready = min(ready, total - self.frames)
        if ready <= 0:
            return None
        frames = _log_mel_frames(self.buf[: (ready - 1) * hop + n_fft], self.cfg)  # [M, ready]
        self.buf = self.buf[ready * hop :].clone()
        self.frames += ready
        return frames


class WindowScorer:
    """One model's sliding windows over a stream of log-mel frames -> probabilities [W, K] and the starts.

    ``length``/``hop`` (frames) cut sub-windows for sound events instead of the
    model's windows; ``sink(starts, probs)`` then takes each batch as it is
    scored (:class:`guesser.sed.EventFeed`), so nothing piles up.
    """

    def __init__(self, ensemble: "Ensemble", model: "LoadedModel", length: int | None = None,
                 hop: int | None = None, sink: Callable[[list[int], torch.Tensor], None] | None = None):
        self.ensemble, self.model = ensemble, model
        cfg = model.features
        self.length = length
        self.clip = length or cfg.clip_frames
        self.hop = hop or ensemble.window_hop_frames(cfg) or self.clip // 2
        self.sink = sink
        self.buf = torch.zeros(cfg.n_mels, 0)
        self.base = 0  # frame index of buf[:, 0]
        self.total = 0
        self.last: int | None = None  # the last window start taken
        self.starts: list[int] = []
        self.probs: list[torch.Tensor] = []
        self.embeddings: list[torch.Tensor] = []  # per window, when the ensemble scores personal labels
        self.pending: list[int] = []
        self.batch = max(1, min(ensemble.batch_windows, STREAM_BATCH_WINDOWS))

    def push(self, frames: torch.Tensor | None) -> None:
        if frames is None:
            return
        self.buf = torch.cat([self.buf, frames], dim=1)
        self.total += frames.shape[1]
        self._take(window_starts(self.total, self.clip, self.hop, after=self.last, final=False))
        if len(self.pending) >= self.batch:
            self._run()

    def finish(self) -> tuple[torch.Tensor | None, list[int], torch.Tensor | None]:
        self._take(window_starts(self.total, self.clip, self.hop, after=self.last))  # the last window, flush with the end
        self._run()
        expected = window_starts(self.total, self.clip, self.hop)
        if self.starts != expected:  # pragma: no cover - would be a bug in this class
            raise AssertionError(f"streamed windows {self.starts[:3]}… differ from {expected[:3]}…")
        probs = torch.cat(self.probs) if self.probs else None
        return probs, self.starts, torch.cat(self.embeddings) if self.embeddings else None

    def _take(self, starts: list[int]) -> None:
        if starts:
            self.pending += starts
            self.last = starts[-1]

    def _run(self) -> None:
        for i in range(0, len(self.pending), self.batch):
            chunk = self.pending[i : i + self.batch]
            out = self.ensemble.window_probs(self.model, self.buf, [s - self.base for s in chunk], self.length)
            if self.sink is not None:
                self.sink(chunk, out.probs)
            else:
                self.probs.append(out.probs)
                if out.embeddings is not None:
                    self.embeddings.append(out.embeddings)
            self.starts += chunk
        self.pending = []
        nxt = 0 if self.last is None else self.last + self.hop
        keep_from = min(nxt, max(0, self.total - self.clip))  # the flush window may reach back
        drop = keep_from - self.base
        if drop > 0:
            self.buf = self.buf[:, drop:].clone()
            self.base = keep_from


def predict_source(ensemble: "Ensemble", source: AudioSource, *, timeline: bool = False,
                   in_memory_seconds: float = IN_MEMORY_SECONDS, events: "EventSettings | None" = None) -> "Prediction":
    """Score an opened file (any length, bounded memory); :class:`AudioError` for unusable audio.

    ``events`` also lists the sounds heard with their start and end (:mod:`guesser.sed`).

    Silence is not refused here: the caller reads ``source.peak`` (a silent
    file is a result for ``guesser classify``, an error where a recording is
    expected).
    """
    longest = max(m.features.clip_seconds for m in ensemble.models)
    limit = max(in_memory_seconds, 2.5 * longest)  # streamed files always get sliding windows
    head: list[np.ndarray] = []
    held = 0
    blocks = source.blocks()
    for block in blocks:
        head.append(block)
        held += block.shape[1]
        if held > limit * source.sample_rate:
            break
    else:  # the whole file fits: exactly what every clip gets
        if not head:
            raise AudioError(f"{source.name}: empty audio (no samples)")
        samples = head[0] if len(head) == 1 else np.concatenate(head, axis=1)
        audio = check_waveform(samples, source.sample_rate, name=source.name)
        try:
            return ensemble.predict(audio.samples, audio.sample_rate, timeline=timeline, events=events)
        except MemoryError:
            raise AudioError(f"{source.name}: too long to classify in memory ({audio.duration:.0f} s)") from None
    return _stream(ensemble, source, head, blocks, timeline, events)


def _stream(ensemble: "Ensemble", source: AudioSource, head: list[np.ndarray], rest, timeline: bool,
            events: "EventSettings | None" = None) -> "Prediction":
    t0 = time.perf_counter()
    sr = source.sample_rate
    with torch.inference_mode():
        resamplers = {m.features.sample_rate: StreamResampler(sr, m.features.sample_rate) for m in ensemble.models}
        logmels = {m.features.key: (m.features.sample_rate, StreamLogMel(m.features)) for m in ensemble.models}
        scorers = [(m.features.key, WindowScorer(ensemble, m)) for m in ensemble.models]
        sounds = None
        if events is not None:  # sub-windows for sound events, scored as they fill (guesser.sed)
            from guesser.sed import EventFeed

            sounds = EventFeed(ensemble, events)
            for i, m in enumerate(ensemble.models):
                length, hop = window_frames(m.features, events.window, events.hop)
                scorers.append((m.features.key, WindowScorer(
                    ensemble, m, length, hop, lambda starts, probs, i=i: sounds.add(i, starts, probs))))

        def feed(resampled: dict[int, torch.Tensor], finish: bool) -> None:
            for key, (rate, lm) in logmels.items():
                frames = lm.push(resampled[rate]) if not finish else _cat(lm.push(resampled[rate]), lm.finish())
                for k, scorer in scorers:
                    if k == key:
                        scorer.push(frames)

        def blocks():
            yield from head
            head.clear()  # the first minutes need not stay in memory
            yield from rest

        samples = 0
        release = memory_releaser()
        for block in blocks():
            samples += block.shape[1]
            mono = torch.from_numpy(block).mean(dim=0) if block.shape[0] > 1 else torch.from_numpy(block[0])
            feed({rate: r.push(mono) for rate, r in resamplers.items()}, finish=False)
            release()
        feed({rate: r.finish() for rate, r in resamplers.items()}, finish=True)
        scored = []
        for m, (_, scorer) in zip(ensemble.models, scorers):
            probs, starts, embedded = scorer.finish()
            scored.append((m, WindowProbs(probs, np.zeros(len(starts), np.int64), embedded),
                           Windows(torch.zeros(m.features.n_mels, 0), m.features, tuple(starts))))
        for _, scorer in scorers[len(ensemble.models):]:
            scorer.finish()
    heard = sounds.finish(samples / sr) if sounds is not None else None
    return ensemble.combine(scored, samples / sr, timeline=timeline, t0=t0, events=heard)


def _cat(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    if b is None:
        return a
    return torch.cat([a, b], dim=1)


def memory_releaser() -> Callable[[], None]:
    """A function that hands freed heap memory back to the OS (glibc's ``malloc_trim``); a no-op elsewhere.

    Every block allocates and frees the same few buffers of a few hundred KB.
    glibc raises its mmap threshold after the first frees, so these come from
    the heap, and freed heap pages stay in the process: without a trim a
    two-hour file peaked at 1.9 GB, with one per block at the same RSS as a
    ten-minute file (measured: benchmarks/long_input.py). It takes
    milliseconds per 10 s block.
    """
    try:
        import ctypes
        import ctypes.util

        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to do
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


def is_silent(source: AudioSource) -> bool:
    """After a full read: digital silence (peak below -80 dBFS)."""
    return source.peak < SILENCE_PEAK
