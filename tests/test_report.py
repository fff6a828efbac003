"""guesser report: renders real run folders (trained and evaluated here) and holds their numbers."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from guesser.cli import app
from tinyruns import build_runs, copy_runs
from trainer.evaluate import run_evaluate
from trainer.report import REFERENCES, run_report

pytestmark = pytest.mark.slow  # trains tiny runs for the report


@pytest.fixture(scope="module")
def runs(fsd_cache, tmp_path_factory) -> Path:
    """Three evaluated runs + the ensemble; tiny_cnn3's eval.json removed (a run not evaluated yet)."""
    cache_root = fsd_cache.directory.parent
    base = build_runs(cache_root, tmp_path_factory.getbasetemp() / "tiny-runs")
    out = copy_runs(base, tmp_path_factory.mktemp("report") / "runs")
    run_evaluate([], cache=cache_root, index=out / "index.json", console=Console(file=io.StringIO()))
    (out / "tiny_cnn3" / "eval.json").unlink()
    return out


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def f3(v: float) -> str:
    return f"{v:.3f}"


def expected_numbers(runs: Path) -> list[str]:
    """Numbers the report must show, read from the files it reads (formatted to 3 places)."""
    lab = load(runs / "tiny_cnn4" / "eval.json")["summary"]
    fam = load(runs / "tiny_family" / "eval.json")["summary"]
    ens = load(runs / "ensemble_eval.json")["summary"]
    cnn3 = load(runs / "tiny_cnn3" / "run.json")
    return [f3(lab[k]) for k in ("map", "d_prime", "lwlrap", "family_map", "f1_macro")] + \
        [f3(fam[k]) for k in ("family_map", "family_f1_macro")] + \
        [f3(ens[k]) for k in ("map", "d_prime", "lwlrap", "family_map")] + \
        [f"val {f3(cnn3['best_score'])}", "1.47M", "1.39M"]


def render(runs_arg: list[Path], root: Path, **kw) -> str:
    console = Console(record=True, file=io.StringIO(), width=120)
    return run_report(runs_arg, root=root, console=console, **kw)


def test_report_holds_the_runs_numbers(runs):
    text = render([], runs)
    for number in expected_numbers(runs):
        assert number in text, number
    for name in ("tiny_cnn4", "tiny_cnn3", "tiny_family", "ensemble"):
        assert name in text
    # references: every published number, marked as measured on the full FSD50K
    for ref in REFERENCES:
        assert f"ref: {ref.name}" in text
        for v in (ref.map, ref.d_prime, ref.lwlrap, ref.family_map):
            if v is not None:
                assert f3(v) in text
    assert "full FSD50K" in text and "not comparable" in text
    # the run without eval.json: training info, and what to run
    assert f"guesser evaluate {runs / 'tiny_cnn3'}" in text


def test_best_and_worst_labels(runs):
    ev = load(runs / "tiny_cnn4" / "eval.json")
    scored = sorted((ap, n) for n, ap in zip(ev["labels"]["names"], ev["labels"]["ap"]) if ap is not None)
    text = render([runs / "tiny_cnn4"], runs)
    assert f"{len(scored)} labels with positives" in text
    lines = text.splitlines()
    for ap, name in (scored[-1], scored[0]):  # the best and the worst label, each on a line with its AP
        assert any(name.replace("_", " ") in ln and f3(ap) in ln for ln in lines), name


def test_charts_and_heatmap(runs):
    text = render([], runs)
    for name in ("tiny_cnn4", "tiny_cnn3", "tiny_family"):
        assert f"{name}: loss per epoch" in text
    one = [json.loads(ln) for ln in (runs / "tiny_cnn3" / "metrics.jsonl").read_text().splitlines()]
    assert len(one) == 1  # a one-epoch run: its losses as numbers instead of a two-dot chart
    assert f"train loss {one[0]['train_loss']:.4f}, val loss {one[0]['val_loss']:.4f}" in text
    ev = load(runs / "tiny_cnn4" / "eval.json")
    assert f"tiny_cnn4 (AUC {f3(ev['roc_labels']['micro']['auc'])})" in text
    assert f"tiny_cnn4 (AUC {f3(ev['roc_families']['micro']['auc'])})" in text
    fam = load(runs / "tiny_family" / "eval.json")
    heat = text[text.index("tiny_family: top family"):]
    for cls, row, n in zip(fam["confusion"]["classes"], fam["confusion"]["matrix"], fam["families"]["support"]):
        if n:
            short = {"Sounds of things": "Things", "Natural sounds": "Natural", "Human sounds": "Human",
                     "Source-ambiguous sounds": "Ambiguous"}.get(cls, cls)
            line = next(ln for ln in heat.splitlines() if ln.strip().startswith(short))
            assert [f"{v * 100:.0f}%" for v in row] == [c for c in line.split() if c.endswith("%")]


def test_heatmap_cells_are_coloured_by_value(runs):
    console = Console(record=True, file=io.StringIO(), width=120, color_system="truecolor")
    run_report([runs / "tiny_family"], root=runs, console=console)
    html = console.export_html(inline_styles=True)
    assert "background-color: #f7fbff" in html or "background-color: #08306b" in html  # 0 % or 100 % cells


class TextOf(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.parts.append(data)


def test_html_export(runs, tmp_path):
    out = tmp_path / "sub" / "report.html"
    text = render([], runs, html=out)
    parser = TextOf()
    parser.feed(out.read_text())
    parser.close()
    assert {"html", "body", "pre"} <= set(parser.tags)
    page = "".join(parser.parts)
    for number in expected_numbers(runs):
        assert number in page, number
    assert "leaderboard" in page and page.count("loss per epoch") == text.count("loss per epoch") == 3


def test_run_with_only_a_metrics_file(runs, tmp_path):
    """A run copied mid-training (no run.json, no eval.json): its curve and a hint, no crash."""
    folder = tmp_path / "copied"
    folder.mkdir()
    shutil.copy(runs / "tiny_cnn4" / "metrics.jsonl", folder / "metrics.jsonl")
    text = render([folder], tmp_path)
    assert "copied: loss per epoch" in text and "copied: not evaluated yet" in text


def test_cli(runs):
    result = CliRunner().invoke(app, ["report", "--root", str(runs), "--width", "120"])
    assert result.exit_code == 0, result.output
    for number in expected_numbers(runs):
        assert number in result.output


@pytest.mark.parametrize("case", ["missing folder", "empty root", "corrupt eval"])
def test_cli_errors_are_one_line(case, runs, tmp_path):
    if case == "missing folder":
        args = ["report", str(tmp_path / "no-such-run")]
        expected = "no such run folder"
    elif case == "empty root":
        (tmp_path / "empty").mkdir()
        args = ["report", "--root", str(tmp_path / "empty")]
        expected = "no runs found"
    else:
        bad = copy_runs(runs / "tiny_cnn4", tmp_path / "bad")
        (bad / "eval.json").write_text("{not json")
        args = ["report", str(bad)]
        expected = "cannot read it as JSON"
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.output


def guesser_command() -> list[str]:
    script = Path(sys.executable).with_name("guesser")
    return [str(script)] if script.exists() else [sys.executable, "-m", "guesser"]


def test_subprocess(runs, tmp_path):
    out = tmp_path / "r.html"
    env = {**os.environ, "COLUMNS": "120"}
    ok = subprocess.run([*guesser_command(), "report", "--root", str(runs), "--html", str(out)],
                        capture_output=True, text=True, timeout=120, env=env)
    assert ok.returncode == 0, ok.stderr
    assert f3(load(runs / "tiny_cnn4" / "eval.json")["summary"]["map"]) in ok.stdout
    assert out.read_text().lstrip().lower().startswith("<!doctype html>")
    bad = subprocess.run([*guesser_command(), "report", str(tmp_path / "nope")], capture_output=True, text=True,
                         timeout=120, env=env)
    assert bad.returncode != 0
    assert bad.stderr.strip().count("\n") == 0 and "no such run folder" in bad.stderr and "Traceback" not in bad.stderr
