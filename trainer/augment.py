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

Each function takes [B, M, T] and a generator and returns new tensors, so a
run is reproducible from its seed and resumable at any step.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    @property
    def active(self) -> bool:
        return any(
            (self.gain_db, self.freq_shift, self.bandlimit_p, self.hf_fill_p, self.mix_p, self.time_masks, self.freq_masks, self.mixup_alpha)
        )


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


def augment_db(x: torch.Tensor, y: torch.Tensor, g: torch.Generator, cfg: AugmentConfig, multilabel: bool):
    """The decibel-domain stage (see module doc)."""
    if cfg.hf_fill_p:
        x = hf_fill(x, g, cfg.hf_fill_p)
    if cfg.bandlimit_p:
        x = bandlimit(x, g, cfg.bandlimit_p, cfg.bandlimit_min_bin)
    if cfg.gain_db:
        x = gain(x, g, cfg.gain_db)
    if cfg.freq_shift:
        x = freq_shift(x, g, cfg.freq_shift)
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
