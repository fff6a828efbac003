"""The one log-mel front-end, shared by the trainer and the app.

A model must see at inference exactly what it saw in training, so there is one
path from a waveform to what a model sees, and both the cache builder
(``trainer.cache_build``) and the app (``guesser.ensemble``) go through it:

    waveform (any rate, any channels, any length)
      └─ log_mel()        mono, resample(), |STFT|², mel (slaney), 10·log10(max(·, amin))
           └─ [cache]     float16 frames, full clip length
      └─ fit_frames()     tile (short clip) or crop to the model's window
      └─ normalize()      (x - mean) / std with stats from the train split

(:mod:`guesser.scoring` cuts the windows and runs the models.) The log-mel is
rounded to float16 precision at the source, so a clip's frames read back from
the float16 cache are *bit-identical* to the frames the app computes live (the
rounding is ~0.03 dB at 60 dB, far below anything audible). Long inputs are
resampled and transformed in chunks (bounded memory for an hour-long file);
up to a minute, which covers every FSD50K clip, the whole signal is one chunk.

Every setting lives in :class:`FeatureConfig`, which travels inside each
checkpoint; ``FeatureConfig.key`` (every setting but the statistics) names the
cache a recipe needs. The PANNs preset reproduces PANNs' own front-end (32 kHz,
window 1024, hop 320, 64 mels, 50-14 000 Hz, slaney filters, 10·log10 power with
amin 1e-10, no normalisation here: their ``bn0`` does it) so that official
weights see what they were trained on.

Shapes in docstrings: M = n_mels, T = frames.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Literal, Sequence

import numpy as np
import torch

ShortPolicy = Literal["tile", "pad", "noise"]
NormPolicy = Literal["global", "per_mel", "none"]

PAD_DB = -100.0
"""What the ``pad`` policy fills a short clip's window with: 10·log10(1e-10), the floor of every preset."""

LONG_CHUNK_SECONDS = 60.0
"""Inputs longer than this are resampled and transformed in chunks of this length (bounded memory)."""


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that decides what a model sees. Stored in checkpoints and cache headers."""

    sample_rate: int = 22050
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 256
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None  # None: Nyquist
    amin: float = 1e-10
    clip_seconds: float = 6.0  # the model's window
    short: ShortPolicy = "tile"  # a clip shorter than the window is tiled, padded with silence, or with its own noise floor
    norm: NormPolicy = "global"
    mean: tuple[float, ...] | None = field(default=None, compare=True)
    std: tuple[float, ...] | None = field(default=None, compare=True)

    @property
    def clip_frames(self) -> int:
        """Frames in one model window: 6 s at 22 050 Hz, hop 256 -> 516, as in the student project."""
        return int(self.clip_seconds * self.sample_rate // self.hop_length)

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def key(self) -> str:
        """A short name for everything that changes the cached frames (stats and window excluded)."""
        d = asdict(self)
        for k in ("mean", "std", "clip_seconds", "short", "norm"):
            d.pop(k)
        blob = json.dumps(d, sort_keys=True).encode()
        return f"sr{self.sample_rate}-m{self.n_mels}-h{self.hop_length}-" + hashlib.sha1(blob).hexdigest()[:8]

    @property
    def has_stats(self) -> bool:
        return self.norm == "none" or (self.mean is not None and self.std is not None)

    def with_stats(self, mean: Sequence[float], std: Sequence[float]) -> "FeatureConfig":
        return replace(self, mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("mean", "std"):
            d[k] = list(d[k]) if d[k] is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        """A FeatureConfig from a checkpoint, a cache header or a recipe, checked by :meth:`validate`.

        Raises ``ValueError`` with one line naming the first bad setting (callers
        add the file); nothing that comes out of here can make the front-end
        divide by zero, allocate gigabytes or disagree with its own statistics.
        """
        if not isinstance(d, dict):
            raise ValueError(f"feature settings must be a JSON object, got {type(d).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown feature settings: {sorted(map(str, unknown))}")
        d = dict(d)
        for k in ("mean", "std"):
            if d.get(k) is not None:
                if not isinstance(d[k], (list, tuple)) or not all(_is_number(x) for x in d[k]):
                    raise ValueError(f"feature setting {k} must be a list of numbers")
                d[k] = tuple(float(x) for x in d[k])
        for k in ("f_min", "amin", "clip_seconds"):  # JSON may hold 0 for 0.0
            if _is_number(d.get(k)):
                d[k] = float(d[k])
        if _is_number(d.get("f_max")):
            d["f_max"] = float(d["f_max"])
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def validate(self) -> "FeatureConfig":
        """Check every setting's type and range; ``ValueError`` (one line, naming the setting) otherwise."""
        def integer(name: str, lo: int, hi: int) -> int:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"feature setting {name} must be an integer in [{lo}, {hi}], got {v!r}")
            return v

        def number(name: str, lo: float, hi: float, *, open_lo: bool = False) -> float:
            v = getattr(self, name)
            ok = _is_number(v) and math.isfinite(v) and (lo < v if open_lo else lo <= v) and v <= hi
            if not ok:
                bound = f"({lo:g}, {hi:g}]" if open_lo else f"[{lo:g}, {hi:g}]"
                raise ValueError(f"feature setting {name} must be a number in {bound}, got {v!r}")
            return float(v)

        sr = integer("sample_rate", MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
        n_fft = integer("n_fft", 16, 65536)
        integer("win_length", 1, n_fft)
        integer("hop_length", 1, n_fft)
        integer("n_mels", MIN_MELS, min(512, n_fft // 2 + 1))
        f_min = number("f_min", 0.0, sr / 2)
        if self.f_max is not None:
            number("f_max", f_min, sr / 2, open_lo=True)
        number("amin", 0.0, 1.0, open_lo=True)
        number("clip_seconds", 0.0, MAX_CLIP_SECONDS, open_lo=True)
        if self.clip_frames < 1:
            raise ValueError(f"feature setting clip_seconds={self.clip_seconds!r} is shorter than one frame")
        if self.short not in ("tile", "pad", "noise"):
            raise ValueError(f"feature setting short must be 'tile', 'pad' or 'noise', got {self.short!r}")
        if self.norm not in ("global", "per_mel", "none"):
            raise ValueError(f"feature setting norm must be 'global', 'per_mel' or 'none', got {self.norm!r}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("feature settings mean and std must be given together")
        if self.mean is not None and self.norm != "none":
            size = self.n_mels if self.norm == "per_mel" else 1
            for name in ("mean", "std"):
                values = getattr(self, name)
                if len(values) != size:
                    raise ValueError(f"feature setting {name} has {len(values)} values; norm {self.norm!r} "
                                     f"with {self.n_mels} mels needs {size}")
                if not all(math.isfinite(v) for v in values):
                    raise ValueError(f"feature setting {name} holds NaN or infinite values")
            if not all(v > 0 for v in self.std):
                raise ValueError("feature setting std must be positive")
        return self


MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384000
MIN_MELS = 16
"""Fewer mel bands than this leave nothing for the CNNs' four 2x poolings (and no recipe uses them)."""
MAX_CLIP_SECONDS = 60.0
"""A model window longer than a minute is a typo (``1e7`` would allocate terabytes), not a model."""


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


SEED_CNN = FeatureConfig()
"""The student project's front-end: 22 050 Hz, 128 mels, 6 s -> [128, 516]."""

COMPACT = FeatureConfig(n_mels=64, hop_length=441)
"""A 3.4× cheaper front-end for the same CNNs: 64 mels, 20 ms hop, 6 s -> [64, 300] (CPU-friendly training)."""

PANNS = FeatureConfig(
    sample_rate=32000,
    n_fft=1024,
    win_length=1024,
    hop_length=320,
    n_mels=64,
    f_min=50.0,
    f_max=14000.0,
    amin=1e-10,
    clip_seconds=6.0,
    norm="none",
)
"""PANNs' front-end (Kong et al. 2020): pretrained CNN6 weights expect exactly this."""


@lru_cache(maxsize=8)
def _mel_filters(n_fft: int, n_mels: int, sample_rate: int, f_min: float, f_max: float) -> torch.Tensor:
    """[n_fft//2+1, M] slaney-scale, slaney-normalised filters (librosa's defaults, as PANNs uses)."""
    import torchaudio.functional as AF

    return AF.melscale_fbanks(
        n_freqs=n_fft // 2 + 1,
        f_min=f_min,
        f_max=f_max,
        n_mels=n_mels,
        sample_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )


@lru_cache(maxsize=8)
def _window(win_length: int) -> torch.Tensor:
    return torch.hann_window(win_length, periodic=True)


def to_mono(waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
    """[samples] or [channels, samples] -> float32 [samples] (channel mean)."""
    x = torch.as_tensor(waveform, dtype=torch.float32)
    if x.ndim == 2:
        x = x.mean(dim=0)
    if x.ndim != 1:
        raise ValueError(f"expected [samples] or [channels, samples], got shape {tuple(x.shape)}")
    return x


def resample(x: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """[samples] -> [ceil(samples * new / orig)]: torchaudio's band-limited sinc resampling; a no-op when the rates agree.

    The one resampler: its kernel is computed once per pair of rates, and long
    inputs go through it in chunks (:class:`ChunkedResampler`).
    """
    if orig_sr == new_sr:
        return x
    return _resampler(int(orig_sr), int(new_sr))(x)


def log_mel(waveform: np.ndarray | torch.Tensor, sample_rate: int, cfg: FeatureConfig, *,
            chunk_seconds: float | None = None) -> torch.Tensor:
    """Waveform of any rate, channel count and length -> float32 log-mel [M, T], float16-exact.

    T = 1 + samples // hop at ``cfg.sample_rate`` (centred frames). Clips shorter
    than one FFT window are tiled up to it first, so even a 10 ms click has frames.
    Beyond ``chunk_seconds`` (default a minute) the STFT runs chunk by chunk
    (see :func:`_chunked_log_mel`).
    """
    x = resample(to_mono(waveform), sample_rate, cfg.sample_rate)
    if x.numel() == 0:
        raise ValueError("empty waveform")
    if x.numel() <= cfg.n_fft:
        x = x.repeat(cfg.n_fft // x.numel() + 1)
    per_chunk = max(1, int((chunk_seconds or LONG_CHUNK_SECONDS) * cfg.sample_rate) // cfg.hop_length)
    if 1 + x.numel() // cfg.hop_length > per_chunk:
        return _chunked_log_mel(x, cfg, per_chunk)
    spec = torch.stft(
        x,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window=_window(cfg.win_length),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    return _power_to_db_mel(spec, cfg)


def _power_to_db_mel(spec: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """Complex STFT frames [F, T] -> float16-exact dB mel [M, T]: the one place these steps are written."""
    power = spec.real.square() + spec.imag.square()  # [F, T]
    fb = _mel_filters(cfg.n_fft, cfg.n_mels, cfg.sample_rate, cfg.f_min, cfg.f_max or cfg.sample_rate / 2)
    db = 10.0 * torch.log10(torch.clamp(fb.T @ power, min=cfg.amin))  # [M, T]
    return db.half().float()


def fit_frames(
    logmel: torch.Tensor, n_frames: int, policy: ShortPolicy = "tile", start: int | None = None
) -> torch.Tensor:
    """[..., M, T] -> [..., M, n_frames]: crop a window from a long clip, tile or zero-pad a short one.

    ``start`` picks the crop (the trainer passes a random one); None takes the
    centre, so evaluation is deterministic. Tiling repeats the whole clip: a 1 s
    clap stays a clap-shaped input rather than 1 s of sound in 5 s of silence.
    """
    t = logmel.shape[-1]
    if t == n_frames:
        return logmel
    if t > n_frames:
        s = centre_start(t, n_frames) if start is None else max(0, min(int(start), t - n_frames))
        return logmel[..., s : s + n_frames]
    if policy == "tile":
        reps = -(-n_frames // t)
        return logmel.repeat(*([1] * (logmel.ndim - 1)), reps)[..., :n_frames]
    if policy == "noise":
        return torch.cat([logmel, noise_fill(logmel, n_frames)[..., t:]], dim=-1)
    pad = torch.full((*logmel.shape[:-1], n_frames - t), PAD_DB, dtype=logmel.dtype)
    return torch.cat([logmel, pad], dim=-1)


NOISE_FLOOR_QUANTILE = 0.1
NOISE_DB = 2.0


@lru_cache(maxsize=16)
def _noise_pattern(m: int, n_frames: int) -> torch.Tensor:
    """A fixed [M, n_frames] texture (std 2 dB, seed 0): the same in the trainer and the app."""
    return torch.randn(m, n_frames, generator=torch.Generator().manual_seed(0)) * NOISE_DB


def noise_fill(logmel: torch.Tensor, n_frames: int) -> torch.Tensor:
    """[..., M, T] -> [..., M, n_frames]: the clip's own noise floor, to pad a short clip with (``noise`` policy).

    Why: a one-second word tiled to six seconds becomes a periodic train of
    bursts (as a dog's barks are), and a word in five seconds of digital silence
    is a sound no microphone records. Padding with the clip's own background
    (the 10th percentile of each mel bin over time, plus a fixed ±2 dB texture)
    is what a recording of one word in a room looks like. float16-exact, as
    the cache's frames are, so the trainer's windows equal the app's.
    """
    floor = torch.quantile(logmel.float(), NOISE_FLOOR_QUANTILE, dim=-1, keepdim=True)
    fill = floor + _noise_pattern(logmel.shape[-2], n_frames)
    return fill.clamp(min=PAD_DB).half().to(logmel.dtype)


def centre_start(n_total, n_frames):
    """Where a window of ``n_frames`` sits centred in ``n_total`` frames (0 when it does not fit).

    Works on ints and on numpy arrays (the cache's batched crops).
    """
    return np.maximum(np.asarray(n_total) - n_frames, 0) // 2 if isinstance(n_total, np.ndarray) \
        else max(0, (int(n_total) - n_frames) // 2)


def window_starts(n_total: int, n_frames: int, hop_frames: int | None = None, *, after: int | None = None,
                  final: bool = True) -> list[int]:
    """Starts of sliding windows covering a clip of ``n_total`` frames (the last one flush with the end).

    A clip at most 10 % longer than the window gets one centred window (a 6 s
    clip has 517 centred frames for a 516-frame window: one window, not two).
    A stream (:class:`guesser.stream.WindowScorer`) asks as frames arrive with
    ``final=False`` for the next starts on the hop grid ``after`` the last one it
    has that fit in the ``n_total`` frames so far, and at its end
    (``final=True``) for the rest: the flush last window.
    """
    hop = hop_frames or n_frames // 2
    if not final:
        return list(range(0 if after is None else after + hop, n_total - n_frames + 1, hop))
    if n_total <= n_frames:
        starts = [0]
    elif n_total <= n_frames * 1.1:
        starts = [centre_start(n_total, n_frames)]
    else:
        starts = list(range(0, n_total - n_frames + 1, hop))
        if starts[-1] != n_total - n_frames:
            starts.append(n_total - n_frames)
    return starts if after is None else [s for s in starts if s > after]


def normalize(x: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """(x - mean) / std over the mel axis (-2), with the train split's statistics from ``cfg``."""
    if cfg.norm == "none":
        return x
    if cfg.mean is None or cfg.std is None:
        raise ValueError("feature config has no normalisation statistics (compute them on the train split)")
    mean = torch.tensor(cfg.mean, dtype=x.dtype)
    std = torch.tensor(cfg.std, dtype=x.dtype)
    if cfg.norm == "per_mel":
        mean, std = mean[:, None], std[:, None]
    return (x - mean) / std


# ---------------------------------------------------------------- long inputs, bounded memory


def _chunked_log_mel(x: torch.Tensor, cfg: FeatureConfig, per_chunk: int) -> torch.Tensor:
    """:func:`log_mel` of a long signal already at ``cfg.sample_rate``, ``per_chunk`` frames at a time.

    In one pass the STFT's complex frames (8 bytes × 513 bins × 86 frames per
    second: 1.3 GB for ten minutes) would dominate memory, so the signal is
    reflect-padded once exactly as the centred STFT pads it, and cut into
    chunks of whole frames, each transformed with its own n_fft of context;
    frame t is computed from the same samples as in one pass, and the result is
    bit-identical in tests (an FFT or matmul library could round a last bit
    differently for another number of frames; the float16 rounding of the
    log-mel absorbs such differences).
    """
    hop = cfg.hop_length
    n_frames = 1 + x.numel() // hop
    half = cfg.n_fft // 2
    padded = torch.nn.functional.pad(x[None, None], (half, half), mode="reflect")[0, 0]
    out = []
    for t0 in range(0, n_frames, per_chunk):
        t1 = min(n_frames, t0 + per_chunk)
        seg = padded[t0 * hop : (t1 - 1) * hop + cfg.n_fft]
        out.append(_log_mel_frames(seg, cfg))
    return torch.cat(out, dim=-1)


def _log_mel_frames(seg: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """The uncentred frames of ``seg`` through the same power → mel → dB → float16 steps as ``log_mel``."""
    spec = torch.stft(seg, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                      window=_window(cfg.win_length), center=False, return_complex=True)
    return _power_to_db_mel(spec, cfg)


@lru_cache(maxsize=8)
def _resampler(orig_sr: int, new_sr: int) -> "ChunkedResampler":
    """The resampler for one pair of rates, its sinc kernel computed once (not per call)."""
    return ChunkedResampler(orig_sr, new_sr)


class ChunkedResampler:
    """torchaudio's sinc resampler in bounded memory: what :func:`resample` runs.

    The kernel of ``torchaudio.transforms.Resample``, computed in float32 as the
    functional ``torchaudio.functional.resample`` computes it: up to
    ``chunk_seconds`` of input the transform itself runs, bit-identical to the
    functional form (and so to caches built before it was the one resampler). Longer
    inputs would make its strided ``conv1d`` unroll the whole signal at once
    (+870 MB for ten minutes at 44.1 kHz), so the padded signal is cut into
    runs of whole output blocks, each with the kernel's context: every output
    sample comes from the same input samples and weights as in one pass, equal
    to within one float32 rounding (the convolution may sum in another order
    for another length), far below the float16 step of the log-mel after it.
    """

    def __init__(self, orig_sr: int, new_sr: int, chunk_seconds: float = LONG_CHUNK_SECONDS):
        import torchaudio.transforms as T

        self.transform = T.Resample(orig_sr, new_sr, dtype=torch.float32)
        g = math.gcd(orig_sr, new_sr)
        self.orig, self.new = orig_sr // g, new_sr // g  # one output block of `new` samples per `orig` inputs
        self.chunk_samples = max(self.orig, int(chunk_seconds * orig_sr))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """[samples] -> [ceil(samples * new / orig)]."""
        if x.numel() <= self.chunk_samples:
            return self.transform(x)
        kernel, width, o = self.transform.kernel, self.transform.width, self.orig
        k = kernel.shape[-1]
        padded = torch.nn.functional.pad(x[None], (width, width + o))[0]  # as torchaudio pads
        blocks = (padded.numel() - k) // o + 1
        per = max(1, self.chunk_samples // o)
        out = []
        for i0 in range(0, blocks, per):
            i1 = min(blocks, i0 + per)
            seg = padded[i0 * o : (i1 - 1) * o + k]
            out.append(torch.nn.functional.conv1d(seg[None, None], kernel, stride=o)[0].t().reshape(-1))
        target = int(torch.ceil(torch.as_tensor(self.new * x.numel() / o)).long())
        return torch.cat(out)[:target]
