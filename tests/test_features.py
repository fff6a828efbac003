"""The log-mel front-end against independent references (numpy STFT, the slaney formula, physics).

Nothing here calls torchaudio or librosa for a reference: the mel filters come
from the published slaney formula written out in numpy, the log-mel from a
numpy framing + rfft, resampling is judged against sines generated directly
at the target rate and against aliasing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from guesser.audio import load_audio
from guesser.features import (
    PAD_DB,
    PANNS,
    SEED_CNN,
    FeatureConfig,
    _mel_filters,
    fit_frames,
    log_mel,
    normalize,
    resample,
    to_mono,
    window_starts,
)
from guesser.scoring import windows


def model_windows(samples, sample_rate: int, cfg: FeatureConfig, hop_seconds: float | None = None):
    """What the app shows a model: ([W, 1, M, clip_frames] normalised inputs, window starts)."""
    wins = windows(log_mel(samples, sample_rate, cfg), cfg, hop_seconds)
    return wins.inputs(), list(wins.starts)

@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small STFTs gain nothing from threads, and on a busy 2-core machine threads cost 10x."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def live(fsd_tree, fsd_cache) -> dict:
    """fname -> (decoded audio, live log-mel) for every clip of the fixture, computed once."""
    out = {}
    for c in fsd_tree.clips:
        audio = load_audio(c.path)
        out[c.fname] = (audio, log_mel(audio.samples, audio.sample_rate, fsd_cache.features))
    return out


# ---------------------------------------------------------------- independent references


def hz_to_mel(f):
    """Slaney (Auditory Toolbox) mel scale: linear below 1 kHz, logarithmic above."""
    f = np.atleast_1d(np.asarray(f, np.float64))
    m = 3.0 * f / 200.0
    hi = f >= 1000.0
    m[hi] = 15.0 + np.log(f[hi] / 1000.0) / (math.log(6.4) / 27.0)
    return m


def mel_to_hz(m):
    m = np.atleast_1d(np.asarray(m, np.float64))
    f = 200.0 * m / 3.0
    hi = m >= 15.0
    f[hi] = 1000.0 * np.exp((math.log(6.4) / 27.0) * (m[hi] - 15.0))
    return f


def slaney_filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float, freqs=None) -> np.ndarray:
    """[M, len(freqs)] triangles between mel-spaced edges, each scaled to unit area (2 / width)."""
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1) if freqs is None else np.asarray(freqs, np.float64)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin)[0], hz_to_mel(fmax)[0], n_mels + 2))
    w = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        rise = (freqs - edges[i]) / (edges[i + 1] - edges[i])
        fall = (edges[i + 2] - freqs) / (edges[i + 2] - edges[i + 1])
        w[i] = np.maximum(0, np.minimum(rise, fall)) * 2.0 / (edges[i + 2] - edges[i])
    return w


def numpy_log_mel(x: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """float64 [M, T]: reflect-padded centred frames, periodic Hann, |rfft|², slaney mel, 10·log10."""
    pad = cfg.n_fft // 2
    xp = np.pad(x.astype(np.float64), pad, mode="reflect")
    n = 1 + len(x) // cfg.hop_length
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.n_fft) / cfg.n_fft)
    frames = np.stack([xp[t * cfg.hop_length : t * cfg.hop_length + cfg.n_fft] * win for t in range(n)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # [T, F]
    fb = slaney_filters(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max or cfg.sample_rate / 2)
    return 10 * np.log10(np.maximum(power @ fb.T, cfg.amin)).T


def tones(sr: int, seconds: float, freqs=(220.0, 660.0, 1500.0, 3100.0, 5200.0, 8000.0)) -> np.ndarray:
    """A sum of slowly amplitude-modulated sines, computed directly at ``sr`` (no resampling involved)."""
    t = np.arange(int(round(seconds * sr))) / sr
    x = sum((0.5 + 0.4 * np.sin(2 * np.pi * (0.7 + k) * t)) * np.sin(2 * np.pi * f * t + k) for k, f in enumerate(freqs))
    return (0.15 * x).astype(np.float32)


# ---------------------------------------------------------------- filters and the log-mel itself


@pytest.mark.parametrize("cfg", [SEED_CNN, PANNS], ids=["seed", "panns"])
def test_mel_filters_match_the_slaney_formula(cfg: FeatureConfig):
    ours = _mel_filters(cfg.n_fft, cfg.n_mels, cfg.sample_rate, cfg.f_min, cfg.f_max or cfg.sample_rate / 2).numpy()
    ref = slaney_filters(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max or cfg.sample_rate / 2)
    assert ours.shape == (cfg.n_fft // 2 + 1, cfg.n_mels)
    np.testing.assert_allclose(ours.T, ref, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("cfg", [SEED_CNN, PANNS], ids=["seed", "panns"])
def test_log_mel_matches_a_numpy_reference(cfg: FeatureConfig):
    rng = np.random.default_rng(1)
    x = (0.1 * rng.standard_normal(int(1.3 * cfg.sample_rate)) + tones(cfg.sample_rate, 1.3)).astype(np.float32)
    ours = log_mel(x, cfg.sample_rate, cfg).numpy()
    ref = numpy_log_mel(x, cfg)
    assert ours.shape == ref.shape == (cfg.n_mels, 1 + len(x) // cfg.hop_length)
    # float16 rounding (half an ulp: |x|·2^-11) plus float32 arithmetic
    assert np.all(np.abs(ours - ref) <= np.abs(ref) * 2.0**-11 + 2e-3)


def test_log_mel_is_float16_exact_and_floored():
    x = tones(22050, 1.0)
    x[5000:9000] = 0  # digital silence inside
    lm = log_mel(x, 22050, SEED_CNN)
    assert lm.dtype == torch.float32
    assert torch.equal(lm, lm.half().float())
    assert lm.min().item() == pytest.approx(10 * math.log10(SEED_CNN.amin), abs=0.05)


def test_six_seconds_give_128_by_516():
    x = tones(22050, 6.0)
    lm = log_mel(x, 22050, SEED_CNN)
    assert lm.shape == (128, 1 + 6 * 22050 // 256) == (128, 517)
    assert SEED_CNN.clip_frames == 516
    cfg = SEED_CNN.with_stats([-40.0], [20.0])
    wins, starts = model_windows(x, 22050, cfg)
    assert wins.shape == (1, 1, 128, 516) and starts == [0]
    assert PANNS.clip_frames == 600 and log_mel(tones(32000, 6.0), 32000, PANNS).shape == (64, 601)


@pytest.mark.parametrize("samples", [1, 10, 220, 1024, 1025, 22050])
def test_frame_count_and_tiny_clips(samples: int):
    x = np.sin(np.arange(samples) * 0.3).astype(np.float32)
    lm = log_mel(x, 22050, SEED_CNN)
    if samples > SEED_CNN.n_fft:
        assert lm.shape[1] == 1 + samples // 256  # centred frames
    else:  # tiled past one FFT window first: at least a window's worth of frames
        assert lm.shape[1] >= 1 + SEED_CNN.n_fft // 256
    assert torch.isfinite(lm).all()
    with pytest.raises(ValueError, match="empty"):
        log_mel(np.zeros(0, np.float32), 22050, SEED_CNN)


# ---------------------------------------------------------------- channels and rates


def test_to_mono_is_the_channel_mean():
    x = np.stack([np.ones(5), 3 * np.ones(5)]).astype(np.float32)
    assert torch.equal(to_mono(x), torch.full((5,), 2.0))
    assert to_mono(np.ones(4, np.float32)).shape == (4,)
    with pytest.raises(ValueError, match="channels, samples"):
        to_mono(np.ones((1, 2, 3), np.float32))


def test_resampling_preserves_a_sine():
    src = torch.from_numpy(np.sin(2 * np.pi * 1000 * np.arange(48000) / 48000).astype(np.float32))
    out = resample(src, 48000, 22050).numpy()
    ref = np.sin(2 * np.pi * 1000 * np.arange(22050) / 22050)
    assert out.shape == (22050,)
    mid = slice(200, -200)  # away from the edges, where the sinc kernel sees zeros
    assert np.abs(out[mid] - ref[mid]).max() < 5e-3
    assert resample(src, 48000, 48000) is src


def test_resampling_removes_what_would_alias():
    """15 kHz cannot exist at 22.05 kHz: without the low-pass it would fold to 7.05 kHz."""
    src = torch.from_numpy(np.sin(2 * np.pi * 15000 * np.arange(48000) / 48000).astype(np.float32))
    out = resample(src, 48000, 22050).numpy()[500:-500]
    assert np.sqrt(np.mean(out**2)) < 0.01 * np.sqrt(0.5)


@pytest.mark.parametrize("freq", [150.0, 440.0, 1000.0, 2500.0, 6000.0, 9500.0])
@pytest.mark.parametrize("rate", [22050, 48000])
def test_a_sine_peaks_in_the_mel_bin_the_formula_predicts(freq: float, rate: int):
    x = np.sin(2 * np.pi * freq * np.arange(rate) / rate).astype(np.float32)
    lm = log_mel(x, rate, SEED_CNN)
    expected = int(np.argmax(slaney_filters(22050, 1024, 128, 0.0, 11025.0, freqs=[freq])[:, 0]))
    peak = torch.mode(lm[:, 5:-5].argmax(dim=0)).values.item()
    assert peak == expected


@pytest.mark.parametrize("rate, channels", [(48000, 2), (44100, 1), (44100, 2), (32000, 1)])
def test_other_rates_and_stereo_match_mono_22k(rate: int, channels: int):
    """The same sound recorded at 48 kHz stereo and at 22.05 kHz mono gives the same features."""
    ref = log_mel(tones(22050, 3.0), 22050, SEED_CNN)
    x = tones(rate, 3.0)
    if channels == 2:
        x = np.stack([1.3 * x, 0.7 * x])  # mean is x: level and balance differ, the sound does not
    got = log_mel(x, rate, SEED_CNN)
    assert got.shape == ref.shape
    loud = ref > ref.max() - 50  # cells with signal, not leakage between the tones
    inner = loud[:, 4:-4]
    diff = (got - ref)[:, 4:-4][inner].abs()
    assert diff.max().item() < 0.5 and diff.mean().item() < 0.05


# ---------------------------------------------------------------- windows


def test_fit_frames_tile_pad_and_crop():
    lm = torch.arange(3 * 10, dtype=torch.float32).reshape(3, 10)
    tiled = fit_frames(lm, 25, "tile")
    assert torch.equal(tiled, torch.cat([lm, lm, lm[:, :5]], dim=1))
    padded = fit_frames(lm, 25, "pad")
    assert torch.equal(padded[:, :10], lm) and (padded[:, 10:] == PAD_DB).all()
    assert PAD_DB == 10 * math.log10(SEED_CNN.amin)
    assert torch.equal(fit_frames(lm, 4), lm[:, 3:7])  # centred
    assert torch.equal(fit_frames(lm, 4, start=1), lm[:, 1:5])
    assert torch.equal(fit_frames(lm, 4, start=99), lm[:, 6:10])  # clamped, never short
    assert torch.equal(fit_frames(lm, 4, start=-3), lm[:, 0:4])
    assert fit_frames(lm, 10) is lm
    batch = torch.stack([lm, lm + 1])
    assert torch.equal(fit_frames(batch, 25, "tile")[1], tiled + 1)


def test_window_starts():
    assert window_starts(100, 516) == [0]
    assert window_starts(516, 516) == [0]
    assert window_starts(517, 516) == [0]  # a 6 s clip: one window, not two
    assert window_starts(560, 516) == [22]  # <= 10 % longer: one centred window
    assert window_starts(1200, 516) == [0, 258, 516, 684]  # half overlap, last flush with the end
    assert window_starts(1200, 516, hop_frames=400) == [0, 400, 684]
    for n in (568, 700, 1031, 5000):
        s = window_starts(n, 516)
        assert s[0] == 0 and s[-1] == n - 516 and all(0 < b - a <= 258 for a, b in zip(s, s[1:]))


def test_model_windows_cover_a_long_clip():
    x = tones(22050, 15.0)
    cfg = SEED_CNN.with_stats([-30.0], [15.0])
    wins, starts = model_windows(x, 22050, cfg)
    lm = log_mel(x, 22050, SEED_CNN)
    assert starts == window_starts(lm.shape[1], 516)
    assert wins.shape == (len(starts), 1, 128, 516)
    for w, s in zip(wins, starts):
        assert torch.equal(w[0], (lm[:, s : s + 516] + 30.0) / 15.0)
    wins2, starts2 = model_windows(x, 22050, cfg, hop_seconds=2.0)
    assert starts2[1] - starts2[0] == round(2.0 * 22050 / 256)


# ---------------------------------------------------------------- normalisation and config


def test_normalize():
    x = torch.randn(2, 3, 4)
    g = FeatureConfig(n_mels=3).with_stats([1.0], [2.0])
    assert torch.allclose(normalize(x, g), (x - 1) / 2)
    pm = FeatureConfig(n_mels=3, norm="per_mel").with_stats([0.0, 1.0, 2.0], [1.0, 2.0, 4.0])
    want = (x - torch.tensor([0.0, 1.0, 2.0])[:, None]) / torch.tensor([1.0, 2.0, 4.0])[:, None]
    assert torch.allclose(normalize(x, pm), want)
    assert normalize(x, PANNS) is x
    with pytest.raises(ValueError, match="statistics"):
        normalize(x, SEED_CNN)


def test_feature_config_key_and_round_trip():
    a = SEED_CNN.with_stats([1.0], [2.0])
    assert a.key == SEED_CNN.key  # stats do not change the cached frames
    from dataclasses import replace

    assert replace(SEED_CNN, clip_seconds=4.0, short="pad", norm="per_mel").key == SEED_CNN.key
    assert replace(SEED_CNN, n_mels=64).key != SEED_CNN.key
    assert replace(SEED_CNN, f_max=8000.0).key != SEED_CNN.key
    assert PANNS.key.startswith("sr32000-m64-h320-")
    assert FeatureConfig.from_dict(a.to_dict()) == a
    assert not SEED_CNN.has_stats and a.has_stats and PANNS.has_stats
    with pytest.raises(ValueError, match="unknown feature settings"):
        FeatureConfig.from_dict({**SEED_CNN.to_dict(), "hop": 3})


# ---------------------------------------------------------------- trainer path == app path


def test_cached_frames_are_bit_identical_to_live_features(fsd_tree, fsd_cache, live):
    for split in ("train", "val", "eval"):
        cached = fsd_cache.split(split)
        assert sorted(cached.fnames.tolist()) == sorted(c.fname for c in fsd_tree.split(split))
        for i, fname in enumerate(cached.fnames):
            assert torch.equal(torch.from_numpy(cached.clip(i)), live[str(fname)][1]), fname


@pytest.mark.parametrize("policy", ["tile", "pad"])
def test_trainer_crops_equal_app_windows(fsd_cache, live, policy):
    from dataclasses import replace

    cfg = replace(fsd_cache.feature_config("global"), short=policy)
    split = fsd_cache.split("train")
    crops = torch.from_numpy(split.crops(np.arange(len(split)), cfg.clip_frames, policy=policy))
    rng = np.random.default_rng(0)
    random_crops = torch.from_numpy(split.crops(np.arange(len(split)), cfg.clip_frames, rng, policy=policy))
    lengths = set()
    for i, fname in enumerate(split.fnames):
        audio, lm = live[str(fname)]
        lengths.add("short" if lm.shape[1] < cfg.clip_frames else "long")
        app, starts = model_windows(audio.samples, audio.sample_rate, cfg)
        # deterministic crop = what the app scores (its centre window for a long clip)
        assert torch.equal(crops[i], fit_frames(lm, cfg.clip_frames, policy))
        if len(starts) == 1:
            assert torch.equal(normalize(crops[i], cfg), app[0, 0])
        # a random crop is still a window of the live features
        r = random_crops[i]
        t = lm.shape[1]
        if t >= cfg.clip_frames:
            assert any(torch.equal(r, lm[:, s : s + cfg.clip_frames]) for s in range(t - cfg.clip_frames + 1))
        elif policy == "tile":
            tiled = lm.repeat(1, cfg.clip_frames // t + 2)
            assert any(torch.equal(r, tiled[:, s : s + cfg.clip_frames]) for s in range(t))
        else:
            padded = torch.cat([torch.full_like(r, PAD_DB), lm, torch.full_like(r, PAD_DB)], dim=1)
            n = cfg.clip_frames
            assert any(torch.equal(r, padded[:, n - s : 2 * n - s]) for s in range(n - t + 1))
    assert lengths == {"short", "long"}


def test_validation_windows_equal_app_windows(fsd_cache, live):
    """trainer.inference (validation, ``guesser evaluate``) cuts the same windows as the app."""
    from guesser.scoring import batches
    from trainer.inference import split_windows

    cfg = fsd_cache.feature_config("global")
    split = fsd_cache.split("eval")
    got: dict[int, list[torch.Tensor]] = {}
    for ids, x in batches(split_windows(split, cfg), 7):
        for i, w in zip(ids.tolist(), x):
            got.setdefault(i, []).append(w)
    assert sorted(got) == list(range(len(split)))
    multi = 0
    for i, fname in enumerate(split.fnames):
        audio = live[str(fname)][0]
        app, _ = model_windows(audio.samples, audio.sample_rate, cfg)
        assert torch.equal(torch.stack(got[i]), app)
        multi += len(got[i]) > 1
    assert multi > 0, "the fixture has clips longer than one window"


@pytest.mark.parametrize("n_total, n_frames, hop", [(1200, 516, None), (5000, 300, 150), (2000, 50, 12), (700, 516, 100)])
def test_a_stream_asking_as_frames_arrive_gets_the_one_pass_window_starts(n_total, n_frames, hop):
    """guesser.stream.WindowScorer's way: final=False after each block, final=True at the end (one placement rule)."""
    got: list[int] = []
    rng = np.random.default_rng(n_total)
    seen = 0
    while seen < n_total:
        seen = min(n_total, seen + int(rng.integers(1, 120)))
        got += window_starts(seen, n_frames, hop, after=got[-1] if got else None, final=False)
    got += window_starts(n_total, n_frames, hop, after=got[-1] if got else None)
    assert got == window_starts(n_total, n_frames, hop)


def test_centre_start_is_the_crop_of_fit_frames_for_ints_and_arrays():
    from guesser.features import centre_start

    lm = torch.arange(40, dtype=torch.float32).reshape(1, 40)
    for n in (7, 10, 40):
        s = centre_start(40, n)
        assert torch.equal(fit_frames(lm, n), lm[:, s : s + n])
    assert centre_start(np.array([5, 40, 41]), 10).tolist() == [0, 15, 15]
