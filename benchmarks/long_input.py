"""Long inputs: peak memory and time of ``guesser classify`` on 1 minute, 10 minutes and 2 hours of audio.

    python benchmarks/long_input.py                   # 1 min, 10 min, 2 h (16 kHz mono WAV), shipped models
    python benchmarks/long_input.py --minutes 1 10    # other lengths
    python benchmarks/long_input.py --models runs     # any models index / checkpoints

Each file is written in blocks (a tone that changes pitch every minute, with a
little noise), then classified with ``--json --timeline`` by the installed
``guesser`` script in a child process; the peak RSS is that process's
``ru_maxrss`` (``resource.getrusage(RUSAGE_CHILDREN)`` of a small wrapper),
the time its wall time. The timeline is checked: one window every 3 s, the
last one ending with the file. Files longer than ``guesser.stream.IN_MEMORY_SECONDS``
are decoded, resampled, turned into log-mel and scored block by block, so the
goal is a flat peak (< 1 GB whatever the length) and a time linear in the
length. Prints a Markdown section for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name  # noqa: E402

RATE = 16000
PROBE = ("import resource, subprocess, sys\n"
         "p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)\n"
         "sys.stdout.buffer.write(p.stdout)\n"
         "sys.stderr.write(p.stderr.decode(errors='replace'))\n"
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
         "sys.exit(p.returncode)\n")


def write_long(path: Path, minutes: float) -> Path:
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", RATE, 1, subtype="PCM_16") as f:
        left = int(minutes * 60 * RATE)
        m = 0
        while left > 0:
            n = min(left, 60 * RATE)
            t = np.arange(n) / RATE
            x = 0.2 * np.sin(2 * np.pi * (300 + 110 * (m % 7)) * t) + 0.02 * rng.standard_normal(n)
            f.write(x.astype(np.float32))
            left -= n
            m += 1
    return path


def guesser_cmd() -> list[str]:
    script = Path(sys.executable).with_name("guesser")
    return [str(script)] if script.exists() else [sys.executable, "-m", "guesser"]


def measure(path: Path, models: list[str]) -> dict:
    cmd = [*guesser_cmd(), "classify", str(path), "--json", "--timeline", "--top-k", "3",
           *sum((["--models", m] for m in models), [])]
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", PROBE, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    lines = p.stderr.strip().splitlines()
    if p.returncode != 0:
        raise SystemExit(f"guesser classify failed ({p.returncode}): {' '.join(lines[:-1])[-500:]}")
    obj = json.loads(p.stdout.strip().splitlines()[-1])
    return {"rss_mb": int(lines[-1]) / 1024, "seconds": wall, "duration": obj["duration"],
            "windows": len(obj.get("timeline", [])), "last_end": obj["timeline"][-1]["end"],
            "top": obj["labels"][0]["label"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 120])
    ap.add_argument("--models", action="append", help="models index or checkpoint (repeatable; default: shipped)")
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the test files (default: a temporary one)")
    args = ap.parse_args(argv)
    models = args.models or []
    from guesser.stream import IN_MEMORY_SECONDS, STREAM_BATCH_WINDOWS

    rows = []
    with tempfile.TemporaryDirectory(prefix="guesser-long-", dir=args.tmp) as tmp:
        for minutes in args.minutes:
            path = write_long(Path(tmp) / f"long_{minutes:g}min.wav", minutes)
            size = path.stat().st_size / 1e6
            r = measure(path, models)
            path.unlink()
            rows.append((minutes, size, r))
            print(f"{minutes:g} min: {r['rss_mb']:.0f} MB peak, {r['seconds']:.1f} s", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    print("## Long inputs\n")
    print(f"`python benchmarks/long_input.py{' ' + ' '.join(argv) if argv else ''}` on {cpu_name()}, "
          f"load average {load:.1f} at the end; models: {', '.join(models) or 'shipped (assets/models)'}. "
          f"16 kHz mono 16-bit WAV, classified with `--json --timeline`; files over {IN_MEMORY_SECONDS:g} s "
          f"are streamed ({STREAM_BATCH_WINDOWS} windows per forward pass).\n")
    print("| input | file | peak RSS | wall time | per audio minute | windows | last window ends |")
    print("|---|---|---|---|---|---|---|")
    for minutes, size, r in rows:
        per = r["seconds"] / minutes
        print(f"| {minutes:g} min | {size:.0f} MB | {r['rss_mb']:.0f} MB | {r['seconds']:.1f} s | {per:.2f} s | "
              f"{r['windows']} | {r['last_end']:.1f} s of {r['duration']:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
