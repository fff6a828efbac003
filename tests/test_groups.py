"""Per-group evaluation (``guesser evaluate --groups FILE:COLUMN``): metrics checked by hand, CLI on a tiny tree."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from guesser.errors import DataError
from trainer.groups import group_map, group_scores, load_groups, parse_spec


def test_parse_spec():
    assert parse_spec("a/sources.csv:origin") == (__import__("pathlib").Path("a/sources.csv"), "origin")
    assert parse_spec("sources.csv")[1] == "origin"


def test_load_groups_errors_are_one_line(tmp_path):
    with pytest.raises(DataError, match="no such CSV"):
        load_groups(str(tmp_path / "none.csv:origin"))
    bad = tmp_path / "bad.csv"
    bad.write_text("name,origin\n1,a\n")
    with pytest.raises(DataError, match="needs the columns fname and origin"):
        load_groups(f"{bad}:origin")
    good = tmp_path / "good.csv"
    good.write_text("fname,who\n1,a\n2,b\n")
    assert load_groups(f"{good}:who") == {"1": "a", "2": "b"}


def test_group_map_ranks_the_groups_positives_among_all_negatives():
    y = np.array([[1], [1], [0], [0], [1]], np.uint8)
    p = np.array([[0.9], [0.2], [0.5], [0.1], [0.8]])
    in_group = np.array([True, True, False, False, False])
    # the group's positives (0.9, 0.2) among the negatives (0.5, 0.1); clip 4 (another group's positive) left out
    expected = average_precision_score([1, 1, 0, 0], [0.9, 0.2, 0.5, 0.1])
    assert group_map(y, p, in_group) == pytest.approx(expected)


def test_group_scores_by_hand():
    fnames = np.array(["1", "2", "3", "4"])
    groups = {"1": "real", "2": "real", "3": "gm", "4": "gm"}
    labels = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], np.uint8)
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])
    fams = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], np.float32)
    fprobs = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.5, 0.5]])
    out = group_scores(fnames, groups, labels=labels, label_probs=probs, families=fams, family_probs=fprobs,
                       synthetic=("gm",))
    assert out["groups"]["real"]["top1"] == 0.5  # clip 1 right (label 0), clip 2 wrong
    assert out["groups"]["gm"]["top1"] == 0.5
    assert out["groups"]["real"]["top_family"] == 1.0 and out["groups"]["gm"]["top_family"] == 0.0
    assert out["real"]["clips"] == 2 and out["synthetic"] == ["gm"]


def test_evaluate_with_groups_on_a_tiny_tree(fsd_cache, tmp_path, tmp_path_factory):
    """``guesser evaluate --groups`` writes per-group scores for each model and the ensemble, and prints them."""
    from typer.testing import CliRunner

    from guesser.cli import app
    from tinyruns import build_runs, copy_runs
    from trainer.cache import FeatureCache

    cache_root = fsd_cache.directory.parent
    runs = copy_runs(build_runs(cache_root, tmp_path_factory.getbasetemp() / "tiny-runs"), tmp_path / "runs")
    fn = [str(f) for f in FeatureCache.open(fsd_cache.directory).split("eval").fnames]
    groups = tmp_path / "sources.csv"
    with open(groups, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fname", "origin"])
        for i, name in enumerate(fn):
            w.writerow([name, "recorded" if i % 2 else "gm"])
    r = CliRunner().invoke(app, ["evaluate", "--index", str(runs / "index.json"), "--cache", str(cache_root),
                                 "--groups", f"{groups}:origin"], env={"COLUMNS": "150"})
    assert r.exit_code == 0, r.output
    assert "by group" in r.stdout and "real recordings" in r.stdout and "gm (synthetic)" in r.stdout
    results = [json.loads(p.read_text()) for p in runs.glob("*/eval.json")] + [json.loads((runs / "ensemble_eval.json").read_text())]
    assert len(results) >= 3
    for res in results:
        g = res["groups"]
        assert g["groups"]["recorded"]["clips"] + g["groups"]["gm"]["clips"] == len(fn)
        assert g["real"]["clips"] == g["groups"]["recorded"]["clips"]
        assert 0 <= g["real"]["top_family"] <= 1
    report = CliRunner().invoke(app, ["report", "--root", str(runs)], env={"COLUMNS": "150"})
    assert report.exit_code == 0, report.output
    assert "by group" in report.stdout and "real recordings" in report.stdout
