"""Decoding audio files into float32 waveforms, with one-line errors for bad input.

Two decoders, tried in turn:

* soundfile (libsndfile): WAV, FLAC, OGG/Vorbis, Opus, AIFF, MP3 …, read
  through the file descriptor, in blocks;
* PyAV (FFmpeg, shipped inside its wheels) when libsndfile refuses a file:
  phone recordings (M4A/AAC), video files (MP4, MKV, WebM, MOV), browser
  recordings (WebM/Opus), OGG files with a cover-art or video stream, and
  whatever else FFmpeg demuxes. The first audio stream is decoded; a file
  without one is ``cannot decode audio: no audio stream``.

Only regular files are opened (:func:`guesser.fileio.open_regular`): a FIFO or
a device is refused before it can block, and non-UTF-8 names open like others.
:func:`open_audio` streams a file in blocks (a two-hour file never has to be in
memory at once: see :mod:`guesser.stream`); :func:`load_audio` reads a whole
clip. Resampling and channel mixing happen in :mod:`guesser.features`, so a
file is returned as it is stored. torchaudio's own I/O moved to torchcodec and
is not used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from guesser.errors import AudioError
from guesser.fileio import open_regular, shown

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".au", ".mp3",
                    # through FFmpeg: phone and browser recordings, video files
                    ".m4a", ".aac", ".mp4", ".m4v", ".mov", ".3gp", ".mkv", ".mka", ".webm", ".wma", ".amr")

SILENCE_PEAK = 1e-4
"""Peak below which a file counts as silent (-80 dBFS: below any microphone's noise floor)."""

INPUT_RATES = (1000, 768000)
"""The sample rates guesser reads (Hz): everything its resampler converts in linear time and bounded memory."""

BLOCK_SECONDS = 10.0
"""How much audio :meth:`AudioSource.blocks` hands over at a time (bounded memory for any length)."""


@dataclass(frozen=True)
class Audio:
    """A decoded clip: ``samples`` is float32 [channels, frames] in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return self.samples.shape[-1] / self.sample_rate

    @property
    def mono(self) -> np.ndarray:
        return self.samples.mean(axis=0)

    @property
    def silent(self) -> bool:
        return float(np.abs(self.samples).max()) < SILENCE_PEAK


def rate_problem(rate) -> str | None:
    """None for a sample rate guesser reads; else one line saying why not (the range it reads)."""
    lo, hi = INPUT_RATES
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not lo <= rate <= hi:
        return f"unsupported sample rate {rate} Hz (guesser reads {lo:,}–{hi:,} Hz)"
    return None


def _reason(e: BaseException) -> str:
    return str(e).split("\n")[0].strip() or type(e).__name__


class AudioSource:
    """An opened audio file, read block by block: ``with open_audio(p) as src: for b in src.blocks(): …``.

    ``sample_rate`` and ``channels`` are known once opened; ``frames`` is the
    length in samples when the container says (an estimate for FFmpeg
    formats), else None. Each block is float32 [channels, n], checked for
    NaN/inf; ``peak`` is the largest magnitude read so far.
    """

    decoder = "?"

    def __init__(self, name: str, sample_rate: int, channels: int, frames: int | None):
        if rate_problem(sample_rate):
            raise AudioError(f"{name}: {rate_problem(sample_rate)}")
        if channels <= 0:
            raise AudioError(f"{name}: no audio channels")
        self.name, self.sample_rate, self.channels, self.frames = name, int(sample_rate), int(channels), frames
        self.peak = 0.0
        self.read_frames = 0

    @property
    def duration(self) -> float | None:
        return None if self.frames is None else self.frames / self.sample_rate

    def blocks(self, seconds: float = BLOCK_SECONDS, max_seconds: float | None = None) -> Iterator[np.ndarray]:
        """Float32 [channels, n] blocks of about ``seconds`` each (the last shorter), up to ``max_seconds``."""
        size = max(1, int(seconds * self.sample_rate))
        limit = None if max_seconds is None else max(1, int(max_seconds * self.sample_rate))
        pending: list[np.ndarray] = []
        held = 0
        for raw in self._raw_blocks(size):
            if limit is not None:
                room = limit - self.read_frames - held
                if room <= 0:
                    break
                raw = raw[:, :room]
            pending.append(raw)
            held += raw.shape[1]
            while held >= size:
                block, pending, held = self._take(pending, held, size)
                yield block
        while held:
            block, pending, held = self._take(pending, held, min(size, held))
            yield block

    def _take(self, pending: list[np.ndarray], held: int, size: int):
        whole = pending[0] if len(pending) == 1 else np.concatenate(pending, axis=1)
        block, rest = whole[:, :size], whole[:, size:]
        block = np.ascontiguousarray(block, dtype=np.float32)
        if not np.isfinite(block).all():
            raise AudioError(f"{self.name}: audio contains NaN or infinite samples")
        if block.size:
            self.peak = max(self.peak, float(np.abs(block).max()))
        self.read_frames += block.shape[1]
        return block, ([rest] if rest.shape[1] else []), held - block.shape[1]

    def _raw_blocks(self, size: int) -> Iterator[np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def read(self, max_seconds: float | None = None) -> Audio:
        """The whole file (or its first ``max_seconds``) as one :class:`Audio`."""
        parts = list(self.blocks(max_seconds=max_seconds))
        if not parts:
            raise AudioError(f"{self.name}: empty audio (no samples)")
        samples = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        return Audio(samples=samples, sample_rate=self.sample_rate)

    def close(self) -> None:
        pass

    def __enter__(self) -> "AudioSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _SoundFileSource(AudioSource):
    decoder = "libsndfile"

    def __init__(self, name: str, snd, file):
        self._snd, self._file = snd, file
        super().__init__(name, snd.samplerate, snd.channels, snd.frames if snd.frames > 0 else None)

    def _raw_blocks(self, size: int) -> Iterator[np.ndarray]:
        while True:
            try:
                data = self._snd.read(size, dtype="float32", always_2d=True)
            except Exception as e:  # noqa: BLE001 - libsndfile errors come as several types
                raise AudioError(f"{self.name}: cannot decode audio ({_reason(e)})") from None
            if data.shape[0] == 0:
                return
            yield data.T
            if data.shape[0] < size:
                return

    def close(self) -> None:
        try:
            self._snd.close()
        finally:
            self._file.close()


class _FFmpegSource(AudioSource):
    decoder = "ffmpeg"

    def __init__(self, name: str, container, stream, file):
        self._container, self._stream, self._file = container, stream, file
        ctx = stream.codec_context
        if ctx is None:  # FFmpeg found an audio stream but has no decoder for it (or the header is damaged)
            raise AudioError(f"{name}: cannot decode audio (no decoder for its audio stream)")
        rate = ctx.sample_rate or stream.rate or 0
        frames = None
        try:
            if stream.duration is not None and stream.time_base is not None:
                frames = int(stream.duration * stream.time_base * rate)
            elif container.duration:
                frames = int(container.duration / 1_000_000 * rate)
        except (TypeError, ValueError, ZeroDivisionError):
            frames = None
        super().__init__(name, rate, ctx.channels or getattr(stream.layout, "nb_channels", 0) or 1, frames)

    def _raw_blocks(self, size: int) -> Iterator[np.ndarray]:
        import av

        resampler = None
        bad = 0
        for packet in self._container.demux(self._stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as e:  # a damaged packet: skipped, as ffmpeg itself does
                bad += 1
                if bad > 100 and self.read_frames == 0:
                    raise AudioError(f"{self.name}: cannot decode audio ({_reason(e)})") from None
                continue
            for frame in frames:
                if resampler is None:  # planar float32 at the stream's first rate and layout: [channels, n]
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=self.sample_rate)
                try:
                    out = resampler.resample(frame)
                except ValueError:  # the layout changed mid-stream: a new resampler to the same output
                    out = av.AudioResampler(format="fltp", layout=resampler.layout, rate=self.sample_rate).resample(frame)
                for f in out:
                    yield self._channels(f.to_ndarray())
        if resampler is not None:
            for f in resampler.resample(None):
                yield self._channels(f.to_ndarray())

    def _channels(self, x: np.ndarray) -> np.ndarray:
        if x.shape[0] != self.channels:  # a layout change: keep the channel count of the first frames
            x = np.repeat(x.mean(axis=0, keepdims=True), self.channels, axis=0)
        return x

    def close(self) -> None:
        try:
            self._container.close()
        finally:
            self._file.close()


def open_audio(path: str | os.PathLike) -> AudioSource:
    """Open ``path`` for block-wise decoding; :class:`AudioError` (one line, naming the file) if unusable."""
    import soundfile as sf

    name = shown(path)
    f = open_regular(path, AudioError)
    try:
        try:
            snd = sf.SoundFile(f.fileno(), mode="r", closefd=False)
        except Exception as e:  # noqa: BLE001 - libsndfile raises LibsndfileError/RuntimeError/TypeError for garbage
            sf_reason = _reason(e).removeprefix("Error opening <file>: ").removeprefix(f"Error opening {f.fileno()}: ")
        else:
            return _SoundFileSource(name, snd, f)
        f.seek(0)
        return _open_ffmpeg(name, f, sf_reason)
    except BaseException:
        f.close()
        raise


def _open_ffmpeg(name: str, f, sf_reason: str) -> AudioSource:
    try:
        import av
    except ImportError:  # pragma: no cover - av is a dependency; a broken install still gets one line
        raise AudioError(f"{name}: cannot decode audio ({sf_reason})") from None
    try:
        container = av.open(f, mode="r", metadata_errors="ignore")
    except Exception as e:  # noqa: BLE001 - InvalidDataError for anything FFmpeg does not recognise either
        if f.seek(0, os.SEEK_END) == 0:
            raise AudioError(f"{name}: empty file (0 bytes), cannot decode audio") from None
        reason = sf_reason if "Invalid data" in str(e) else f"{sf_reason}; ffmpeg: {_reason(e)}"
        raise AudioError(f"{name}: cannot decode audio ({reason})") from None
    try:
        stream = next(iter(container.streams.audio), None)
        if stream is None:
            kinds = sorted({s.type for s in container.streams}) or ["nothing"]
            raise AudioError(f"{name}: cannot decode audio: the file has no audio stream (only {', '.join(kinds)})")
        return _FFmpegSource(name, container, stream, f)
    except BaseException:
        container.close()
        raise


def load_audio(path: str | Path, *, allow_silent: bool = True, max_seconds: float | None = None) -> Audio:
    """Decode ``path`` (or its first ``max_seconds``); raise :class:`AudioError` (one line, naming the file) for anything unusable.

    Unusable: missing, not a regular file (a folder, a FIFO, a device),
    unreadable, not decodable (not audio, truncated, unknown format, no audio
    stream), no samples, NaN/inf samples, or, with ``allow_silent=False``,
    digital silence.
    """
    with open_audio(path) as src:
        audio = src.read(max_seconds)
    return check_waveform(audio.samples, audio.sample_rate, name=shown(path), allow_silent=allow_silent)


def check_waveform(samples: np.ndarray, sample_rate: int, *, name: str, allow_silent: bool = True) -> Audio:
    """Validate a [channels, frames] waveform from a file or a microphone."""
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[None, :]
    if samples.shape[-1] == 0 or samples.size == 0:
        raise AudioError(f"{name}: empty audio (no samples)")
    if rate_problem(sample_rate):
        raise AudioError(f"{name}: {rate_problem(sample_rate)}")
    if not np.isfinite(samples).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    if not allow_silent and float(np.abs(samples).max()) < SILENCE_PEAK:
        raise AudioError(silent_message(name))
    return Audio(samples=samples, sample_rate=int(sample_rate))


def silent_message(name: str) -> str:
    return f"{name}: silent (peak below -80 dBFS), nothing to recognise"


def find_audio_files(paths: list[Path]) -> list[Path]:
    """Expand folders (recursively, sorted) into audio files; plain file arguments are kept as given.

    Only regular files are listed from a folder (a FIFO named ``x.wav`` is not). The walk
    keeps its own stack, so a folder thousands of levels deep is listed like any other
    (a recursive walk ends in a RecursionError); linked folders are not followed and
    folders that cannot be listed are passed over, as ``Path.rglob`` does.
    """
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(_walk_audio(p)))
        else:
            out.append(p)
    return out


def _walk_audio(root: Path) -> Iterator[Path]:
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for e in entries:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
                        elif os.path.splitext(e.name)[1].lower() in AUDIO_EXTENSIONS and e.is_file():
                            yield Path(e.path)
                    except OSError:
                        continue
        except OSError:
            continue
