"""The single-clip rate that bounds ``guesser preprocess``: decode + log-mel, one process, one thread.

    python benchmarks/decode_rate.py DATA_ROOT [--clips 300] [--features all] [--seed 0]

A cache worker does exactly this per clip (``load_audio`` then ``log_mel``),
so with ``-j N`` on N free cores a build can reach at most N times this rate.
On a shared machine, compare CPU time instead: CPU ms per second of audio here
against the build's workers' CPU seconds (``benchmarks/peak_rss.py``) per
second of audio built; their ratio is the build's parallel efficiency.
The sample is a seeded random draw of the root's clips (dev and eval); since
the cost grows with a clip's length, the rate is given per clip and per
second of audio, and converted to the root's own mean length: that last
number times the cores is what a build of the whole root is measured against.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from guesser.audio import load_audio
from guesser.errors import AudioError
from guesser.features import log_mel
from trainer.fsd50k import Fsd50k
from trainer.preprocess import parse_presets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--clips", type=int, default=300)
    ap.add_argument("--features", default="all")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # as each cache worker runs
    ds = Fsd50k.open(args.root)
    clips = [c for s in ds.splits.values() for c in s.clips if c.path is not None]
    durations = {}
    pick = np.random.default_rng(args.seed).choice(len(clips), min(args.clips, len(clips)), replace=False)
    sample = [clips[i] for i in pick]
    for c in sample:  # warm the page cache, as a build that reads each file once cannot
        Path(c.path).read_bytes()
    print(f"{len(sample)} clips of {args.root}; load average {os.getloadavg()[0]:.2f}")
    for cfg in parse_presets(args.features):
        t0, c0, audio_s, n = time.perf_counter(), time.process_time(), 0.0, 0
        for c in sample:
            try:
                a = load_audio(c.path)
            except AudioError:
                continue
            log_mel(a.samples, a.sample_rate, cfg)
            audio_s += a.samples.shape[-1] / a.sample_rate
            durations[c.fname] = a.samples.shape[-1] / a.sample_rate
            n += 1
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"{cfg.key}: {n / wall:.1f} clips/s, {audio_s / wall:.0f} s of audio/s; CPU {cpu / max(n, 1) * 1000:.1f} ms/clip, "
              f"{cpu / max(audio_s, 1e-9) * 1000:.2f} ms per s of audio (sample mean {audio_s / max(n, 1):.2f} s/clip, {wall:.1f} s)")
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
