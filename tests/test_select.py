"""Caruana forward selection of the ensemble on val, and the calibrated "not sure" rule."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from guesser.confidence import ConfidenceRule, calibrate, distinct_guesses, headline, read_rule
from guesser.labels import FAMILIES_6, default_label_space
from trainer.evaluate import ModelRun, Scores
from trainer.select import Selection, forward_select, objective, write_selected_index

SPACE = default_label_space()
NAMES = SPACE.vocabulary.names
N = 60


def targets(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.zeros((N, len(NAMES)), np.uint8)
    for i in range(N):
        y[i, rng.choice([NAMES.index(n) for n in ("Dog", "Speech", "Piano", "Rain", "Drill")])] = 1
    return y


def run(name: str, probs: np.ndarray, y: np.ndarray, task: str = "labels", classes=NAMES,
        member: str | None = None) -> ModelRun:
    model = SimpleNamespace(name=name, member=member or name, task=task, classes=tuple(classes), family_weight=1.0,
                            path=__import__("pathlib").Path(f"/runs/{name}/best.safetensors"))
    s = Scores(np.array([str(i) for i in range(N)]), probs.astype(np.float32), y)
    return ModelRun(model, s, s, __import__("pathlib").Path("/cache"))


def noisy(y: np.ndarray, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(y * 0.6 + rng.random(y.shape) * noise, 0, 1)


def test_forward_select_keeps_the_good_model_and_leaves_out_noise():
    y = targets()
    good = run("good", noisy(y, 0.5, 1), y)
    junk = run("junk", np.random.default_rng(2).random(y.shape), y)
    sel = forward_select([junk, good])
    assert sel.weights.get("good", 0) >= 1 and "junk" not in sel.weights
    assert sel.history[0].added == "good"
    assert sel.objective == pytest.approx(objective([junk, good], {"good": sel.weights["good"]})[0])


def test_forward_select_combines_complementary_models():
    y = targets(3)
    a = run("a", noisy(y, 0.9, 4), y)
    b = run("b", noisy(y, 0.9, 5), y)
    sel = forward_select([a, b])
    assert set(sel.weights) == {"a", "b"}  # two independent noisy views average to a better one
    alone = max(objective([a, b], {"a": 1})[0], objective([a, b], {"b": 1})[0])
    assert sel.objective > alone


def test_one_run_per_member_as_export_requires():
    y = targets(3)
    a = run("a", noisy(y, 0.9, 4), y, member="cnn4")
    b = run("b", noisy(y, 0.9, 5), y, member="cnn4")
    assert objective([a, b], {"a": 1, "b": 1})[0] > max(objective([a, b], {"a": 1})[0], objective([a, b], {"b": 1})[0])
    sel = forward_select([a, b])  # the pair would be better, but they are one member's two runs
    assert len(sel.weights) == 1 and sel.history[0].added in sel.weights
    c = run("c", noisy(y, 0.9, 6), y, member="cnn3")  # another member: it may join
    assert set(forward_select([a, b, c]).weights) in ({"a", "c"}, {"b", "c"})


def test_a_family_model_alone_is_no_ensemble():
    y = targets()
    fam = run("fam", np.full((N, 6), 1 / 6), y, task="families", classes=FAMILIES_6)
    with pytest.raises(Exception, match="at least one labels model"):
        forward_select([fam])


def test_written_index_has_weights_and_a_rule(tmp_path):
    y = targets()
    good = run("good", noisy(y, 0.5, 1), y)
    junk = run("junk", np.random.default_rng(2).random(y.shape), y)
    sel = forward_select([good, junk])
    out = write_selected_index(tmp_path / "index.json", [good, junk], sel)
    data = json.loads(out.read_text())
    assert [e["name"] for e in data["models"]] == ["good"] and data["models"][0]["weight"] == sel.weights["good"]
    rule = ConfidenceRule.from_dict(data["confidence"])
    assert rule is not None and 0 <= rule.min_top_score <= 1
    assert read_rule([out]) == rule
    steps = Selection.from_json(data["selection"], str(out)).history  # the selection reads back as written
    assert steps == sel.history and steps[0].added == "good" and steps[-1].objective == sel.objective


def test_calibrate_picks_the_lowest_threshold_meeting_the_precision():
    scores = np.linspace(1.0, 0.01, 100)
    correct = np.ones(100, bool)
    correct[50:] = np.arange(50) % 2 == 0  # below 0.5, half are wrong
    rule = calibrate(scores, correct, target=0.9, min_clips=20)
    # by hand: the largest prefix (sorted by score) whose precision is >= 0.9
    prec = np.cumsum(correct) / np.arange(1, 101)
    i = max(k for k in range(19, 100) if prec[k] >= 0.9)
    assert rule.min_top_score == pytest.approx(scores[i]) and rule.val_precision == pytest.approx(prec[i])
    assert rule.confident(scores[i]) and not rule.confident(scores[i] - 1e-6)


def test_calibrate_when_nothing_reaches_the_target():
    rule = calibrate(np.array([0.9, 0.8, 0.7]), np.array([False, False, True]), target=0.9, min_clips=1)
    assert rule.min_top_score == 0.9 and rule.val_coverage == 0.0


def test_distinct_guesses_skip_ancestors():
    assert distinct_guesses(["Speech", "Human_voice", "Dog"], SPACE.related) == ["Speech", "Dog"]
    assert distinct_guesses(["Bark", "Dog", "Animal", "Speech"], SPACE.related) == ["Bark", "Speech"]


def test_headline_says_not_sure():
    from guesser.ensemble import Prediction, Scored

    p = Prediction([Scored("Speech", 0.4), Scored("Dog", 0.3)], [], [], 1.0, 1.0, confident=False, maybe=["Speech", "Dog"])
    assert headline(p) == "not sure — maybe Speech or Dog"
    assert p.to_json()["confident"] is False and p.to_json()["maybe"] == ["Speech", "Dog"]
    sure = Prediction([Scored("Walk_and_footsteps", 0.9)], [], [], 1.0, 1.0)
    assert headline(sure) == "Walk and footsteps" and sure.to_json()["confident"] is True


def test_the_shipped_index_carries_a_rule_and_the_ensemble_applies_it():
    """The shipped models come with their val-calibrated rule; an unreachable threshold makes every answer unsure."""
    from guesser.audio import load_audio
    from guesser.ensemble import Ensemble, default_models_index

    shipped = read_rule(None)
    assert shipped is not None and 0 < shipped.min_top_score < 1 and shipped.val_precision >= shipped.target_precision
    audio = load_audio(default_models_index().parents[1] / "demo" / "piano.ogg")
    strict = Ensemble.load(None, confidence=ConfidenceRule(1.01))
    pred = strict.predict(audio.samples, audio.sample_rate)
    assert pred.confident is False and len(pred.maybe) == 2
    assert not SPACE.related(*pred.maybe) and pred.maybe[0] == pred.labels[0].name
    assert headline(pred).startswith("not sure — maybe ")
    sure = Ensemble.load(None, confidence=ConfidenceRule(0.0)).predict(audio.samples, audio.sample_rate)
    assert sure.confident and sure.maybe == []
