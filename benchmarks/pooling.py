"""Mean, max, linear-softmax or attention pooling over windows; whole windows or sub-windows: which keeps short sounds?

    python benchmarks/pooling.py CACHE [--split eval] [--sub 2.0:1.0 1.0:0.5] [--bed 10] [--seed 0] [--alphas 1 3]

Two sets of clips from a cache split, scored by the shipped ensemble through
:mod:`guesser.scoring` (the code ``classify`` and ``evaluate`` run):

* *plain*: every clip as it is (and the subset longer than one window, where
  pooling matters: a clip up to 1.1 windows gets one window);
* *short in long*: every clip of at most 2 s placed at a random time in a
  ``--bed`` second bed of its own noise floor (:func:`guesser.features.noise_fill`,
  the 10th percentile of each mel bin: what a room sounds like around it), so a
  short sound fills a fraction of a model window, as a clap in a recording does.

Each is scored with the model's 6 s windows (half-overlapping) and with
sub-windows ``S:H`` (S seconds every H seconds, each filled up to the model's
window by its ``short`` policy, as a short clip is), each pooled by mean, max,
linear-softmax and attention with each ``--alphas`` sharpness
(:data:`guesser.scoring.POOLINGS`), then fused as the app fuses.
Printed: label mAP and family mAP per variant; docs/benchmarks.md records it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guesser.ensemble import Ensemble  # noqa: E402
from guesser.features import noise_fill  # noqa: E402
from guesser.labels import FAMILIES_6, default_label_space  # noqa: E402
from guesser.scoring import POOLINGS, batches, model_probs, windows  # noqa: E402
from trainer.cache import find_cache  # noqa: E402
from trainer.metrics import family_truth, mean_average_precision  # noqa: E402


def poolings(alphas: list[float]) -> list[tuple[str, str, float]]:
    """(shown name, pooling, α) for every pooling measured: attention once per α."""
    out = []
    for p in POOLINGS:
        out += [(f"attention α={a:g}", p, a) for a in alphas] if p == "attention" else [(p, p, 1.0)]
    return out


def score_sets(ens: Ensemble, clips: list[torch.Tensor], sub: tuple[float, float] | None,
               alphas: list[float]) -> dict[str, tuple]:
    """Per pooling: (labels [N, 200], families [N, 6]) of the ensemble over ``clips``."""
    per_model = []
    for m in ens.models:
        wins = (windows(c, m.features, sub[1] if sub else None, sub[0] if sub else None) for c in clips)
        out = model_probs(m.module, batches(wins, 32), m.task)
        per_model.append((m, out))
    result = {}
    for shown, pooling, alpha in poolings(alphas):
        fused = ens.fuse_models(ens.models, [out.clip_probs(len(clips), pooling, alpha) for _, out in per_model])
        result[shown] = (fused.labels.numpy(), fused.families.numpy())
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache", type=Path)
    ap.add_argument("--split", default="eval")
    ap.add_argument("--sub", nargs="*", default=["2.0:1.0", "1.0:0.5"], help="sub-windows S:H (seconds)")
    ap.add_argument("--bed", type=float, default=10.0)
    ap.add_argument("--short-max", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", nargs="*", default=["plain", "short"])
    ap.add_argument("--alphas", nargs="*", type=float, default=[1.0, 3.0], help="attention pooling sharpness α")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    ens = Ensemble.load()
    cfg = ens.models[0].features
    split = find_cache(args.cache, cfg).split(args.split)
    fps = cfg.frames_per_second
    targets = np.asarray(split.targets)
    fam_matrix = default_label_space().family_matrix(FAMILIES_6)
    lengths = np.asarray(split.lengths)
    rng = np.random.default_rng(args.seed)
    sets: dict[str, tuple[list[int], list[torch.Tensor]]] = {}
    if "plain" in args.sets:
        rows = list(range(len(split)))
        sets["plain"] = (rows, [torch.from_numpy(split.clip(i)) for i in rows])
    if "short" in args.sets:
        rows = [i for i in range(len(split)) if lengths[i] <= args.short_max * fps]
        bed_frames = int(args.bed * fps)
        beds = []
        for i in rows:
            c = torch.from_numpy(split.clip(i))
            bed = noise_fill(c, bed_frames).float()
            at = int(rng.integers(0, bed_frames - c.shape[1] + 1))
            bed[:, at : at + c.shape[1]] = c
            beds.append(bed)
        sets["short"] = (rows, beds)
    long_rows = np.flatnonzero(lengths > 1.1 * cfg.clip_frames)
    variants = [("6 s windows", None)] + [(f"{s}s every {h}s", (float(s), float(h)))
                                          for s, h in (v.split(":") for v in args.sub)]
    print(f"split {args.split}: {len(split)} clips, {len(long_rows)} longer than one window; "
          f"{len(sets.get('short', ([],))[0])} clips <= {args.short_max} s in {args.bed} s beds")
    print(f"{'set':<14} {'windows':<16} {'pooling':<17} {'label mAP':>9} {'family mAP':>10} {'seconds':>8}")
    for name, (rows, clips) in sets.items():
        y = targets[rows]
        for vname, sub in variants:
            t0 = time.perf_counter()
            res = score_sets(ens, clips, sub, args.alphas)
            took = time.perf_counter() - t0
            for pooling, (labels, fams) in res.items():
                lm = mean_average_precision(y, labels)
                fm = mean_average_precision(family_truth(y, fam_matrix), fams)
                print(f"{name:<14} {vname:<16} {pooling:<17} {lm:9.4f} {fm:10.4f} {took:8.0f}", flush=True)
                if name == "plain":
                    idx = np.searchsorted(rows, long_rows)
                    lm = mean_average_precision(y[idx], labels[idx])
                    fm = mean_average_precision(family_truth(y[idx], fam_matrix), fams[idx])
                    print(f"{'plain, long':<14} {vname:<16} {pooling:<17} {lm:9.4f} {fm:10.4f}", flush=True)


if __name__ == "__main__":
    main()
