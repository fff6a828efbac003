"""The trainer's file records (trainer/records.py): written and read back, and one line for a bad file."""

from __future__ import annotations

import json
import math

import pytest

from guesser.errors import GuesserError
from trainer.records import EvalResult, MetricsRow, RunSummary, Selection, SelectionStep


def summary(**changes) -> RunSummary:
    base = dict(recipe={"name": "r", "train": {"lr": 0.001}}, member="cnn4", name="r", task="labels",
                score_name="val_map", best_score=0.61, best_epoch=3, epochs_run=4, early_stopped=True,
                trained_seconds=12.5, params=1000, cache="/c/x", commit="abc", world_size=2)
    return RunSummary(**(base | changes))


def test_run_summary_round_trips_through_its_file(tmp_path):
    s = summary()
    s.write(tmp_path / "run.json")
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["version"] == 1 and doc["best_score"] == 0.61 and doc["world_size"] == 2
    assert RunSummary.read(tmp_path / "run.json") == s


def test_a_run_json_without_version_or_newer_fields_still_reads(tmp_path):
    doc = summary().to_json()
    del doc["version"], doc["world_size"]
    doc["added_later"] = [1, 2]
    (tmp_path / "run.json").write_text(json.dumps(doc))
    assert RunSummary.read(tmp_path / "run.json").world_size == 1


@pytest.mark.parametrize("edit, says", [
    (lambda d: d.update(best_score="high"), "best_score must be a number, got 'high'"),
    (lambda d: d.pop("member"), "member is missing"),
    (lambda d: d.update(best_epoch=2.5), "best_epoch must be an integer"),
    (lambda d: d.update(version=7), "written by a newer guesser (version 7)"),
])
def test_a_bad_run_json_is_one_line_naming_the_file_and_field(tmp_path, edit, says):
    doc = summary().to_json()
    edit(doc)
    (tmp_path / "run.json").write_text(json.dumps(doc))
    with pytest.raises(GuesserError) as e:
        RunSummary.read(tmp_path / "run.json")
    assert str(e.value).startswith(str(tmp_path / "run.json")) and says in str(e.value) and "\n" not in str(e.value)


def test_metrics_rows_keep_the_file_layout_and_nan(tmp_path):
    rows = [MetricsRow(1, 0.5, 0.001, seconds=1.0), MetricsRow(2, math.nan, 0.001, 0.4, val_map=0.7, seconds=2.0)]
    MetricsRow.write_lines(tmp_path / "metrics.jsonl", rows)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert lines[0] == '{"epoch": 1, "train_loss": 0.5, "lr": 0.001, "seconds": 1.0}'  # unset fields left out
    assert list(json.loads(lines[1])) == ["epoch", "train_loss", "lr", "val_loss", "val_map", "seconds"]
    back = MetricsRow.read_lines(tmp_path / "metrics.jsonl")
    assert back[0] == rows[0] and math.isnan(back[1].train_loss) and back[1].score("val_map") == 0.7
    assert back[0].score("val_map") is None and back[1].score("val_family_map") is None


def test_a_bad_metrics_line_names_its_line(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"epoch": 1, "train_loss": 0.5}\n{"epoch": 2, "train_loss": "x"}\n')
    with pytest.raises(GuesserError, match=r"m\.jsonl:2: train_loss must be a number"):
        MetricsRow.read_lines(tmp_path / "m.jsonl")


EVAL = {"version": 1, "kind": "labels", "name": "r", "member": "cnn4", "task": "labels", "split": "eval", "clips": 3,
        "params": 10, "thresholds_from": "val", "seconds": 1.5,
        "summary": {"map": 0.5, "d_prime": None, "f1_micro": 0.4, "f1_macro": 0.3, "family_map": 0.8},
        "labels": {"names": ["Dog", "Cat"], "ap": [0.5, None], "auc": [0.6, None], "positives": [2, 0]},
        "roc_labels": {"micro": {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0], "auc": 0.5}},
        "families": {"names": ["Animal"], "ap": [0.8], "positives": [2], "support": [2.0]},
        "confusion": {"classes": ["Animal"], "matrix": [[1.0]]},
        "groups": {"groups": {"a": {"clips": 3}}}}


def test_an_eval_result_reads_back_as_written(tmp_path):
    r = EvalResult.from_json(EVAL, "eval.json")
    assert r.summary.map == 0.5 and r.summary.f1 == 0.3 and r.summary.has_labels and r.summary.lwlrap is None
    assert r.labels.names == ("Dog", "Cat") and r.roc_labels.auc == 0.5 and r.confusion.matrix == [[1.0]]
    r.write(tmp_path / "eval.json")
    assert json.loads((tmp_path / "eval.json").read_text()) == EVAL
    assert EvalResult.read(tmp_path / "eval.json") == r


@pytest.mark.parametrize("edit, says", [
    (lambda d: d["summary"].update(map="high"), "summary.map must be a finite number"),
    (lambda d: d["labels"].update(ap=[0.5]), "labels: names, ap and positives must be of one length"),
    (lambda d: d["confusion"].update(matrix=[[1.0, 0.0]]), "confusion: must hold classes and a square matrix"),
    (lambda d: d["roc_labels"]["micro"].update(tpr=[0.0]), "roc_labels.micro: must hold fpr and tpr of one length"),
    (lambda d: d.update(clips="3"), "clips must be an integer"),
])
def test_a_bad_eval_result_is_one_line(edit, says):
    doc = json.loads(json.dumps(EVAL))
    edit(doc)
    with pytest.raises(GuesserError) as e:
        EvalResult.from_json(doc, "runs/r/eval.json")
    assert str(e.value).startswith("runs/r/eval.json") and says in str(e.value)


def test_not_a_json_object_is_one_line(tmp_path):
    (tmp_path / "eval.json").write_text("[1, 2]")
    with pytest.raises(GuesserError, match="not a guesser evaluation result .not a JSON object: a list"):
        EvalResult.read(tmp_path / "eval.json")
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(GuesserError, match="run.json: cannot read it as JSON"):
        RunSummary.read(tmp_path / "run.json")


def test_a_selection_round_trips():
    sel = Selection({"a": 2}, 0.9, [SelectionStep(1, "a", 0.8, 0.7, 0.9), SelectionStep(2, "a", 0.9, 0.8, 0.95)])
    back = Selection.from_json(json.loads(json.dumps(sel.to_json())), "selected.json")
    assert back.history == sel.history and back.objective == 0.9
    with pytest.raises(GuesserError, match="step 2: added is missing"):
        Selection.from_json({"objective": 1.0, "steps": [sel.history[0].to_json(), {"step": 2}]}, "selected.json")
