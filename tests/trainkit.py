"""Helpers for the trainer tests: a tiny recipe that exercises every moving part, and checkpoint comparison.

The recipe trains cnn4 on 0.5 s windows of the session's synthetic cache
(``fsd_cache``: 25 train / 10 val clips), 4 clips a batch (6 steps an epoch),
in fp32 so that runs can be compared bit for bit, with oversampling, warmup +
cosine, and every augmentation switched on so that each random stream is
part of what resume has to reproduce.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from guesser.checkpoint import load_checkpoint
from trainer.recipe import Recipe
from trainer.tune import recipe_toml

AUGMENT = {"gain_db": 3.0, "freq_shift": 2, "bandlimit_p": 0.3, "hf_fill_p": 0.5, "mix_p": 0.3,
           "time_masks": 1, "time_width": 6, "freq_masks": 1, "freq_width": 8, "mixup_alpha": 0.3}


@contextmanager
def one_thread():
    """Run torch on one thread: on a shared 2-core machine two OpenMP threads spin against the
    other jobs and a tiny run takes 5x longer. Subprocesses get ``OMP_NUM_THREADS=1`` (see
    :func:`one_thread_env`) so their arithmetic is the same as this process's, bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """:func:`one_thread` for every test of a module that imports this fixture (training runs)."""
    with one_thread():
        yield


@pytest.fixture(scope="module")
def cache_root(fsd_cache) -> Path:
    """The folder holding the session's tiny synthetic cache (what ``--cache`` takes)."""
    return fsd_cache.directory.parent


def one_thread_env() -> dict[str, str]:
    import os

    return {**os.environ, "OMP_NUM_THREADS": "1"}


def tiny_recipe(name: str = "tiny", *, arch: str = "cnn4", task: str = "labels", augment: dict | None = None,
                **train) -> Recipe:
    settings = {"epochs": 2, "batch_size": 4, "precision": "fp32", "oversample": True, "scheduler": "cosine",
                "warmup_epochs": 1, "min_lr": 1e-4}
    if task == "families":
        settings["loss"] = "ce"
    settings.update(train)
    return Recipe.from_dict({"name": name, "member": arch, "arch": arch, "task": task,
                             "features": {"preset": "seed", "clip_seconds": 0.5},
                             "train": settings, "augment": AUGMENT if augment is None else augment})


def write_recipe(path: Path, recipe: Recipe) -> Path:
    path.write_text(recipe_toml(recipe))
    return path


def same_tensors(a: Path, b: Path) -> list[str]:
    """Names of tensors that differ between two safetensors checkpoints ([] when bit-identical)."""
    ta, _ = load_checkpoint(a)
    tb, _ = load_checkpoint(b)
    if ta.keys() != tb.keys():
        return sorted(set(ta) ^ set(tb))
    return [k for k in ta if ta[k].dtype != tb[k].dtype or not torch.equal(ta[k], tb[k])]


def without_time(history: list) -> list[dict]:
    """Metrics rows (MetricsRow objects or metrics.jsonl dicts) without their time, which differs between runs."""
    rows = [row if isinstance(row, dict) else row.to_json() for row in history]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def kill_9_mid_run(recipe: Recipe, cache_root: Path, tmp_path: Path) -> Path:
    """Start ``guesser train one`` on ``recipe`` as a subprocess, ``kill -9`` it once its first checkpoint
    exists (one is written every step), check that it died mid-run, and return its run folder."""
    import os
    import signal
    import subprocess
    import sys
    import time

    recipe_file = write_recipe(tmp_path / f"{recipe.name}.toml", recipe)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "guesser", "train", "one", str(recipe_file), "--cache", str(cache_root),
           "--out", str(out), "--device", "cpu", "--no-progress", "--checkpoint-every", "1"]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=one_thread_env())
    deadline = time.monotonic() + 120
    while not (out / "last.safetensors").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "run.json").exists(), "the run finished before it was killed"
    return out

