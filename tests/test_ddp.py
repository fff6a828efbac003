"""DistributedDataParallel on CPU: two gloo processes, as ``torchrun --nproc-per-node 2`` starts them.

The first test spawns the ranks itself (torch.multiprocessing) so that each
rank can report what it saw and what it ended with; the second runs the real
command line under torchrun and must produce the very same checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from trainkit import one_thread, same_tensors, tiny_recipe, write_recipe

pytestmark = pytest.mark.slow  # DistributedDataParallel runs: torchrun and spawned ranks

REPO = Path(__file__).resolve().parents[1]
WORLD = 2


def ddp_recipe():
    return tiny_recipe("ddp", oversample=False)  # a plain shuffle: each clip once per epoch, on one rank


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, cache_root: str, out: str, dump: str) -> None:
    """One rank: train with a spy on the batches it draws, then dump its weights and what it saw."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import trainer.train as train_mod

    seen: list[tuple[int, list[int]]] = []
    real = train_mod.make_batch

    def spy(split, targets, idx, cfg, recipe, seed, *rest):
        seen.append((len(seen), [int(i) for i in idx]))
        return real(split, targets, idx, cfg, recipe, seed, *rest)

    train_mod.make_batch = spy
    result = train_mod.train(ddp_recipe(), cache_root, out, device="cpu", progress=False, log=lambda s: None)
    params = {k: v.detach().clone() for k, v in result.model.named_parameters()}
    history = [r.to_json() for r in result.history]
    torch.save({"params": params, "seen": [idx for _, idx in seen], "history": history}, Path(dump) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def spawned(fsd_cache, tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    out, dump = base / "run", base / "dump"
    dump.mkdir()
    cache_root = str(fsd_cache.directory.parent)
    mp.spawn(_rank_main, args=(free_port(), cache_root, str(out), str(dump)), nprocs=WORLD, join=True)
    ranks = [torch.load(dump / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    return out, ranks, fsd_cache


def test_ranks_see_disjoint_slices_of_every_epoch(spawned):
    _, ranks, cache = spawned
    n_train = len(cache.split("train"))
    per_rank_steps = len(ranks[0]["seen"])
    assert per_rank_steps == len(ranks[1]["seen"]) > 0  # every rank takes the same number of steps
    epochs = ddp_recipe().train.epochs
    steps = per_rank_steps // epochs
    assert steps == (n_train // WORLD) // ddp_recipe().train.batch_size
    for e in range(epochs):
        a = [i for idx in ranks[0]["seen"][e * steps:(e + 1) * steps] for i in idx]
        b = [i for idx in ranks[1]["seen"][e * steps:(e + 1) * steps] for i in idx]
        assert not set(a) & set(b), f"epoch {e + 1}: a clip went to both ranks"
        assert len(set(a)) == len(a) and len(set(b)) == len(b)
    assert ranks[0]["seen"][:steps] != ranks[0]["seen"][steps:]  # a new order every epoch


def test_weights_agree_across_ranks_and_rank_0_writes(spawned):
    out, ranks, _ = spawned
    p0, p1 = ranks[0]["params"], ranks[1]["params"]
    assert p0.keys() == p1.keys()
    assert all(torch.equal(p0[k], p1[k]) for k in p0), "DDP ranks ended with different weights"

    import trainer.state as state_mod

    state, meta = state_mod.load_state(out / "last.safetensors")
    assert all(torch.equal(state["model"][k], p0[k]) for k in p0)
    assert meta.world_size == WORLD
    rows = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]  # one writer: no line twice
    agreed = lambda h: [{k: r[k] for k in ("epoch", "train_loss", "lr", "val_map")} for r in h]  # noqa: E731
    assert agreed(ranks[0]["history"]) == agreed(ranks[1]["history"]) == agreed(rows)  # one score, one loss
    assert json.loads((out / "run.json").read_text())["world_size"] == WORLD
    assert sorted(p.name for p in out.iterdir()) == ["best.safetensors", "last.safetensors", "metrics.jsonl", "run.json"]


def test_guesser_train_one_under_torchrun_trains_the_same_model(spawned, tmp_path):
    out_spawned, _, cache = spawned
    recipe_file = write_recipe(tmp_path / "ddp.toml", ddp_recipe())
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    out = tmp_path / "run"
    cmd = [torchrun, "--nproc-per-node", str(WORLD), "--master-port", str(free_port()), "-m", "guesser", "train", "one",
           str(recipe_file), "--cache", str(cache.directory.parent), "--out", str(out), "--device", "cpu",
           "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(s) for s in proc.stdout.splitlines() if s.startswith("{")]
    assert [r["epoch"] for r in lines] == [1, 2]  # printed once, by rank 0
    assert same_tensors(out / "best.safetensors", out_spawned / "best.safetensors") == []
    assert json.loads((out / "run.json").read_text())["world_size"] == WORLD
    assert np.isfinite(lines[-1]["val_map"])


DRIVER = """
import json, os, signal, sys
from pathlib import Path

import torch.distributed as dist

import trainer.train as train_mod
from guesser.cli import main

real, calls = train_mod.make_batch, []


def make_batch(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        signal.raise_signal(signal.SIGTERM)  # what torchrun sends every rank when it is stopped
    return real(*args, **kwargs)


train_mod.make_batch = make_batch
report = Path(sys.argv[1]) / f"rank{os.environ['RANK']}.json"
sys.argv = ["guesser", *sys.argv[2:]]
try:
    main()
except SystemExit as e:
    report.write_text(json.dumps({"code": e.code, "group_left": not dist.is_initialized()}))
    raise
"""


@pytest.mark.slow
def test_an_interrupted_torchrun_run_leaves_the_process_group_and_exits_cleanly(fsd_cache, tmp_path):
    """SIGTERM mid-epoch: every rank saves at the same step, tears the group down and exits 130 (not SIGABRT)."""
    import re

    recipe_file = write_recipe(tmp_path / "ddp.toml", ddp_recipe())
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    reports, out = tmp_path / "reports", tmp_path / "run"
    reports.mkdir()
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    cmd = [torchrun, "--nproc-per-node", str(WORLD), "--master-port", str(free_port()), "--monitor-interval", "3",
           str(driver), str(reports), "train", "one", str(recipe_file), "--cache", str(fsd_cache.directory.parent),
           "--out", str(out), "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    ranks = [json.loads((reports / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert ranks == [{"code": 130, "group_left": True}] * WORLD, proc.stderr[-3000:]
    # (the agent looks at its ranks every 3 s: both have exited before it could stop the slower one)
    assert proc.returncode != 0 and "SIGABRT" not in proc.stderr
    assert set(re.findall(r"exitcode\s*:\s*(-?\d+)", proc.stderr)) <= {"130"}, proc.stderr[-3000:]
    assert "error: interrupted at epoch 1 step 2; checkpoint saved" in proc.stderr
    import trainer.state as state_mod

    _, saved = state_mod.load_state(out / "last.safetensors")
    assert (saved.counters["epoch"], saved.counters["step"]) == (0, 2) and saved.world_size == WORLD


def _distilled_rank(rank: int, port: int, cache_root: str, out: str, dump: str, teacher: str) -> None:
    """One rank of a distilled run: train, then dump its weights."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from trainer.train import train

    recipe = tiny_recipe("ddp_kd", oversample=False, epochs=1, distill=teacher, distill_weight=0.5)
    result = train(recipe, cache_root, out, device="cpu", progress=False, log=lambda s: None)
    params = {k: v.detach().clone() for k, v in result.model.named_parameters()}
    torch.save(params, Path(dump) / f"rank{rank}.pt")


def test_a_distilled_run_under_ddp_stores_the_teachers_targets_once_and_ranks_agree(fsd_cache, tmp_path):
    from trainer.train import train

    cache_root = fsd_cache.directory.parent
    teacher = tmp_path / "teacher"
    with one_thread():
        train(tiny_recipe("teacher_ddp", epochs=1), cache_root, teacher, device="cpu", progress=False,
              log=lambda s: None)
    stores = fsd_cache.directory / "teachers"
    before = set(stores.glob("*.npz")) if stores.is_dir() else set()
    dump = tmp_path / "dump"
    dump.mkdir()
    mp.spawn(_distilled_rank, args=(free_port(), str(cache_root), str(tmp_path / "run"), str(dump),
                                    str(teacher / "best.safetensors")), nprocs=WORLD, join=True)
    p0, p1 = (torch.load(dump / f"rank{r}.pt", weights_only=True) for r in range(WORLD))
    assert all(torch.equal(p0[k], p1[k]) for k in p0), "distilled DDP ranks ended with different weights"
    assert len(set(stores.glob("*.npz")) - before) == 1  # one store for this teacher and split, read by both ranks
