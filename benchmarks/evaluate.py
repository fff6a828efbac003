"""``guesser evaluate``'s cost per clip: the scoring batch size and the metrics, each against its baseline.

    python benchmarks/evaluate.py --cache /work/cache                 # the shipped models, the eval split
    python benchmarks/evaluate.py --cache cache --models runs --clips 500

What a cProfile of ``guesser evaluate`` on the corpus showed (docs/benchmarks.md):
the models' forward passes are most of it, and they ran 64 windows a batch,
whose activations do not stay in a CPU's caches; the rest is the label metrics,
where every label's AUC was computed three times (per label, macro AUC, d')
and every AP twice (per label, mAP). Measured in one run, CPU time of one
thread (so a busy machine changes the wall time, not these numbers):

* scoring: :func:`trainer.inference.predict_split` at 64 windows a batch (the
  old default) and at :func:`~trainer.inference.default_batch_size` (16 on a CPU),
  the same probabilities up to float rounding;
* metrics: :func:`trainer.evaluate.label_section` (each per-label score once)
  and, for the baseline, the same plus what it computed before (mAP, the macro
  AUC and d' from scratch, and a second sort for every ROC curve's AUC), on the
  first label model's probabilities; the numbers must be identical.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guesser.ensemble import load_model, resolve_models  # noqa: E402
from guesser.models import TASK_LABELS  # noqa: E402
from trainer import metrics as M  # noqa: E402
from trainer.cache import find_cache  # noqa: E402
from trainer.evaluate import Scores, label_section, label_space  # noqa: E402
from trainer.inference import default_batch_size, predict_split  # noqa: E402


def cpu(fn, *args, **kw):
    """(result, CPU seconds of this thread), best of two runs."""
    best, out = float("inf"), None
    for _ in range(2):
        t0 = time.thread_time()
        out = fn(*args, **kw)
        best = min(best, time.thread_time() - t0)
    return out, best


def redundant_label_metrics(y: np.ndarray, p: np.ndarray) -> dict:
    """What ``label_section`` computed besides what it computes now: every macro from scratch."""
    return {"map": M.mean_average_precision(y, p), "d_prime": M.d_prime(y, p), "auc": M.macro_auc(y, p),
            "micro_auc": float(roc_auc_score(y.ravel(), p.ravel()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--models", default=None, help="a models index or checkpoints (default: the shipped models)")
    ap.add_argument("--split", default="eval")
    ap.add_argument("--clips", type=int, default=0, help="score only the first N clips (0: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    new_size = default_batch_size("cpu")
    print(f"CPU ms per clip (one thread), {args.split} split of {args.cache}; torch {torch.__version__}\n")
    print(f"| model | clips | 64 windows a batch | {new_size} windows a batch | ratio | max |Δp| |")
    print("|---|---|---|---|---|---|")
    first = None
    for path, _ in resolve_models([args.models] if args.models else None):
        model = load_model(path, optimize=True)
        split = find_cache(args.cache, model.features).split(args.split)
        if args.clips:
            n = args.clips
            split = replace(split, fnames=split.fnames[:n], offsets=split.offsets[:n], lengths=split.lengths[:n],
                            targets=split.targets[:n])
        old, t_old = cpu(predict_split, model.module, split, model.features, model.task, batch_size=64)
        new, t_new = cpu(predict_split, model.module, split, model.features, model.task)
        n = len(split)
        print(f"| {model.name} | {n} | {1e3 * t_old / n:.2f} | {1e3 * t_new / n:.2f} | {t_old / t_new:.2f}x "
              f"| {np.abs(old - new).max():.1e} |")
        if first is None and model.task == TASK_LABELS:
            first = (model, split, new)
    if first is None:
        return
    model, split, probs = first
    y = np.asarray(split.targets)[:, :probs.shape[1]]
    scores = Scores(np.asarray(split.fnames), probs, y)
    after, t_new = cpu(label_section, scores, scores, label_space(model.classes))
    before, t_extra = cpu(redundant_label_metrics, y, probs)
    s = after["summary"]
    same = (s["map"] == before["map"] and s["auc"] == before["auc"] and s["d_prime"] == before["d_prime"]
            and after["roc_labels"]["micro"]["auc"] == before["micro_auc"])
    print(f"\nlabel metrics of {model.name} ({len(y)} clips × {y.shape[1]} labels): before {t_new + t_extra:.2f} "
          f"CPU-s, after {t_new:.2f} CPU-s, ratio {(t_new + t_extra) / t_new:.2f}x; "
          f"mAP, AUC, d' and micro AUC identical: {same}")

if __name__ == "__main__":
    main()
