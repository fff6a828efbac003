"""The inference rewrites (guesser.fastpath) and the ensemble's batching/resampling: same answers, less work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from guesser.ensemble import Ensemble
from guesser.errors import GuesserError
from guesser.fastpath import FusedConvBlock, optimize_for_inference, resolve_precision
from guesser.features import PANNS, SEED_CNN, log_mel, resample
from guesser.models import build_model


pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPES = {"cnn4": (2, 1, 128, 300), "cnn3": (2, 1, 128, 200), "family_cnn": (1, 1, 128, 516), "cnn6": (1, 1, 64, 400)}


def trained_looking(arch: str, n_out: int) -> nn.Module:
    """Random weights and non-trivial BatchNorm statistics (fresh ones are identity maps: nothing to fold)."""
    torch.manual_seed(1)
    m = build_model(arch, n_out).eval()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-1, 1)
            mod.running_var.uniform_(0.3, 3)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.5, 0.5)
    return m


@pytest.mark.parametrize("arch", list(SHAPES))
def test_fused_fp32_gives_the_same_logits(arch):
    n_out = 200 if arch in ("cnn4", "cnn3") else 6
    model = trained_looking(arch, n_out)
    x = torch.randn(SHAPES[arch]) * 2
    fast = optimize_for_inference(model, "fp32")
    assert sum(isinstance(m, FusedConvBlock) for m in fast.modules()) == (3 if arch in ("cnn3", "family_cnn") else 4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules()) or arch == "cnn6"  # cnn6 keeps bn0
    with torch.inference_mode():
        want, got = model(x), fast(x)
    assert got.dtype == torch.float32 and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is left as it was


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["cnn4", "cnn6"])
def test_bf16_convolutions_stay_close(arch):
    n_out = 200 if arch == "cnn4" else 6
    model = trained_looking(arch, n_out)
    x = torch.randn(SHAPES[arch])
    fast = optimize_for_inference(model, "bf16")
    assert {m.weight.dtype for m in fast.modules() if isinstance(m, FusedConvBlock)} == {torch.bfloat16}
    with torch.inference_mode():
        want, got = model(x), fast(x)
    assert got.dtype == torch.float32
    err = (got - want).abs().max() / want.abs().max()
    assert err < 0.03, float(err)
    probs_want, probs_got = torch.sigmoid(want), torch.sigmoid(got)
    assert (probs_got - probs_want).abs().max() < 0.01


def test_an_unknown_convolution_keeps_float32():
    class Odd(nn.Module):  # a seed block followed by a conv the rewrite does not know
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                                        nn.MaxPool2d(2)))
            self.extra = nn.Conv2d(4, 2, 1)

        def forward(self, x):
            return self.extra(self.features(x)).mean(dim=(2, 3))

    model = Odd().eval()
    fast = optimize_for_inference(model, "bf16")
    x = torch.randn(2, 1, 16, 20)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-5)
    assert fast.features[0].weight.dtype == torch.float32


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_convolution_mode_agrees(precision):
    """im2col (first layer), oneDNN with the fused ReLU, and the plain conv2d fallback: one answer."""
    model = trained_looking("cnn4", 200)
    fast = optimize_for_inference(model, precision)
    blocks = [m for m in fast.modules() if isinstance(m, FusedConvBlock)]
    assert blocks[0].mode == "im2col" and {b.mode for b in blocks[1:]} <= {"onednn", "conv"}
    x = torch.randn(1, 1, 128, 200)
    with torch.inference_mode():
        first = fast(x)
        for b in blocks:
            b.mode = "conv"
        plain_ops = fast(x)
    tol = 1e-4 if precision == "fp32" else 2e-2
    torch.testing.assert_close(first, plain_ops, rtol=tol, atol=tol * first.abs().max().item())


def test_precision_setting(monkeypatch):
    assert resolve_precision("fp32") == torch.float32 and resolve_precision("bf16") == torch.bfloat16
    monkeypatch.setenv("GUESSER_PRECISION", "fp32")
    assert resolve_precision(None) == torch.float32
    monkeypatch.setenv("GUESSER_PRECISION", "fp8")
    with pytest.raises(GuesserError, match="GUESSER_PRECISION"):
        resolve_precision(None)


def test_optimised_ensemble_matches_the_plain_one_and_batches_windows(light_model_index):
    plain = Ensemble.load([light_model_index], optimize=False)
    fast = Ensemble.load([light_model_index], precision="fp32")
    one_at_a_time = Ensemble.load([light_model_index], precision="fp32", batch_windows=1)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 44100 * 14)) * 0.1).astype(np.float32)  # 14 s stereo: 4 windows
    preds = [e.predict(x, 44100, timeline=True) for e in (plain, fast, one_at_a_time)]
    ref = {s.name: s.score for s in preds[0].labels}
    for p in preds[1:]:
        assert len(p.windows) == len(preds[0].windows) == 4
        assert max(abs(s.score - ref[s.name]) for s in p.labels) < 1e-5
        assert [f.name for f in p.families] == [f.name for f in preds[0].families]


@pytest.mark.parametrize("cfg", [SEED_CNN, PANNS], ids=["seed", "panns"])
def test_long_files_log_mel_in_chunks_gives_the_same_frames(cfg):
    torch.manual_seed(0)
    x = torch.randn(cfg.sample_rate * 25 + 123) * 0.1
    x[cfg.sample_rate * 10 : cfg.sample_rate * 12] = 0  # a stretch of digital silence inside
    whole = log_mel(x, cfg.sample_rate, cfg, chunk_seconds=60.0)  # one chunk
    chunked = log_mel(x, cfg.sample_rate, cfg, chunk_seconds=7.3)  # chunk edges fall mid-signal, not on windows
    assert chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole, rtol=0, atol=0.07)  # at most one float16 step at 60 dB
    assert (chunked == whole).float().mean() > 0.999
