"""Log-mel columns for the screen, from the same :func:`guesser.features.log_mel` the models use.

Why not the model's own config: a model sees 86 frames a second, a terminal
shows ~80 columns in all. The display config keeps the model's front-end (mel
scale, dB, up to 11 kHz like the seed and compact models, which start at 0 Hz;
the display starts at 50 Hz, leaving out rumble no one sees) at the *device's*
rate (no resampling per block) with one column every 50 ms, so a 6 s recording
fills a typical window.

:class:`SpectrumTracker` turns a growing stream into new columns: each call
computes only the frames whose whole FFT window has arrived since the last
call, with real (not reflected) context on both sides, on the same frame grid
as :func:`spectrogram` of the whole stream.
"""

from __future__ import annotations

import math

import numpy as np

from guesser.features import FeatureConfig, log_mel

DISPLAY_MELS = 48
COLUMNS_PER_SECOND = 20
FLOOR_DB = -100.0  # 10·log10(amin): what digital silence looks like


def display_config(samplerate: int) -> FeatureConfig:
    n_fft = 2048 if samplerate > 32000 else 1024
    return FeatureConfig(sample_rate=int(samplerate), n_fft=n_fft, win_length=n_fft,
                         hop_length=max(1, int(samplerate) // COLUMNS_PER_SECOND), n_mels=DISPLAY_MELS,
                         f_min=50.0, f_max=min(11025.0, samplerate / 2), norm="none")


def spectrogram(samples: np.ndarray, samplerate: int) -> np.ndarray:
    """A whole recording -> float32 [DISPLAY_MELS, T] in dB (low frequencies first)."""
    if np.asarray(samples).size == 0:
        return np.full((DISPLAY_MELS, 0), FLOOR_DB, np.float32)
    return log_mel(np.asarray(samples, np.float32), samplerate, display_config(samplerate)).numpy()


class SpectrumTracker:
    """Follows a stream by absolute sample positions; :meth:`columns` returns the frames that are now complete.

    Frame f is centred on absolute sample f·hop and needs samples
    [f·hop - n_fft/2, f·hop + n_fft/2). Each call reads from a hop-aligned
    start with ``context`` frames of real left context (computed, then
    dropped), so no frame is ever built from reflected padding.
    """

    def __init__(self, samplerate: int, start: int = 0):
        self.cfg = display_config(samplerate)
        self.hop = self.cfg.hop_length
        self.half = self.cfg.n_fft // 2
        self.context = math.ceil(self.half / self.hop)
        self.next_frame = -(-max(0, start) // self.hop) + self.context

    def columns(self, read, total: int) -> np.ndarray:
        """``read(a, b)`` gives samples [a, b); ``total`` samples exist -> [M, k] new columns (k may be 0)."""
        last = (total - self.half) // self.hop  # newest frame whose whole window has arrived
        k = last - self.next_frame + 1
        if k <= 0:
            return np.zeros((self.cfg.n_mels, 0), np.float32)
        a = (self.next_frame - self.context) * self.hop
        b = last * self.hop + self.half
        x = read(a, b)
        if x.size != b - a:  # fell more than a ring buffer behind: restart from what is there
            self.next_frame = -(-(total - x.size) // self.hop) + self.context
            return np.zeros((self.cfg.n_mels, 0), np.float32)
        lm = log_mel(x, self.cfg.sample_rate, self.cfg).numpy()
        cols = lm[:, self.context : self.context + k]  # frame t of x is centred on (next_frame - context + t)·hop
        self.next_frame += k
        return cols
