"""``guesser tune``: a real (tiny) Optuna study: pruning, resuming from SQLite, the best trial as a recipe.

Trials really train on the session's tiny cache; only the validation score is
scripted (and validation itself skipped), so which trial is pruned and which
is best does not hang on a few-clip mAP.
"""

from __future__ import annotations

import sys

import numpy as np
import optuna  # a dev dependency (also the 'tune' extra): these tests never skip
import pytest

import trainer.train as train_mod
from guesser.errors import GuesserError
from trainer.augment import AugmentConfig
from trainer.recipe import Recipe
from trainer.train import TrainingDiverged
from trainer.tune import BEST_RECIPE, DEFAULT_AUGMENT, SearchSpace, apply_params, run_tuning, scale_augment
from trainkit import one_thread, tiny_recipe

pytestmark = pytest.mark.slow  # an Optuna study of real trials


SPACE = SearchSpace(lr=(1e-4, 3e-3), dropout=(0.0, 0.5), batch_sizes=(4, 8), aug_strength=(0.0, 1.5))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with one_thread():
        yield


def script_scores(monkeypatch, scores: list[float]) -> list[float]:
    """Validation scores in call order (trial after trial, epoch after epoch); validation itself skipped."""
    calls: list[float] = []

    def fake_predict(model, split, cfg, task, **kw):
        return np.full((len(split), 200), 0.5, np.float32)

    def fake_score(probs, targets):
        calls.append(scores[len(calls)])
        return calls[-1]

    monkeypatch.setattr(train_mod, "predict_split", fake_predict)
    monkeypatch.setattr(train_mod, "validation_score", fake_score)
    return calls


def test_study_prunes_resumes_and_writes_the_best_recipe(fsd_cache, tmp_path, monkeypatch):
    # trial 0: 0.8, 0.9 (complete); trial 1: 0.1 after epoch 1 (below the median 0.8: pruned); trial 2: 0.85, 0.95
    calls = script_scores(monkeypatch, [0.8, 0.9, 0.1, 0.85, 0.95])
    base = tiny_recipe("tuneme", epochs=5, scheduler="none", warmup_epochs=0, augment={})
    cache_root, out = fsd_cache.directory.parent, tmp_path / "study"
    lines: list[str] = []
    kw = dict(cache=cache_root, out=out, epochs=2, device="cpu", space=SPACE, startup_trials=1, warmup_epochs=0,
              progress=False, log=lines.append)

    study = run_tuning(base, 2, **kw)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]
    assert study.trials[0].intermediate_values == {1: 0.8, 2: 0.9}
    pruned_run = out / "trials" / "0001"
    assert len((pruned_run / "metrics.jsonl").read_text().splitlines()) == 1  # stopped after its first epoch
    assert not (pruned_run / "run.json").exists()
    first_best = Recipe.load(out / BEST_RECIPE)
    assert first_best.train.lr == study.trials[0].params["lr"]

    # rerun with a larger total: the same study continues with one new trial
    study = run_tuning(base, 3, **kw)
    assert len(study.trials) == 3 and study.best_trial.number == 2
    assert calls == [0.8, 0.9, 0.1, 0.85, 0.95]
    best = Recipe.load(out / BEST_RECIPE)
    expected = apply_params(base, study.best_trial.params)
    assert best.name == "tuneme_tuned" and "trial 2" in best.description
    assert (best.train, best.model, best.augment, best.features) == (expected.train, expected.model, expected.augment,
                                                                      expected.features)
    assert best.train.epochs == 5  # the recipe's own length, not the shortened trials'
    assert str(out / BEST_RECIPE) in lines[-1]

    # a third call with the same total has nothing left to do
    assert len(run_tuning(base, 3, **kw).trials) == 3 and len(calls) == 5


def test_a_diverged_trial_is_pruned_and_no_finished_trial_is_an_error(fsd_cache, tmp_path, monkeypatch):
    def diverging(*args, **kwargs):
        raise TrainingDiverged("tiny: loss became nan at epoch 1 step 0; lower train.lr or check the cache")

    monkeypatch.setattr(train_mod, "train", diverging)
    with pytest.raises(GuesserError, match="no trial has finished"):
        run_tuning(tiny_recipe(), 1, fsd_cache.directory.parent, tmp_path / "s", device="cpu", space=SPACE,
                   progress=False, log=lambda s: None)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 's' / 'study.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED]


def test_missing_optuna_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    with pytest.raises(GuesserError, match=r"^guesser tune needs Optuna: pip install 'guesser\[tune\]'$"):
        run_tuning(tiny_recipe(), 1, tmp_path, tmp_path / "s")


def test_augmentation_strength_scales_the_recipe():
    cfg = AugmentConfig(time_masks=2, time_width=10, freq_masks=1, freq_width=7, mixup_alpha=0.2, mix_p=0.6, gain_db=4)
    off = scale_augment(cfg, 0.0)
    assert not off.active or (off.time_width, off.freq_width, off.mixup_alpha, off.mix_p) == (0, 0, 0.0, 0.0)
    double = scale_augment(cfg, 2.0)
    assert (double.time_width, double.freq_width, double.mixup_alpha, double.mix_p, double.gain_db) == \
        (20, 14, 0.4, 1.0, 8.0)
    assert (double.time_masks, double.freq_masks) == (2, 1)  # how many stripes stays the recipe's
    assert scale_augment(AugmentConfig(), 1.0) == DEFAULT_AUGMENT  # a recipe without any gets a default


def test_dropout_goes_to_the_architectures_knob():
    params = {"lr": 1e-3, "dropout": 0.25, "batch_size": 8, "aug_strength": 1.0}
    assert apply_params(tiny_recipe(), params).model == {"dropout": 0.25}
    cnn6 = Recipe.from_dict({"name": "p", "member": "panns", "arch": "cnn6", "task": "families",
                             "features": {"preset": "panns"}, "train": {"loss": "ce"}})
    assert apply_params(cnn6, params).model == {"head_dropout": 0.25}
