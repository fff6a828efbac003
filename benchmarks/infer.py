"""Inference benchmark: the ensemble on one 6 s clip, against the naive way, on this machine.

    python benchmarks/infer.py                      # the shipped models (assets/models/index.json)
    python benchmarks/infer.py --models runs        # any models index / checkpoints
    python benchmarks/infer.py --random             # random-weight stand-ins of the shipped architectures

Measured in one run, so that the ratios compare like with like on a shared machine:

* ensemble: ``Ensemble.predict`` on a 6 s clip (44.1 kHz, so both front-ends
  resample), p50/p95 over ``--runs`` after warm-up; also with the fast path
  off (``optimize=False``: the modules as trained) to show what it buys;
* naive: what the student project's guesser did per prediction, per model:
  read the checkpoint, build the network, load the weights, compute its own
  log-mel, run it, throw it away;
* compute bound: the ensemble's FLOPs (``torch.utils.flop_counter``, counted on
  the plain modules: the fused ones do the same arithmetic) divided by this
  machine's float32 matmul throughput (best of several 2048³ sgemms, measured
  before and after the timings);
* cold start: ``guesser classify CLIP --json`` as a subprocess, median of
  ``--cold`` runs, beside a bare ``python -c "import torch"``;
* peak RSS of that subprocess (``resource.getrusage(RUSAGE_CHILDREN)``).

Prints a Markdown section for docs/benchmarks.md. Goals on the 2-core CPU:
p50 < 150 ms and within 1.5x of the bound, >= 5x faster than naive, cold start
< 3 s, RSS < 900 MB.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The runtime's OpenMP setting (guesser.classify sets it before torch is imported); --omp-wait overrides.
if "--omp-wait" in sys.argv[1:-1]:
    os.environ["OMP_WAIT_POLICY"] = sys.argv[sys.argv.index("--omp-wait") + 1].upper()
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from machine import cpu_name  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

REPO = Path(__file__).resolve().parents[1]
CLIP_SECONDS = 6.0
CLIP_RATE = 44100


def make_clip(seconds: float = CLIP_SECONDS, sr: int = CLIP_RATE) -> np.ndarray:
    """A deterministic 6 s clip with real content: the demo dog bark then speech, else tones and noise."""
    import soundfile as sf

    from guesser.features import resample

    parts = []
    for name in ("dog_bark.ogg", "speech.ogg"):
        p = REPO / "assets" / "demo" / name
        if p.is_file():
            x, r = sf.read(str(p), dtype="float32", always_2d=True)
            parts.append(resample(torch.from_numpy(x.mean(axis=1)), r, sr).numpy())
    n = int(seconds * sr)
    if parts:
        x = np.concatenate(parts)
        x = np.tile(x, -(-n // len(x)))[:n]
    else:
        t = np.arange(n) / sr
        x = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(n)
    return x.astype(np.float32)


CPU: list[float] = []  # thread CPU time of the last timings() call, per run


def timings(fn, runs: int, warmup: int) -> list[float]:
    """Wall-clock seconds per run; the calling thread's CPU seconds go to ``CPU``.

    With one torch thread, CPU time is what the run would take on an idle
    machine (other processes' time slices are not counted); with more threads
    it misses the workers, so only wall time is reported then.
    """
    for _ in range(warmup):
        fn()
    out = []
    CPU.clear()
    for _ in range(runs):
        t, c = time.perf_counter(), time.thread_time()
        fn()
        CPU.append(time.thread_time() - c)
        out.append(time.perf_counter() - t)
    return out


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def sgemm_gflops(n: int = 2048, repeats: int = 6) -> tuple[float, float]:
    """Best float32 matmul throughput of this process's threads: (wall GFLOP/s, CPU-time GFLOP/s)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    wall = min(timings(lambda: a @ b, repeats, 1))
    return 2 * n**3 / wall / 1e9, 2 * n**3 / min(CPU) / 1e9


def count_flops(paths: list[Path], clip: np.ndarray, sr: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    from guesser.ensemble import Ensemble

    plain = Ensemble.load(paths, optimize=False)
    with FlopCounterMode(display=False) as fc:
        plain.predict(clip, sr)
    return int(fc.get_total_flops())


def naive_predict(paths: list[Path], clip: np.ndarray, sr: int) -> None:
    """Per model, per prediction: checkpoint -> network -> its own features -> logits -> discarded."""
    from guesser.checkpoint import load_model_checkpoint
    from guesser.features import log_mel
    from guesser.models import build_model
    from guesser.scoring import batches, model_probs, windows

    for p in paths:
        tensors, meta = load_model_checkpoint(p, dtype=torch.float32)
        model = build_model(meta.arch, len(meta.classes), **meta.model_hparams)
        model.load_state_dict(tensors)
        model.eval()
        wins = windows(log_mel(clip, sr, meta.features), meta.features)
        model_probs(model, batches([wins], len(wins)), meta.task).clip_probs(1)
        del model


def guesser_cmd() -> list[str]:
    script = Path(sys.executable).with_name("guesser")
    return [str(script)] if script.exists() else [sys.executable, "-m", "guesser"]


def cold_start(clip_path: Path, models: list[str], runs: int) -> tuple[list[float], list[float], int]:
    """(classify wall times, bare 'import torch' times, peak RSS in KB of a classify subprocess)."""
    cmd = [*guesser_cmd(), "classify", str(clip_path), "--json", *sum((["--models", m] for m in models), [])]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    walls, bare = [], []
    for _ in range(runs):
        t = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        walls.append(time.perf_counter() - t)
        if res.returncode != 0:
            raise SystemExit(f"guesser classify failed: {res.stderr.strip()}")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True, env=env)
        bare.append(time.perf_counter() - t)
    probe = ("import resource, subprocess, sys\n"
             "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, env=env, check=True)
    return walls, bare, int(out.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", action="append", help="models index or checkpoint (repeatable; default: shipped)")
    ap.add_argument("--random", action="store_true", help="benchmark random-weight stand-ins of the shipped architectures")
    ap.add_argument("--runs", type=int, default=60, help="timed ensemble predictions (default 60)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--naive-runs", type=int, default=12, help="timed naive predictions (default 12)")
    ap.add_argument("--cold", type=int, default=5, help="cold-start subprocess runs (default 5)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    ap.add_argument("--omp-wait", choices=["passive", "active"], default="passive",
                    help="OpenMP wait policy (default passive, as guesser classify sets it)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the cold-start subprocesses

    from guesser.ensemble import Ensemble, default_models_index, resolve_model_paths
    from guesser.fastpath import resolve_precision

    tmp = tempfile.TemporaryDirectory(prefix="guesser-bench-")
    if args.random or (not args.models and not default_models_index().is_file()):
        from trainer.random_models import write_random_ensemble

        sources = [str(write_random_ensemble(Path(tmp.name) / "models"))]
        what = "random-weight stand-ins (cnn4, cnn3, family_cnn, cnn6; shipped models not found or --random)"
    else:
        sources = args.models or [str(default_models_index())]
        what = ", ".join(sources)
    paths = resolve_model_paths(sources)
    clip = make_clip()
    clip_path = Path(tmp.name) / "clip.wav"
    import soundfile as sf

    sf.write(str(clip_path), clip, CLIP_RATE)

    load0 = os.getloadavg()[0]
    gflops_before, cpu_gflops_before = sgemm_gflops()
    t = time.perf_counter()
    ens = Ensemble.load(sources)
    load_s = time.perf_counter() - t
    fast = timings(lambda: ens.predict(clip, CLIP_RATE), args.runs, args.warmup)
    fast_cpu = list(CPU)
    plain_ens = Ensemble.load(sources, optimize=False)
    plain = timings(lambda: plain_ens.predict(clip, CLIP_RATE), max(10, args.runs // 3), 2)
    plain_cpu = list(CPU)
    naive = timings(lambda: naive_predict(paths, clip, CLIP_RATE), args.naive_runs, 1)
    naive_cpu = list(CPU)
    gflops_after, cpu_gflops_after = sgemm_gflops()
    flops = count_flops(paths, clip, CLIP_RATE)
    walls, bare, rss_kb = cold_start(clip_path, sources, args.cold)
    load1 = os.getloadavg()[0]

    gflops = max(gflops_before, gflops_after)
    bound = flops / (gflops * 1e9)
    p50, p95 = pct(fast, 50), pct(fast, 95)
    ratio_naive = pct(naive, 50) / p50
    cold = statistics.median(walls)
    rss_mb = rss_kb / 1024
    precision = "bf16" if resolve_precision() == torch.bfloat16 else "fp32"
    members = ", ".join(f"{m.member} ({m.features.sample_rate // 1000} kHz)" for m in ens.models)

    def ok(flag: bool) -> str:
        return "yes" if flag else "**no**"

    rows = [
        ("ensemble p50 / p95 (fast path)", f"{p50 * 1e3:.1f} / {pct(fast, 95) * 1e3:.1f} ms",
         f"< 150 ms: {ok(p50 < 0.150)}"),
        ("ensemble p50 / p95 (modules as trained)", f"{pct(plain, 50) * 1e3:.1f} / {pct(plain, 95) * 1e3:.1f} ms",
         f"fast path {pct(plain, 50) / p50:.2f}x faster"),
        ("naive p50 / p95 (load, build, run per model)", f"{pct(naive, 50) * 1e3:.1f} / {pct(naive, 95) * 1e3:.1f} ms",
         f"ensemble {ratio_naive:.1f}x faster (>= 5x: {ok(ratio_naive >= 5)})"),
        ("ensemble FLOPs per 6 s clip", f"{flops / 1e9:.2f} GFLOP", ""),
        ("float32 sgemm throughput (best of before/after)", f"{gflops:.0f} GFLOP/s",
         f"before {gflops_before:.0f}, after {gflops_after:.0f}"),
        ("compute bound (FLOPs / sgemm)", f"{bound * 1e3:.1f} ms",
         f"p50 = {p50 / bound:.2f}x the bound (<= 1.5x: {ok(p50 <= 1.5 * bound)})"),
        ("cold start `guesser classify --json` (median)", f"{cold:.2f} s",
         f"< 3 s: {ok(cold < 3)}; bare `import torch` {statistics.median(bare):.2f} s"),
        ("peak RSS of that process", f"{rss_mb:.0f} MB", f"< 900 MB: {ok(rss_mb < 900)}"),
        ("loading the ensemble (in process)", f"{load_s * 1e3:.0f} ms", ""),
    ]
    if torch.get_num_threads() == 1:  # CPU time: what an idle machine would give, whatever the load
        cpu_bound = flops / (max(cpu_gflops_before, cpu_gflops_after) * 1e9)
        c50 = pct(fast_cpu, 50)
        rows += [
            ("CPU time p50: ensemble / as trained / naive",
             f"{c50 * 1e3:.1f} / {pct(plain_cpu, 50) * 1e3:.1f} / {pct(naive_cpu, 50) * 1e3:.1f} ms",
             f"naive / ensemble {pct(naive_cpu, 50) / c50:.1f}x"),
            ("CPU-time sgemm throughput and bound", f"{max(cpu_gflops_before, cpu_gflops_after):.0f} GFLOP/s, "
             f"{cpu_bound * 1e3:.1f} ms", f"CPU p50 = {c50 / cpu_bound:.2f}x the bound"),
        ]
    rows.append(("cold start minus bare `import torch` (medians)", f"{cold - statistics.median(bare):.2f} s",
                 "what guesser adds to torch's import"))
    print("## Inference\n")
    print(f"`python benchmarks/infer.py{' ' + ' '.join(argv) if argv else ''}` on {cpu_name()}, "
          f"{torch.get_num_threads()} torch threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
          f"torch {torch.__version__}, precision {precision}; "
          f"load average {load0:.1f} at the start, {load1:.1f} at the end.\n")
    print(f"Models: {what}; members {members}. Clip: 6 s mono at 44.1 kHz (both front-ends resample); "
          f"{args.runs} timed runs after {args.warmup} warm-up, naive {args.naive_runs}, cold start {args.cold}.\n")
    print("| measure | value | against the goal |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
