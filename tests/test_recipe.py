"""Recipes: every shipped one loads and builds; a mistake names the file and the key."""

from __future__ import annotations

import pytest

from guesser.errors import RecipeError
from guesser.models import REGISTRY
from trainer.recipe import Recipe, shipped_names, shipped_recipes
from trainer.tune import recipe_toml

GOOD = '''name = "mine"
member = "cnn4"
arch = "cnn4"
task = "labels"

[train]
epochs = 3
lr = 0.002

[augment]
time_masks = 2
time_width = 20
'''


def test_every_shipped_recipe_loads_and_is_consistent():
    recipes = shipped_recipes()
    assert recipes and [r.name for r in recipes] == shipped_names()
    for r in recipes:
        assert r.arch in REGISTRY
        assert (r.train.loss == "ce") == (r.task == "families")
        assert r.name == Recipe.load(r.name).name  # loadable by name as well as by path
    assert len({r.name for r in recipes}) == len(recipes)


def test_a_recipe_file_round_trips_through_toml(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(GOOD)
    r = Recipe.load(path)
    assert (r.train.epochs, r.train.lr, r.augment.time_width) == (3, 0.002, 20)
    assert r.train.batch_size == 32  # untouched keys keep their defaults
    again = tmp_path / "again.toml"
    again.write_text(recipe_toml(r))
    assert Recipe.load(again) == r


@pytest.mark.parametrize("edit,message", [
    (("[train]", "[train]\nlearning_rate = 0.1"), r"\[train\]: unknown key\(s\) learning_rate"),
    (("epochs = 3", "epochs = \"three\""), r"\[train\]: epochs must be int"),
    (("lr = 0.002", "lr = 5.0"), r"train\.lr must be in \(0, 1\)"),
    (("time_width = 20", "time_width = 20\ncolour = 1"), r"\[augment\]: unknown key\(s\) colour"),
    (('task = "labels"', 'task = "labels"\nmodle = 1'), r"unknown key\(s\) modle"),
    (('arch = "cnn4"\n', ""), r"missing required key 'arch'"),
    (('arch = "cnn4"', 'arch = "resnet"'), r"arch must be one of"),
    (('task = "labels"', 'task = "families"'), r"families use loss 'ce'"),
    (("[train]", "[model]\ndropuot = 0.1\n\n[train]"), r"\[model\]: not accepted by cnn4"),
    (("[train]", "[model]\ndropout = [0.1]\n\n[train]"), r"\[model\]: .*2 value"),
    (("epochs = 3", "epochs = 3\nprecision = \"fp8\""), r"train\.precision must be"),
    (("lr = 0.002", "lr = 0.002\n["), r"not valid TOML"),
])
def test_mistakes_name_the_file_and_the_key(tmp_path, edit, message):
    path = tmp_path / "bad.toml"
    old, new = edit
    assert old in GOOD
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(RecipeError, match=message) as e:
        Recipe.load(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_cnn6_needs_the_panns_front_end(tmp_path):
    path = tmp_path / "panns.toml"
    path.write_text('name = "p"\nmember = "panns"\narch = "cnn6"\ntask = "families"\n[train]\nloss = "ce"\n')
    with pytest.raises(RecipeError, match=r"panns\.toml \[model\]: n_mels must equal the front-end's 128"):
        Recipe.load(path)
    path.write_text(path.read_text() + '[features]\npreset = "panns"\n')
    assert Recipe.load(path).feature_config().n_mels == 64


def test_unknown_recipe_name_lists_the_shipped_ones():
    with pytest.raises(RecipeError, match="no such recipe file or shipped recipe") as e:
        Recipe.load("no_such_recipe")
    assert shipped_names()[0] in str(e.value)
