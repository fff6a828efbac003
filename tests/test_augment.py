"""Augmentations: each one's defining property, and reproducibility from the generator alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.augment import (
    FLOOR_DB,
    AugmentConfig,
    add_mix,
    augment_db,
    augment_normalised,
    bandlimit,
    bandlimited_from,
    freq_shift,
    gain,
    hf_fill,
    mixup,
    spec_augment,
)

B, M, T = 6, 32, 50


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(seed: int = 0) -> torch.Tensor:
    """A dB-like batch in [-80, 0] with no bin at the floor."""
    return -80 + 80 * torch.rand(B, M, T, generator=gen(seed))


def test_spec_augment_zeroes_whole_stripes_within_the_widths():
    x = torch.randn(B, M, T, generator=gen(1)) + 5.0  # no natural zeros
    out = spec_augment(x, gen(2), time_masks=2, time_width=7, freq_masks=1, freq_width=5)
    assert out.shape == x.shape
    zero = out == 0
    kept = ~zero
    assert torch.equal(out[kept], x[kept])
    for b in range(B):
        cols = zero[b].all(dim=0)  # time frames zeroed over every mel bin
        rows = zero[b].all(dim=1)  # mel bins zeroed over every frame
        assert int(cols.sum()) <= 2 * 7 and int(rows.sum()) <= 5
        assert torch.equal(zero[b], cols[None, :] | rows[:, None])  # nothing but stripes
    assert torch.equal(spec_augment(x, gen(3), 2, 0, 2, 0), x)  # width 0: untouched


def test_mixup_blends_inputs_and_targets_with_the_same_weights():
    # clip i is the constant i and has the one-hot target i: its mixed value must equal its mixed target's mean
    x = torch.arange(B, dtype=torch.float32)[:, None, None].expand(B, M, T).clone()
    y = torch.eye(B)
    xm, ym = mixup(x, y, gen(4), alpha=0.4)
    assert torch.allclose(ym.sum(dim=1), torch.ones(B))
    assert torch.allclose(xm[:, 0, 0], ym @ torch.arange(B, dtype=torch.float32), atol=1e-5)
    assert torch.all(ym.max(dim=1).values >= 0.5 - 1e-6)  # λ = max(λ, 1-λ): a clip keeps its own label on top
    assert torch.equal(xm, xm[:, :1, :1].expand(B, M, T))
    x0, y0 = mixup(x, y, gen(4), alpha=0.4, p=0.0)
    assert torch.equal(x0, x) and torch.equal(y0, y)


def test_freq_shift_moves_each_clip_by_a_bounded_whole_number_of_bins():
    x = batch(5)
    out = freq_shift(x, gen(6), max_bins=3)
    for b in range(B):
        matches = []
        for s in range(-3, 4):
            idx = (torch.arange(M) - s).clamp(0, M - 1)
            if torch.equal(out[b], x[b, idx]):
                matches.append(s)
        assert matches, f"clip {b} is not a shift of its input by at most 3 bins"


def test_gain_adds_one_level_per_clip():
    x = batch(7)
    d = gain(x, gen(8), 6.0) - x
    per_clip = d[:, :1, :1]
    assert torch.allclose(d, per_clip.expand_as(d), atol=1e-4) and per_clip.abs().max() <= 6.0


def test_bandlimit_floors_the_bins_above_a_cutoff():
    x = batch(9)
    out = bandlimit(x, gen(10), p=1.0, min_frac=0.5)
    cut = bandlimited_from(out)
    assert torch.all(cut >= M // 2) and torch.all(cut < M)
    for b in range(B):
        c = int(cut[b])
        assert torch.equal(out[b, :c], x[b, :c]) and torch.all(out[b, c:] == FLOOR_DB)
    assert torch.equal(bandlimit(x, gen(10), p=0.0, min_frac=0.5), x)


def test_hf_fill_only_touches_the_empty_high_band():
    loud = -20 + 20 * torch.rand(B, M, T, generator=gen(11))  # -20..0 dB: a 5-30 dB roll-off stays above the floor
    x = bandlimit(loud, gen(12), p=1.0, min_frac=0.5)
    top = bandlimited_from(x)
    out = hf_fill(x, gen(13), p=1.0)
    for b in range(B):
        c = int(top[b])
        assert torch.equal(out[b, :c], x[b, :c])
        assert torch.all(out[b, c:] > FLOOR_DB)  # now has energy …
        assert torch.all(out[b, c:] <= x[b, c - 1] + 15.0)  # … below the edge frame by frame (noise: σ 3 dB)


def test_additive_mix_adds_power_and_unites_labels():
    x = batch(14)
    y = torch.zeros(B, 5)
    y[torch.arange(B), torch.arange(B) % 5] = 1
    xm, ym = add_mix(x, y, gen(15), p=0.5, db=6.0)
    changed = [b for b in range(B) if not torch.equal(xm[b], x[b])]
    assert 0 < len(changed) < B
    for b in range(B):
        if b in changed:
            assert torch.all(xm[b] >= x[b] - 1e-4)  # adding a sound never lowers a bin's power
            assert ym[b].sum() >= 1 and torch.all(ym[b] >= y[b])  # the union: own label kept
        else:
            assert torch.equal(ym[b], y[b])
    _, soft = add_mix(x, torch.eye(B), gen(15), p=1.0, db=6.0, union=False)
    assert torch.allclose(soft.sum(dim=1), torch.ones(B))  # single-label targets stay a distribution


def test_the_whole_pipeline_is_a_function_of_the_generator_seed():
    cfg = AugmentConfig(gain_db=3, freq_shift=2, bandlimit_p=0.5, hf_fill_p=0.5, mix_p=0.5, time_masks=2,
                        time_width=5, freq_masks=2, freq_width=4, mixup_alpha=0.3)
    x, y = batch(16), torch.eye(B)

    def run(seed):
        g = gen(seed)
        a, b = augment_db(x, y, g, cfg, multilabel=True)
        return augment_normalised((a + 40) / 20, b, g, cfg)

    (x1, y1), (x2, y2), (x3, _) = run(1), run(1), run(2)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    assert not cfg.__class__().active and cfg.active


@pytest.mark.parametrize("policy", ["tile", "pad"])
def test_random_crops_are_windows_of_the_clip_and_reproducible(fsd_cache, policy):
    split = fsd_cache.split("train")
    n = 43
    idx = np.arange(len(split))
    a = split.crops(idx, n, np.random.default_rng(3), policy=policy)
    b = split.crops(idx, n, np.random.default_rng(3), policy=policy)
    assert np.array_equal(a, b)
    for i in idx:
        clip = split.clip(int(i))
        if clip.shape[1] >= n:  # a long clip: some contiguous window of it
            starts = [s for s in range(clip.shape[1] - n + 1) if np.array_equal(clip[:, s:s + n], a[i])]
            assert starts
    long_clips = [i for i in idx if split.clip(int(i)).shape[1] > n + 20]
    c = split.crops(long_clips, n, np.random.default_rng(4), policy=policy)
    assert not np.array_equal(a[long_clips], c)  # another seed, other crops


def test_spec_augment_fills_raw_decibels_with_each_clips_mean():
    # raw dB (CNN6's input, normalised inside the model): a stripe must be the clip's mean, not a loud 0 dB
    x = batch(11)
    out = spec_augment(x, gen(12), time_masks=2, time_width=9, freq_masks=2, freq_width=6, fill="mean")
    changed = out != x
    assert changed.any()
    means = x.mean(dim=(1, 2))
    for b in range(B):
        assert torch.allclose(out[b][changed[b]], means[b].expand(int(changed[b].sum())))
