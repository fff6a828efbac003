"""The consolidated log-mel cache: layout, resuming (also after a real ``kill -9``), bad files, shards.

A build is compared byte-for-byte with an uninterrupted reference build of
the same tree: every file of the finished cache, nothing left over.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import trainer.cache_build as cache_mod
from guesser.audio import load_audio
from guesser.errors import DataError, GuesserError
from guesser.features import SEED_CNN, resample, to_mono
from trainer.cache import FeatureCache, cache_dir, find_cache
from trainer.cache_build import build_cache
from trainer.fsd50k import Fsd50k

CHUNK = 4  # 45 clips -> 13 chunks: enough to interrupt in the middle
FILES = {
    "features.json", "manifest.json", "report.json", "stats.json",
    "train.frames.npy", "train.index.npz", "val.frames.npy", "val.index.npz", "eval.frames.npy", "eval.index.npz",
}


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(cache_mod, "CHUNK", CHUNK)


@pytest.fixture(scope="module")
def reference(fsd_root: Path, tmp_path_factory) -> Path:
    """An uninterrupted single-process build of the session tree (chunks of CHUNK clips)."""
    out = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cache_mod, "CHUNK", CHUNK)
        res = build_cache(fsd_root, out, SEED_CNN, jobs=1, progress=False)
    assert res.merged
    return res.directory


def contents(d: Path) -> dict[str, bytes]:
    """Every file under ``d`` (hidden ones and sub-folders included) -> its bytes."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def assert_same_cache(d: Path, reference: Path) -> None:
    got, want = contents(d), contents(reference)
    assert set(got) == set(want) == FILES, "a finished cache holds exactly these files"
    for name in FILES:
        assert got[name] == want[name], name


class Crash(Exception):
    pass


def crash_after(n: int):
    seen = []

    def hook(split: str, chunk: int) -> None:
        seen.append((split, chunk))
        if len(seen) == n:
            raise Crash(f"simulated crash after {n} chunks")

    return hook


# ---------------------------------------------------------------- a build


def test_layout_index_and_targets(fsd_tree, reference: Path):
    cache = FeatureCache.open(reference)
    assert reference.name == SEED_CNN.key
    assert cache.features == SEED_CNN
    assert json.loads((reference / "manifest.json").read_text())["clips"] == {"train": 25, "val": 10, "eval": 10}
    assert cache.report == {"skipped": []}
    ds = Fsd50k.open(fsd_tree.root)
    for split in ("train", "val", "eval"):
        s = cache.split(split)
        want = fsd_tree.split(split)
        assert s.fnames.tolist() == [c.fname for c in want]  # CSV order
        assert s.frames.dtype == np.float16 and s.frames.ndim == 1 and isinstance(s.frames, np.memmap)
        assert s.offsets[0] == 0 and np.array_equal(s.offsets[1:], np.cumsum(s.lengths)[:-1])
        assert s.lengths.sum() * 128 == len(s.frames)  # clip after clip, each an [M, T] block
        o, n = int(s.offsets[-1]), int(s.lengths[-1])
        np.testing.assert_array_equal(s.clip(len(s) - 1), s.frames[o * 128 :].reshape(128, n))
        np.testing.assert_array_equal(s.targets, ds.targets(split))
        assert s.vocabulary == ds.vocabulary.names
        for i, c in enumerate(want):
            audio = load_audio(c.path)
            n = len(resample(to_mono(audio.samples), audio.sample_rate, 22050))
            assert s.lengths[i] == 1 + n // 256  # centred frames at 22.05 kHz, full length
            assert abs(s.lengths[i] - c.seconds * 22050 / 256) <= 1.5


def test_train_statistics(reference: Path):
    cache = FeatureCache.open(reference)
    train = cache.split("train")
    frames = np.concatenate([train.clip(i).T for i in range(len(train))]).astype(np.float64)  # [sum T, M]
    assert cache.stats["frames"] == len(frames)
    np.testing.assert_allclose(cache.stats["global"]["mean"], [frames.mean()], rtol=1e-9)
    np.testing.assert_allclose(cache.stats["global"]["std"], [frames.std()], rtol=1e-6)
    np.testing.assert_allclose(cache.stats["per_mel"]["mean"], frames.mean(axis=0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(cache.stats["per_mel"]["std"], frames.std(axis=0), rtol=1e-6)
    cfg = cache.feature_config("per_mel")
    assert cfg.norm == "per_mel" and len(cfg.mean) == 128 and cfg.has_stats
    assert cache.feature_config("none").mean is None


def test_a_finished_cache_is_not_rebuilt(fsd_root: Path, reference: Path):
    before = contents(reference)
    res = build_cache(fsd_root, reference.parent, SEED_CNN, jobs=1, progress=False,
                      on_chunk=lambda *a: pytest.fail("recomputed a chunk"))
    assert res.merged and res.clips == {"train": 25, "val": 10, "eval": 10}
    assert contents(reference) == before


def test_build_keeps_the_callers_torch_threads(make_fsd_tree, tmp_path):
    tree = make_fsd_tree(per_class=(1, 0, 0), classes=("rain",))
    torch.set_num_threads(2)
    build_cache(tree.root, tmp_path / "c", SEED_CNN, jobs=1, progress=False)
    assert torch.get_num_threads() == 2


@pytest.mark.slow
def test_parallel_workers_give_the_same_bytes(fsd_root: Path, reference: Path, tmp_path):
    res = build_cache(fsd_root, tmp_path, SEED_CNN, jobs=2, progress=False)
    assert_same_cache(res.directory, reference)


# ---------------------------------------------------------------- interrupted builds


def test_interrupted_then_resumed_equals_uninterrupted(fsd_root: Path, reference: Path, tmp_path):
    with pytest.raises(Crash):
        build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False, on_chunk=crash_after(5))
    d = cache_dir(tmp_path, SEED_CNN)
    assert len(list((d / "parts").glob("*.npz"))) == 5
    with pytest.raises(DataError, match="did not finish: rerun guesser preprocess to resume"):
        FeatureCache.open(d)
    redone = []
    res = build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False, on_chunk=lambda s, c: redone.append(c))
    assert res.merged and len(redone) == 13 - 5  # finished chunks are not recomputed
    assert_same_cache(d, reference)


def test_a_crash_during_the_merge_resumes(fsd_root: Path, reference: Path, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise Crash("killed while computing the statistics")

    monkeypatch.setattr(cache_mod, "frame_stats", boom)
    with pytest.raises(Crash):
        build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False)
    d = cache_dir(tmp_path, SEED_CNN)
    assert (d / "train.frames.npy").exists() and not (d / "manifest.json").exists()
    (d / ".val.frames.npy.abc123.tmp").write_bytes(b"half-written by a killed merge")
    monkeypatch.undo()
    monkeypatch.setattr(cache_mod, "CHUNK", CHUNK)
    assert build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False).merged
    assert_same_cache(d, reference)


def _merge_bytes(d: Path) -> int:
    """Bytes of frames on disk in a cache folder: parts, joined frames and a merge's partial files."""
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file()
               and (p.parent.name == "parts" or ".frames.npy" in p.name))


def test_the_merge_needs_room_for_one_part_not_a_second_copy(fsd_root: Path, reference: Path, tmp_path, monkeypatch):
    # FSD50K's seed cache is 8.6 GB: a merge that kept every part until the end needed 17 GB free
    build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False, merge=False)
    d = cache_dir(tmp_path, SEED_CNN)
    biggest = max(p.stat().st_size for p in (d / "parts").glob("*.npz"))
    real_fsync, seen = os.fsync, []

    def measuring(fd):
        real_fsync(fd)
        seen.append(_merge_bytes(d))

    monkeypatch.setattr(cache_mod.os, "fsync", measuring)
    assert build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False).merged
    final = sum((d / f"{s}.frames.npy").stat().st_size for s in ("train", "val", "eval"))
    assert len(seen) >= 13  # every synced append (and atomic write) was measured
    assert max(seen) <= final + 2 * biggest  # one part in two places, plus the parts' own headers; was 2 x final
    assert_same_cache(d, reference)


def test_a_merge_killed_between_parts_resumes_byte_identical(fsd_root: Path, reference: Path, tmp_path, monkeypatch):
    build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False, merge=False)
    d = cache_dir(tmp_path, SEED_CNN)
    real_fsync, appends = os.fsync, []
    partial = d / ".train.frames.npy.partial"

    def killed_on_the_third(fd):
        real_fsync(fd)
        if partial.exists():  # a synced append (not one of atomic_write's syncs)
            appends.append(fd)
            if len(appends) == 2:  # train part 1 is in the partial file, not yet deleted
                raise Crash("killed in the middle of the merge")

    monkeypatch.setattr(cache_mod.os, "fsync", killed_on_the_third)
    with pytest.raises(Crash):
        build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False)
    monkeypatch.setattr(cache_mod.os, "fsync", real_fsync)
    assert partial.exists() and not (d / "parts" / "train-000000.npz").exists()
    assert (d / "parts" / "train-000001.npz").exists() and (d / "parts" / "train-000002.npz").exists()
    with open(partial, "ab") as f:  # and half of the next part's bytes made it to disk
        f.write(b"\x01" * 1000)
    redone: list = []
    res = build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False, on_chunk=lambda s, c: redone.append(c))
    assert res.merged and redone == []  # the consumed parts are not rebuilt
    assert_same_cache(d, reference)


def test_four_sequential_shards_then_merge_equal_a_single_build(fsd_root: Path, reference: Path, tmp_path):
    # the rehearsal's multi-machine path: --shard 0/4 ... 3/4 one after the other, then --merge
    from trainer.preprocess import merge_shards

    for i in range(4):
        assert not build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False, shard=(i, 4), merge=False).merged
    assert merge_shards(fsd_root, tmp_path, SEED_CNN).merged
    assert_same_cache(cache_dir(tmp_path, SEED_CNN), reference)


def test_merge_shards_resumes_a_killed_merge(fsd_root: Path, reference: Path, tmp_path, monkeypatch):
    from trainer.preprocess import merge_shards

    for i in range(2):
        build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False, shard=(i, 2), merge=False)
    real_fsync, calls = os.fsync, []

    def killed(fd):
        real_fsync(fd)
        calls.append(fd)
        if len(calls) == 2:
            raise Crash("killed")

    monkeypatch.setattr(cache_mod.os, "fsync", killed)
    with pytest.raises(Crash):
        merge_shards(fsd_root, tmp_path, SEED_CNN)
    monkeypatch.setattr(cache_mod.os, "fsync", real_fsync)
    assert merge_shards(fsd_root, tmp_path, SEED_CNN).merged  # consumed parts are not "missing chunks"
    assert_same_cache(cache_dir(tmp_path, SEED_CNN), reference)


KILL_SCRIPT = """
import sys, time
import trainer.cache_build as c
from guesser.features import SEED_CNN
c.CHUNK = int(sys.argv[3])
c.build_cache(sys.argv[1], sys.argv[2], SEED_CNN, jobs=1, progress=False, on_chunk=lambda s, i: time.sleep(0.03))
"""


@pytest.mark.slow
def test_kill_minus_9_then_rerun_equals_uninterrupted(fsd_root: Path, reference: Path, tmp_path):
    script = tmp_path / "build.py"
    script.write_text(KILL_SCRIPT)
    out = tmp_path / "out"
    parts = cache_dir(out, SEED_CNN) / "parts"
    proc = subprocess.Popen([sys.executable, str(script), str(fsd_root), str(out), str(CHUNK)])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if parts.is_dir() and len(list(parts.glob("*.npz"))) >= 4:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the build ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    d = cache_dir(out, SEED_CNN)
    assert not (d / "manifest.json").exists()
    done = len(list(parts.glob("*.npz")))
    assert 4 <= done < 13
    redone = []
    res = build_cache(fsd_root, out, SEED_CNN, jobs=1, progress=False, on_chunk=lambda s, c: redone.append(c))
    assert res.merged and len(redone) == 13 - done
    assert_same_cache(d, reference)


def test_a_merge_lock_left_by_a_dead_process_is_taken_over(fsd_root: Path, reference: Path, tmp_path):
    build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False, merge=False)
    d = cache_dir(tmp_path, SEED_CNN)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (d / ".merge.lock").write_text(f"{socket.gethostname()} {int(dead.stdout)}")
    assert build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False).merged
    assert_same_cache(d, reference)


def test_a_live_merge_lock_is_respected(fsd_root: Path, tmp_path):
    build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False, merge=False)
    d = cache_dir(tmp_path, SEED_CNN)
    (d / ".merge.lock").write_text(f"{socket.gethostname()} {os.getpid()}")  # this process: alive
    res = build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False)
    assert not res.merged and res.merging_elsewhere
    assert not (d / "manifest.json").exists()


def test_resuming_against_other_data_is_refused(make_fsd_tree, tmp_path):
    tree = make_fsd_tree(per_class=(2, 1, 1))
    with pytest.raises(Crash):
        build_cache(tree.root, tmp_path / "c", SEED_CNN, jobs=1, progress=False, on_chunk=crash_after(1))
    dev = tree.ground_truth / "dev.csv"
    lines = dev.read_text().splitlines()
    dev.write_text("\n".join(lines[:1] + lines[2:]) + "\n")  # one clip fewer: chunks would shift
    with pytest.raises(DataError, match="unfinished build of other data"):
        build_cache(tree.root, tmp_path / "c", SEED_CNN, jobs=1, progress=False)


def test_disk_full_is_one_clear_error_and_keeps_finished_parts(fsd_root, reference, tmp_path, monkeypatch):
    real = cache_mod.atomic_write
    writes = []

    def full_after_three(path, write):
        writes.append(path)
        if len(writes) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, write)

    monkeypatch.setattr(cache_mod, "atomic_write", full_after_three)
    with pytest.raises(GuesserError) as e:
        build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False)
    msg = str(e.value)
    assert msg.startswith("disk full while writing ") and "rerun" in msg and "\n" not in msg
    assert len(list((cache_dir(tmp_path, SEED_CNN) / "parts").glob("*.npz"))) == 3
    monkeypatch.setattr(cache_mod, "atomic_write", real)
    build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False)
    assert_same_cache(cache_dir(tmp_path, SEED_CNN), reference)


# ---------------------------------------------------------------- bad files


def test_undecodable_empty_and_missing_files_are_skipped_and_reported(make_fsd_tree, tmp_path):
    tree = make_fsd_tree(bad=True, per_class=(1, 1, 1))
    calls = []
    res = build_cache(tree.root, tmp_path, SEED_CNN, jobs=1, progress=False, on_chunk=lambda *a: calls.append(a))
    assert res.merged
    reported = {s["fname"]: s for s in res.skipped}
    assert set(reported) == set(tree.bad)
    for fname, why in tree.bad.items():
        clip = next(c for c in tree.clips if c.fname == fname)
        assert reported[fname]["split"] == clip.split and why in reported[fname]["reason"]
    cache = FeatureCache.open(res.directory)
    assert cache.report["skipped"] == res.skipped
    ds = Fsd50k.open(tree.root)
    for split in ("train", "val", "eval"):
        s = cache.split(split)
        kept = [c for c in tree.split(split) if c.fname not in tree.bad]
        assert s.fnames.tolist() == [c.fname for c in kept]
        rows = [i for i, c in enumerate(ds.splits[split].clips) if c.fname not in tree.bad]
        np.testing.assert_array_equal(s.targets, ds.targets(split)[rows])  # targets stay aligned
        assert res.clips[split] == len(kept)


def test_an_unexpected_decoder_crash_skips_the_clip(make_fsd_tree, tmp_path, monkeypatch):
    tree = make_fsd_tree(per_class=(2, 0, 0), classes=("rain",))
    victim = tree.split("train")[1]
    real = load_audio

    def flaky(path, **kw):
        if Path(path) == victim.path:
            raise RuntimeError("decoder exploded\nwith a second line")
        return real(path, **kw)

    monkeypatch.setattr("guesser.audio.load_audio", flaky)
    res = build_cache(tree.root, tmp_path, SEED_CNN, jobs=1, progress=False)
    assert res.skipped == [{"split": "train", "fname": victim.fname, "reason": "unexpected RuntimeError: decoder exploded"}]
    assert res.clips["train"] == 1


# ---------------------------------------------------------------- shards


def test_two_shards_then_merge_equal_a_single_build(fsd_root: Path, reference: Path, tmp_path):
    first = build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False, shard=(0, 2))
    assert not first.merged and not first.merging_elsewhere  # shard 1 has not run yet
    parts = sorted(p.name for p in (cache_dir(tmp_path, SEED_CNN) / "parts").glob("*.npz"))
    assert parts == ["eval-000000.npz", "eval-000002.npz", "train-000000.npz", "train-000002.npz",
                     "train-000004.npz", "train-000006.npz", "val-000000.npz", "val-000002.npz"]
    second = build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False, shard=(1, 2))
    assert second.merged  # the last shard to finish merges
    assert_same_cache(cache_dir(tmp_path, SEED_CNN), reference)


def test_shards_without_merge_then_explicit_merge(fsd_root: Path, reference: Path, tmp_path):
    from trainer.preprocess import merge_shards

    for i in range(3):
        res = build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False, shard=(i, 3), merge=False)
        assert not res.merged
        if i == 0:
            with pytest.raises(GuesserError, match=r"chunk\(s\) not built yet"):
                merge_shards(fsd_root, tmp_path, SEED_CNN)
    assert merge_shards(fsd_root, tmp_path, SEED_CNN).merged
    assert_same_cache(cache_dir(tmp_path, SEED_CNN), reference)


# ---------------------------------------------------------------- opening


def test_layout_1_caches_still_read_the_same(reference: Path, tmp_path):
    """A cache from before the mel-major layout (time-major [sum T, M] frames) reads identically."""
    import shutil

    old = tmp_path / reference.name
    shutil.copytree(reference, old)
    new = FeatureCache.open(reference)
    for split in ("train", "val", "eval"):
        s = new.split(split)
        np.save(old / f"{split}.frames.npy", np.concatenate([s.block(i).T for i in range(len(s))]))
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "version": 1}))
    legacy = FeatureCache.open(old)
    assert legacy.version == 1
    for split in ("train", "eval"):
        a, b = new.split(split), legacy.split(split)
        assert b.frames.ndim == 2 and b.n_mels == 128
        for i in range(len(a)):
            np.testing.assert_array_equal(a.clip(i), b.clip(i))
        idx = np.arange(len(a))
        for policy in ("tile", "pad"):
            np.testing.assert_array_equal(a.crops(idx, 516, policy=policy), b.crops(idx, 516, policy=policy))
            np.testing.assert_array_equal(a.crops(idx, 516, np.random.default_rng(3), policy),
                                          b.crops(idx, 516, np.random.default_rng(3), policy))
    (old / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(DataError, match="cache layout 99 is not one this guesser reads"):
        FeatureCache.open(old)



def test_open_errors(tmp_path: Path):
    with pytest.raises(DataError, match="not a finished guesser cache$"):
        FeatureCache.open(tmp_path / "nothing")
    with pytest.raises(DataError, match="no cache|not a finished"):
        find_cache(tmp_path, SEED_CNN)


def test_a_split_that_was_not_cached(fsd_root: Path, tmp_path):
    res = build_cache(fsd_root, tmp_path, SEED_CNN, jobs=1, progress=False, splits=("val", "eval"))
    cache = FeatureCache.open(res.directory)
    with pytest.raises(DataError, match="split 'train' was not cached"):
        cache.split("train")
    with pytest.raises(DataError, match="no train statistics"):
        cache.feature_config("global")
    assert len(cache.split("val")) == 10


# ---------------------------------------------------------------- memory at any data size


def _rss_file_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status (Linux)")
def test_reading_a_split_end_to_end_does_not_keep_it_resident(tmp_path, monkeypatch):
    # an epoch over FSD50K's train split touched every page of a 6 GB map: RSS grew with the data set
    import trainer.cache as reader
    from trainer.cache import CachedSplit

    n, m, t = 160, 128, 1000  # 41 MB of frames
    path = tmp_path / "train.frames.npy"
    np.save(path, np.full(n * m * t, 1.5, np.float16))
    lengths = np.full(n, t, np.int64)
    split = CachedSplit("train", np.load(path, mmap_mode="r"), np.asarray([str(i) for i in range(n)]),
                        np.arange(n, dtype=np.int64) * t, lengths, np.zeros((n, 3), np.uint8), ("a", "b", "c"), n_mels=m)
    monkeypatch.setattr(reader, "RELEASE_BYTES", 2 << 20, raising=False)
    before = _rss_file_kb()
    for i in range(n):
        assert split.clip(i)[0, 0] == 1.5
    for b in range(0, n, 16):
        assert split.crops(np.arange(b, b + 16), t, np.random.default_rng(b)).shape == (16, m, t)
    assert _rss_file_kb() - before < 12 * 1024  # without releasing the pages: ~40,000 kB


WORKER_MEMORY = """
import numpy as np, sys
import trainer.cache_build as c
if sys.argv[1] == "worker":
    c._init_worker()
from guesser.features import SEED_CNN, log_mel

def anon():  # live memory: freed heap handed back first (glibc), so only what is kept counts
    import ctypes
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon"))

rng = np.random.default_rng(0)
lengths = rng.integers(10 * 44100, 30 * 44100, 80)  # 80 clips, 80 lengths (FSD50K: nearly every clip its own)
for n in lengths[:20]:  # first-use allocations (thread pools, FFT plans, the allocator's arenas) settle here
    log_mel(rng.standard_normal(int(n)).astype(np.float32) * 0.1, 44100, SEED_CNN)
before = anon()
for n in lengths[20:]:  # what 60 more lengths add: a cache per length would show here
    log_mel(rng.standard_normal(int(n)).astype(np.float32) * 0.1, 44100, SEED_CNN)
print((anon() - before) // 1024)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status (Linux)")
def test_a_cache_worker_does_not_grow_with_the_number_of_clip_lengths():
    grown = {}
    for mode in ("worker", "plain"):
        p = subprocess.run([sys.executable, "-c", WORKER_MEMORY, mode], capture_output=True, text=True, timeout=300,
                           env={k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"})
        assert p.returncode == 0, p.stderr
        grown[mode] = int(p.stdout.split()[-1])
    # MB that 60 more lengths add after 20 (allocator noise; a one-shot count from the first clip measured
    # 6-20, its first-use allocations included; ~29 plain when the resampler was torchaudio's conv1d, which
    # left a oneDNN primitive of ~0.4 MB per length, ~24 MB over 60): neither grows with the lengths
    assert grown["worker"] < 20 and grown["plain"] < 20, grown
