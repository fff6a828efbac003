"""Decoding audio files into float32 waveforms, with one-line errors for bad input.

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis, Opus and more; torchaudio's
own I/O moved to torchcodec and is not used. Resampling and channel mixing
happen in :mod:`guesser.features`, so a file is returned as it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guesser.errors import AudioError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".au", ".mp3")

SILENCE_PEAK = 1e-4
"""Peak below which a file counts as silent (-80 dBFS: below any microphone's noise floor)."""


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


def load_audio(path: str | Path, *, allow_silent: bool = True) -> Audio:
    """Decode ``path``; raise :class:`AudioError` (one line, naming the file) for anything unusable.

    Unusable: missing, a folder, not decodable (not audio, truncated, unknown
    format), no samples, NaN/inf samples, or, with ``allow_silent=False``,
    digital silence.
    """
    import soundfile as sf

    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: no such file")
    if p.is_dir():
        raise AudioError(f"{p}: is a folder, not an audio file")
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile raises LibsndfileError/RuntimeError/TypeError for garbage
        reason = str(e).split("\n")[0].strip() or type(e).__name__
        raise AudioError(f"{p}: cannot decode audio ({reason})") from None
    return check_waveform(data.T, sr, name=str(p), allow_silent=allow_silent)


def check_waveform(samples: np.ndarray, sample_rate: int, *, name: str, allow_silent: bool = True) -> Audio:
    """Validate a [channels, frames] waveform from a file or a microphone."""
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[None, :]
    if samples.shape[-1] == 0 or samples.size == 0:
        raise AudioError(f"{name}: empty audio (no samples)")
    if sample_rate <= 0:
        raise AudioError(f"{name}: invalid sample rate {sample_rate}")
    if not np.isfinite(samples).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    if not allow_silent and float(np.abs(samples).max()) < SILENCE_PEAK:
        raise AudioError(f"{name}: silent (peak below -80 dBFS), nothing to recognise")
    return Audio(samples=samples, sample_rate=int(sample_rate))


def find_audio_files(paths: list[Path]) -> list[Path]:
    """Expand folders (recursively, sorted) into audio files; plain file arguments are kept as given."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS))
        else:
            out.append(p)
    return out
