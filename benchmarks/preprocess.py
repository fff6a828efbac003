"""Benchmark: the consolidated float16 cache against one ``.pt`` file per clip (the student project's way).

    python benchmarks/preprocess.py [DATA_ROOT] [--limit N] [--jobs 2] [--batch-size 32]

DATA_ROOT defaults to ``../shared/fsd50k-mini`` (relative to the repository).
Both sides run in this process, on the same clips, one after the other:

build
    baseline: one process; per clip decode, the same log-mel function, and
    ``torch.save`` of a float32 [128, T] tensor into ``<split>/<fname>.pt``.
    cache: ``trainer.cache_build.build_cache`` with ``--jobs`` worker processes (the
    ``guesser preprocess`` code path: parts, merge, train statistics).
read one epoch (the train split, what training does per epoch)
    baseline: a ``torch.utils.data.DataLoader`` (shuffled, ``num_workers=0``)
    over a Dataset whose ``__getitem__`` ``torch.load``s the clip's file and
    takes a random 516-frame window (tiled when short), plus its target row.
    cache: ``CachedSplit.crops`` of shuffled batches with a random crop per
    clip, plus target rows, exactly as ``trainer.train`` reads a batch.
bytes
    the ``.pt`` files against every file of the finished cache: the apparent
    size and the disk blocks allocated (small files waste most of a block).

Every audio file is read once before either build, and each epoch reads what
its side has just written, so both sides see a warm page cache. This process
(the baseline build, both epoch loops) runs with one torch thread by default,
as each cache worker does: on a small clip's STFT or one batch, intra-op
threads cost more than they give on a busy machine, and with a shared CPU
they make timings swing by 10x (``--threads`` to change it).
``--limit N`` uses a seeded random N clips (splits kept) so a run takes
minutes; ``--keep DIR`` keeps the outputs for inspection.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import torch

from guesser.audio import load_audio
from guesser.errors import AudioError
from guesser.features import SEED_CNN, FeatureConfig, fit_frames, log_mel
from trainer.cache import find_cache
from trainer.cache_build import build_cache
from trainer.fsd50k import GT, Fsd50k

from machine import cpu_name  # benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "fsd50k-mini"


# ---------------------------------------------------------------- the clips


def subset_root(root: Path, limit: int | None, work: Path, seed: int = 0) -> Path:
    """An FSD50K root over ``limit`` clips (seeded, splits kept): CSVs rewritten, audio folders linked."""
    sub = work / "data"
    (sub / GT).mkdir(parents=True)
    for name in ("FSD50K.dev_audio", "FSD50K.eval_audio"):
        (sub / name).symlink_to((root / name).resolve(), target_is_directory=True)
    if (root / "ontology.json").exists():
        shutil.copy(root / "ontology.json", sub / "ontology.json")
    shutil.copy(root / GT / "vocabulary.csv", sub / GT / "vocabulary.csv")
    tables = {}
    for name in ("dev.csv", "eval.csv"):
        with (root / GT / name).open(newline="") as f:
            rows = list(csv.reader(f))
        tables[name] = (rows[0], rows[1:])
    total = sum(len(r) for _, r in tables.values())
    keep = set(np.random.default_rng(seed).permutation(total)[: limit or total].tolist())
    k = 0
    for name, (header, rows) in tables.items():
        with (sub / GT / name).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            for r in rows:
                if k in keep:
                    w.writerow(r)
                k += 1
    return sub


# ---------------------------------------------------------------- baseline: one .pt per clip


def baseline_build(ds: Fsd50k, out: Path, cfg: FeatureConfig) -> int:
    """Decode, log-mel, ``torch.save`` each clip, one after the other; returns the clips written."""
    n = 0
    for split in ("train", "val", "eval"):
        (out / split).mkdir(parents=True, exist_ok=True)
        for clip in ds.splits[split].clips:
            if clip.path is None:
                continue
            try:
                audio = load_audio(clip.path)
            except AudioError:
                continue
            lm = log_mel(audio.samples, audio.sample_rate, cfg)  # float32 [M, T]
            torch.save(lm, out / split / f"{clip.fname}.pt")
            n += 1
    return n


class PtDataset(torch.utils.data.Dataset):
    """The student's Dataset: load the clip's tensor file, take a random window, return it with its target."""

    def __init__(self, files: list[Path], targets: np.ndarray, n_frames: int, seed: int = 0):
        self.files, self.targets, self.n_frames = files, targets, n_frames
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        lm = torch.load(self.files[i])
        t = lm.shape[-1]
        start = int(self.rng.integers(0, t - self.n_frames + 1)) if t > self.n_frames else 0
        return fit_frames(lm, self.n_frames, "tile", start), torch.from_numpy(self.targets[i].astype(np.float32))


def baseline_epoch(ds: Fsd50k, out: Path, cfg: FeatureConfig, batch_size: int) -> int:
    clips = [c for c in ds.splits["train"].clips if (out / "train" / f"{c.fname}.pt").exists()]
    files = [out / "train" / f"{c.fname}.pt" for c in clips]
    index = {c.fname: i for i, c in enumerate(ds.splits["train"].clips)}
    targets = ds.targets("train")[[index[c.fname] for c in clips]]
    loader = torch.utils.data.DataLoader(PtDataset(files, targets, cfg.clip_frames), batch_size=batch_size,
                                         shuffle=True, num_workers=0)
    n = 0
    for x, y in loader:
        n += len(x)
    return n


# ---------------------------------------------------------------- the cache


def cache_epoch(cache_root: Path, cfg: FeatureConfig, batch_size: int) -> int:
    split = find_cache(cache_root, cfg).split("train")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(split))
    n = 0
    for a in range(0, len(order), batch_size):
        idx = order[a : a + batch_size]
        x = torch.from_numpy(split.crops(idx, cfg.clip_frames, rng))
        y = torch.from_numpy(split.targets[idx].astype(np.float32))
        n += len(x)
    return n


# ---------------------------------------------------------------- reporting


def disk_bytes(paths) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of the files under ``paths``."""
    size = blocks = 0
    for p in paths:
        for f in Path(p).rglob("*"):
            if f.is_file():
                st = f.stat()
                size += st.st_size
                blocks += st.st_blocks * 512
    return size, blocks


class Clock:
    """Wall and CPU time of a block in this process. On a shared machine the CPU time per clip is the
    work an approach does, the wall time what one waits. (Build workers are not children of this
    process, so only single-process phases get a CPU figure.)"""

    def __enter__(self) -> "Clock":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def median(clocks: list[Clock]) -> Clock:
    """The epoch with the median wall time (its CPU time comes with it)."""
    return sorted(clocks, key=lambda c: c.wall)[len(clocks) // 2]


@dataclass
class Row:
    what: str
    baseline: float
    cache: float
    unit: str
    goal: float
    higher_is_better: bool = True

    def ratio(self) -> float:
        return self.cache / self.baseline if self.higher_is_better else self.baseline / self.cache


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_root", nargs="?", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--limit", type=int, default=None, help="use N clips (seeded sample over all splits)")
    ap.add_argument("--jobs", "-j", type=int, default=2, help="cache builder worker processes")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3, help="epochs read per side; the median is reported")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process (baseline, epoch loops)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the outputs in this folder")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-preprocess-", dir=args.keep))
    try:
        root = subset_root(args.data_root, args.limit, work)
        ds = Fsd50k.open(root)
        n_clips = sum(len(s) for s in ds.splits.values())
        cfg = SEED_CNN
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"preprocess benchmark: {n_clips} clips of {args.data_root} "
              f"({len(ds.splits['train'])} train), features {cfg.key}")
        print(f"machine: {cpu_name()}, {cores} cores usable, torch {torch.__version__} "
              f"({args.threads} thread(s) here, cache workers -j {args.jobs}), "
              f"load average {os.getloadavg()[0]:.2f} at start; {date.today().isoformat()}")

        for split in ds.splits.values():  # warm the page cache for both builds alike
            for clip in split.clips:
                if clip.path is not None:
                    clip.path.read_bytes()

        torch.set_num_threads(args.threads)
        with Clock() as base_build:
            n_base = baseline_build(ds, work / "pt", cfg)
        base_epochs = []
        for _ in range(args.epochs):
            with Clock() as c:
                e_base = baseline_epoch(ds, work / "pt", cfg, args.batch_size)
            base_epochs.append(c)
        with Clock() as cache_build:
            res = build_cache(root, work / "cache", cfg, jobs=args.jobs, progress=False)
        n_cache = sum(res.clips.values())
        cache_epochs = []
        for _ in range(args.epochs):
            with Clock() as c:
                e_cache = cache_epoch(work / "cache", cfg, args.batch_size)
            cache_epochs.append(c)
        assert n_cache == n_base and e_cache == e_base, (n_cache, n_base, e_cache, e_base)
        base_epoch, cache_read = median(base_epochs), median(cache_epochs)
        t_base_build, t_base_epoch, t_cache_build, t_cache_epoch = (
            base_build.wall, base_epoch.wall, cache_build.wall, cache_read.wall)

        base_size, base_alloc = disk_bytes([work / "pt"])
        cache_size, cache_alloc = disk_bytes([res.directory])
        rows = [
            Row(f"build, cache with -j {args.jobs} (clips/s)", n_base / t_base_build, n_cache / t_cache_build, "clips/s", 3.0),
            Row(f"read one train epoch (clips/s, median of {args.epochs})", e_base / t_base_epoch,
                e_cache / t_cache_epoch, "clips/s", 10.0),
            Row("read one epoch, CPU us per clip", 1e6 * base_epoch.cpu / e_base, 1e6 * cache_read.cpu / e_cache,
                "us", 0.0, higher_is_better=False),
            Row("bytes on disk (apparent)", base_size, cache_size, "bytes", 1.0, higher_is_better=False),
            Row("bytes on disk (allocated)", base_alloc, cache_alloc, "bytes", 1.0, higher_is_better=False),
        ]
        print()
        print(f"| {'measure':44} | {'baseline (.pt per clip)':>24} | {'cache':>14} | {'ratio':>7} | goal |")
        print(f"|{'-' * 46}|{'-' * 26}|{'-' * 16}|{'-' * 9}|------|")
        for r in rows:
            fmt = mb if r.unit == "bytes" else (lambda v: f"{v:,.1f}")
            ok = "yes" if r.ratio() >= r.goal else "NO"
            goal = f">= {r.goal:g}x {ok}" if r.goal else "-"
            print(f"| {r.what:44} | {fmt(r.baseline):>24} | {fmt(r.cache):>14} | {r.ratio():6.2f}x | {goal} |")
        print()
        print("ratio: how many times faster (or smaller) the cache is than the baseline.")
        print(f"wall time: baseline build {t_base_build:.1f} s, cache build {t_cache_build:.1f} s; "
              f"epochs ({e_cache} clips, batch {args.batch_size}): "
              f"baseline {', '.join(f'{c.wall:.2f}' for c in base_epochs)} s, "
              f"cache {', '.join(f'{c.wall:.2f}' for c in cache_epochs)} s; "
              f"load average {os.getloadavg()[0]:.2f} at end")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
