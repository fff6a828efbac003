"""``guesser preprocess`` from the command line: in-process (typer's CliRunner) and as a real subprocess."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import trainer.cache_build as cache_mod
from guesser.cli import app
from guesser.features import PANNS, SEED_CNN
from trainer.cache import FeatureCache, cache_dir

GUESSER = Path(sys.executable).parent / "guesser"  # the installed console script


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, ["preprocess", *args], env=env)


def one_line_error(result, text: str) -> None:
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and text in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.fixture
def tiny(make_fsd_tree):
    return make_fsd_tree(per_class=(2, 1, 1), classes=("rain", "bark"))


def test_builds_the_cache(tiny, tmp_path):
    r = run(str(tiny.root), "--out", str(tmp_path / "c"), "-j", "1", "--no-progress")
    assert r.exit_code == 0, r.output
    cache = FeatureCache.open(cache_dir(tmp_path / "c", SEED_CNN))
    assert {s: len(cache.split(s)) for s in ("train", "val", "eval")} == {"train": 4, "val": 2, "eval": 2}
    assert f"cache {cache.directory}\n" in r.stderr  # the path on one line, whatever the width
    table = [line.replace("│", " ").split() for line in r.stderr.splitlines()]
    for split, n in (("train", "4"), ("val", "2"), ("eval", "2")):
        assert [split, n] in table


def test_progress_bar_shows_rate(tiny, tmp_path):
    r = run(str(tiny.root), "--out", str(tmp_path / "c"), "-j", "1", "--progress")
    assert r.exit_code == 0, r.output
    assert "clips/s" in r.stderr and "8/8" in r.stderr


def test_both_presets(tiny, tmp_path):
    r = run(str(tiny.root), "--out", str(tmp_path / "c"), "-j", "1", "--no-progress", "--features", "all")
    assert r.exit_code == 0, r.output
    for cfg in (SEED_CNN, PANNS):
        assert FeatureCache.open(cache_dir(tmp_path / "c", cfg)).split("eval").clip(0).shape[0] == cfg.n_mels


@pytest.mark.parametrize(
    "args, text",
    [
        (["{missing}"], "data root not found"),
        (["{tmp}"], "not an FSD50K root"),
        (["{root}", "--features", "mfcc"], "--features: unknown preset(s) mfcc"),
        (["{root}", "--shard", "2/2"], "--shard 2/2: need 0 <= i < n"),
        (["{root}", "--shard", "first"], "--shard must look like i/n"),
        (["{root}", "-j", "0"], "--jobs must be at least 1"),
        (["{root}", "--merge"], "nothing to merge"),
    ],
)
def test_bad_input_is_one_line(tiny, tmp_path, args, text):
    fill = {"missing": str(tmp_path / "nope"), "tmp": str(tmp_path), "root": str(tiny.root)}
    r = run(*[a.format(**fill) for a in args], "--out", str(tmp_path / "c"), "--no-progress")
    one_line_error(r, text)


def test_bad_csv_row_names_file_and_line(tiny, tmp_path):
    dev = tiny.ground_truth / "dev.csv"
    lines = dev.read_text().splitlines()
    lines[3] = lines[3].replace("Rain", "Drizzle", 1).replace("Bark", "Drizzle", 1)
    dev.write_text("\n".join(lines) + "\n")
    r = run(str(tiny.root), "--out", str(tmp_path / "c"), "--no-progress")
    one_line_error(r, f"{dev}:4: unknown label 'Drizzle'")


def test_disk_full(tiny, tmp_path, monkeypatch):
    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_mod, "atomic_write", full)
    r = run(str(tiny.root), "--out", str(tmp_path / "c"), "-j", "1", "--no-progress")
    one_line_error(r, "disk full while writing")


@pytest.mark.slow
def test_shards_by_torchrun_env_and_by_flag_then_merge(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "CHUNK", 2)  # 4 train, 2 val, 2 eval clips -> 4 chunks to share
    out = tmp_path / "c"
    r0 = run(str(tiny.root), "--out", str(out), "-j", "1", "--no-progress", env={"RANK": "0", "WORLD_SIZE": "2"})
    assert r0.exit_code == 0, r0.output
    assert "shard 0/2" in r0.stderr and "--merge" in r0.stderr
    # the merge command on one line, to copy (the rehearsal's long paths folded it at 80 columns)
    assert f"(guesser preprocess {tiny.root} --out {out} --merge)" in r0.stderr.splitlines()[-1]
    assert not (cache_dir(out, SEED_CNN) / "manifest.json").exists()
    one_line_error(run(str(tiny.root), "--out", str(out), "--merge"), "chunk(s) not built yet")
    r1 = run(str(tiny.root), "--out", str(out), "-j", "1", "--no-progress", "--shard", "1/2")
    assert r1.exit_code == 0, r1.output  # the last shard merges
    r2 = run(str(tiny.root), "--out", str(out), "--merge")
    assert r2.exit_code == 0 and "train" in r2.stderr  # merging a finished cache just reports it
    single = tmp_path / "single"
    assert run(str(tiny.root), "--out", str(single), "-j", "1", "--no-progress").exit_code == 0
    a, b = cache_dir(out, SEED_CNN), cache_dir(single, SEED_CNN)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names if n != "manifest.json")


@pytest.mark.slow
def test_real_subprocess(make_fsd_tree, tmp_path):
    tree = make_fsd_tree(bad=True, per_class=(1, 1, 1), classes=("piano", "engine"))
    out = tmp_path / "c"
    env = {**os.environ, "COLUMNS": "200"}
    p = subprocess.run([str(GUESSER), "preprocess", str(tree.root), "--out", str(out), "-j", "2"],
                       capture_output=True, text=True, env=env, timeout=240)
    assert p.returncode == 0, p.stderr
    assert "skipped 4 clip(s)" in p.stderr and "report.json" in p.stderr
    assert "Traceback" not in p.stderr
    cache = FeatureCache.open(cache_dir(out, SEED_CNN))
    assert {s["fname"] for s in cache.report["skipped"]} == set(tree.bad)

    bad = subprocess.run([str(GUESSER), "preprocess", str(tmp_path / "nowhere"), "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr == f"error: {tmp_path / 'nowhere'}: data root not found\n"
    assert bad.stdout == ""


def test_default_builds_what_train_multi_needs(tiny, tmp_path):
    """``preprocess`` without --features builds every front-end the shipped recipes train on."""
    from trainer.recipe import PRESETS, shipped_recipes

    r = run(str(tiny.root), "--out", str(tmp_path / "c"), "-j", "1", "--no-progress")
    assert r.exit_code == 0, r.output
    needed = {PRESETS[rec.features.preset].key for rec in shipped_recipes()}
    built = {p.parent.name for p in (tmp_path / "c").glob("*/manifest.json")}
    assert needed == built and len(built) == 3


def test_train_builds_a_missing_front_end_from_the_recorded_data_root(tiny, tmp_path):
    """A cache of one preset is enough: the others are built from the data set it records."""
    from guesser.features import COMPACT
    from trainer.multi import ensure_cache, recorded_data_root

    out = tmp_path / "c"
    assert run(str(tiny.root), "--out", str(out), "-j", "1", "--no-progress", "--features", "seed").exit_code == 0
    assert recorded_data_root(out) == tiny.root.resolve()
    ensure_cache(out, COMPACT, None, progress=False)
    assert FeatureCache.open(cache_dir(out, COMPACT)).split("train").clip(0).shape[0] == COMPACT.n_mels


def test_missing_cache_error_names_a_command_that_works(tiny, tmp_path):
    """The advice printed for a missing cache, run as printed (DATA_ROOT filled in), builds that cache."""
    import re

    from guesser.errors import GuesserError
    from guesser.features import COMPACT
    from trainer.multi import ensure_cache

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GuesserError) as e:
        ensure_cache(empty, COMPACT, None, progress=False)
    advice = re.search(r"run '(guesser preprocess [^']+)'", str(e.value)).group(1)
    assert advice == f"guesser preprocess DATA_ROOT --out {empty} --features compact"
    argv = advice.replace("DATA_ROOT", str(tiny.root)).split()[1:]
    r = CliRunner().invoke(app, [*argv, "-j", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    ensure_cache(empty, COMPACT, None, progress=False)  # now there: nothing to do, no error


def test_the_progress_line_fits_80_columns_at_fsd50k_size():
    # a log file or CI gets 80 columns: the key-long title squeezed the counter to "51197/5…"
    import io

    from rich.console import Console

    from trainer.preprocess import preset_of

    console = Console(width=80, file=io.StringIO(), record=True, force_terminal=False)
    with cache_mod.progress_bar(console) as bar:
        task = bar.add_task(f"log-mel {preset_of(SEED_CNN)}", total=51197, rate=0.0)
        bar.update(task, completed=51197, rate=123.4)
    line = console.export_text().strip()
    assert "51197/51197" in line and "123.4 clips/s" in line and "log-mel seed" in line


def test_the_skipped_report_path_is_never_folded(make_fsd_tree, tmp_path):
    tree = make_fsd_tree(bad=True, per_class=(1, 1, 1), classes=("piano",))
    out = tmp_path / ("a-long-folder-name-" * 4) / "cache"
    r = run(str(tree.root), "--out", str(out), "-j", "1", "--no-progress", env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    line = next(s for s in r.stderr.splitlines() if s.startswith("skipped "))
    assert line.endswith(str(cache_dir(out, SEED_CNN) / "report.json"))  # one line: a path to copy
