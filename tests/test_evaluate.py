"""guesser evaluate: the reported numbers are what the app's ensemble delivers on the clips' audio.

The runs are real (trained by trainer.train on the session's synthetic cache,
see tinyruns.py). The references below never touch the cache or
``predict_split``: they decode each clip's audio file and run it through
``guesser.ensemble.Ensemble.predict`` (the path of ``guesser classify``), then
score with scikit-learn directly.
"""

from __future__ import annotations

import io
import json
import math
from statistics import NormalDist

import numpy as np
import pytest
from rich.console import Console
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score
from typer.testing import CliRunner

from guesser.audio import load_audio
from guesser.cli import app
from guesser.ensemble import Ensemble, load_model
from guesser.labels import FAMILIES_6, default_label_space
from tinyruns import build_runs, copy_runs
from trainer.evaluate import run_evaluate

pytestmark = pytest.mark.slow  # trains tiny runs, then evaluates them

SPACE = default_label_space()
NAMES = SPACE.vocabulary.names


@pytest.fixture(scope="module")
def cache_root(fsd_cache):
    return fsd_cache.directory.parent


@pytest.fixture(scope="module")
def evaluated(cache_root, tmp_path_factory):
    base = build_runs(cache_root, tmp_path_factory.getbasetemp() / "tiny-runs")
    runs = copy_runs(base, tmp_path_factory.mktemp("evaluate") / "runs")
    results = run_evaluate([], cache=cache_root, index=runs / "index.json", write_index=True,
                           console=Console(file=io.StringIO()))
    return runs, {r["name"]: r for r in results}


def truth(clips) -> np.ndarray:
    y = np.zeros((len(clips), len(NAMES)), np.uint8)
    for i, c in enumerate(clips):
        y[i, [SPACE.vocabulary.index[n] for n in c.labels]] = 1
    return y


def family_truth(y: np.ndarray) -> np.ndarray:
    """Soft family targets by hand from the ontology: mass split over a clip's families."""
    fams = SPACE.label_families(FAMILIES_6)
    out = np.zeros((len(y), 6))
    for i in range(len(y)):
        hit = sorted({f for k in np.flatnonzero(y[i]) for f in fams[k]})
        out[i, hit] = 1 / len(hit)
    return out


def app_scores(ens: Ensemble, clips) -> dict:
    """Ensemble.predict on each clip's audio: {"labels" [N, 200], "families" [N, 6], model name: [N, K]}."""
    labels, families, per_model = [], [], {m.name: [] for m in ens.models}
    for c in clips:
        audio = load_audio(c.path)
        pred = ens.predict(audio.samples, audio.sample_rate)
        lab = {s.name: s.score for s in pred.labels}
        fam = {s.name: s.score for s in pred.families}
        labels.append([lab[n] for n in NAMES])
        families.append([fam[f] for f in FAMILIES_6])
        for m, out in zip(ens.models, pred.models):
            sc = {s.name: s.score for s in out.ranking}
            per_model[m.name].append([sc[n] for n in m.classes])
    return {"labels": np.array(labels), "families": np.array(families), **{k: np.array(v) for k, v in per_model.items()}}


@pytest.fixture(scope="module")
def app_out(evaluated, fsd_tree) -> dict:
    """What the app says about every eval and val clip, with the index's three models loaded (computed once)."""
    runs, _ = evaluated
    ens = Ensemble.load([runs / "index.json"])
    return {split: app_scores(ens, fsd_tree.split(split)) for split in ("eval", "val")}


def fold_by_hand(p: np.ndarray) -> np.ndarray:
    fams = SPACE.label_families(FAMILIES_6)
    out = np.zeros((len(p), 6))
    for i in range(len(p)):
        for k, fs in enumerate(fams):
            for f in fs:
                out[i, f] = max(out[i, f], p[i, k])
    return out


def macro_ap(y, p) -> float:
    cols = np.flatnonzero(y.sum(0) > 0)
    return float(np.mean([average_precision_score(y[:, k], p[:, k]) for k in cols]))


def best_f1(t, s) -> float:
    return max(f1_score(t, (s >= c).astype(int), zero_division=0) for c in np.unique(s))


def test_label_model_scores_are_the_apps(evaluated, fsd_tree, app_out):
    runs, res = evaluated
    r = res["tiny_cnn4"]
    clips = fsd_tree.split("eval")
    y = truth(clips)
    labels = app_out["eval"]["tiny_cnn4"]
    families = fold_by_hand(labels)
    s = r["summary"]
    assert r["clips"] == len(clips) and r["split"] == "eval" and r["task"] == "labels"
    assert s["map"] == pytest.approx(macro_ap(y, labels), abs=1e-4)
    both = [k for k in range(len(NAMES)) if 0 < y[:, k].sum() < len(y)]
    auc = np.mean([roc_auc_score(y[:, k], labels[:, k]) for k in both])
    assert s["auc"] == pytest.approx(auc, abs=1e-4)
    assert s["d_prime"] == pytest.approx(math.sqrt(2) * NormalDist().inv_cdf(auc), abs=1e-3)
    ap = r["labels"]["ap"]
    for k in range(len(NAMES)):
        if y[:, k].any():
            assert ap[k] == pytest.approx(average_precision_score(y[:, k], labels[:, k]), abs=1e-4)
        else:
            assert ap[k] is None  # no positive in eval: no AP (JSON null, not NaN)
    assert r["labels"]["positives"] == y.sum(0).tolist()
    fam = (family_truth(y) > 0).astype(int)
    assert s["family_map"] == pytest.approx(macro_ap(fam, families), abs=1e-4)


def test_thresholds_are_tuned_on_val_and_applied_to_eval(evaluated, fsd_tree, app_out):
    runs, res = evaluated
    r = res["tiny_cnn4"]
    th = np.array(r["labels"]["threshold"])
    yv = truth(fsd_tree.split("val"))
    pv = app_out["val"]["tiny_cnn4"]
    for k in np.flatnonzero(yv.sum(0) > 0):
        got = f1_score(yv[:, k], (pv[:, k] >= th[k]).astype(int), zero_division=0)
        assert got == pytest.approx(best_f1(yv[:, k], pv[:, k]), abs=1e-6)
    assert all(t == 0.5 for t in th[yv.sum(0) == 0])
    y, p = truth(fsd_tree.split("eval")), app_out["eval"]["tiny_cnn4"]
    pred = (p >= th).astype(int)
    cols = np.flatnonzero(y.sum(0) > 0)
    assert r["summary"]["f1_macro"] == pytest.approx(f1_score(y, pred, labels=cols, average="macro", zero_division=0), abs=1e-6)
    assert r["summary"]["f1_micro"] == pytest.approx(f1_score(y, pred, average="micro", zero_division=0), abs=1e-6)
    assert r["summary"]["subset_accuracy"] == pytest.approx(np.mean((pred == y).all(1)))


def test_family_model_accuracy_and_confusion(evaluated, fsd_tree, app_out):
    runs, res = evaluated
    r = res["tiny_family"]
    clips = fsd_tree.split("eval")
    soft = family_truth(truth(clips))
    assert load_model(runs / "tiny_family" / "best.safetensors").classes == FAMILIES_6
    probs = app_out["eval"]["tiny_family"]
    pred = probs.argmax(1)
    cm = np.zeros((6, 6))
    for i in range(len(clips)):
        cm[:, pred[i]] += soft[i]
    support = cm.sum(1)
    expected = np.divide(cm, support[:, None], out=np.zeros_like(cm), where=support[:, None] > 0)
    assert np.allclose(r["confusion"]["matrix"], expected, atol=1e-6)
    assert r["confusion"]["classes"] == list(FAMILIES_6)
    assert r["summary"]["family_accuracy"] == pytest.approx(np.mean([soft[i, pred[i]] for i in range(len(clips))]), abs=1e-6)
    assert r["summary"]["family_map"] == pytest.approx(macro_ap((soft > 0).astype(int), probs), abs=1e-4)
    assert r["families"]["support"] == pytest.approx(support.tolist())
    assert "map" not in r["summary"]  # a family model has no label scores


def test_ensemble_is_the_apps_ensemble(evaluated, fsd_tree, app_out):
    runs, res = evaluated
    r = res["ensemble"]
    index = json.loads((runs / "index.json").read_text())
    y = truth(fsd_tree.split("eval"))
    labels, families = app_out["eval"]["labels"], app_out["eval"]["families"]
    assert len(index["models"]) == 3
    assert sorted(r["models"]) == sorted(e["name"] for e in index["models"])
    assert r["summary"]["map"] == pytest.approx(macro_ap(y, labels), abs=1e-4)
    assert r["summary"]["family_map"] == pytest.approx(macro_ap((family_truth(y) > 0).astype(int), families), abs=1e-4)
    soft = family_truth(y)
    acc = np.mean([soft[i, families[i].argmax()] for i in range(len(y))])
    assert r["summary"]["family_accuracy"] == pytest.approx(acc, abs=1e-6)


def test_results_are_saved_for_the_report(evaluated):
    runs, res = evaluated
    for name in ("tiny_cnn4", "tiny_cnn3", "tiny_family"):
        saved = json.loads((runs / name / "eval.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
        assert saved["name"] == name and saved["summary"] == res[name]["summary"]
        roc = saved["roc_families"]["micro"]
        assert 2 <= len(roc["fpr"]) <= 101 and roc["fpr"][0] == 0 and roc["tpr"][-1] == 1
        assert len(saved["confusion"]["matrix"]) == len(saved["confusion"]["classes"])
    lab = json.loads((runs / "tiny_cnn4" / "eval.json").read_text())
    assert lab["labels"]["names"] == list(NAMES) and len(lab["labels"]["ap"]) == len(NAMES)
    assert lab["roc_labels"]["micro"]["auc"] > 0
    ens = json.loads((runs / "ensemble_eval.json").read_text())
    assert ens["kind"] == "ensemble" and ens["summary"] == res["ensemble"]["summary"]


def test_val_split_single_run_without_ensemble(evaluated, cache_root):
    runs, _ = evaluated
    out = io.StringIO()
    results = run_evaluate([runs / "tiny_cnn3", runs / "tiny_family"], cache=cache_root, split="val",
                           ensemble=False, console=Console(file=out, width=120))
    assert [r["name"] for r in results] == ["tiny_cnn3", "tiny_family"]
    saved = json.loads((runs / "tiny_cnn3" / "eval_val.json").read_text())
    assert saved["split"] == "val" and saved["summary"]["map"] == pytest.approx(results[0]["summary"]["map"])
    assert not (runs / "ensemble_eval_val.json").exists()
    assert "tiny_cnn3" in out.getvalue() and f"{results[0]['summary']['map']:.3f}" in out.getvalue()


def test_cli_prints_the_summary(evaluated, cache_root):
    runs, res = evaluated
    result = CliRunner().invoke(app, ["evaluate", str(runs / "tiny_cnn4"), "--cache", str(cache_root), "--no-ensemble"],
                                env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "tiny_cnn4" in result.output and f"{res['tiny_cnn4']['summary']['map']:.3f}" in result.output


@pytest.mark.parametrize("case", ["no cache", "no run", "no index", "bad split", "not a checkpoint"])
def test_cli_errors_are_one_line(case, evaluated, tmp_path, cache_root):
    runs, _ = evaluated
    (tmp_path / "empty-cache").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    args = {
        "no cache": ["evaluate", str(runs / "tiny_cnn4"), "--cache", str(tmp_path / "empty-cache")],
        "no run": ["evaluate", str(tmp_path / "missing-run"), "--cache", str(cache_root)],
        "no index": ["evaluate", "--index", str(tmp_path / "index.json"), "--cache", str(cache_root)],
        "bad split": ["evaluate", str(runs / "tiny_cnn4"), "--split", "train", "--cache", str(cache_root)],
        "not a checkpoint": ["evaluate", str(tmp_path / "notes.txt"), "--cache", str(cache_root)],
    }[case]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    expected = {"no cache": "guesser preprocess", "no run": "no such run folder", "no index": "guesser train multi",
                "bad split": "--split", "not a checkpoint": "not a guesser checkpoint"}[case]
    assert expected in lines[0]


def test_family_models_weight_is_chosen_on_val_and_recorded_for_the_app(evaluated, fsd_tree, app_out):
    """By hand on the app's own per-model outputs: each grid weight's family mAP on val; the one
    evaluate chose is the best, and it was written into the index and used by the app."""
    from trainer.evaluate import FAMILY_WEIGHT_GRID

    runs, res = evaluated
    fit = res["ensemble"]["family_weights"]
    assert list(fit["chosen"]) == ["tiny_family"] and fit["combinations_tried"] == len(FAMILY_WEIGHT_GRID)
    val = app_out["val"]
    y = (family_truth(truth(fsd_tree.split("val"))) > 0).astype(int)
    folded = [fold_by_hand(val[n]) for n in ("tiny_cnn3", "tiny_cnn4")]
    fam_model = np.zeros((len(y), 6))
    fam_model[:, [FAMILIES_6.index(c) for c in load_model(runs / "tiny_family" / "best.safetensors").classes]] = \
        val["tiny_family"]
    by_hand = {w: macro_ap(y, (folded[0] + folded[1] + w * fam_model) / (2 + w)) for w in FAMILY_WEIGHT_GRID}
    chosen = fit["chosen"]["tiny_family"]
    assert fit["val_family_map"] == pytest.approx(by_hand[chosen], abs=1e-4)
    assert fit["val_family_map_equal_weights"] == pytest.approx(by_hand[1.0], abs=1e-4)
    assert by_hand[chosen] >= max(by_hand.values()) - 1e-4  # the best on val (up to float ties)
    entries = {e["name"]: e for e in json.loads((runs / "index.json").read_text())["models"]}
    assert entries["tiny_family"].get("family_weight", 1.0) == chosen  # the index leaves out the default, 1
    assert "family_weight" not in entries["tiny_cnn4"]
    assert [m.family_weight for m in Ensemble.load([runs / "index.json"]).models if m.task == "families"] == [chosen]


def test_select_keeps_one_run_per_member_so_export_takes_its_index(cache_root, tmp_path, tmp_path_factory):
    """Two cnn4 runs among the candidates: the index names one of them, and ``export`` accepts it."""
    from tinyruns import RECIPES, recipe
    from trainer.train import train

    base = build_runs(cache_root, tmp_path_factory.getbasetemp() / "tiny-runs")
    spec = dict(RECIPES[0], name="tiny_cnn4_b", train={"seed": 1})
    train(recipe(spec), cache_root, tmp_path / "tiny_cnn4_b", device="cpu", progress=False, log=lambda *_: None)
    runs = [base / "tiny_cnn4", tmp_path / "tiny_cnn4_b", base / "tiny_cnn3", base / "tiny_family"]
    res = CliRunner().invoke(app, ["select", *map(str, runs), "--cache", str(cache_root),
                                   "--out", str(tmp_path / "selected.json")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    models = json.loads((tmp_path / "selected.json").read_text())["models"]
    members = [e["member"] for e in models]
    assert len(members) == len(set(members))
    cnn4 = [e["name"] for e in models if e["member"] == "cnn4"]
    assert len(cnn4) == 1  # on these runs val takes a cnn4; the other is named as such, not as one that never helped
    other = ({"tiny_cnn4", "tiny_cnn4_b"} - set(cnn4)).pop()
    assert f"other runs of the chosen members (one run each): {other}" in " ".join(res.output.split())
    out = CliRunner().invoke(app, ["export", str(tmp_path / "selected.json"), "--out", str(tmp_path / "shipped")])
    assert out.exit_code == 0, out.output
    shipped = json.loads((tmp_path / "shipped" / "index.json").read_text())["models"]
    assert sorted(e["member"] for e in shipped) == sorted(members)
