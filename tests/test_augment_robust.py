"""The robustness augmentations (background, equalisation, low-cut, reverberation, overdrive, shift)
and the ``noise`` short-clip policy: each one's defining property, checked against a direct computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from guesser.features import PAD_DB, FeatureConfig, fit_frames, noise_fill
from trainer.augment import (
    FLOOR_DB,
    AugmentConfig,
    add_background,
    augment_db,
    clip_overdrive,
    equalize,
    highpass,
    mean_level_db,
    reverb_kernel,
    reverberate,
    time_shift,
)
from trainer.background import ambient_clips

B, M, T = 5, 24, 80


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(seed: int = 0) -> torch.Tensor:
    return -70 + 60 * torch.rand(B, M, T, generator=gen(seed))


def test_background_sits_at_the_drawn_snr():
    x, bg = batch(0), batch(1) - 20
    out = add_background(x, bg, gen(2), p=1.0, snr_min=15.0, snr_max=15.0)
    # mixed power = x power + bg power scaled to 15 dB below x's mean level
    expected = 10 * np.log10(np.mean(10 ** (x.numpy() / 10), axis=(1, 2)) * (1 + 10 ** (-15 / 10)))
    assert np.allclose(mean_level_db(out).numpy(), expected, atol=1e-3)
    assert (out >= x - 1e-4).all()  # adding power never lowers a bin


def test_background_p0_is_identity():
    x = batch(0)
    assert torch.equal(add_background(x, batch(1), gen(2), p=0.0, snr_min=10, snr_max=20), x)


def test_equalize_is_smooth_and_bounded():
    x = batch(3)
    out = equalize(x, gen(4), p=1.0, max_db=6.0)
    diff = out - x
    assert diff.abs().max() <= 6.0 + 1e-4
    assert torch.allclose(diff, diff[:, :, :1].expand_as(diff), atol=1e-4)  # one curve per clip, constant in time
    assert (diff[:, 1:, 0] - diff[:, :-1, 0]).abs().max() < 6.0 * 3 * math.pi / (M - 1) + 1e-3  # smooth over mels


def test_highpass_attenuates_only_below_the_cut():
    x = batch(5)
    out = highpass(x, gen(6), p=1.0, max_frac=0.5)
    diff = (x - out).amax(dim=2)  # [B, M]
    for d in diff:
        cut = int((d > 1e-4).nonzero().max()) + 1 if (d > 1e-4).any() else 0
        assert torch.all(d[cut:] < 1e-4) and torch.all(d[:cut] > 0)


def test_reverb_kernel_decays_60_db_over_t60():
    fps, t60 = 100.0, 0.5
    k = reverb_kernel(t60, fps, m=4, length=200)[:, 0, :]
    assert torch.allclose(k.sum(dim=1), torch.ones(4))
    drop_db = 10 * torch.log10(k[0, 1] / k[0, 1 + int(t60 * fps)])
    assert abs(float(drop_db) - 60.0) < 0.5
    assert k[-1, 10] < k[0, 10]  # the top bin rings for a shorter time


def test_reverb_adds_a_tail_after_an_impulse():
    x = torch.full((1, M, T), FLOOR_DB)
    x[0, :, 10] = -10.0
    out = reverberate(x, gen(7), p=1.0, frames_per_second=50.0, t60_min=0.5, t60_max=0.5, drr_min=0.0, drr_max=0.0)
    assert torch.all(out[0, :, :10] < FLOOR_DB + 3.1)  # causal: before the sound only the floor (at most doubled)
    tail = out[0, 0, 11:30]
    assert torch.all(tail > FLOOR_DB + 10) and torch.all(tail[1:] < tail[:-1])  # a decaying tail


def test_overdrive_limits_the_loudest_frames():
    x = batch(8)
    out = clip_overdrive(x, gen(9), p=1.0)
    frame_in = (10 ** (x / 10)).sum(dim=1)
    frame_out = (10 ** (out / 10)).sum(dim=1)
    assert torch.all(frame_out.amax(dim=1) < frame_in.amax(dim=1))
    assert torch.all(frame_out <= frame_in * 1.0001 + 1e-9)


def test_time_shift_is_a_roll():
    x = batch(10)
    out = time_shift(x, gen(11), max_frames=7)
    for i in range(B):
        assert any(torch.equal(out[i], torch.roll(x[i], s, dims=1)) for s in range(-7, 8))


def test_augment_db_is_reproducible_with_all_robustness_options():
    cfg = AugmentConfig(background_p=0.5, eq_p=0.5, highpass_p=0.5, reverb_p=0.5, clip_p=0.5, shift_frames=3)
    y = torch.zeros(B, 3)
    a, _ = augment_db(batch(0), y, gen(1), cfg, True, background=batch(2), frames_per_second=50)
    b, _ = augment_db(batch(0), y, gen(1), cfg, True, background=batch(2), frames_per_second=50)
    assert torch.equal(a, b) and not torch.equal(a, batch(0))
    assert torch.isfinite(a).all() and a.min() >= FLOOR_DB


def test_ambient_clips_are_those_with_only_ambient_labels():
    vocab = ("Rain", "Speech", "Engine", "Dog")
    targets = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], np.uint8)
    assert ambient_clips(targets, vocab).tolist() == [0, 2]


def test_noise_policy_pads_with_the_clips_own_floor():
    lm = torch.full((M, 20), -60.0)
    lm[:, 5:8] = -10.0  # a short burst over a -60 dB background
    lm = lm.half().float()
    out = fit_frames(lm, 100, "noise")
    assert out.shape == (M, 100) and torch.equal(out[:, :20], lm)
    pad = out[:, 20:]
    assert abs(float(pad.mean()) + 60.0) < 0.5 and 1.0 < float(pad.std()) < 3.0
    assert torch.equal(pad, pad.half().float())  # float16-exact, as the cache


def test_noise_policy_matches_between_cache_crops_and_app(tmp_path):
    """The trainer's centre windows (no rng) equal the app's fit_frames for the noise policy."""
    from trainer.cache import CachedSplit

    rng = np.random.default_rng(0)
    blocks = [(-80 + 60 * rng.random((M, n))).astype(np.float16) for n in (7, 30, 120)]
    frames = np.concatenate([b.reshape(-1) for b in blocks])
    lengths = np.array([b.shape[1] for b in blocks])
    split = CachedSplit("x", frames, np.array(["a", "b", "c"]), np.cumsum(lengths) - lengths, lengths,
                        np.zeros((3, 2), np.uint8), ("A", "B"), n_mels=M)
    crops = split.crops([0, 1, 2], 50, None, policy="noise")
    for i, blk in enumerate(blocks):
        app = fit_frames(torch.from_numpy(blk.astype(np.float32)), 50, "noise")
        assert np.array_equal(crops[i], app.numpy())
    with_rng = split.crops([0, 1], 50, np.random.default_rng(1), policy="noise")
    assert with_rng.shape == (2, M, 50) and np.isfinite(with_rng).all()


def test_noise_fill_of_digital_silence_stays_at_the_floor():
    lm = torch.full((4, 10), PAD_DB)
    assert noise_fill(lm, 30).min() >= PAD_DB


@pytest.mark.parametrize("short", ["tile", "pad", "noise"])
def test_feature_config_round_trips_the_short_policy(short):
    cfg = FeatureConfig(short=short)
    assert FeatureConfig.from_dict(cfg.to_dict()).short == short
