"""Net2WiderNet: a wider seed CNN started from a narrow one computes what the narrow one did."""

from __future__ import annotations

import pytest
import torch

from guesser.errors import GuesserError
from guesser.labels import default_label_space
from guesser.models import build_model
from trainer.weights import init_from_checkpoint, model_meta, save_model
from trainer.widen import widen_state_dict
from trainkit import tiny_recipe


def trained_looking(arch: str, width: int = 1, seed: int = 0) -> torch.nn.Module:
    """A model whose BatchNorm statistics and affine parameters are not the identity (as after training)."""
    torch.manual_seed(seed)
    model = build_model(arch, 200, width=width)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    return model.eval()


@pytest.mark.parametrize("arch,width", [("cnn4", 2), ("cnn3", 2), ("cnn4", 3)])
def test_without_noise_the_wide_network_computes_the_narrow_ones_function(arch, width):
    narrow = trained_looking(arch)
    wide = build_model(arch, 200, width=width).eval()
    wide.load_state_dict(widen_state_dict(narrow.state_dict(), wide.state_dict(), noise=0.0))
    x = torch.randn(3, 1, 64, 120)
    with torch.no_grad():
        want, got = narrow(x), wide(x)
    assert got.shape == want.shape == (3, 200)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    # and it really is wider: every layer's channels doubled (or tripled)
    assert wide.features[0][0].out_channels == width * narrow.features[0][0].out_channels


def test_noise_breaks_the_copies_apart_and_keeps_the_function_close():
    narrow = trained_looking("cnn4")
    wide = build_model("cnn4", 200, width=2).eval()
    state = widen_state_dict(narrow.state_dict(), wide.state_dict(), noise=0.01, seed=1)
    w = state["features.1.0.weight"]
    assert not torch.equal(w[64:], w[:64])  # copies would otherwise get identical gradients for ever
    wide.load_state_dict(state)
    x = torch.randn(3, 1, 64, 120)
    with torch.no_grad():
        want, got = narrow(x), wide(x)
    assert not torch.equal(got, want)
    assert float((got - want).abs().max()) < 0.1 * float(want.abs().max())
    # a fixed seed gives the same wide start
    again = widen_state_dict(narrow.state_dict(), wide.state_dict(), noise=0.01, seed=1)
    assert all(torch.equal(again[k], state[k]) for k in state)


def checkpoint_of(tmp_path, recipe, model):
    classes = default_label_space().vocabulary.names
    path = tmp_path / "narrow.safetensors"
    save_model(path, model, model_meta(recipe, recipe.feature_config(), classes, model))
    return path, classes


def test_a_recipe_with_a_wider_model_starts_from_the_narrow_checkpoint(tmp_path):
    narrow_recipe = tiny_recipe()
    narrow = trained_looking("cnn4")
    path, classes = checkpoint_of(tmp_path, narrow_recipe, narrow)

    wide_recipe = tiny_recipe(init=str(path))
    wide_recipe = type(wide_recipe).from_dict({**wide_recipe.to_dict(), "model": {"width": 2}})
    wide = build_model("cnn4", 200, width=2)
    init_from_checkpoint(wide, str(path), wide_recipe, classes)
    wide.eval()
    x = torch.randn(2, 1, 64, 100)
    with torch.no_grad():
        want, got = narrow(x), wide(x)
    assert float((got - want).abs().max()) < 0.1 * float(want.abs().max())

    # the same width loads the weights as they are
    same = build_model("cnn4", 200)
    init_from_checkpoint(same, str(path), tiny_recipe(init=str(path)), classes)
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), narrow.state_dict().values()))


def test_a_narrower_or_a_fractional_width_is_refused(tmp_path):
    wide_recipe = tiny_recipe()
    wide_recipe = type(wide_recipe).from_dict({**wide_recipe.to_dict(), "model": {"width": 2}})
    path, classes = checkpoint_of(tmp_path, wide_recipe, trained_looking("cnn4", width=2))
    with pytest.raises(GuesserError, match="width-2 model cannot start a width-1"):
        init_from_checkpoint(build_model("cnn4", 200), str(path), tiny_recipe(), classes)
    three = type(wide_recipe).from_dict({**wide_recipe.to_dict(), "model": {"width": 3}})
    with pytest.raises(GuesserError, match="width-2 model cannot start a width-3"):
        init_from_checkpoint(build_model("cnn4", 200, width=3), str(path), three, classes)
