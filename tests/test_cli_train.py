"""``guesser train one|multi|list`` and ``guesser tune`` through typer's CliRunner.

(The real subprocesses are in test_train.py — ``guesser train one`` killed with
SIGKILL and resumed — and test_ddp.py — ``guesser train one`` under torchrun.)
"""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from guesser.cli import app
from guesser.ensemble import load_model
from trainer.recipe import Recipe, shipped_names
from trainkit import one_thread, tiny_recipe, write_recipe

pytestmark = pytest.mark.slow  # real training through the CLI


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with one_thread():
        yield


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def one_line_error(result, text: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and text in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def json_lines(text: str) -> list[dict]:
    return [json.loads(s) for s in text.splitlines() if s.startswith("{")]


def test_train_list_shows_the_shipped_recipes():
    r = run("train", "list")
    assert r.exit_code == 0, r.output
    for name in shipped_names():
        assert name in r.stdout


def test_train_one_then_the_same_folder_needs_resume(fsd_cache, tmp_path):
    recipe = write_recipe(tmp_path / "tiny.toml", tiny_recipe(epochs=3))
    out = tmp_path / "run"
    common = ["--cache", str(fsd_cache.directory.parent), "--out", str(out), "--device", "cpu", "--no-progress"]
    r = run("train", "one", str(recipe), *common, "--epochs", "1", "--batch-size", "8")
    assert r.exit_code == 0, r.output
    rows = json_lines(r.stdout)
    assert [row["epoch"] for row in rows] == [1] and "val_map" in rows[0]
    assert f"-> {out / 'best.safetensors'}" in r.stderr
    saved = Recipe.from_dict(json.loads((out / "run.json").read_text())["recipe"])
    assert (saved.train.epochs, saved.train.batch_size) == (1, 8)  # the overrides are what ran
    assert load_model(out / "best.safetensors").task == "labels"

    one_line_error(run("train", "one", str(recipe), *common, "--epochs", "1", "--batch-size", "8"),
                   "already holds a run; pass --resume")
    one_line_error(run("train", "one", str(recipe), *common, "--resume"),
                   "different recipe (train.batch_size (8 vs 4))")


def test_train_one_bad_input_is_one_line(fsd_cache, tmp_path):
    cache = str(fsd_cache.directory.parent)
    one_line_error(run("train", "one", "no_such_recipe", "--cache", cache), "no such recipe file or shipped recipe")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "b"\nmember = "cnn4"\narch = "cnn4"\ntask = "labels"\n[train]\nlr = 7.0\n')
    one_line_error(run("train", "one", str(bad), "--cache", cache), f"{bad}: train.lr must be in (0, 1)")
    recipe = write_recipe(tmp_path / "tiny.toml", tiny_recipe())
    one_line_error(run("train", "one", str(recipe), "--cache", str(tmp_path / "nocache"), "--out", str(tmp_path / "r")),
                   "no cache for feature setting")
    one_line_error(run("train", "one", str(recipe), "--cache", cache, "--out", str(tmp_path / "r2"), "--device", "cuda"),
                   "no CUDA GPU is visible")


def test_train_multi_indexes_each_members_best(fsd_cache, tmp_path):
    a = write_recipe(tmp_path / "a.toml", tiny_recipe("labels_a", batch_size=8, augment={}))
    b = write_recipe(tmp_path / "b.toml", tiny_recipe("fam_b", arch="family_cnn", task="families", batch_size=8,
                                                     augment={}))
    # a recipe that continues a run this checkout does not have is skipped, and the others still train
    missing = tmp_path / "runs" / "earlier" / "best.safetensors"
    c = write_recipe(tmp_path / "c.toml", tiny_recipe("needs_earlier", batch_size=8, augment={}, init=str(missing)))
    out = tmp_path / "runs"
    r = run("train", "multi", "--recipes", f"{a},{c},{b}", "--cache", str(fsd_cache.directory.parent), "--out",
            str(out), "--epochs", "1", "--device", "cpu", "--no-progress")
    assert r.exit_code == 0, r.output
    assert f"needs_earlier: skipped, it needs {missing}" in " ".join(r.stderr.split())
    assert not (out / "needs_earlier").exists()
    index = json.loads((out / "index.json").read_text())
    assert {(m["member"], m["name"], m["task"]) for m in index["models"]} == {
        ("cnn4", "labels_a", "labels"), ("family_cnn", "fam_b", "families")}
    for m in index["models"]:
        run_json = json.loads((out / m["name"] / "run.json").read_text())
        assert m["val_score"] == round(run_json["best_score"], 6)
        assert load_model(out / m["path"]).name == m["name"]
    # --resume keeps finished runs instead of training them again
    again = run("train", "multi", "--recipes", f"{a},{b}", "--cache", str(fsd_cache.directory.parent), "--out",
                str(out), "--epochs", "1", "--device", "cpu", "--no-progress", "--resume")
    assert again.exit_code == 0 and again.stderr.count("finished earlier, kept") == 2
    one_line_error(run("train", "multi", "--recipes", "nope", "--cache", str(fsd_cache.directory.parent)),
                   "unknown recipe(s) nope")


def test_tune_writes_a_best_recipe_that_trains(fsd_cache, tmp_path):
    recipe = write_recipe(tmp_path / "tiny.toml", tiny_recipe(batch_size=8, augment={}))
    out = tmp_path / "study"
    r = run("tune", str(recipe), "--trials", "1", "--epochs", "1", "--cache", str(fsd_cache.directory.parent),
            "--out", str(out), "--device", "cpu", "--no-progress")
    assert r.exit_code == 0, r.output
    best = json_lines(r.stdout)[-1]
    assert best["best_trial"] == 0 and best["recipe"] == str(out / "best_recipe.toml")
    tuned = Recipe.load(out / "best_recipe.toml")
    assert tuned.name == "tiny_tuned" and tuned.train.lr == best["params"]["lr"]
    assert (out / "study.db").is_file() and (out / "trials" / "0000" / "best.safetensors").is_file()


def test_tune_without_optuna_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "optuna", None)
    one_line_error(run("tune", shipped_names()[0], "--trials", "1", "--out", str(tmp_path)),
                   "pip install 'guesser[tune]'")


def test_progress_bar_shows_loss_and_rate(fsd_cache, tmp_path):
    recipe = write_recipe(tmp_path / "tiny.toml", tiny_recipe(epochs=1, batch_size=8, augment={}))
    r = CliRunner().invoke(app, ["train", "one", str(recipe), "--cache", str(fsd_cache.directory.parent), "--out",
                                 str(tmp_path / "run"), "--device", "cpu", "--progress"],
                           env={"TTY_COMPATIBLE": "1", "COLUMNS": "140"})  # rich draws bars for a terminal only
    assert r.exit_code == 0, r.output
    assert "tiny epoch 1/1" in r.stderr and "loss 0." in r.stderr and "clips/s" in r.stderr
