"""Every input a person or a file system can produce, one row each (issue 13).

Each row of :data:`ROWS` builds its inputs inside its own folder, runs one
command through typer's ``CliRunner`` (and, for a representative subset, as a
real subprocess of the installed ``guesser`` script), and asserts:

* the exit code (1 for a user's problem, 0 for a result; never 70, the code of
  an unexpected exception that :mod:`guesser.crashlog` caught);
* stderr: the expected number of ``error: …`` lines (one per problem), each
  naming it, and no traceback anywhere;
* nothing else was lost or written outside the row's folder: the test's
  other folders, the crash-log folder and the shipped ``assets/`` are unchanged;
* whatever the row's own check adds (the good files still classified, the
  cache complete, the index untouched …).

Rows F1–F18 are the failures the issue found; the others are everyday cases
that already worked and must stay that way. F7 and F9 (an index of 200,000
``[``, checkpoint metadata of the wrong type) are handled by the typed contracts
of ``guesser.checkpoint`` (``ModelMeta``, ``ModelsIndex``).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
import torch

from guesser.checkpoint import load_checkpoint, save_checkpoint
from guesser.cli import app
from guesser.errors import GuesserError

REPO = Path(__file__).resolve().parents[1]
GUESSER = Path(sys.executable).parent / "guesser"
INTERNAL = 70  # guesser.errors.InternalError.exit_code: an exception nothing foresaw
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- inputs


def tone(path: Path, seconds: float = 2.0, sr: int = 22050, channels: int = 1) -> Path:
    t = np.arange(int(sr * seconds)) / sr
    x = (0.2 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1250 * t)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.stack([x] * channels, axis=1) if channels > 1 else x, sr)
    return path


def encode(path: Path, fmt: str, audio: str | None = "aac", video: str | None = None, *, video_first: bool = False,
           attached: bool = False, seconds: float = 2.0, rate: int = 48000) -> Path:
    """A container made by PyAV (FFmpeg): ``audio`` codec and/or a one-frame ``video`` (a picture) stream."""
    import av

    t = np.arange(int(rate * seconds)) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    with av.open(str(path), "w", format=fmt) as c:
        streams = []

        def add_video():
            v = c.add_stream(video, rate=1)
            v.width = v.height = 16
            v.pix_fmt = "yuvj420p" if video == "mjpeg" else "yuv420p"
            if attached:
                v.disposition = av.stream.Disposition.attached_pic
            streams.append(("v", v))

        if video and video_first:
            add_video()
        if audio:
            a = c.add_stream(audio, rate=rate)
            a.layout = "mono"
            streams.append(("a", a))
        if video and not video_first:
            add_video()
        for kind, s in streams:
            if kind == "v":
                img = np.zeros((16, 16, 3), np.uint8)
                img[..., 0] = 200
                frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=s.pix_fmt)
            else:
                frame = av.AudioFrame.from_ndarray(x[None], format="flt", layout="mono")
                frame.sample_rate = rate
            for p in s.encode(frame):
                c.mux(p)
            for p in s.encode():
                c.mux(p)
    return path


def resave(src: Path, dst: Path, *, tensors=None, meta=None) -> Path:
    """``src`` checkpoint rewritten to ``dst`` with ``tensors``/``meta`` changed by the given functions."""
    t, m = load_checkpoint(src)
    t = tensors(dict(t)) if tensors else t
    m = meta(json.loads(json.dumps(m))) if meta else m
    save_checkpoint(dst, t, {k: v for k, v in m.items() if k not in ("format", "format_version")})
    return dst


def raw_header(dst: Path, header) -> Path:
    """A safetensors file with one tensor and ``header`` (any JSON) under "guesser" in its metadata."""
    body = np.zeros(4, np.float32).tobytes()
    meta = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, len(body)]},
            "__metadata__": {"guesser": json.dumps(header)}}
    blob = json.dumps(meta).encode()
    dst.write_bytes(struct.pack("<Q", len(blob)) + blob + body)
    return dst


def index_of(folder: Path, *paths: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.json").write_text(json.dumps({"version": 1, "models": [{"path": p} for p in paths]}))
    return folder / "index.json"


def feature_change(**change):
    def edit(m):
        m["features"].update(change)
        return m

    return edit


# ---------------------------------------------------------------- the runner


@dataclass
class Ctx:
    """What a row's builder gets: its folder, the fixtures (built on first use) and the test's monkeypatch."""

    work: Path
    request: pytest.FixtureRequest
    monkeypatch: pytest.MonkeyPatch
    env: dict[str, str] = field(default_factory=dict)
    notes: dict = field(default_factory=dict)

    def fixture(self, name: str):
        return self.request.getfixturevalue(name)

    @property
    def models(self) -> str:
        return str(self.fixture("light_model_index"))

    @property
    def checkpoint(self) -> Path:
        """A label model (cnn3, random weights) of the light index."""
        index = self.fixture("light_model_index")
        entry = next(e for e in json.loads(index.read_text())["models"] if e["path"].startswith("cnn3"))
        return index.parent / entry["path"]

    def good(self, name: str = "good.wav") -> Path:
        return tone(self.work / name)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def json(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]


@dataclass
class Row:
    id: str
    build: Callable[[Ctx], list[str]]
    code: int
    says: tuple[str, ...] = ()  # in the stderr line(s); empty: nothing on stderr at all
    lines: int = 1  # error lines expected (one per problem) when ``says`` is set
    check: Callable[[Ctx, Result], None] | None = None
    subprocess: bool = False  # also run the installed script in a child process
    in_process: bool = True  # False: only as a subprocess (stdout to /dev/full …)
    stdout: str | None = None  # a file for the subprocess's stdout (e.g. /dev/full)
    marks: tuple = ()
    timeout: float = 180


def invoke(ctx: Ctx, argv: list[str]) -> Result:
    from typer.testing import CliRunner

    ctx.monkeypatch.chdir(ctx.work)
    r = CliRunner().invoke(app, argv, env=ctx.env)
    if r.exception is not None and not isinstance(r.exception, SystemExit):  # escaped the CLI's handler
        raise r.exception
    return Result(r.exit_code, r.stdout, r.stderr)


PROBE = ("import resource, subprocess, sys\n"
         "p = subprocess.run(sys.argv[1:], capture_output=True)\n"
         "sys.stdout.buffer.write(p.stdout); sys.stderr.buffer.write(p.stderr)\n"
         "sys.stderr.write(f'\\nRSS_KB {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n')\n"
         "sys.exit(p.returncode)\n")


def spawn(ctx: Ctx, argv: list[str], row: Row) -> Result:
    """The installed script in a child process (through a probe that reports its peak RSS, unless stdout is a file)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **ctx.env}
    cmd = [str(GUESSER), *argv] if row.stdout else [sys.executable, "-c", PROBE, str(GUESSER), *argv]
    out = open(row.stdout, "w") if row.stdout else subprocess.PIPE  # noqa: SIM115
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, cwd=ctx.work, env=env, timeout=row.timeout)
    finally:
        if row.stdout:
            out.close()
    ctx.notes["seconds"] = time.perf_counter() - t0
    decode = lambda b: (b or b"").decode("utf-8", "backslashreplace")  # noqa: E731
    stderr = decode(p.stderr)
    if not row.stdout:
        stderr, _, rss = stderr.rpartition("RSS_KB ")
        ctx.notes["rss_mb"] = int(rss) / 1024
    return Result(p.returncode, decode(p.stdout), stderr)


def snapshot(*roots: Path, skip: Path | None = None) -> dict[str, tuple[int, int]]:
    """{path: (size, mtime_ns)} of every file under ``roots`` (``skip`` excluded)."""
    seen = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            if skip is not None and Path(dirpath) == skip.parent:
                dirnames[:] = [d for d in dirnames if Path(dirpath) / d != skip]
            for f in filenames:
                p = Path(dirpath) / f
                try:
                    st = p.lstat()
                except OSError:
                    continue
                seen[str(p)] = (st.st_size, st.st_mtime_ns)
    return seen


def check_result(row: Row, ctx: Ctx, res: Result, how: str) -> None:
    where = f"[{row.id} {how}] exit {res.code}\nstdout: {res.stdout[-600:]}\nstderr: {res.stderr[-1200:]}"
    assert "Traceback" not in res.stdout + res.stderr, where
    assert res.code != INTERNAL, where
    assert res.code == row.code, where
    errors = res.errors
    if row.says:
        assert len(errors) == row.lines, where
        assert all(e.startswith("error: ") for e in errors), where
        for text in row.says:
            assert any(text in e for e in errors), f"{text!r} not said\n{where}"
    else:
        assert [e for e in errors if e.startswith("error")] == [], where
    if row.check:
        row.check(ctx, res)


def run_row(row: Row, tmp_path: Path, request, monkeypatch, how: str) -> None:
    work, data = tmp_path / "work", tmp_path / "data"
    work.mkdir()
    data.mkdir()
    ctx = Ctx(work, request, monkeypatch, env={"GUESSER_DATA_DIR": str(data), "COLUMNS": "120"})
    argv = row.build(ctx)
    outside = snapshot(tmp_path, skip=work)
    siblings = sorted(p.name for p in tmp_path.parent.iterdir())
    assets = snapshot(REPO / "assets")
    res = invoke(ctx, argv) if how == "in-process" else spawn(ctx, argv, row)
    check_result(row, ctx, res, how)
    assert not (data / "logs").exists(), f"[{row.id}] a crash log was written: {list((data / 'logs').iterdir())}"
    assert snapshot(tmp_path, skip=work) == outside, f"[{row.id}] something outside its folder changed"
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == siblings, f"[{row.id}] wrote beside its folder"
    assert snapshot(REPO / "assets") == assets, f"[{row.id}] changed the shipped assets"


# ---------------------------------------------------------------- checks shared by rows


def classified(*names: str, silent: tuple[str, ...] = ()):
    def check(ctx: Ctx, res: Result) -> None:
        objs = res.json()
        assert [Path(o["file"]).name for o in objs] == list(names), res.stdout[-500:]
        for o in objs:
            assert o["silent"] == (Path(o["file"]).name in silent)
            assert all(isinstance(s["score"], float) and 0 <= s["score"] <= 1 for s in o["labels"])
    return check


def classify_row(id: str, make: Callable[[Ctx], Path], code: int, says: tuple[str, ...] = (), *, alone: bool = False,
                 decoded: bool = False, **kw) -> Row:
    """``classify BAD good.wav --json``: one line for BAD (or a result), good.wav classified either way."""
    def build(ctx: Ctx) -> list[str]:
        bad = make(ctx)
        files = [str(bad)] if alone else [str(bad), str(ctx.good())]
        return ["classify", *files, "--json", "--models", ctx.models]

    def default_check(ctx: Ctx, res: Result) -> None:
        names = [Path(o["file"]).name for o in res.json()]
        expect = (["bad"] if decoded else []) + ([] if alone else ["good.wav"])
        assert [("bad" if n != "good.wav" else n) for n in names] == expect, res.stdout[-300:]

    return Row(id, build, code, says, check=kw.pop("check", default_check), **kw)


# ---------------------------------------------------------------- audio files


def unknown_codec_wav(path: Path) -> Path:
    """A WAV whose format tag (0x1234) neither libsndfile nor FFmpeg knows: FFmpeg lists a stream it cannot decode."""
    data = (np.sin(np.arange(8000) / 5) * 10000).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 0x1234, 1, 16000, 32000, 2, 16)
    return put(path, b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
               + b"data" + struct.pack("<I", len(data)) + data)


def put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def silence(path: Path) -> Path:
    sf.write(str(path), np.zeros(22050, np.float32), 22050)
    return path


def fifo(ctx: Ctx, name: str = "fifo.wav") -> Path:
    p = ctx.work / name
    os.mkfifo(p)
    return p


def corrupt(ctx: Ctx) -> Path:
    p = ctx.work / "corrupt.wav"
    p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(200)))
    return p


def nonutf8(ctx: Ctx) -> Path:
    name = os.fsdecode(b"caf\xe9-\xff.wav")  # not UTF-8: Python holds it with surrogate escapes
    tone(ctx.work / "tmp.wav").rename(ctx.work / name)
    return ctx.work / name


def unreadable(ctx: Ctx) -> Path:
    """A file this user may not read: chmod 000, and (root reads anything) the OS answering EACCES as it would."""
    p = tone(ctx.work / "locked.wav")
    p.chmod(0)
    import guesser.fileio as fio

    real_open, real_access, target = os.open, os.access, os.fsencode(p)

    def deny_open(path, flags, *a, **k):
        if os.fsencode(path) == target:
            raise PermissionError(13, "Permission denied", str(p))
        return real_open(path, flags, *a, **k)

    def deny_access(path, mode, *a, **k):  # what click's readable=True check would see
        return False if os.fsencode(path) == target else real_access(path, mode, *a, **k)

    ctx.monkeypatch.setattr(fio.os, "open", deny_open)
    ctx.monkeypatch.setattr(os, "access", deny_access)
    return p


LONG_MINUTES = 2.0  # past IN_MEMORY_SECONDS (30 s): streamed; benchmarks/long_input.py measures 2 hours


def long_wav(ctx: Ctx, minutes: float = LONG_MINUTES) -> Path:
    """A long 16 kHz mono WAV, written in blocks (a tone that changes every minute)."""
    p, sr = ctx.work / "long.wav", 16000
    with sf.SoundFile(str(p), "w", sr, 1, subtype="PCM_16") as f:
        for m in range(int(np.ceil(minutes))):
            n = int(sr * 60 * min(1.0, minutes - m))
            t = np.arange(n) / sr
            f.write((0.2 * np.sin(2 * np.pi * (300 + 100 * (m % 5)) * t)).astype(np.float32))
    return p


def memory_check(limit_mb: float):
    def check(ctx: Ctx, res: Result) -> None:
        from guesser.features import SEED_CNN, window_starts

        seconds = LONG_MINUTES * 60
        (obj,) = res.json()
        assert obj["duration"] == pytest.approx(seconds, abs=0.01)
        tl = obj["timeline"]
        starts = window_starts(1 + int(seconds) * SEED_CNN.sample_rate // SEED_CNN.hop_length, SEED_CNN.clip_frames)
        assert len(tl) == len(starts) > seconds / 3 - 2  # 6 s windows every 3 s, the last one flush with the end
        assert [round(w["start"], 3) for w in tl] == [round(s / SEED_CNN.frames_per_second, 3) for s in starts]
        assert tl[-1]["end"] == pytest.approx(seconds, abs=0.01)
        print(f"F3: {LONG_MINUTES:g} min classified in {ctx.notes['seconds']:.0f} s, peak RSS {ctx.notes['rss_mb']:.0f} MB")
        assert ctx.notes["rss_mb"] < limit_mb, f"peak RSS {ctx.notes['rss_mb']:.0f} MB"
    return check


# ---------------------------------------------------------------- checkpoints and indexes


def nan_weights(ctx: Ctx) -> Path:
    def poison(t):
        k = next(k for k, v in t.items() if v.is_floating_point() and v.numel() > 10)
        t[k] = t[k].clone()
        t[k].view(-1)[0] = float("nan")
        return t

    return resave(ctx.checkpoint, ctx.work / "nan.safetensors", tensors=poison)


def models_row(id: str, make: Callable[[Ctx], Path], says: tuple[str, ...], *, cmd: str = "classify", **kw) -> Row:
    """``classify good.wav --models BAD`` (or ``models --models BAD``): one line, nothing classified."""
    def build(ctx: Ctx) -> list[str]:
        bad = make(ctx)
        if cmd == "models":
            return ["models", "--models", str(bad)]
        return ["classify", str(ctx.good()), "--json", "--models", str(bad)]

    def nothing(ctx: Ctx, res: Result) -> None:
        assert res.stdout == "" and "NaN" not in res.stdout

    return Row(id, build, 1, says, check=kw.pop("check", nothing), **kw)


def pickle_renamed(ctx: Ctx) -> Path:
    p = ctx.work / "pickle.safetensors"
    torch.save({"w": torch.zeros(3)}, p)
    return p


def huge_header(ctx: Ctx) -> Path:
    p = ctx.work / "huge.safetensors"
    p.write_bytes(struct.pack("<Q", 2**60) + b"{" * 64)
    return p


def int_weights(ctx: Ctx) -> Path:
    return resave(ctx.checkpoint, ctx.work / "int.safetensors",
                  tensors=lambda t: {k: (v * 100).to(torch.int32) if v.is_floating_point() else v for k, v in t.items()})


def missing_entry(path: str):
    def make(ctx: Ctx) -> Path:
        return index_of(ctx.work / "idx", path)
    return make


# ---------------------------------------------------------------- data, caches, runs


def tiny_tree(ctx: Ctx, **kw):
    from fsdtree import write_fsd_tree

    return write_fsd_tree(ctx.work / "FSD50K", per_class=(2, 1, 1), classes=("rain", "bark"), **kw)


def preprocess_args(root: Path, out: Path) -> list[str]:
    return ["preprocess", str(root), "--out", str(out), "--features", "seed", "-j", "1", "--no-progress"]


def cache_finished(ctx: Ctx, res: Result) -> None:
    from guesser.features import SEED_CNN
    from trainer.cache import cache_dir

    d = cache_dir(ctx.work / "cache", SEED_CNN)
    assert (d / "manifest.json").is_file(), sorted(p.name for p in d.iterdir())
    assert not (d / "parts").exists() and not (d / ".merge.lock").exists() and not list(d.glob(".*.tmp"))
    assert "--merge" not in res.stderr


def fifo_clip(ctx: Ctx) -> list[str]:
    tree = tiny_tree(ctx)
    clip = tree.split("train")[0]
    clip.path.unlink()
    os.mkfifo(clip.path)  # the same name: the corpus lists it like any clip
    ctx.notes["fname"] = clip.fname
    return preprocess_args(tree.root, ctx.work / "cache")


def fifo_skipped(ctx: Ctx, res: Result) -> None:
    cache_finished(ctx, res)
    from guesser.features import SEED_CNN
    from trainer.cache import cache_dir

    report = json.loads((cache_dir(ctx.work / "cache", SEED_CNN) / "report.json").read_text())
    (skip,) = report["skipped"]
    assert skip["fname"] == ctx.notes["fname"] and "FIFO" in skip["reason"]


def out_is_a_file(ctx: Ctx) -> list[str]:
    tree = tiny_tree(ctx)
    (ctx.work / "cache").write_text("not a folder\n")
    return preprocess_args(tree.root, ctx.work / "cache")


def out_read_only(ctx: Ctx) -> list[str]:
    tree = tiny_tree(ctx)
    out = ctx.work / "cache"
    out.mkdir()
    out.chmod(0o555)
    real = Path.mkdir

    def mkdir(self, *a, **k):  # root writes anywhere: make the OS answer as it would to a user
        if str(self).startswith(str(out) + os.sep):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    ctx.monkeypatch.setattr(Path, "mkdir", mkdir)
    return preprocess_args(tree.root, out)


def unreadable_audio_dir(ctx: Ctx) -> list[str]:
    tree = tiny_tree(ctx)
    folder = tree.root / "FSD50K.dev_audio"
    import trainer.fsd50k as fsd

    real = os.scandir

    def scandir(path="."):
        if Path(path) == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    ctx.monkeypatch.setattr(fsd.os, "scandir", scandir)
    return preprocess_args(tree.root, ctx.work / "cache")


def bad_csv(change: Callable[[str], str | bytes], name: str = "dev.csv"):
    def build(ctx: Ctx) -> list[str]:
        tree = tiny_tree(ctx)
        p = tree.root / "FSD50K.ground_truth" / name
        new = change(p.read_text())
        p.write_bytes(new.encode() if isinstance(new, str) else new)
        return preprocess_args(tree.root, ctx.work / "cache")
    return build


def stale_lock_after_manifest(ctx: Ctx) -> list[str]:
    """kill -9 at the merge's last step: manifest written, parts and the merge lock (of a dead pid) left behind."""
    from guesser.features import SEED_CNN
    from trainer.cache import cache_dir
    from trainer.cache_build import build_cache

    tree = tiny_tree(ctx)
    out = ctx.work / "cache"
    build_cache(tree.root, out, SEED_CNN, jobs=1, progress=False)
    d = cache_dir(out, SEED_CNN)
    (d / "parts").mkdir()
    (d / "parts" / "train-000000.npz").write_bytes(b"left over")
    (d / ".merge.lock").write_text(f"{os.uname().nodename} {dead_pid()}")
    return preprocess_args(tree.root, out)


def stale_lock_before_merge(ctx: Ctx) -> list[str]:
    """kill -9 during the merge: every part built, no manifest, a lock whose owner is dead."""
    from guesser.features import SEED_CNN
    from trainer.cache import cache_dir
    from trainer.cache_build import build_cache

    tree = tiny_tree(ctx)
    out = ctx.work / "cache"
    build_cache(tree.root, out, SEED_CNN, jobs=1, progress=False, merge=False)
    (cache_dir(out, SEED_CNN) / ".merge.lock").write_text(f"{os.uname().nodename} {dead_pid()}")
    return preprocess_args(tree.root, out)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def concurrent_loser(ctx: Ctx) -> list[str]:
    """Two runs of one build: the other finishes (merges and cleans up) while this one computes its chunks."""
    import trainer.cache_build as cache_mod
    from guesser.features import SEED_CNN

    tree = tiny_tree(ctx)
    out = ctx.work / "cache"
    real = cache_mod._run_tasks
    state = {"done": False}

    def tasks_then_the_winner_finishes(*a, **k):
        real(*a, **k)
        if not state["done"]:
            state["done"] = True
            cache_mod.build_cache(tree.root, out, SEED_CNN, jobs=1, progress=False)

    ctx.monkeypatch.setattr(cache_mod, "_run_tasks", tasks_then_the_winner_finishes)
    return preprocess_args(tree.root, out)


@pytest.fixture(scope="module")
def trained_run(fsd_cache, tmp_path_factory):
    """A finished one-epoch run (its last.safetensors is what --resume reads) and its recipe file."""
    from trainer.train import train
    from trainkit import tiny_recipe, write_recipe

    base = tmp_path_factory.mktemp("hostile-run")
    recipe = tiny_recipe("hostile", epochs=1, batch_size=8, augment={})
    train(recipe, fsd_cache.directory.parent, base / "run", device="cpu", progress=False, log=lambda *_: None)
    return base / "run", write_recipe(base / "tiny.toml", recipe)


def resume_with(edit_tensors=None, edit_meta=None):
    def build(ctx: Ctx) -> list[str]:
        run, recipe = ctx.fixture("trained_run")
        cache = ctx.fixture("fsd_cache").directory.parent
        mine = ctx.work / "run"
        shutil.copytree(run, mine)
        resave(mine / "last.safetensors", mine / "last.safetensors", tensors=edit_tensors, meta=edit_meta)
        ctx.notes["before"] = snapshot(mine)
        return ["train", "one", str(recipe), "--cache", str(cache), "--out", str(mine), "--device", "cpu",
                "--no-progress", "--resume"]
    return build


def run_untouched(ctx: Ctx, res: Result) -> None:
    assert snapshot(ctx.work / "run") == ctx.notes["before"]


def wrong_shape(t):
    k = next(k for k in t if t[k].ndim == 4)  # a convolution's weight (tensors are stored by their tree path)
    t[k] = torch.zeros(3, 3)
    return t


def missing_tensor(t):
    t.pop(next(k for k in t if t[k].ndim == 4))
    return t


def bad_counters(m):
    m["counters"]["epoch"] = "x"
    return m


def damaged_cache(damage: Callable[[Path], None]):
    def build(ctx: Ctx) -> list[str]:
        from trainkit import tiny_recipe, write_recipe

        src = ctx.fixture("fsd_cache").directory
        root = ctx.work / "cache"
        shutil.copytree(src, root / src.name)
        damage(root / src.name)
        recipe = write_recipe(ctx.work / "tiny.toml", tiny_recipe("hostile", epochs=1, batch_size=8, augment={}))
        return ["train", "one", str(recipe), "--cache", str(root), "--out", str(ctx.work / "run"), "--device", "cpu",
                "--no-progress"]
    return build


def truncate(name: str, keep: float = 0.5):
    def damage(d: Path) -> None:
        p = d / name
        p.write_bytes(p.read_bytes()[: int(p.stat().st_size * keep)])
    return damage


def overwrite(name: str, data: bytes):
    def damage(d: Path) -> None:
        (d / name).write_bytes(data)
    return damage


# ---------------------------------------------------------------- export, report, evaluate


def export_with_member(member: str):
    def build(ctx: Ctx) -> list[str]:
        runs = ctx.work / "runs"
        (runs / "m").mkdir(parents=True)
        resave(ctx.checkpoint, runs / "m" / "best.safetensors", meta=lambda m: {**m, "member": member})
        index_of(runs, "m/best.safetensors")
        return ["export", str(runs / "index.json"), "--out", str(ctx.work / "out")]
    return build


def nothing_exported(ctx: Ctx, res: Result) -> None:
    assert not (ctx.work / "out").exists()


def export_with_eval(doc) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        runs = ctx.work / "runs"
        (runs / "m").mkdir(parents=True)
        shutil.copy(ctx.checkpoint, runs / "m" / "best.safetensors")
        (runs / "m" / "eval.json").write_text(json.dumps(doc))
        index_of(runs, "m/best.safetensors")
        return ["export", str(runs / "index.json"), "--out", str(ctx.work / "out")]
    return build


def report_with(files: dict[str, str]) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        run = ctx.work / "runs" / "r"
        run.mkdir(parents=True)
        for name, text in files.items():
            (run / name).write_text(text)
        return ["report", str(run), "--width", "100"]
    return build


def evaluate_without_write_index(ctx: Ctx) -> list[str]:
    """evaluate on the models index (as for the shipped one): results beside the runs, the index untouched;
    models that sit inside the installed package get their results in ./evaluations instead."""
    from tinyruns import build_runs, copy_runs

    import trainer.evaluate as ev

    cache = ctx.fixture("fsd_cache").directory.parent
    base = build_runs(cache, ctx.fixture("tmp_path_factory").getbasetemp() / "tiny-runs")
    runs = copy_runs(base, ctx.work / "runs")
    ctx.notes["index"] = (runs / "index.json").read_bytes()
    ctx.monkeypatch.setattr(ev, "package_folders", lambda: [runs])  # as if runs/ were the installed package
    return ["evaluate", "--index", str(runs / "index.json"), "--cache", str(cache)]


def index_untouched(ctx: Ctx, res: Result) -> None:
    runs = ctx.work / "runs"
    assert (runs / "index.json").read_bytes() == ctx.notes["index"]
    assert not list(runs.rglob("*eval*.json")), "results written inside the 'package'"
    written = sorted(p.name for p in (ctx.work / "evaluations").iterdir())
    assert written == sorted(["ensemble_eval.json", "tiny_cnn3.eval.json", "tiny_cnn4.eval.json",
                              "tiny_family.eval.json"]), written
    assert "--write-index" in res.stderr


# ---------------------------------------------------------------- the table

ROWS: list[Row] = [
    # -- everyday audio that libsndfile refuses: decoded by FFmpeg (PyAV)
    classify_row("m4a-aac", lambda c: encode(c.work / "phone.m4a", "ipod", "aac"), 0, decoded=True, subprocess=True),
    classify_row("mp4-video", lambda c: encode(c.work / "clip.mp4", "mp4", "aac", "mpeg4"), 0, decoded=True),
    classify_row("mkv-cover-art", lambda c: encode(c.work / "song.mkv", "matroska", "libopus", "mjpeg", attached=True),
                 0, decoded=True),
    classify_row("webm-opus", lambda c: encode(c.work / "browser.webm", "webm", "libopus"), 0, decoded=True),
    classify_row("ogg-picture-stream-first", lambda c: encode(c.work / "cover.ogg", "ogg", "libopus", "libvpx",
                                                              video_first=True), 0, decoded=True),
    classify_row("no-audio-stream", lambda c: encode(c.work / "video.mkv", "matroska", None, "mjpeg"), 1,
                 ("video.mkv", "no audio stream")),
    classify_row("silent-is-a-result", lambda c: silence(c.work / "quiet.wav"), 0,
                 check=classified("quiet.wav", "good.wav", silent=("quiet.wav",))),
    # -- everyday bad audio (already one line each)
    classify_row("corrupt-wav", corrupt, 1, ("corrupt.wav", "cannot decode audio")),
    classify_row("empty-file", lambda c: put(c.work / "empty.ogg", b""), 1,
                 ("empty.ogg", "empty")),
    classify_row("text-file", lambda c: put(c.work / "notes.txt", b"not audio\n"), 1,
                 ("notes.txt", "cannot decode audio")),
    classify_row("nan-samples", lambda c: sf.write(str(c.work / "nan.wav"), np.full(2205, np.nan, np.float32), 22050,
                                                   subtype="FLOAT") or c.work / "nan.wav", 1, ("nan.wav", "NaN")),
    classify_row("no-samples", lambda c: sf.write(str(c.work / "none.wav"), np.zeros(0, np.float32), 22050)
                 or c.work / "none.wav", 1, ("none.wav", "empty")),
    classify_row("missing-file", lambda c: c.work / "missing.wav", 1, ("missing.wav", "no such file")),
    classify_row("wav-unknown-codec", lambda c: unknown_codec_wav(c.work / "odd.wav"), 1,  # found by the fuzz pass
                 ("odd.wav", "no decoder for its audio stream")),
    classify_row("folder-without-audio", lambda c: (c.work / "empty_dir").mkdir() or c.work / "empty_dir", 1,
                 ("empty_dir", "no audio files")),
    classify_row("truncated-flac", lambda c: put(c.work / "cut.flac", tone(c.work / "full.flac", 3.0).read_bytes()[:300]),
                 1, ("cut.flac",)),
    # -- F1, F4, F5: a FIFO, a device, a non-UTF-8 name, an unreadable file among good ones
    classify_row("F1-fifo", fifo, 1, ("fifo.wav", "FIFO"), subprocess=True, timeout=90),
    classify_row("F1-device", lambda c: Path("/dev/zero"), 1, ("/dev/zero", "character device")),
    classify_row("F4-non-utf8-name", nonutf8, 0, decoded=True, subprocess=True,
                 check=lambda c, r: classified("caf\\xe9-\\xff.wav", "good.wav")(c, r)),
    classify_row("F5-unreadable", unreadable, 1, ("locked.wav", "permission denied")),
    Row("F4-non-utf8-checkpoint", lambda c: ["classify", str(c.good()), "--json", "--models", str(shutil.copy(
        c.checkpoint, c.work / os.fsdecode(b"mod\xe8le.safetensors")))], 0, check=classified("good.wav"),
        subprocess=True),
    # -- F3: two hours would take minutes here: two (streamed) check the timeline and the flat memory (subprocess)
    Row("F3-long-file-bounded-memory",
        lambda c: ["classify", str(long_wav(c)), "--json", "--timeline", "--top-k", "1", "--models", c.models],
        0, check=memory_check(1000), in_process=False, subprocess=True, timeout=600),
    # -- F6: stdout on a full disk
    Row("F6-stdout-full", lambda c: ["classify", str(c.good()), "--json", "--models", c.models], 1,
        ("standard output", "No space left"), in_process=False, subprocess=True, stdout="/dev/full"),
    # -- F7, F9: validation on read of indexes and checkpoint metadata (issue 12)
    models_row("F7-deep-index", lambda c: put(c.work / "index.json", b"[" * 200_000),
               ("index.json",)),
    models_row("F9-list-header", lambda c: raw_header(c.work / "list.safetensors", [1, 2]), ("list.safetensors",)),
    models_row("F9-format-version-text", lambda c: raw_header(c.work / "fv.safetensors", {
        "format": "guesser-checkpoint", "format_version": "abc", "kind": "model"}), ("fv.safetensors",)),
    models_row("F9-member-dict", lambda c: resave(c.checkpoint, c.work / "mem.safetensors",
                                                  meta=lambda m: {**m, "member": {}}), ("mem.safetensors",)),
    # -- F8: NaN weights
    models_row("F8-nan-weights", nan_weights, ("nan.safetensors", "NaN")),
    # -- F10: feature settings out of range
    *[models_row(f"F10-{name}", lambda c, ch=ch, name=name: resave(c.checkpoint, c.work / f"{name}.safetensors",
                                                                    meta=feature_change(**ch)), (setting,))
      for name, ch, setting in (("hop0", {"hop_length": 0}, "hop_length"), ("rate-5", {"sample_rate": -5}, "sample_rate"),
                                ("mean3", {"mean": [1.0, 2.0, 3.0], "std": [1.0, 1.0, 1.0]}, "mean has 3 values"),
                                ("mels7", {"n_mels": 7}, "n_mels"), ("clip1e7", {"clip_seconds": 1e7}, "clip_seconds"))],
    models_row("F10-models-command", lambda c: resave(c.checkpoint, c.work / "hop.safetensors",
                                                      meta=feature_change(hop_length=0)), ("hop_length",), cmd="models"),
    # -- everyday hostile checkpoints and indexes (already one line)
    models_row("huge-header", huge_header, ("huge.safetensors", "not a guesser checkpoint")),
    models_row("pickle-renamed", pickle_renamed, ("pickle.safetensors", "not a guesser checkpoint"), subprocess=True),
    models_row("int-weights", int_weights, ("int.safetensors", "weights do not match")),
    models_row("index-entry-up-and-missing", missing_entry("../../nowhere/best.safetensors"), ("no such checkpoint",)),
    models_row("index-entry-absolute-missing", missing_entry("/nonexistent/best.safetensors"),
               ("/nonexistent/best.safetensors", "no such checkpoint")),
    models_row("index-is-a-fifo", lambda c: fifo(c, "index.json"), ("index.json", "FIFO")),
    Row("index-entry-absolute-exists", lambda c: ["classify", str(c.good()), "--json", "--models",
                                                  str(index_of(c.work / "idx", str(c.checkpoint)))], 0,
        check=classified("good.wav")),
    # -- F11: torchrun's environment
    Row("F11-rank-not-a-number", lambda c: (c.env.update(RANK="x", WORLD_SIZE="2"), preprocess_args(
        tiny_tree(c).root, c.work / "cache"))[1], 1, ("RANK='x'", "whole numbers"), subprocess=True),
    Row("F11-rank-out-of-range", lambda c: (c.env.update(RANK="5", WORLD_SIZE="2"), preprocess_args(
        tiny_tree(c).root, c.work / "cache"))[1], 1, ("RANK='5'", "0 <= RANK < WORLD_SIZE")),
    # -- F2, F12: the corpus and the cache folder
    Row("F2-fifo-in-corpus", fifo_clip, 0, check=fifo_skipped, subprocess=True, timeout=180),
    Row("F12-out-is-a-file", out_is_a_file, 1, ("a file, not a folder",)),
    Row("F12-out-read-only", out_read_only, 1, ("cannot write", "Permission denied")),
    Row("F12-audio-folder-unreadable", unreadable_audio_dir, 1, ("FSD50K.dev_audio", "cannot list")),
    # -- bad CSVs (already one line)
    Row("csv-nul-bytes", bad_csv(lambda t: t.replace(",", "\x00,", 1)), 1, ("dev.csv",)),
    Row("csv-not-utf8", bad_csv(lambda t: t.encode() + b"\xff\xfe bad\n"), 1, ("dev.csv", "UTF-8")),
    Row("csv-missing-column", bad_csv(lambda t: "\n".join(line.rsplit(",", 1)[0] for line in t.splitlines())), 1,
        ("dev.csv", "split")),
    Row("csv-unknown-label", bad_csv(lambda t: t.replace("Rain", "Drizzle", 1)), 1, ("dev.csv", "Drizzle")),
    Row("csv-vocabulary-garbage", bad_csv(lambda t: "1,2\n\"unclosed\n", "vocabulary.csv"), 1, ("vocabulary.csv",)),
    # -- kill -9 during and after a merge, concurrent runs
    Row("kill9-stale-lock-before-merge", stale_lock_before_merge, 0, check=cache_finished),
    Row("kill9-stale-lock-after-manifest", stale_lock_after_manifest, 0, check=cache_finished),
    Row("concurrent-loser-no-merge-hint", concurrent_loser, 0, check=cache_finished),
    # -- F13: --resume with a well-formed but inconsistent state
    Row("F13-wrong-shaped-tensor", resume_with(edit_tensors=wrong_shape), 1, ("last.safetensors", "does not fit"),
        check=run_untouched),
    Row("F13-missing-tensor", resume_with(edit_tensors=missing_tensor), 1, ("last.safetensors", "inconsistent"),
        check=run_untouched),
    Row("F13-bad-counters", resume_with(edit_meta=bad_counters), 1, ("last.safetensors", "counter epoch"),
        check=run_untouched),
    # -- F14: training on a damaged cache
    Row("F14-truncated-frames", damaged_cache(truncate("train.frames.npy")), 1, ("damaged cache", "train.frames.npy")),
    Row("F14-garbage-index", damaged_cache(overwrite("train.index.npz", b"PK\x03\x04 garbage" * 10)), 1,
        ("damaged cache", "train.index.npz")),
    Row("F14-bad-stats", damaged_cache(overwrite("stats.json", b'{"global": {"mean": "x"}}')), 1,
        ("damaged cache", "stats.json")),
    Row("F14-features-json-list", damaged_cache(overwrite("features.json", b"[1, 2]")), 1,
        ("damaged cache", "features.json")),
    # -- F16: play with bad models or a silent file: one line before the app starts (no terminal needed)
    Row("F16-play-bad-models", lambda c: ["play", "--file", str(c.good()), "--models", str(pickle_renamed(c))], 1,
        ("pickle.safetensors",), subprocess=True),
    Row("play-silent-file", lambda c: ["play", "--file", str(silence(c.work / "q.wav"))], 1, ("q.wav", "silent")),
    Row("play-fifo-file", lambda c: ["play", "--file", str(fifo(c))], 1, ("fifo.wav", "FIFO")),
    # -- F17: export never writes outside --out
    Row("F17-member-traversal", export_with_member("../../escape"), 1, ("not a plain file name",),
        check=nothing_exported),
    Row("F17-member-absolute", export_with_member("/tmp/guesser-escape"), 1, ("not a plain file name",),
        check=nothing_exported),
    # -- F18: run files of the wrong shape
    Row("F18-export-eval-list", export_with_eval([1, 2]), 1, ("eval.json", "not a guesser evaluation result"),
        check=nothing_exported),
    Row("F18-report-run-json-list", report_with({"run.json": "[1, 2]"}), 1, ("run.json", "not a JSON object")),
    Row("F18-report-epoch-text", report_with({"metrics.jsonl": '{"epoch": "x", "train_loss": 1.0}\n'}), 1,
        ("metrics.jsonl:1", "epoch")),
    Row("report-eval-summary-text", report_with({"eval.json": '{"name": "r", "summary": {"map": "high"}}'}), 1,
        ("eval.json", "summary")),
    # -- evaluate never rewrites the index unless asked, never writes into the installed package
    Row("evaluate-index-untouched", evaluate_without_write_index, 0, check=index_untouched, timeout=300),
]


# ================================================================ issue 20: every input, second round
#
# A: odd sample rates (bounded memory, one resampler); B, C: personal labels never stop the AudioSet guesses and
# are scored on the right features; D: no label lost (exclusive create, crash recovery); E: counts and sizes
# checked before the work; F: output (encodings, closed streams, widths, escapes, markup); G: names; H: smaller.


def odd_rate(path: Path, rate: int, seconds: float = 2.0, fmt: str | None = None) -> Path:
    """A tone stored at ``rate`` Hz (WAV, or AIFF by suffix), written in blocks."""
    t = np.arange(int(rate * seconds)) / rate
    sf.write(str(path), (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, format=fmt)
    return path


def both_classified(name: str):
    def check(ctx: Ctx, res: Result) -> None:
        objs = res.json()
        assert [Path(o["file"]).name for o in objs] == [name, "good.wav"], res.stdout[-300:]
        if "rss_mb" in ctx.notes:
            print(f"{name}: peak RSS {ctx.notes['rss_mb']:.0f} MB in {ctx.notes['seconds']:.1f} s")
            assert ctx.notes["rss_mb"] < 1000, f"peak RSS {ctx.notes['rss_mb']:.0f} MB"
    return check


# -- personal labels for the light models (random weights, their real embedding widths)


@pytest.fixture(scope="module")
def light_views(light_ensemble):
    """Each light model's View of three clips (pooled embeddings and probabilities), as teach computes them."""
    from guesser.personal.probe import View

    rng = np.random.default_rng(3)
    views: dict[str, list] = {m.name: [] for m in light_ensemble.models}
    for i in range(3):
        x = (0.2 * np.sin(2 * np.pi * (300 + 200 * i) * np.arange(22050) / 22050)
             + 0.01 * rng.standard_normal(22050)).astype(np.float32)
        pred = light_ensemble.predict(x, 22050, embeddings=True)
        for name in views:
            views[name].append(View.of(pred.embeddings[name].numpy(), pred.clip_probs[name].numpy()))
    return {k: View.stack(v) for k, v in views.items()}


def light_label(ctx: Ctx, name: str = "toaster", order: tuple[str, ...] | None = None, seed: int = 0):
    """A PersonalLabel for the light models (their stamps; weights random but of the right length)."""
    from guesser.ensemble import Ensemble
    from guesser.personal.probe import Estimate, LinearProbe
    from guesser.personal.store import PersonalLabel, stamps_of

    ens: Ensemble = ctx.fixture("light_ensemble")
    views = ctx.fixture("light_views")
    stamps = {s.name: s for s in stamps_of(ens.models)}
    order = order or tuple(stamps)
    width = sum(views[n].pooled.shape[1] + views[n].probs.shape[1] for n in order)
    coef = np.random.default_rng(seed).standard_normal(width).astype(np.float32)
    return PersonalLabel(name, tuple(stamps[n] for n in order), dict(views), LinearProbe(coef, 0.1, 0.2),
                         Estimate(3, 3, 0.004, 2500), ("a.wav", "b.wav", "c.wav"))


def store_of(ctx: Ctx):
    from guesser.personal.store import Store

    return Store(Path(ctx.env["GUESSER_DATA_DIR"]) / "personal")


def damaged_label(damage: Callable[[dict, dict], None]):
    """``classify good.wav --json`` with a light-model label whose file was then damaged by ``damage(tensors, meta)``."""
    def build(ctx: Ctx) -> list[str]:
        store = store_of(ctx)
        store.write(light_label(ctx, "toaster"), [(np.full(2205, 0.1, np.float32), 22050)] * 3)
        store.write(light_label(ctx, "kettle", seed=1), [(np.full(2205, 0.1, np.float32), 22050)] * 3)
        path = store.folder("toaster") / "label.safetensors"
        t, m = load_checkpoint(path)
        t, m = dict(t), json.loads(json.dumps(m))
        damage(t, m)
        save_checkpoint(path, t, {k: v for k, v in m.items() if k not in ("format", "format_version")})
        return ["classify", str(ctx.good()), "--json", "--models", ctx.models]
    return build


def skipped_with_a_repair(label: str = "toaster", still: tuple[str, ...] = ("kettle",)):
    """The good file classified, ``label`` named once with its repair command, the other labels still scored."""
    def check(ctx: Ctx, res: Result) -> None:
        (obj,) = res.json()
        assert obj["labels"] and all(np.isfinite(s["score"]) for s in obj["labels"])
        assert sorted(p["label"] for p in obj["personal"]) == sorted(still)
        notes = [line for line in res.errors if label in line]
        assert len(notes) == 1 and notes[0].startswith("note: personal label skipped"), res.stderr
        assert f"guesser teach --forget {label}" in notes[0], notes[0]
    return check


def set_coef(value):
    def damage(t, m):
        t["probe.coef"] = value(t["probe.coef"])
    return damage


def set_meta(key, value):
    def damage(t, m):
        m[key] = value
    return damage


def twice_models(ctx: Ctx) -> list[str]:
    files = [str(tone(ctx.work / f"t{i}.wav")) for i in range(4)]
    return ["teach", "toaster", *files, "--models", ctx.models, "--models", ctx.models]


def folder_and_index(ctx: Ctx) -> list[str]:
    store_of(ctx).write(light_label(ctx), [])
    folder = str(Path(ctx.models).parent)
    return ["classify", str(ctx.good()), "--json", "--models", folder + "/", "--models", ctx.models]


def unreadable_personal(where: str):
    """The personal folder (``root``) or one label folder (``label``) cannot be read: real permissions for a
    user, the OS's answer simulated for root (who reads everything)."""
    def build(ctx: Ctx) -> list[str]:
        store = store_of(ctx)
        store.write(light_label(ctx, "toaster"), [])
        store.write(light_label(ctx, "kettle", seed=1), [])
        target = store.root if where == "root" else store.folder("toaster")
        if ROOT:
            real_scandir, real_stat = os.scandir, os.stat

            def name(p) -> str:
                return "" if isinstance(p, int) else os.fsdecode(p)

            def scandir(p="."):
                if name(p) == str(target):
                    raise PermissionError(13, "Permission denied", str(p))
                return real_scandir(p)

            def stat(p, *a, **k):
                if name(p).startswith(str(target) + os.sep):
                    raise PermissionError(13, "Permission denied", str(p))
                return real_stat(p, *a, **k)

            ctx.monkeypatch.setattr(os, "scandir", scandir)
            ctx.monkeypatch.setattr(os, "stat", stat)
        else:  # pragma: no cover - CI runs as root
            target.chmod(0)
            ctx.request.addfinalizer(lambda: target.chmod(0o755))
        return ctx.argv_for_unreadable
    return build


def check_unreadable(cmd: str, still: tuple[str, ...]):
    def check(ctx: Ctx, res: Result) -> None:
        said = res.stdout + res.stderr  # teach --list tells on stdout, with its table; classify on stderr
        assert "Permission denied" in said and "chmod" in said, said
        if cmd == "classify":
            (obj,) = res.json()
            assert sorted(p["label"] for p in obj["personal"]) == sorted(still)
    return check


def unreadable_row(id: str, where: str, cmd: str, still: tuple[str, ...]) -> Row:
    def build(ctx: Ctx) -> list[str]:
        ctx.argv_for_unreadable = {"classify": ["classify", str(ctx.good()), "--json", "--models", ctx.models],
                                   "list": ["teach", "--list", "--models", ctx.models],
                                   "teach": ["teach", "kettle2", str(ctx.good()), "--models", ctx.models]}[cmd]
        return unreadable_personal(where)(ctx)
    code = 1 if cmd == "teach" else 0
    says = ("Permission denied",) if cmd == "teach" else ()
    return Row(id, build, code, says, check=None if cmd == "teach" else check_unreadable(cmd, still))


def deep_folder(ctx: Ctx) -> list[str]:
    """A clip 1,200 folders down (made with relative steps: the absolute path is long, not too long)."""
    ctx.request.addfinalizer(lambda: remove_deep(ctx.work / "deep"))  # pytest's own cleanup would recurse
    here = os.getcwd()
    os.chdir(ctx.work)
    try:
        os.mkdir("deep")
        os.chdir("deep")
        for _ in range(1200):
            os.mkdir("d")
            os.chdir("d")
        tone(Path("x.wav"), 0.5)  # relative: libsndfile refuses a name this long, guesser reads it through its fd
    finally:
        os.chdir(here)
    return ["classify", str(ctx.work / "deep"), "--json", "--models", ctx.models]


def remove_deep(top: Path) -> None:
    """Remove a folder chain too deep for shutil.rmtree's recursion, bottom up."""
    if not top.is_dir():
        return
    here = os.getcwd()
    try:
        os.chdir(top)
        depth = 0
        while os.path.isdir("d"):
            os.chdir("d")
            depth += 1
        for name in os.listdir("."):
            os.unlink(name)
        for _ in range(depth):
            os.chdir("..")
            os.rmdir("d")
    finally:
        os.chdir(here)


def huge_tensor(ctx: Ctx) -> Path:
    """The light cnn3 with an extra 1 GiB tensor (a sparse file: nothing is written but the header)."""
    src = ctx.checkpoint
    t, m = load_checkpoint(src)
    dst = ctx.work / "fat.safetensors"
    save_checkpoint(dst, dict(t), {k: v for k, v in m.items() if k not in ("format", "format_version")})
    raw = dst.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    header["extra"] = {"dtype": "F32", "shape": [1 << 28], "data_offsets": [len(body), len(body) + (1 << 30)]}
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob + body)
        f.truncate(8 + len(blob) + len(body) + (1 << 30))
    return dst


def twenty_one(ctx: Ctx) -> list[str]:
    from guesser.personal import command

    def never(*_a, **_k):  # pragma: no cover - the refusal comes first
        raise AssertionError("decoded before counting")

    ctx.monkeypatch.setattr(command, "load_examples", never)
    good = str(ctx.good())
    return ["teach", "toaster", *[good] * 21, "--models", str(REPO / "assets" / "models")]


def escaped_output(ctx: Ctx, res: Result) -> None:
    assert "\x1b" not in res.stdout + res.stderr and "\\x1b" in res.stdout + res.stderr, res.stdout + res.stderr


def label_named(name: str, *, markup_root: bool = False):
    def build(ctx: Ctx) -> list[str]:
        if markup_root:
            ctx.env["GUESSER_DATA_DIR"] = str(ctx.work / "data[/x]")
        store = store_of(ctx)
        label = light_label(ctx, "evil")
        store.write(label, [])
        path = store.folder("evil") / "label.safetensors"
        t, m = load_checkpoint(path)
        m = {**json.loads(json.dumps(m)), "name": name, "created": "[/red]2026"}
        save_checkpoint(path, dict(t), {k: v for k, v in m.items() if k not in ("format", "format_version")})
        return ["teach", "--list", "--models", ctx.models]
    return build


def listed(text: str):
    def check(ctx: Ctx, res: Result) -> None:
        import re

        flat = re.sub(r"\s+", "", res.stdout)  # a long title wraps
        assert re.sub(r"\s+", "", text) in flat and "\x1b" not in res.stdout, res.stdout
    return check


def file_in_the_way(cmd: str):
    def build(ctx: Ctx) -> list[str]:
        root = Path(ctx.env["GUESSER_DATA_DIR"]) / "personal"
        root.mkdir(parents=True)
        (root / "toaster").write_text("not a label")
        if cmd == "forget":
            return ["teach", "--forget", "toaster"]
        return ["teach", "toaster", *[str(tone(ctx.work / f"t{i}.wav")) for i in range(3)], "--models",
                str(REPO / "assets" / "models")]
    return build


def nonempty(ctx: Ctx, res: Result) -> None:
    assert len(res.stdout.strip()) > 40, repr(res.stdout)


ROWS += [
    # -- A: odd rates are classified in bounded memory (the good file after them too); beyond 1 kHz-768 kHz refused
    *[classify_row(f"A-rate-{rate}", lambda c, rate=rate: odd_rate(c.work / f"r{rate}.wav", rate), 0,
                   check=both_classified(f"r{rate}.wav"), subprocess=rate in (44056, 48001), timeout=300)
      for rate in (44056, 44101, 48001, 22051, 96000, 768000, 1000)],
    classify_row("A-aiff-44056", lambda c: odd_rate(c.work / "r.aiff", 44056), 0, check=both_classified("r.aiff")),
    classify_row("A-rate-10MHz", lambda c: odd_rate(c.work / "r.wav", 10_000_000, 0.01), 1,
                 ("r.wav", "unsupported sample rate 10000000 Hz", "1,000–768,000 Hz"), subprocess=True),
    classify_row("A-rate-999", lambda c: odd_rate(c.work / "r.wav", 999), 1, ("r.wav", "unsupported sample rate 999")),
    # -- B: duplicate models, damaged or unreadable labels: the AudioSet guesses as usual
    Row("B-teach-same-models-twice", twice_models, 1, ("listed twice", "give each model once")),
    Row("B-classify-folder-and-its-index", folder_and_index, 1, ("listed twice",)),
    *[Row(f"B-label-{what}", damaged_label(damage), 0, check=skipped_with_a_repair())
      for what, damage in (
          ("weights-wrong-length", set_coef(lambda c: torch.cat([c, c]))),
          ("weights-empty", set_coef(lambda c: c[:0])),
          ("weights-nan", set_coef(lambda c: torch.full_like(c, float("nan")))),
          ("threshold-nan-text", set_meta("threshold", "nan")),
          ("intercept-infinite", set_meta("intercept", 1e999)),
          ("models-twice", lambda t, m: m.__setitem__("models", m["models"] * 2)),
          ("name-a-list", set_meta("name", ["x"])))],
    Row("B-label-nan-table-mode", lambda c: damaged_label(set_coef(lambda x: torch.full_like(x, float("nan"))))(c)[:2]
        + ["--models", c.models], 0, check=lambda c, r: (assert_no_nan(r), None)[1]),
    unreadable_row("B-personal-folder-unreadable-classify", "root", "classify", ()),
    unreadable_row("B-personal-folder-unreadable-list", "root", "list", ()),
    unreadable_row("B-label-folder-unreadable-classify", "label", "classify", ("kettle",)),
    unreadable_row("B-label-folder-unreadable-list", "label", "list", ()),
    unreadable_row("B-personal-folder-unreadable-teach", "root", "teach", ()),
    # -- E: counted and sized before the work
    Row("E-teach-21-files-counted-first", twenty_one, 1, ("at most 20 examples, got 21",)),
    models_row("E-checkpoint-extra-1GiB-tensor", huge_tensor, ("fat.safetensors", "unexpected tensor extra"),
               subprocess=True, check=lambda c, r: (print(f"extra 1 GiB tensor: peak RSS {c.notes.get('rss_mb', 0):.0f} MB"),
                                                    c.notes.get("rss_mb", 0) < 1000 or pytest.fail("read it"))),
    # -- F: output
    Row("F-stdout-ascii", lambda c: (c.env.update(PYTHONIOENCODING="ascii"), ["classify", str(c.good()), "--models",
                                                                           c.models])[1],
        0, check=nonempty, in_process=False, subprocess=True),
    Row("F-json-latin1-cyrillic-name", lambda c: (c.env.update(PYTHONIOENCODING="latin-1"),
                                                  ["classify", str(tone(c.work / "чайник.wav")), "--json", "--models",
                                                   c.models])[1],
        0, check=lambda c, r: None if r.json()[0]["file"].endswith("чайник.wav") else pytest.fail(r.stdout),
        in_process=False, subprocess=True),
    *[Row(f"F-columns-0-{cmd[0]}", lambda c, cmd=cmd: (c.env.update(COLUMNS="0"), [*cmd, "--models", c.models])[1], 0,
          check=nonempty) for cmd in (["models"], ["teach", "--list"])],
    Row("F-columns-0-classify", lambda c: (c.env.update(COLUMNS="0"), ["classify", str(c.good()), "--models",
                                                                       c.models])[1], 0, check=nonempty),
    classify_row("F-escape-in-file-name", lambda c: put(c.work / "x\x1b[2J.wav", b"not audio"), 1,
                 ("cannot decode audio",), check=escaped_output),
    Row("F-escape-in-table-title", lambda c: ["classify", str(tone(c.work / "y\x1b]0;owned\x07.wav")), "--models",
                                              c.models], 0, check=escaped_output),
    Row("F-escape-in-label-name", label_named("evil\x1b[2J"), 0, check=listed("evil\\x1b[2J")),
    Row("F-markup-in-label-header", label_named("[bold red]evil[/]"), 0, check=listed("[bold red]evil[/]")),
    Row("F-markup-in-data-folder", label_named("evil", markup_root=True), 0, check=listed("data[/x]")),
    # -- G: names
    Row("G-cyrillic-name-accepted", lambda c: ["teach", "чайник"], 1, ("give 'чайник' some examples",)),
    Row("G-japanese-name-accepted", lambda c: ["teach", "やかん"], 1, ("give 'やかん' some examples",)),
    Row("G-confusable-with-dog", lambda c: ["teach", "Dоg", *[str(tone(c.work / f"t{i}.wav")) for i in range(3)]], 1,
        ("looks like the AudioSet label 'Dog'",)),
    # -- H: smaller
    Row("H-deep-folder", deep_folder, 0, check=lambda c, r: None if len(r.json()) == 1 else pytest.fail(r.stdout)),
    Row("H-file-in-the-way-teach", file_in_the_way("teach"), 1, ("in the way", "not a personal label folder")),
    Row("H-file-in-the-way-forget", file_in_the_way("forget"), 1, ("in the way", "not a personal label folder")),
    *[Row(f"F-report-width{w}", lambda c, w=w: ["report", str(c.fixture("trained_run")[0]), "--width", w], 0,
          check=nonempty) for w in ("0", "-50")],
    Row("A-teach-at-44056-Hz", lambda c: (c.env.update(GUESSER_DATA_DIR=str(c.work / "data")),  # written: inside
                                          ["teach", "kettle", *[str(odd_rate(c.work / f"k{i}.aiff", 44056, 1.0))
                                                                for i in range(3)]])[1], 0,
        check=lambda c, r: None if store_of(c).exists("kettle") and "learned 'kettle'" in r.stdout else pytest.fail(r.stdout),
        timeout=300),
]


def assert_no_nan(res: Result) -> None:
    import re

    assert not re.search(r"(?<!\w)nan(?!\w)", res.stdout.lower()) and "toaster" not in res.stdout, res.stdout
    assert any("toaster" in line and "forget" in line for line in res.errors), res.stderr


def _params():
    out = []
    for row in ROWS:
        if row.in_process:
            out.append(pytest.param(row, "in-process", id=f"{row.id}", marks=row.marks))
        if row.subprocess:
            out.append(pytest.param(row, "subprocess", id=f"{row.id}-subprocess", marks=row.marks))
    return out


@pytest.mark.parametrize("row, how", _params())
def test_hostile_input(row: Row, how: str, tmp_path, request, monkeypatch):
    run_row(row, tmp_path, request, monkeypatch, how)


# ---------------------------------------------------------------- F3 in process: streamed == in memory


def test_F3_streamed_scores_and_timeline_equal_the_in_memory_ones(tmp_path, light_ensemble):
    """A file longer than the in-memory limit is streamed block by block; its scores and windows are
    the ones Ensemble.predict computes on the whole waveform (44.1 kHz stereo: every stage resamples)."""
    from guesser.audio import load_audio, open_audio
    from guesser.stream import predict_source

    sr = 44100
    t = np.arange(sr * 50) / sr
    x = (0.2 * np.sin(2 * np.pi * 440 * t * (1 + 0.2 * np.sin(t / 5)))
         + 0.05 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
    p = tmp_path / "long.wav"
    sf.write(str(p), np.stack([x, 0.5 * x], axis=1), sr, subtype="FLOAT")
    a = load_audio(p)
    whole = light_ensemble.predict(a.samples, a.sample_rate, timeline=True)
    with open_audio(p) as src:
        streamed = predict_source(light_ensemble, src, timeline=True, in_memory_seconds=12)
    assert streamed.duration == whole.duration == 50.0
    assert [(w.start, w.end) for w in streamed.windows] == [(w.start, w.end) for w in whole.windows]
    a_scores = {s.name: s.score for s in whole.labels}
    assert max(abs(s.score - a_scores[s.name]) for s in streamed.labels) < 1e-5
    assert [s.name for s in streamed.families] == [s.name for s in whole.families]
    for w1, w2 in zip(whole.windows, streamed.windows):
        assert max(abs(a.score - b.score) for a, b in zip(w1.labels, w2.labels)) < 1e-5


# ---------------------------------------------------------------- F15, F16: the app


def test_F15_player_text_is_never_markup(tmp_path):
    """A high-score name '[/oops]' (saved, reloaded, drawn) and a player typing '[/]' at game over."""
    import asyncio

    from rich.console import Console
    from textual.app import App
    from textual.widgets import Input

    from guesser.game import LABEL, Game, HighScore, HighScores, Target
    from guesser.tui.screens.game import GameOverScreen, scores_table
    from tuikit import FakeEnsemble

    path = tmp_path / "scores.json"
    table = HighScores(path, [HighScore("[/oops]", 100, 5, 2, "2026-01-01"), HighScore("[b]x", 90, 5, 1, "[/]")])
    table.save()
    again = HighScores.load(path)
    assert [e.name for e in again.entries] == ["[/oops]", "[b]x"] and again.notice is None
    console = Console(width=100, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(scores_table(again))
    assert "[/oops]" in console.export_text()

    game = Game(rounds=1)
    game.play(Target(LABEL, "Clapping"), FakeEnsemble(top=("Clapping",)).predict(np.zeros(100), 16000))

    class One(App):
        def on_mount(self):
            self.push_screen(GameOverScreen(game, again, "player", "2026-01-02"))

    async def play():
        tui = One()
        async with tui.run_test() as pilot:
            await pilot.pause()
            field = tui.screen.query_one(Input)
            field.value = "[/]"
            field.focus()
            await pilot.press("enter")
            await pilot.pause()
            assert tui.screen.position is not None
    asyncio.run(play())
    assert "[/]" in [e.name for e in HighScores.load(path).entries]


def test_F16_a_crash_in_the_app_is_one_line_and_a_non_zero_exit(tmp_path, monkeypatch):
    """Textual would print a traceback and exit 0; run_app says one line (with the log) and exits 70."""
    import asyncio

    from typer.testing import CliRunner

    from guesser.tui import app as app_mod
    from tuikit import FakeEnsemble

    monkeypatch.setenv("GUESSER_DATA_DIR", str(tmp_path / "data"))

    def boom(self, message):
        raise RuntimeError("a bug in a handler")

    monkeypatch.setattr(app_mod.GuesserApp, "on_models_loaded", boom)

    async def crash() -> app_mod.GuesserApp:
        from guesser.recorder import ArrayBackend
        from guesser.tui.session import Settings

        tui = app_mod.GuesserApp(Settings(backend=ArrayBackend(), load_ensemble=lambda m: FakeEnsemble(),
                                          highscores=tmp_path / "hs.json", save_dir=tmp_path / "rec"))
        with pytest.raises(RuntimeError, match="a bug in a handler"):
            async with tui.run_test() as pilot:
                for _ in range(50):
                    await pilot.pause(0.05)
        return tui

    tui = asyncio.run(crash())
    assert isinstance(tui.crash, RuntimeError) and tui.return_code == 1
    assert tui._exit_renderables == []  # no traceback printed on the terminal

    def run(self):  # what app.run() leaves behind after such a crash
        try:
            raise RuntimeError("a bug in a handler")
        except RuntimeError as e:
            self.crash = e

    monkeypatch.setattr(app_mod.GuesserApp, "run", run)
    good = tone(tmp_path / "good.wav")
    r = CliRunner().invoke(app, ["play", "--file", str(good)])
    assert r.exit_code == INTERNAL
    (line,) = r.stderr.splitlines()
    assert line.startswith("error: internal error (RuntimeError: a bug in a handler)")
    (log,) = (tmp_path / "data" / "logs").iterdir()
    assert str(log) in line and "Traceback" in log.read_text() and "Traceback" not in r.stdout


# ---------------------------------------------------------------- the last line of defence, and atomic writes


def test_an_unexpected_exception_is_one_line_and_a_log(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import guesser.classify as classify_mod

    monkeypatch.setenv("GUESSER_DATA_DIR", str(tmp_path / "data"))

    def bug(*a, **k):
        raise ZeroDivisionError("deep inside")

    monkeypatch.setattr(classify_mod, "run_classify", bug)
    r = CliRunner().invoke(app, ["classify", str(tone(tmp_path / "a.wav"))])
    assert r.exit_code == INTERNAL and "Traceback" not in r.output
    (line,) = r.stderr.splitlines()
    (log,) = (tmp_path / "data" / "logs").iterdir()
    assert "ZeroDivisionError: deep inside" in line and str(log) in line
    text = log.read_text()
    assert "Traceback" in text and "deep inside" in text and "versions:" in text


def test_two_app_instances_saving_high_scores_keep_both(tmp_path):
    from guesser.game import HighScore, HighScores

    path = tmp_path / "hs.json"
    a, b = HighScores.load(path), HighScores.load(path)
    a.add(HighScore("ann", 120, 5, 2, "2026-01-01"))
    b.add(HighScore("bob", 80, 5, 1, "2026-01-01"))
    a.save()
    b.save()  # b loaded before a saved: a's score must survive
    assert [e.name for e in HighScores.load(path).entries] == ["ann", "bob"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hs.json"]  # no temporary file left


def test_two_saves_in_the_same_second_never_overwrite(tmp_path):
    from datetime import datetime

    from guesser.recordings import save_recording

    when = datetime(2026, 1, 1, 12, 0, 0)
    x = np.sin(np.arange(8000) / 5).astype(np.float32) * 0.3
    first = save_recording(tmp_path, x, 16000, when=when, target="Clapping")
    second = save_recording(tmp_path, -x, 16000, when=when, target="Clapping")
    assert first[0] != second[0] and first[1] != second[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (*first, *second))
    assert sf.read(str(first[0]))[0][100] == pytest.approx(-sf.read(str(second[0]))[0][100], abs=1e-4)


def test_checkpoints_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "m.safetensors", {"w": torch.zeros(2)}, {"kind": "model"})
    finally:
        os.umask(old)
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o644


def test_unreadable_files_for_a_real_user(tmp_path, light_model_index):
    """F5 and F12 without any simulation, where this user can be refused (never as root)."""
    if ROOT:
        pytest.skip("root reads and writes everything: F5/F12 are checked above with the OS's answers simulated")
    locked = tone(tmp_path / "locked.wav")
    locked.chmod(0)
    good = tone(tmp_path / "good.wav")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GUESSER_DATA_DIR": str(tmp_path / "data")}
    p = subprocess.run([str(GUESSER), "classify", str(locked), str(good), "--json", "--models", str(light_model_index)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    (line,) = p.stderr.splitlines()
    assert "locked.wav" in line and "permission denied" in line
    assert [Path(json.loads(s)["file"]).name for s in p.stdout.splitlines()] == ["good.wav"]


# ---------------------------------------------------------------- issue 20: what a row cannot drive


def test_C_a_label_reads_the_models_in_its_own_order(light_ensemble, light_views, tmp_path):
    """Taught with the models in another order, a label is scored on its own layout of the features."""
    from guesser.personal.matcher import attach
    from guesser.personal.probe import View, descriptor
    from guesser.personal.store import Store

    class Fake:
        fixture = staticmethod(lambda name: {"light_ensemble": light_ensemble, "light_views": light_views}[name])

    names = [m.name for m in light_ensemble.models]
    label = light_label(Fake, "toaster", order=tuple(reversed(names)))
    store = Store(tmp_path / "personal")
    store.write(label, [])
    assert attach(light_ensemble, store).names == ["toaster"]
    x = (0.3 * np.sign(np.sin(2 * np.pi * 220 * np.arange(22050) / 22050))).astype(np.float32)  # a square wave
    try:
        pred = light_ensemble.predict(x, 22050, embeddings=True)
    finally:
        light_ensemble.personal = None
    views = {k: View.of(pred.embeddings[k].numpy(), pred.clip_probs[k].numpy()) for k in names}
    own = float(label.probe.score(descriptor(views, list(reversed(names))))[0])
    theirs = float(label.probe.score(descriptor(views, names))[0])
    assert abs(own - theirs) > 1e-3  # the two layouts really differ: reading the ensemble's order would be wrong
    assert pred.personal[0].score == pytest.approx(own, abs=1e-6)


def _small_label(name: str, intercept: float = -0.25):
    from guesser.personal.probe import Estimate, LinearProbe, View
    from guesser.personal.store import ModelStamp, PersonalLabel

    rng = np.random.default_rng(0)
    return PersonalLabel(name, (ModelStamp("m1", "ab" * 32),),
                         {"m1": View(rng.random((3, 8)).astype(np.float32), rng.random((3, 5)).astype(np.float32))},
                         LinearProbe(rng.random(13).astype(np.float32), intercept, 1.5), Estimate(2, 3, 0.004, 2500),
                         ("a.wav", "b.wav", "c.wav"))


WRITER = """
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_hostile_inputs import _small_label
from guesser.errors import GuesserError
from guesser.personal.store import Store
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
try:
    Store(Path(sys.argv[1])).write(_small_label("toaster", float(sys.argv[3])), [])
    print("learned")
except GuesserError as e:
    print(e)
"""


def test_D_two_teach_runs_for_one_name_at_once_one_wins_the_other_is_told(tmp_path):
    """Exclusive create under the store's lock: never two 'learned' with one label silently replaced."""
    from guesser.personal.store import Store

    code = WRITER.format(tests=str(Path(__file__).parent))
    start = time.time() + 4.0  # both interpreters are up by then; they write within a millisecond
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "personal"), str(start), str(v)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for v in (1.0, 2.0)]
    outs = [p.communicate(timeout=120) for p in procs]
    said = sorted(o.strip() for o, _ in outs)
    assert said[1] == "learned" and "exists already" in said[0], outs
    winner = 1.0 if outs[0][0].strip() == "learned" else 2.0
    assert Store(tmp_path / "personal").get("toaster").probe.intercept == winner


class Killed(BaseException):
    """A kill -9 between two steps: nothing after it runs, not even cleanup."""


@pytest.mark.parametrize("how", ["replace", "reembed"])
def test_D_a_kill_at_every_step_of_replace_leaves_the_old_or_the_new_label(tmp_path, monkeypatch, how):
    """Every rename, fsync and removal of ``--replace`` (and ``--reembed``, which writes the same way, clips kept)
    is a place to die; after each, the next start finds the old label or the new one, whole, and no debris."""
    import shutil as shutil_mod

    from guesser.personal.store import Store

    clips = [(np.full(2205, 0.1, np.float32), 22050)] * 3
    real = {"rename": os.rename, "fsync": os.fsync, "rmtree": shutil_mod.rmtree}
    steps = 0
    while True:
        root = tmp_path / f"kill{steps}" / "personal"
        Store(root).write(_small_label("toaster", -0.25), clips)
        calls = {"n": 0, "dead": False}

        def step(name):
            def wrapped(*a, **k):
                calls["n"] += 1
                if calls["dead"] or calls["n"] > steps:
                    calls["dead"] = True
                    raise Killed(name)
                return real[name](*a, **k)
            return wrapped

        monkeypatch.setattr(os, "rename", step("rename"))
        monkeypatch.setattr(os, "fsync", step("fsync"))
        monkeypatch.setattr(shutil_mod, "rmtree", step("rmtree"))
        try:
            Store(root).write(_small_label("toaster", 9.0), None if how == "reembed" else clips, replace=True)
            finished = True
        except Killed:
            finished = False
        finally:
            monkeypatch.undo()
        store = Store(root)  # the next start
        label = store.get("toaster")
        assert label.probe.intercept in (-0.25, 9.0), steps
        if finished:
            assert label.probe.intercept == 9.0
        assert len(label.clip_paths()) == 3, steps
        assert sorted(p.name for p in root.iterdir()) == [".lock", "toaster"], (steps, sorted(root.iterdir()))
        if finished:
            break
        steps += 1
    assert steps >= 6  # the tree's fsyncs, two renames, the store's fsync, the removal: each one tried


def test_G_cafe_and_cafe_grave_are_two_labels_and_scripts_are_letters(tmp_path):
    from guesser.personal.store import Store, check_name

    store = Store(tmp_path / "personal")
    for name in ("café", "cafè", "чайник", "やかん", "केतली"):
        store.write(_small_label(check_name(name)), [])
    assert sorted(store.names()) == sorted(["café", "cafè", "чайник", "やかん", "केतली"])
    assert store.get("CAFÉ").name == "café" and store.get("cafè").name == "cafè"
    with pytest.raises(GuesserError, match="exists already"):
        store.write(_small_label(check_name("Café")), [])  # one normalised name, one label
    with pytest.raises(GuesserError, match="looks like the AudioSet label 'Speech'"):
        check_name("Ѕpееch")  # Cyrillic Ѕ and е


def test_H_an_unreadable_label_file_is_said_to_be_unreadable(tmp_path, monkeypatch):
    import builtins

    from guesser.personal import store as store_mod
    from guesser.personal.store import Store

    store = Store(tmp_path / "personal")
    store.write(_small_label("toaster"), [])
    target = store.folder("toaster") / "label.safetensors"
    real_open = builtins.open

    def deny(path, *a, **k):
        if Path(path) == target:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(store_mod, "open", deny, raising=False)  # as a user without read permission sees it
    labels, problems = store.read_all()
    assert labels == [] and len(problems) == 1
    assert "cannot read it (Permission denied)" in problems[0] and "safetensors" not in problems[0].split(":")[-1]
    assert "guesser teach --forget toaster" in problems[0]


@pytest.mark.parametrize("which", ["stdout", "stderr"])
def test_F_a_closed_stream_is_exit_1_and_the_work_is_done(tmp_path, light_model_index, which):
    """``>&-``: the null device takes the closed descriptor (a file guesser opens never does), exit 1."""
    good = tone(tmp_path / "good.wav")
    data = tmp_path / "data"
    env = {**os.environ, "GUESSER_DATA_DIR": str(data), "OMP_NUM_THREADS": "1"}
    redirect = ">&-" if which == "stdout" else "2>&-"
    script = f'exec "$@" {redirect}'
    p = subprocess.run(["sh", "-c", script, "sh", str(GUESSER), "classify", str(good), "--json", "--models",
                        str(light_model_index)], capture_output=True, text=True, env=env, timeout=180)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stdout + p.stderr and not (data / "logs").exists()
    if which == "stdout":
        assert p.stderr.strip() == "error: standard output closed: what it printed was lost"
    else:
        assert json.loads(p.stdout)["file"].endswith("good.wav")  # the work was done and printed
