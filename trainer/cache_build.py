"""Building the log-mel cache (``guesser preprocess``): workers, the plan, the merge lock, the merge.

The layout it writes and the reader that training uses are in :mod:`trainer.cache`.
Building is split into chunks of clips; each chunk becomes a part file written
atomically by a worker process. A rerun skips finished parts, so a build killed
at any point (``kill -9`` included) resumes and ends byte-identical to an
uninterrupted one; ``--shard i/n`` builds every n-th chunk so several machines
can share the work, and the last one to finish (or ``--merge``) joins the parts.
``plan.json`` records which clips (and chunk size) the parts belong to, so a
rerun against other data refuses to mix them. Clips are stored at full length;
the loader crops or tiles at train time.
"""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from guesser.checkpoint import atomic_write, atomic_write_text
from guesser.errors import DataError, DiskFullError, GuesserError
from guesser.features import FeatureConfig
from trainer.cache import CACHE_VERSION, FeatureCache, cache_dir, is_complete
from trainer.fsd50k import SPLITS, Fsd50k

CHUNK = 32


@dataclass
class BuildResult:
    directory: Path
    clips: dict[str, int] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)
    merged: bool = False
    seconds: float = 0.0
    merging_elsewhere: bool = False  # every part exists, but another process holds the merge lock


# ---------------------------------------------------------------- workers

ONEDNN_CACHE = "8"  # oneDNN primitives a worker keeps (its default: 1024)


def _init_worker() -> None:
    """Pool initializer: one torch thread per worker process (the workers are the parallelism).

    And a small oneDNN primitive cache: a ``conv1d`` gets a new primitive for
    every input length, and oneDNN keeps the last 1024 with their buffers, so
    a worker grew by ~0.4 MB per clip of a new length (to 1.2 GB after a few
    thousand FSD50K clips) while the resampler was torchaudio's convolution
    (soxr, the resampler now, keeps nothing per length; the cap stays cheap
    insurance). Only the cache size changes:
    the same kernels compute the same frames. Set before the worker's first
    convolution, when oneDNN reads it; a user's own setting wins.
    """
    import torch

    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_CACHE)
    torch.set_num_threads(1)


def _worker_context() -> mp.context.BaseContext:
    """Where workers come from: never a fork of this process, which may hold torch's threads.

    A forkserver (a fresh interpreter that imports this module once, then
    forks each worker) starts N workers for the price of one torch import
    instead of N; spawn where there is no forkserver (Windows).
    """
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def _compute_chunk(task: tuple) -> tuple[str, int, int, list[tuple[str, str]]]:
    """Worker: decode + log-mel one chunk of clips and write its part file atomically.

    A clip that cannot be used is recorded with its reason and the chunk goes
    on: one bad file among 51k must not stop a build that takes an hour.
    """
    split, chunk_id, items, cfg_dict, part_path = task
    from guesser.audio import load_audio
    from guesser.errors import AudioError
    from guesser.features import log_mel

    cfg = FeatureConfig.from_dict(cfg_dict)
    frames, lengths, fnames, failed = [], [], [], []
    for fname, path in items:
        if path is None:
            failed.append((fname, "audio file not found"))
            continue
        try:
            audio = load_audio(path)
            lm = log_mel(audio.samples, audio.sample_rate, cfg)  # [M, T]
        except AudioError as e:
            failed.append((fname, str(e).split(": ", 1)[-1]))
            continue
        except Exception as e:  # noqa: BLE001 - a decoder or resampler crash on one odd file
            failed.append((fname, f"unexpected {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")))
            continue
        frames.append(lm.numpy().astype(np.float16).ravel())  # the [M, T] block, row after row
        lengths.append(lm.shape[1])
        fnames.append(fname)
    arr = np.concatenate(frames) if frames else np.zeros(0, np.float16)

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(
                f,
                frames=arr,
                lengths=np.asarray(lengths, np.int64),
                fnames=np.asarray(fnames, dtype=str),
                failed=np.asarray([a for a, _ in failed], dtype=str),
                reasons=np.asarray([b for _, b in failed], dtype=str),
            )

    _guard_disk(lambda: atomic_write(Path(part_path), write), part_path)
    return split, chunk_id, len(items), failed


def _guard_disk(fn: Callable[[], None], what) -> None:
    """Run a write; a full disk, a read-only or missing folder, a file in a folder's place: one line."""
    try:
        fn()
    except DiskFullError:
        raise GuesserError(f"disk full while writing {what}; free some space and rerun: finished parts are kept") from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise GuesserError(f"disk full while writing {what}; free some space and rerun: finished parts are kept") from None
        where = f" ({e.filename})" if e.filename and str(e.filename) != str(what) else ""
        raise GuesserError(f"cannot write {what}: {e.strerror or e}{where}") from None


# ---------------------------------------------------------------- building

def _parts_dir(d: Path) -> Path:
    return d / "parts"


def _part_path(d: Path, split: str, chunk: int) -> Path:
    return _parts_dir(d) / f"{split}-{chunk:06d}.npz"


def _chunks(n: int) -> int:
    return (n + CHUNK - 1) // CHUNK


def build_cache(
    data_root: str | Path,
    out: str | Path,
    cfg: FeatureConfig,
    *,
    jobs: int | None = None,
    shard: tuple[int, int] = (0, 1),
    splits: Iterable[str] = SPLITS,
    merge: bool = True,
    progress: bool = True,
    on_chunk: Callable[[str, int], None] | None = None,
    title: str | None = None,
) -> BuildResult:
    """Build (or resume) the cache for ``cfg`` under ``out``; see the module doc.

    ``shard=(i, n)`` builds chunks ``c`` with ``c % n == i``; the parts are
    merged once every chunk of every split exists (by whichever shard finishes
    last, or by a later call with ``merge=True``). ``on_chunk`` is called after
    each finished chunk (tests use it to simulate a crash).
    """
    t0 = time.perf_counter()
    cfg = FeatureConfig.from_dict({**cfg.to_dict(), "mean": None, "std": None})
    ds = Fsd50k.open(data_root)
    d = cache_dir(out, cfg)
    if is_complete(d):
        return _finished(d)
    splits = list(splits)
    _guard_disk(lambda: _parts_dir(d).mkdir(parents=True, exist_ok=True), d)
    _check_plan(d, ds, splits)
    feat_file = d / "features.json"
    if not feat_file.exists():
        _guard_disk(lambda: atomic_write_text(feat_file, json.dumps(cfg.to_dict(), indent=1)), feat_file)

    i, n = shard
    tasks = []
    for split in splits:
        clips = ds.splits[split].clips
        for c in range(_chunks(len(clips))):
            if c % n != i or _chunk_done(d, split, c):
                continue
            items = [(cl.fname, str(cl.path) if cl.path else None) for cl in clips[c * CHUNK : (c + 1) * CHUNK]]
            tasks.append((split, c, items, cfg.to_dict(), str(_part_path(d, split, c))))
    total = sum(len(t[2]) for t in tasks)
    _run_tasks(tasks, total, jobs or os.cpu_count() or 1, progress, on_chunk, title or f"log-mel {cfg.key}")

    result = BuildResult(d)
    if is_complete(d):  # another process (a concurrent run of the same build) finished it meanwhile
        return _finished(d)
    if merge and all(_chunk_done(d, s, c) for s in splits for c in range(_chunks(len(ds.splits[s])))):
        lock = d / ".merge.lock"
        if not _take_lock(lock):
            result.merging_elsewhere = True
            return result
        try:
            if is_complete(d):  # merged by the lock's previous holder between our check and our lock
                return _finished(d)
            result = merge_parts(ds, d, cfg, splits)
        finally:
            lock.unlink(missing_ok=True)
    result.seconds = time.perf_counter() - t0
    return result


def _finished(d: Path) -> BuildResult:
    """The result of a finished cache (its manifest and report), after removing what only a build needed."""
    try:
        manifest = json.loads((d / "manifest.json").read_text())
        skipped = json.loads((d / "report.json").read_text())["skipped"]
        clips = {str(k): int(v) for k, v in manifest["clips"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise DataError(f"{d}: a damaged cache (manifest.json or report.json unreadable); "
                        "delete it and rerun guesser preprocess") from None
    _cleanup(d)  # a build killed between its manifest and its clean-up, or a concurrent run's late parts
    return BuildResult(d, clips=clips, skipped=skipped if isinstance(skipped, list) else [], merged=True)


def _plan(ds: Fsd50k, splits: list[str]) -> dict:
    """What the part files of a build belong to: chunk size and each split's fnames (hashed)."""
    out: dict = {"version": CACHE_VERSION, "chunk": CHUNK, "splits": {}}
    for s in splits:
        fnames = [c.fname for c in ds.splits[s].clips]
        out["splits"][s] = {"clips": len(fnames), "fnames_sha1": hashlib.sha1("\n".join(fnames).encode()).hexdigest()}
    return out


def _check_plan(d: Path, ds: Fsd50k, splits: list[str]) -> None:
    """Refuse to resume (or to join as a shard) a build of other clips: its parts would be mixed in."""
    plan = _plan(ds, splits)
    path = d / "plan.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = None
        if old != plan:
            raise DataError(
                f"{d}: holds an unfinished build of other data (different clips, splits or chunk size); "
                f"delete {d} or choose another --out"
            )
        return
    _guard_disk(lambda: atomic_write_text(path, json.dumps(plan, indent=1, sort_keys=True)), path)


def _take_lock(lock: Path) -> bool:
    """Create the merge lock; a lock left by a dead process on this host (``kill -9``) is taken over."""
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if _lock_alive(lock):
                return False
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return True
    return False


def _lock_alive(lock: Path) -> bool:
    """Whether the merge lock's owner may still be running (another host's lock is assumed alive)."""
    try:
        host, pid = lock.read_text().split()
        pid_n = int(pid)
    except (OSError, ValueError):
        host, pid_n = "", 0  # empty or garbage: its writer died between create and write
    return host not in ("", socket.gethostname()) or _alive(pid_n)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def progress_bar(console, disable: bool = False):
    """The build's progress line: it fits 80 columns (a log file, CI) with FSD50K's 51,197 clips.

    The description should be short (``log-mel seed``): at 80 columns a long
    one squeezed the clip counter to ``10240/1…``.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]:>6.1f} clips/s"),
        TimeRemainingColumn(),
    ]
    return Progress(*columns, console=console, disable=disable, transient=False)


def _run_tasks(tasks, total, jobs, progress, on_chunk, title) -> None:
    from rich.console import Console

    t0 = time.perf_counter()
    with progress_bar(Console(stderr=True), disable=not progress) as bar:
        job = bar.add_task(title, total=total, rate=0.0)
        done = 0

        def finished(res) -> None:
            nonlocal done
            split, chunk, count, _ = res
            done += count
            bar.update(job, advance=count, rate=done / max(time.perf_counter() - t0, 1e-9))
            if on_chunk:
                on_chunk(split, chunk)

        if jobs <= 1 or len(tasks) <= 1:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # as a worker does; restored for the caller (a trainer, a test)
            try:
                for t in tasks:
                    finished(_compute_chunk(t))
            finally:
                torch.set_num_threads(threads)
        else:
            ctx = _worker_context()
            with ctx.Pool(min(jobs, len(tasks)), initializer=_init_worker) as pool:
                for res in pool.imap_unordered(_compute_chunk, tasks):
                    finished(res)


def _chunk_done(d: Path, split: str, chunk: int) -> bool:
    """A chunk needs no (re)building: its part exists, or the split's merge has begun and took it over."""
    return _part_path(d, split, chunk).exists() or _merge_meta_path(d, split).exists()


def _merge_meta_path(d: Path, split: str) -> Path:
    return d / f".{split}.merge.npz"


def merge_parts(ds: Fsd50k, d: Path, cfg: FeatureConfig, splits: list[str]) -> BuildResult:
    """Join the part files of every split into one memory-mapped array + index; compute train stats.

    Parts are opened one at a time (the real FSD50K has ~1600 of them: more
    than a default ``ulimit -n``), and frames are appended with plain writes,
    not through a memmap, so a full disk is an ``ENOSPC`` error rather than a
    ``SIGBUS`` that kills the process. Each part is deleted as soon as its
    frames are on disk in the joined file, so a merge needs free space for one
    part, not for a second copy of the cache (FSD50K's seed cache: 8.6 GB); a
    merge killed at any point resumes where it stopped (see :func:`_merge_frames`).
    """
    result = BuildResult(d, merged=True)
    skipped: list[dict] = []
    vocab = np.asarray(ds.vocabulary.names, dtype=str)
    for split in splits:
        clips = ds.splits[split].clips
        meta = _merge_meta(d, split, _chunks(len(clips)))
        skipped += [{"split": split, "fname": str(f), "reason": str(r)} for f, r in zip(meta["failed"], meta["reasons"])]
        lengths, fnames = meta["lengths"].astype(np.int64), meta["fnames"]
        offsets = (np.cumsum(lengths) - lengths).astype(np.int64)
        _merge_frames(d, split, meta["part_frames"], cfg.n_mels)
        by_name = {c.fname: c.labels for c in clips}
        targets = np.zeros((len(fnames), len(vocab)), np.uint8)
        for k, f in enumerate(fnames):
            targets[k, list(by_name[str(f)])] = 1

        def write_index(p: Path, fnames=fnames, offsets=offsets, lengths=lengths, targets=targets) -> None:
            with open(p, "wb") as f:
                np.savez(f, fnames=fnames, offsets=offsets, lengths=lengths, targets=targets, vocabulary=vocab)

        _guard_disk(lambda: atomic_write(d / f"{split}.index.npz", write_index), d / f"{split}.index.npz")
        result.clips[split] = int(len(fnames))
    if "train" in splits:
        lengths = np.load(d / "train.index.npz", allow_pickle=False)["lengths"]
        stats = frame_stats(_file_blocks(d / "train.frames.npy", lengths, cfg.n_mels))
        if stats is not None:  # no train frames (every clip skipped): no stats, and training says so
            _guard_disk(lambda: atomic_write_text(d / "stats.json", json.dumps(stats)), d / "stats.json")
    _guard_disk(lambda: atomic_write_text(d / "report.json", json.dumps({"skipped": skipped}, indent=1)), d / "report.json")
    nbytes = sum(f.stat().st_size for f in d.glob("*.npy")) + sum(f.stat().st_size for f in d.glob("*.npz"))
    manifest = {"version": CACHE_VERSION, "feature_key": cfg.key, "clips": result.clips, "bytes": nbytes, "data_root": str(Path(ds.root).resolve())}
    _guard_disk(lambda: atomic_write_text(d / "manifest.json", json.dumps(manifest, indent=1)), d / "manifest.json")
    _cleanup(d)
    result.skipped = skipped
    return result


def _merge_meta(d: Path, split: str, n_chunks: int) -> dict[str, np.ndarray]:
    """Everything but the frames of a split's parts (lengths, names, failures, frames per part), saved once.

    Written before the first part is consumed, so a resumed merge knows the
    index and the report even though some parts are gone.
    """
    path = _merge_meta_path(d, split)
    if not path.exists():
        lengths, fnames, failed, reasons, part_frames = [], [], [], [], []
        for c in range(n_chunks):
            with np.load(_part_path(d, split, c), allow_pickle=False) as p:
                lengths.append(p["lengths"].astype(np.int64))
                fnames.append(p["fnames"])
                failed.append(p["failed"])
                reasons.append(p["reasons"])
                part_frames.append(int(p["lengths"].sum()))

        def cat(xs: list[np.ndarray], dtype) -> np.ndarray:
            return np.concatenate([np.zeros(0, dtype), *xs]) if xs else np.zeros(0, dtype)

        def write(p: Path) -> None:
            with open(p, "wb") as f:
                np.savez(f, lengths=cat(lengths, np.int64), fnames=cat(fnames, str), failed=cat(failed, str),
                         reasons=cat(reasons, str), part_frames=np.asarray(part_frames, np.int64))

        _guard_disk(lambda: atomic_write(path, write), path)
    with np.load(path, allow_pickle=False) as m:
        return {k: m[k] for k in ("lengths", "fnames", "failed", "reasons", "part_frames")}


def _npy_header(n_values: int) -> bytes:
    import io as _io

    buf = _io.BytesIO()
    np.lib.format.write_array_header_2_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype("<f2")), "fortran_order": False, "shape": (n_values,)})
    return buf.getvalue()


def _merge_frames(d: Path, split: str, part_frames: np.ndarray, n_mels: int) -> None:
    """Append every part's frames to ``.<split>.frames.npy.partial``, deleting each part once it is synced.

    Where the partial file ends says which parts are in it (their sizes are in
    the merge meta): a resumed merge cuts a half-appended part off and goes on
    from there, so the result is byte-identical to an uninterrupted merge.
    """
    final = d / f"{split}.frames.npy"
    if final.exists():
        return
    partial = d / f".{split}.frames.npy.partial"
    header = _npy_header(int(part_frames.sum()) * n_mels)
    ends = len(header) + np.cumsum(part_frames.astype(np.int64)) * n_mels * 2
    have = partial.stat().st_size if partial.exists() else 0
    first = int(np.searchsorted(ends, have, side="right")) if have >= len(header) else 0
    keep = len(header) if first == 0 else int(ends[first - 1])

    def append() -> None:
        with open(partial, "r+b" if partial.exists() else "wb") as f:
            f.seek(0)
            f.write(header)
            f.truncate(keep)
            f.seek(keep)
            for c in range(len(part_frames)):
                path = _part_path(d, split, c)
                if c < first:  # already in the partial file (killed between its sync and its deletion)
                    path.unlink(missing_ok=True)
                    continue
                if not path.exists():
                    raise DataError(f"{path}: missing while merging {split}; delete {d} and rerun guesser preprocess")
                with np.load(path, allow_pickle=False) as p:
                    fr = p["frames"]
                    if fr.ndim != 1:
                        raise DataError(f"{path}: a part written by an older guesser; delete {_parts_dir(d)} and rerun")
                    f.write(np.ascontiguousarray(fr, dtype="<f2").tobytes())
                f.flush()
                os.fsync(f.fileno())
                path.unlink()
        os.replace(partial, final)

    _guard_disk(append, final)


def _file_blocks(path: Path, lengths: np.ndarray, n_mels: int, batch_bytes: int = 64 << 20):
    """Every clip's [M, T] float16 block of a frames file, read with plain reads (not mapped).

    A memory map would count every page read towards the process's resident
    set (the whole train split, 6 GB on FSD50K, after one pass); reads through
    a fixed buffer keep the merge's memory flat at any data size.
    """
    with open(path, "rb") as f:
        fmt = np.lib.format
        version = fmt.read_magic(f)
        (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)  # skip it
        i, n = 0, len(lengths)
        while i < n:
            j, size = i, 0
            while j < n and (j == i or size + int(lengths[j]) * n_mels * 2 <= batch_bytes):
                size += int(lengths[j]) * n_mels * 2
                j += 1
            buf = np.fromfile(f, dtype="<f2", count=size // 2)
            o = 0
            for k in range(i, j):
                m = int(lengths[k]) * n_mels
                yield buf[o : o + m].reshape(n_mels, -1)
                o += m
            i = j


def _cleanup(d: Path) -> None:
    """Remove what only a build needs (parts, plan, temporaries of a killed merge) once the manifest exists.

    A merge lock left behind (the merging process killed after writing the
    manifest) goes too, unless its owner is still alive and about to remove it.
    """
    shutil.rmtree(_parts_dir(d), ignore_errors=True)
    (d / "plan.json").unlink(missing_ok=True)
    for pattern in (".*.tmp", ".*.merge.npz", ".*.partial"):  # temporaries and merge state of a killed merge
        for tmp in d.glob(pattern):
            tmp.unlink(missing_ok=True)
    lock = d / ".merge.lock"
    if lock.exists() and not _lock_alive(lock):
        lock.unlink(missing_ok=True)


def frame_stats(blocks: Iterable[np.ndarray]) -> dict | None:
    """Mean/std of all frames, globally and per mel bin, from [M, T] blocks (float64 sums); None if no frames."""
    n = 0
    s: np.ndarray | float = 0.0
    ss: np.ndarray | float = 0.0
    for block in blocks:
        x = np.asarray(block, np.float64)
        n += x.shape[1]
        s = s + x.sum(1)
        ss = ss + np.square(x).sum(1)
    if n == 0:
        return None
    s, ss = np.asarray(s), np.asarray(ss)
    mean = s / n
    var = np.maximum(ss / n - mean**2, 1e-12)
    g_mean = float(s.sum() / (n * len(s)))
    g_var = float(max(ss.sum() / (n * len(s)) - g_mean**2, 1e-12))
    return {
        "frames": int(n),
        "global": {"mean": [g_mean], "std": [g_var**0.5]},
        "per_mel": {"mean": mean.tolist(), "std": np.sqrt(var).tolist()},
    }
