"""The model zoo: parameter counts, shapes, and PANNs CNN6 weights loaded from an official-style checkpoint.

Parameter counts are checked against sums written out from the architectures'
descriptions (conv k·k·c_in·c_out + bias, BatchNorm 2·c, Linear in·out + out),
not against the code under test. The CNN6 reference below is a functional
re-statement of ``Cnn6.forward`` in qiuqiangkong/audioset_tagging_cnn
(``pytorch/models.py``), fed the official [B, 1, T, M] layout.
"""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from guesser.errors import CheckpointError
from guesser.models import REGISTRY, build_model, count_parameters
from guesser.models.panns import load_panns_weights


def conv_bn(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return k * k * c_in * c_out + (c_out if bias else 0) + 2 * c_out


def linear(a: int, b: int) -> int:
    return a * b + b


SEED_CONVS_4 = conv_bn(1, 32, 3) + conv_bn(32, 64, 3) + conv_bn(64, 128, 3) + conv_bn(128, 128, 3)
SEED_CONVS_3 = conv_bn(1, 32, 3) + conv_bn(32, 64, 3) + conv_bn(64, 128, 3)
CNN6_BODY = 2 * 64 + sum(conv_bn(a, b, 5, bias=False) for a, b in ((1, 64), (64, 128), (128, 256), (256, 512)))

EXPECTED = {
    ("cnn4", 200): SEED_CONVS_4 + linear(2048, 512) + linear(512, 256) + linear(256, 200),
    ("cnn3", 200): SEED_CONVS_3 + linear(2048, 576) + linear(576, 200),
    ("family_cnn", 6): SEED_CONVS_3 + linear(2048, 256) + linear(256, 6),
    ("cnn6", 6): CNN6_BODY + linear(512, 512) + linear(512, 6),
    ("cnn6", 527): CNN6_BODY + linear(512, 512) + linear(512, 527),
}


@pytest.mark.parametrize("arch,n", list(EXPECTED))
def test_parameter_counts(arch, n):
    assert count_parameters(build_model(arch, n)) == EXPECTED[(arch, n)]


def test_the_wider_variant_doubles_every_channel_and_refuses_odd_widths():
    wide4 = (conv_bn(1, 64, 3) + conv_bn(64, 128, 3) + conv_bn(128, 256, 3) + conv_bn(256, 256, 3)
             + linear(4096, 512) + linear(512, 256) + linear(256, 200))
    wide3 = conv_bn(1, 64, 3) + conv_bn(64, 128, 3) + conv_bn(128, 256, 3) + linear(4096, 576) + linear(576, 200)
    assert count_parameters(build_model("cnn4", 200, width=2)) == wide4
    assert count_parameters(build_model("cnn3", 200, width=2)) == wide3
    with torch.no_grad():
        assert build_model("cnn4", 200, width=2).eval()(torch.randn(2, 1, 64, 300)).shape == (2, 200)
    for bad in (0, 5, 1.5, True):
        with pytest.raises(ValueError, match="width"):
            build_model("cnn4", 200, width=bad)


def test_published_sizes():
    """The student project's cnn4 size and PANNs' reported 4.8 M for CNN6 on AudioSet."""
    assert count_parameters(build_model("cnn4", 200)) == 1_472_776
    assert abs(count_parameters(build_model("cnn3", 200)) - 1.4e6) < 0.05e6
    assert count_parameters(build_model("cnn6", 527)) == 4_837_455


@pytest.mark.parametrize("arch", list(REGISTRY))
@pytest.mark.parametrize("frames", [516, 43])
def test_output_shapes(arch, frames):
    n_mels = REGISTRY[arch].features.n_mels
    model = build_model(arch, 7).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 1, n_mels, frames))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


def test_cnn4_on_the_student_input():
    model = build_model("cnn4", 200).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 128, 516)).shape == (2, 200)


def test_one_dropout_for_every_hidden_layer_and_wrong_lengths_refused():
    m = build_model("cnn4", 200, dropout=0.1)
    assert [d.p for d in m.modules() if isinstance(d, nn.Dropout)] == [0.1, 0.1]
    with pytest.raises(ValueError, match="2 value"):
        build_model("cnn4", 200, dropout=[0.1])
    with pytest.raises(KeyError):
        build_model("resnet", 200)


# ---------------------------------------------------------------- PANNs CNN6

def official_cnn6_state(classes: int = 527, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the official Cnn6's key names and shapes, random values (BN stats kept sane)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {
        "spectrogram_extractor.stft.conv_real.weight": torch.randn(513, 1, 1024, generator=g),
        "spectrogram_extractor.stft.conv_imag.weight": torch.randn(513, 1, 1024, generator=g),
        "logmel_extractor.melW": torch.rand(513, 64, generator=g),
    }

    def bn(prefix: str, c: int) -> None:
        sd[f"{prefix}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        sd[f"{prefix}.bias"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{prefix}.running_mean"] = torch.randn(c, generator=g)
        sd[f"{prefix}.running_var"] = 0.5 + torch.rand(c, generator=g)
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(12345)

    bn("bn0", 64)
    for i, (a, b) in enumerate(((1, 64), (64, 128), (128, 256), (256, 512)), 1):
        sd[f"conv_block{i}.conv1.weight"] = torch.randn(b, a, 5, 5, generator=g) / (5 * a**0.5)
        bn(f"conv_block{i}.bn1", b)
    sd["fc1.weight"] = torch.randn(512, 512, generator=g) / 512**0.5
    sd["fc1.bias"] = 0.1 * torch.randn(512, generator=g)
    sd["fc_audioset.weight"] = torch.randn(classes, 512, generator=g)
    sd["fc_audioset.bias"] = torch.randn(classes, generator=g)
    return sd


def official_embedding(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Cnn6.forward (eval mode) up to ``embedding``, on the official [B, 1, T, M] log-mel."""

    def bn(t, p):
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                            training=False, eps=1e-5)

    x = bn(x.transpose(1, 3), "bn0").transpose(1, 3)
    for i in range(1, 5):
        x = F.conv2d(x, sd[f"conv_block{i}.conv1.weight"], padding=2)
        x = F.avg_pool2d(F.relu(bn(x, f"conv_block{i}.bn1")), kernel_size=(2, 2))
    x = torch.mean(x, dim=3)
    x = torch.max(x, dim=2)[0] + torch.mean(x, dim=2)
    return F.relu(F.linear(x, sd["fc1.weight"], sd["fc1.bias"]))


@pytest.mark.slow
def test_cnn6_loads_official_checkpoint_and_replaces_head(tmp_path):
    sd = official_cnn6_state()
    path = tmp_path / "Cnn6_mAP=0.343.pth"
    torch.save({"iteration": 100000, "model": sd}, path)
    model = build_model("cnn6", 6)
    head_before = model.head.weight.clone()
    loaded = load_panns_weights(model, path)

    own = model.state_dict()
    for k in loaded:
        assert torch.equal(own[k], sd[k]), k
    assert {k.split(".")[0] for k in loaded} == {"bn0", "conv_block1", "conv_block2", "conv_block3", "conv_block4", "fc1"}
    assert model.head.weight.shape == (6, 512) and torch.equal(model.head.weight, head_before)
    assert not any(k.startswith(("fc_audioset", "spectrogram_extractor", "logmel_extractor")) for k in own)

    # the same numbers as the official network: guesser's [B, 1, M, T] vs PANNs' [B, 1, T, M]
    model.eval()
    model.head = nn.Identity()
    x = torch.randn(2, 1, 64, 100) * 10 - 40
    with torch.no_grad():
        ours = model(x)
        theirs = official_embedding(sd, x.transpose(2, 3))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_cnn6_accepts_bare_and_dataparallel_state_dicts(tmp_path):
    sd = official_cnn6_state(seed=1)
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "dp.pth")
    model = build_model("cnn6", 200)
    load_panns_weights(model, tmp_path / "dp.pth")
    assert torch.equal(model.conv_block3.conv1.weight, sd["conv_block3.conv1.weight"])


def test_wrong_checkpoints_give_one_line_errors(tmp_path):
    model = build_model("cnn6", 6)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    cnn14_like = official_cnn6_state()
    cnn14_like["conv_block1.conv1.weight"] = torch.randn(64, 1, 3, 3)  # 3x3 convolutions: Cnn14/Cnn10
    torch.save({"model": cnn14_like}, tmp_path / "cnn14.pth")
    torch.save({"model": {"encoder.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    (tmp_path / "garbage.pth").write_bytes(b"\x00not a checkpoint" * 10)
    with open(tmp_path / "pickled.pth", "wb") as f:  # code in a pickle: refused, never run
        pickle.dump({"model": nn.Linear(2, 2)}, f)
    torch.save([1, 2, 3], tmp_path / "list.pth")

    cases = {
        "cnn14.pth": "shape mismatch for conv_block1.conv1.weight",
        "other.pth": "not a PANNs Cnn6 checkpoint",
        "garbage.pth": "not a PANNs checkpoint",
        "pickled.pth": "not a PANNs checkpoint",
        "list.pth": "expected a dict",
        "missing.pth": "no such PANNs checkpoint",
    }
    for name, message in cases.items():
        with pytest.raises(CheckpointError, match=message) as e:
            load_panns_weights(model, tmp_path / name)
        assert "\n" not in str(e.value)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a refused checkpoint must not change the model"


def test_pretrained_option_reaches_only_cnn6_recipes(tmp_path):
    from trainer.multi import prepared
    from trainer.recipe import Recipe

    cnn6 = Recipe.from_dict({"name": "p", "member": "panns", "arch": "cnn6", "task": "families",
                             "features": {"preset": "panns"}, "train": {"loss": "ce"}})
    cnn4 = Recipe.from_dict({"name": "c", "member": "cnn4", "arch": "cnn4", "task": "labels"})
    ckpt = tmp_path / "Cnn6.pth"
    assert prepared(cnn6, None, None, ckpt).train.pretrained == str(ckpt)
    assert prepared(cnn4, None, None, ckpt).train.pretrained == ""
