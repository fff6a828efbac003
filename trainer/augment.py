"""Batch augmentations on log-mel tensors, all driven by an explicit ``torch.Generator``.

Two stages, because some augmentations only make sense in decibels and others
after normalisation:

* ``in_db`` (raw dB, before normalisation): random gain, mel-bin shift (a pitch
  shift: the corpus' eval notes are disjoint from its train notes), band
  limiting and high-band filling (the corpus' ESC-50 copy is band-limited to
  8 kHz; see :func:`bandlimit`), and additive mixing of two clips with the union
  of their labels (real mixtures *add* sound; mixup's interpolated labels do not
  describe them).
* ``normalised``: SpecAugment masks and classic mixup.

The *robustness* group (``background_p``, ``eq_p``, ``highpass_p``,
``reverb_p``, ``clip_p``, ``shift_frames``) makes a recording from a laptop in a
room look like the corpus's clean, close clips: a quiet ambient background
from the train split's own noise clips, a microphone's equalisation and
low-cut, a room's reverberation, an overdriven input and a late start. They
act on power in the mel domain, where the cache lives: mixing adds power,
equalisation and gain add decibels, and reverberation is the exponential-decay
model of a diffuse late field (Schroeder/Polack: energy decays by 60 dB over
T60, faster at high frequencies), convolved along time per mel band. That is
coarser than convolving the waveform with a measured impulse response, but
needs no decoding and costs one small convolution per clip.

Each function takes [B, M, T] and a generator and returns new tensors, so a
run is reproducible from its seed and resumable at any step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

FLOOR_DB = -100.0  # 10·log10(amin)


@dataclass(frozen=True)
class AugmentConfig:
    gain_db: float = 0.0  # ± uniform gain
    freq_shift: int = 0  # ± mel bins
    bandlimit_p: float = 0.0  # chance a clip is low-passed at a random cutoff
    bandlimit_min_bin: float = 0.75  # lowest cutoff, as a fraction of the mel bins
    hf_fill_p: float = 0.0  # chance a band-limited clip gets a synthetic high band
    mix_p: float = 0.0  # chance a clip gets another clip added (labels: union)
    mix_db: float = 6.0  # ± level of the added clip
    time_masks: int = 0
    time_width: int = 0
    freq_masks: int = 0
    freq_width: int = 0
    mixup_alpha: float = 0.0  # 0: off
    mixup_p: float = 1.0
    # robustness to real rooms and microphones (see the module doc)
    background_p: float = 0.0  # chance a clip gets an ambient train clip underneath (labels unchanged)
    background_snr_min: float = 10.0  # dB of foreground over background
    background_snr_max: float = 30.0
    eq_p: float = 0.0  # chance of a random smooth equalisation curve
    eq_db: float = 6.0  # its largest deviation, ± dB
    highpass_p: float = 0.0  # chance of a microphone low-cut (bins below a random cut attenuated)
    highpass_max_frac: float = 0.15  # highest cut, as a fraction of the mel bins
    reverb_p: float = 0.0  # chance of a synthetic room
    reverb_t60_min: float = 0.2  # seconds
    reverb_t60_max: float = 1.0
    reverb_drr_min: float = -6.0  # direct-to-reverberant ratio, dB
    reverb_drr_max: float = 12.0
    clip_p: float = 0.0  # chance of an overdriven input (loud frames limited, harmonics added)
    shift_frames: int = 0  # ± frames of circular time shift

    @property
    def active(self) -> bool:
        return any(
            (self.gain_db, self.freq_shift, self.bandlimit_p, self.hf_fill_p, self.mix_p, self.time_masks, self.freq_masks,
             self.mixup_alpha, self.background_p, self.eq_p, self.highpass_p, self.reverb_p, self.clip_p, self.shift_frames)
        )

    @property
    def probabilities(self) -> dict[str, float]:
        """The fields that are chances (recipe validation checks they lie in [0, 1])."""
        return {k: v for k, v in self.__dict__.items() if k.endswith("_p")}


def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def gain(x: torch.Tensor, g: torch.Generator, db: float) -> torch.Tensor:
    """Add a per-clip level in dB (loudness is not a class cue)."""
    return x + _uniform(g, x.shape[0], -db, db)[:, None, None]


def freq_shift(x: torch.Tensor, g: torch.Generator, max_bins: int) -> torch.Tensor:
    """Shift every clip along the mel axis by an integer in [-max_bins, max_bins], repeating the edge bin."""
    b, m, t = x.shape
    shifts = torch.randint(-max_bins, max_bins + 1, (b,), generator=g)
    idx = (torch.arange(m)[None, :] - shifts[:, None]).clamp(0, m - 1)  # [B, M]
    return torch.gather(x, 1, idx[:, :, None].expand(b, m, t))


def bandlimited_from(x: torch.Tensor, tol_db: float = 1.0) -> torch.Tensor:
    """For each clip, the first mel bin above which everything sits at the floor (M when full-band)."""
    at_floor = (x <= FLOOR_DB + tol_db).all(dim=2)  # [B, M]
    # last bin that is NOT all-floor, +1
    m = x.shape[1]
    live = (~at_floor).float() * torch.arange(1, m + 1)[None, :]
    return live.amax(dim=1).long()


def bandlimit(x: torch.Tensor, g: torch.Generator, p: float, min_frac: float) -> torch.Tensor:
    """Low-pass a random subset of clips at a random mel bin by setting the bins above it to the floor.

    Why: in the corpus, ESC-50's copy is band-limited (nothing above 8 kHz), so
    "empty high band" would otherwise be a shortcut to those classes.
    """
    b, m, _ = x.shape
    pick = torch.rand(b, generator=g) < p
    cut = torch.randint(int(min_frac * m), m, (b,), generator=g)
    above = torch.arange(m)[None, :] >= cut[:, None]  # [B, M]
    mask = (pick[:, None] & above)[:, :, None]
    return torch.where(mask, torch.full_like(x, FLOOR_DB), x)


def hf_fill(x: torch.Tensor, g: torch.Generator, p: float) -> torch.Tensor:
    """Give band-limited clips a plausible high band: the top live bin, rolling off by 5-30 dB, plus noise.

    The other half of the band-limit story: a cough heard through a laptop
    microphone has energy above 8 kHz, while the only training coughs have none.
    """
    b, m, t = x.shape
    top = bandlimited_from(x)
    pick = (torch.rand(b, generator=g) < p) & (top < m) & (top > 1)
    if not pick.any():
        return x
    out = x.clone()
    drop = _uniform(g, b, 5.0, 30.0)
    noise = torch.randn(x.shape, generator=g) * 3.0
    for i in torch.nonzero(pick).flatten().tolist():
        c = int(top[i])
        edge = x[i, c - 1 : c, :]  # [1, T]
        ramp = torch.linspace(1.0 / (m - c), 1.0, m - c)[:, None] * drop[i]
        out[i, c:, :] = torch.clamp(edge - ramp + noise[i, c:, :], min=FLOOR_DB)
    return out


def add_mix(x: torch.Tensor, y: torch.Tensor, g: torch.Generator, p: float, db: float, union: bool = True):
    """Add a random partner clip (in power) to a random subset of the batch.

    Multi-label targets become the union (max) of both clips' labels, as in the
    corpus' own mixtures; soft single-label targets become their average.
    """
    b = x.shape[0]
    pick = torch.rand(b, generator=g) < p
    if b < 2 or not pick.any():
        return x, y
    perm = torch.randperm(b, generator=g)
    level = _uniform(g, b, -db, db)[:, None, None]
    mixed = 10.0 * torch.log10(torch.pow(10.0, x / 10.0) + torch.pow(10.0, (x[perm] + level) / 10.0))
    mixed = torch.clamp(mixed, min=FLOOR_DB)
    x = torch.where(pick[:, None, None], mixed, x)
    ym = torch.maximum(y, y[perm]) if union else 0.5 * (y + y[perm])
    y = torch.where(pick[:, None], ym, y)
    return x, y


def _power(x: torch.Tensor) -> torch.Tensor:
    return torch.pow(10.0, x / 10.0)


def _db(p: torch.Tensor) -> torch.Tensor:
    return torch.clamp(10.0 * torch.log10(torch.clamp(p, min=1e-10)), min=FLOOR_DB)


def mean_level_db(x: torch.Tensor) -> torch.Tensor:
    """[B, M, T] dB -> [B] the clip's mean power in dB (what an SNR compares)."""
    return 10.0 * torch.log10(_power(x).mean(dim=(1, 2)).clamp(min=1e-10))


def add_background(x: torch.Tensor, bg: torch.Tensor, g: torch.Generator, p: float, snr_min: float,
                   snr_max: float) -> torch.Tensor:
    """Put ``bg`` (ambient train clips, [B, M, T] dB) under a random subset of ``x`` at a random SNR.

    The targets stay: the background is a nuisance a few tens of dB down, like
    a fridge or traffic behind the sound a person wants named.
    """
    b = x.shape[0]
    pick = torch.rand(b, generator=g) < p
    snr = _uniform(g, b, snr_min, snr_max)
    if not pick.any():
        return x
    level = (mean_level_db(x) - mean_level_db(bg) - snr)[:, None, None]
    mixed = _db(_power(x) + _power(bg + level))
    return torch.where(pick[:, None, None], mixed, x)


def equalize(x: torch.Tensor, g: torch.Generator, p: float, max_db: float) -> torch.Tensor:
    """Add a random smooth curve over the mel bins (a microphone's or a room's colouring), within ± max_db.

    The curve is a sum of the first three cosines over the mel axis with random
    phases and weights, scaled so its largest excursion is a random fraction of
    ``max_db``. Floor bins stay at the floor (no energy appears from nothing).
    """
    b, m, _ = x.shape
    pick = torch.rand(b, generator=g) < p
    pos = torch.linspace(0, math.pi, m)[None, :]  # [1, M]
    curve = torch.zeros(b, m)
    for k in (1, 2, 3):
        curve += torch.randn(b, 1, generator=g) / k * torch.cos(k * pos + 2 * math.pi * torch.rand(b, 1, generator=g))
    peak = curve.abs().amax(dim=1, keepdim=True).clamp(min=1e-6)
    curve = curve / peak * max_db * torch.rand(b, 1, generator=g)
    out = torch.where(x > FLOOR_DB + 1e-3, x + curve[:, :, None], x)
    return torch.where(pick[:, None, None], out.clamp(min=FLOOR_DB), x)


def highpass(x: torch.Tensor, g: torch.Generator, p: float, max_frac: float) -> torch.Tensor:
    """A microphone's low-cut: bins below a random cut lose 12 dB per bin of distance (a steep roll-off)."""
    b, m, _ = x.shape
    pick = torch.rand(b, generator=g) < p
    cut = (torch.rand(b, generator=g) * max_frac * m).long().clamp(min=1)  # [B]
    dist = (cut[:, None] - torch.arange(m)[None, :]).clamp(min=0).float()  # [B, M]: 0 at and above the cut
    out = (x - 12.0 * dist[:, :, None]).clamp(min=FLOOR_DB)
    return torch.where(pick[:, None, None], out, x)


def reverb_kernel(t60: float, frames_per_second: float, m: int, length: int) -> torch.Tensor:
    """[M, 1, length] energy decay of a diffuse late field, 0 at lag 0; high bins decay twice as fast.

    Energy falls by 60 dB over T60 seconds: exp(-13.8 · t / T60) in power
    (10·log10(e^-13.8) = -60 dB), with T60 shrinking linearly to half its value
    at the top mel bin (air and walls absorb high frequencies more). Each row
    sums to 1, so a kernel's output has the input's energy, rescaled by the DRR.
    """
    t = torch.arange(length, dtype=torch.float32)[None, :] / frames_per_second  # [1, L]
    t60_f = t60 * (1.0 - 0.5 * torch.linspace(0, 1, m))[:, None]  # [M, 1]
    k = torch.exp(-13.8 * t / t60_f)
    k[:, 0] = 0.0
    return (k / k.sum(dim=1, keepdim=True).clamp(min=1e-12))[:, None, :]


def reverberate(x: torch.Tensor, g: torch.Generator, p: float, frames_per_second: float, t60_min: float,
                t60_max: float, drr_min: float, drr_max: float) -> torch.Tensor:
    """Add a synthetic room's reverberant tail (see :func:`reverb_kernel`) at a random DRR to a random subset."""
    b, m, t = x.shape
    pick = torch.rand(b, generator=g) < p
    t60 = _uniform(g, b, t60_min, t60_max)
    drr = _uniform(g, b, drr_min, drr_max)
    if not pick.any():
        return x
    out = x.clone()
    for i in torch.nonzero(pick).flatten().tolist():
        length = max(2, min(t, int(float(t60[i]) * frames_per_second)))
        kern = reverb_kernel(float(t60[i]), frames_per_second, m, length)
        power = _power(x[i])  # [M, T]
        tail = torch.nn.functional.conv1d(torch.nn.functional.pad(power[None], (length - 1, 0)),
                                          kern.flip(-1), groups=m)[0]  # causal: the past rings on
        out[i] = _db(power + tail * 10.0 ** (-float(drr[i]) / 10.0))
    return out


def clip_overdrive(x: torch.Tensor, g: torch.Generator, p: float) -> torch.Tensor:
    """An overdriven input: frames louder than a random threshold are limited to it, and the power cut
    from them reappears as a flat, broadband distortion floor 20 dB down (clipping's odd harmonics)."""
    b, m, _ = x.shape
    pick = torch.rand(b, generator=g) < p
    below = _uniform(g, b, 3.0, 12.0)
    if not pick.any():
        return x
    power = _power(x)
    frame = power.sum(dim=1, keepdim=True)  # [B, 1, T]
    thresh = frame.amax(dim=2, keepdim=True) * torch.pow(10.0, -below / 10.0)[:, None, None]
    scale = torch.where(frame > thresh, thresh / frame.clamp(min=1e-12), torch.ones_like(frame))
    removed = (frame * (1 - scale)) / m  # per bin
    out = _db(power * scale + 0.01 * removed)
    return torch.where(pick[:, None, None], out, x)


def time_shift(x: torch.Tensor, g: torch.Generator, max_frames: int) -> torch.Tensor:
    """Roll each clip by a random number of frames in [-max_frames, max_frames] (a late or early start)."""
    b, _, t = x.shape
    shifts = torch.randint(-max_frames, max_frames + 1, (b,), generator=g)
    idx = (torch.arange(t)[None, :] - shifts[:, None]) % t  # [B, T]
    return torch.gather(x, 2, idx[:, None, :].expand_as(x))


def spec_augment(x: torch.Tensor, g: torch.Generator, time_masks: int, time_width: int, freq_masks: int, freq_width: int,
                 fill: float | str = 0.0) -> torch.Tensor:
    """SpecAugment (Park et al. 2019): blank random time and frequency stripes.

    Stripes become ``fill``: 0 (the mean) for a normalised batch, or ``"mean"``
    (each clip's own mean) for raw decibels, as fed to CNN6 whose bn0 normalises
    inside the model; a 0 dB stripe there would be a loud tone, not a gap.
    """
    b, m, t = x.shape
    keep = torch.ones(b, m, t, dtype=torch.bool)
    for n, width, size, axis in ((time_masks, time_width, t, 2), (freq_masks, freq_width, m, 1)):
        for _ in range(n):
            w = torch.randint(0, width + 1, (b,), generator=g)
            s = (torch.rand(b, generator=g) * (size - w + 1).float()).long()
            pos = torch.arange(size)[None, :]
            stripe = (pos >= s[:, None]) & (pos < (s + w)[:, None])  # [B, size]
            keep &= ~(stripe[:, None, :] if axis == 2 else stripe[:, :, None])
    if fill == "mean":
        return torch.where(keep, x, x.mean(dim=(1, 2), keepdim=True))
    return x * keep if fill == 0.0 else torch.where(keep, x, torch.full_like(x, float(fill)))


def mixup(x: torch.Tensor, y: torch.Tensor, g: torch.Generator, alpha: float, p: float = 1.0):
    """Classic mixup (Zhang et al. 2018): a convex blend of inputs and of targets, one λ per clip."""
    b = x.shape[0]
    if b < 2:
        return x, y
    lam = _beta_from_uniform(torch.rand(b, generator=g), alpha)  # from the generator: reproducible
    lam = torch.where(torch.rand(b, generator=g) < p, torch.maximum(lam, 1 - lam), torch.ones(b))
    perm = torch.randperm(b, generator=g)
    x = lam[:, None, None] * x + (1 - lam[:, None, None]) * x[perm]
    y = lam[:, None] * y + (1 - lam[:, None]) * y[perm]
    return x, y


def _beta_from_uniform(u: torch.Tensor, alpha: float) -> torch.Tensor:
    """Inverse-CDF sample of Beta(α, α) from uniforms, so λ comes from the step's generator."""
    from scipy.special import betaincinv

    return torch.as_tensor(betaincinv(alpha, alpha, u.double().numpy()), dtype=torch.float32)


def augment_db(x: torch.Tensor, y: torch.Tensor, g: torch.Generator, cfg: AugmentConfig, multilabel: bool,
               background: torch.Tensor | None = None, frames_per_second: float = 50.0):
    """The decibel-domain stage (see module doc).

    ``background`` is a [B, M, T] batch of ambient train clips for
    ``background_p`` (None: skipped); ``frames_per_second`` sets the time scale
    of the reverberation.
    """
    # (enabled, step) in a fixed order: each draws from ``g`` only when enabled, so a recipe's batches
    # are a function of its seed alone (resume stays exact)
    steps: list[tuple[object, Callable[[torch.Tensor], torch.Tensor]]] = [
        (cfg.reverb_p, lambda v: reverberate(v, g, cfg.reverb_p, frames_per_second, cfg.reverb_t60_min,
                                             cfg.reverb_t60_max, cfg.reverb_drr_min, cfg.reverb_drr_max)),
        (cfg.background_p and background is not None,
         lambda v: add_background(v, background, g, cfg.background_p, cfg.background_snr_min, cfg.background_snr_max)),
        (cfg.clip_p, lambda v: clip_overdrive(v, g, cfg.clip_p)),
        (cfg.eq_p, lambda v: equalize(v, g, cfg.eq_p, cfg.eq_db)),
        (cfg.highpass_p, lambda v: highpass(v, g, cfg.highpass_p, cfg.highpass_max_frac)),
        (cfg.shift_frames, lambda v: time_shift(v, g, cfg.shift_frames)),
        (cfg.hf_fill_p, lambda v: hf_fill(v, g, cfg.hf_fill_p)),
        (cfg.bandlimit_p, lambda v: bandlimit(v, g, cfg.bandlimit_p, cfg.bandlimit_min_bin)),
        (cfg.gain_db, lambda v: gain(v, g, cfg.gain_db)),
        (cfg.freq_shift, lambda v: freq_shift(v, g, cfg.freq_shift)),
    ]
    for enabled, step in steps:
        if enabled:
            x = step(x)
    if cfg.mix_p:
        x, y = add_mix(x, y, g, cfg.mix_p, cfg.mix_db, union=multilabel)
    return x, y


def augment_normalised(x: torch.Tensor, y: torch.Tensor, g: torch.Generator, cfg: AugmentConfig,
                       fill: float | str = 0.0):
    """The normalised-domain stage (see module doc); ``fill`` as in :func:`spec_augment`."""
    if cfg.time_masks or cfg.freq_masks:
        x = spec_augment(x, g, cfg.time_masks, cfg.time_width, cfg.freq_masks, cfg.freq_width, fill)
    if cfg.mixup_alpha > 0:
        x, y = mixup(x, y, g, cfg.mixup_alpha, cfg.mixup_p)
    return x, y
