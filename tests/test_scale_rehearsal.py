"""The FSD50K-scale rehearsal at 2,000 clips: generator -> preprocess -> train -> evaluate -> report.

``benchmarks/make_fsd50k_scale.py`` writes an FSD50K-shaped tree (here with
synthesised sources and clips shortened 7x, so it takes seconds; a few clips
stay at exactly 30 s and 0.3 s); the CLI then runs the flow the full-size
rehearsal ran (docs/benchmarks.md, "FSD50K scale") on it. What must hold at
any size: every corrupt file is skipped and reported, never fatal; the labels
with one eval clip keep exactly one; all 200 labels reach the cache, the
evaluation and the report, and the report stays readable at 200 labels.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from guesser.cli import app
from trainer.cache import FeatureCache
from trainkit import one_thread, write_recipe
from trainer.recipe import Recipe

pytestmark = pytest.mark.slow  # a 2,000-clip tree through the whole CLI flow (~1 min on 2 cores)

REPO = Path(__file__).resolve().parents[1]
CLIPS = 2000


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import make_fsd50k_scale as gen
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    root = tmp_path_factory.mktemp("scale") / "FSD50K"
    info = gen.generate(root, CLIPS, None, jobs=2, seed=0, progress=False, seconds_scale=0.15)
    return root, info


def run(*args: str):
    with one_thread():
        return CliRunner().invoke(app, list(args))


def test_the_tree_has_fsd50ks_shape(tree):
    root, info = tree
    gt = root / "FSD50K.ground_truth"
    assert (gt / "dev.csv").read_text().splitlines()[0] == "fname,labels,mids,split"
    assert (gt / "eval.csv").read_text().splitlines()[0] == "fname,labels,mids"
    assert len((gt / "vocabulary.csv").read_text().splitlines()) == 200
    assert info["splits"] == {"train": 1437, "val": 163, "eval": 400}  # FSD50K's proportions
    assert info["labels_used"] == 200
    assert info["seconds"]["at_30s"] >= 5 and info["seconds"]["at_0_3s"] >= 30
    assert set(info["rare_eval_labels"].values()) == {1} and len(info["rare_eval_labels"]) == 6
    assert len(info["corrupt"]) == 5
    wavs = sorted((root / "FSD50K.dev_audio").glob("*.wav")) + sorted((root / "FSD50K.eval_audio").glob("*.wav"))
    assert len(wavs) == CLIPS


def test_the_whole_flow_at_2000_clips(tree, tmp_path):
    root, info = tree
    cache, out = tmp_path / "cache", tmp_path / "run"
    r = run("preprocess", str(root), "--out", str(cache), "--features", "compact", "-j", "2", "--no-progress")
    assert r.exit_code == 0, r.output
    (d,) = [p for p in cache.iterdir() if p.is_dir()]
    fc = FeatureCache.open(d)
    skipped = {s["fname"] for s in fc.report["skipped"]}
    assert skipped == set(info["corrupt"])  # every corrupt file skipped and reported, nothing else
    ev = fc.split("eval")
    vocab = list(ev.vocabulary)
    per_label = ev.targets.sum(axis=0)
    for label in info["rare_eval_labels"]:
        assert per_label[vocab.index(label)] == 1
    counts = sum(len(fc.split(s)) for s in ("train", "val", "eval"))
    assert counts == CLIPS - len(info["corrupt"])

    recipe = Recipe.from_dict({"name": "scale", "member": "cnn4", "arch": "cnn4", "task": "labels",
                               "features": {"preset": "compact", "clip_seconds": 1.0},
                               "train": {"epochs": 1, "batch_size": 32, "precision": "fp32", "oversample": True,
                                         "seed": 0}})
    toml = write_recipe(tmp_path / "scale.toml", recipe)
    r = run("train", "one", str(toml), "--cache", str(cache), "--out", str(out), "--device", "cpu", "--no-progress")
    assert r.exit_code == 0, r.output
    r = run("evaluate", str(out), "--cache", str(cache), "--no-ensemble")
    assert r.exit_code == 0, r.output
    result = json.loads((out / "eval.json").read_text())
    labels = result["labels"]
    assert len(labels["names"]) == len(labels["ap"]) == 200
    for label in info["rare_eval_labels"]:  # one positive is enough for an AP
        k = labels["names"].index(label)
        assert labels["positives"][k] == 1 and np.isfinite(labels["ap"][k])
    r = run("report", str(out), "--width", "100")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert max(len(s) for s in lines) <= 100
    assert any("top family" in s for s in lines)  # the confusion-matrix view
