"""One-sided label smoothing (recipe keys ``train.label_smoothing`` and ``train.smooth_groups``).

A smoothed clip's positive targets become 1 - ε and its negatives stay 0; only
the train split is touched (val is scored against the true labels), and with
``smooth_groups`` only the clips a CSV puts in the named groups.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from guesser.errors import DataError, RecipeError
from trainer.batch import Targets, smooth_positives
from trainer.groups import clips_in_groups
from trainer.losses import Criterion
from trainer.recipe import Recipe
from trainer.run import load_data
from trainkit import cache_root, tiny_recipe  # noqa: F401 (fixture: the cache folder)


def _targets(n: int = 6, k: int = 5, seed: int = 0) -> Targets:
    y = (np.random.default_rng(seed).random((n, k)) < 0.4).astype(np.float32)
    return Targets(y, np.arange(n), tuple(f"c{i}" for i in range(k)))


def test_positives_drop_to_one_minus_eps_and_negatives_stay_zero():
    t = _targets()
    s = smooth_positives(t, 0.1)
    for i in range(t.y.shape[0]):
        for j in range(t.y.shape[1]):
            assert s.y[i, j] == pytest.approx(0.9 if t.y[i, j] == 1 else 0.0)
    assert s.y.dtype == np.float32 and t.y.max() == 1.0  # the original is not changed in place


def test_only_the_given_rows_are_smoothed():
    t = _targets()
    s = smooth_positives(t, 0.25, np.array([1, 4]))
    np.testing.assert_array_equal(s.y[[0, 2, 3, 5]], t.y[[0, 2, 3, 5]])
    np.testing.assert_array_equal(s.y[[1, 4]], t.y[[1, 4]] * 0.75)


def test_bce_against_a_smoothed_positive_is_the_hand_formula_and_its_minimum_is_at_1_minus_eps():
    crit = Criterion("bce")
    z = torch.tensor([[0.3, -1.2, 2.0]])
    y = torch.tensor([[0.8, 0.0, 0.8]])
    p = torch.sigmoid(z)
    by_hand = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    assert float(crit(z, y)) == pytest.approx(float(by_hand), rel=1e-6)
    z = torch.tensor([[torch.logit(torch.tensor(0.8)).item()]], requires_grad=True)
    F.binary_cross_entropy_with_logits(z, torch.tensor([[0.8]])).backward()
    assert abs(float(z.grad)) < 1e-6  # the loss no longer asks for certainty


def _groups_csv(path, fnames, group_of) -> str:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fname", "split", "origin"])
        for i, name in enumerate(fnames):
            w.writerow([name, "train", group_of(i)])
    return str(path)


def test_clips_in_groups_picks_the_named_groups(tmp_path):
    fnames = np.array(["10", "11", "12", "13"])
    spec = _groups_csv(tmp_path / "sources.csv", fnames, lambda i: "coswara" if i % 2 else "gm") + ":origin"
    np.testing.assert_array_equal(clips_in_groups(spec + "=coswara", fnames), [1, 3])
    np.testing.assert_array_equal(clips_in_groups(spec + "=coswara, gm", fnames), [0, 1, 2, 3])


@pytest.mark.parametrize("suffix,message", [
    (":origin", "expected FILE.csv:COLUMN=GROUP"),
    (":origin=", "expected FILE.csv:COLUMN=GROUP"),
    (":origin=esc10", "no train clip is in esc10 (groups: coswara, gm)"),
    (":device=x", "needs the columns fname and device"),
])
def test_group_mistakes_are_one_line(tmp_path, suffix, message):
    fnames = np.array(["10", "11"])
    csv_path = _groups_csv(tmp_path / "sources.csv", fnames, lambda i: ("coswara", "gm")[i])
    with pytest.raises(DataError) as e:
        clips_in_groups(csv_path + suffix, fnames)
    assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError, match="no such CSV file"):
        clips_in_groups(str(tmp_path / "none.csv") + ":origin=gm", fnames)


def test_a_run_smooths_the_named_train_clips_only_and_never_val(cache_root, fsd_cache, tmp_path):
    train_names = fsd_cache.split("train").fnames
    spec = _groups_csv(tmp_path / "sources.csv", train_names, lambda i: "a" if i < 10 else "b") + ":origin=a"
    plain = load_data(tiny_recipe(), cache_root)
    data = load_data(tiny_recipe(label_smoothing=0.2, smooth_groups=spec), cache_root)
    expected = plain.tr.y.copy()
    expected[:10] *= 0.8
    np.testing.assert_allclose(data.tr.y, expected, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(data.va.y, plain.va.y)
    assert data.trained_labels == plain.trained_labels  # a smoothed positive is still a positive
    everything = load_data(tiny_recipe(label_smoothing=0.1), cache_root)
    np.testing.assert_allclose(everything.tr.y, plain.tr.y * 0.9, rtol=0, atol=1e-7)


@pytest.mark.parametrize("train,message", [
    ({"label_smoothing": 1.0}, "train.label_smoothing must be in [0, 1)"),
    ({"smooth_groups": "s.csv:origin=a"}, "train.smooth_groups needs label_smoothing > 0"),
    ({"label_smoothing": 0.1, "smooth_groups": "s.csv:origin"}, "the form FILE.csv:COLUMN=GROUP"),
])
def test_recipe_mistakes_are_refused(train, message):
    with pytest.raises(RecipeError) as e:
        tiny_recipe(**train)
    assert message in str(e.value)


def test_families_do_not_take_label_smoothing():
    with pytest.raises(RecipeError, match="label_smoothing is for the labels task"):
        Recipe.from_dict({"name": "f", "member": "family_cnn", "arch": "family_cnn", "task": "families",
                          "train": {"loss": "ce", "label_smoothing": 0.1}})


def test_train_multi_skips_a_recipe_whose_groups_csv_is_not_here(tmp_path):
    """fsd50k-mini's sources.csv is not beside the real FSD50K: ``train multi`` skips that recipe, not the run."""
    from trainer.multi import missing_input

    sources = tmp_path / "sources.csv"
    recipe = tiny_recipe(label_smoothing=0.1, smooth_groups=f"{sources}:origin=coswara")
    assert missing_input(recipe) == str(sources)
    sources.write_text("fname,origin\n1,coswara\n")
    assert missing_input(recipe) is None
    assert missing_input(tiny_recipe()) is None
