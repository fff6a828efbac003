"""Issue 14's benchmark: how well a personal label learns a sound from k examples.

    python benchmarks/fewshot.py [--models assets/models] [--cache cache] [--shots 1,3,5,10] [--seeds 5]
                                 [--min-eval 20] [--views FILE.npz] [--jobs 2]

For every class of the cache with at least ``--min-eval`` eval clips (and
enough dev clips), teach it from k random dev clips (train + val), exactly as
``guesser teach`` does (:func:`guesser.personal.probe.fit_probe` on the same
descriptor, against the models' shipped background sample, minus the chosen
clips), then score every eval clip as "is it this sound":

* AP of the class over the eval split;
* the false-positive rate at the operating point (score ≥ 0.5) over the eval
  clips without the class, and the recall at it over those with it;
* averaged over classes and ``--seeds`` draws, for each k;
* the same with every clip of the class taken out of the background
  ("class removed": a sound the shipped corpus does not hold, like a kettle);
* next to the shipped ensemble's own AP for the class (trained on every dev
  clip: an upper reference).

Clips are embedded from the cache (its frames are the app's log-mels to the
bit, :mod:`trainer.inference`), by the models loaded as the app loads them.
``--views`` keeps those views in a file to rerun the protocol quickly.
Goal: 5-shot mean AP ≥ 0.80 at a false-positive rate ≤ 2 %.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guesser.personal.probe import View, descriptor, fit_probe  # noqa: E402

PROTOCOLS = ("shipped background", "class removed")


def clip_views(models_dir: Path, cache: Path, views_file: Path | None) -> dict:
    """{split: {"fnames", "targets", "views": {model: View}}, "names", "label_weights", "background"} (cached in views_file)."""
    import torch

    from guesser.ensemble import Ensemble
    from guesser.personal.background import find_background
    from guesser.scoring import batches, model_probs
    from trainer.cache import find_cache
    from trainer.inference import split_windows

    ensemble = Ensemble.load([models_dir])
    background = find_background(ensemble.models)
    names = [m.name for m in ensemble.models]
    label_weights = {m.name: m.family_weight for m in ensemble.label_models}
    out: dict = {"names": names, "label_weights": label_weights, "background": background}
    stored = dict(np.load(views_file, allow_pickle=False)) if views_file and views_file.is_file() else {}
    fresh: dict = {}
    for split in ("train", "val", "eval"):
        views = {}
        for m in ensemble.models:
            s = find_cache(cache, m.features).split(split)
            key = f"{split}_{m.name}"
            if f"{key}_pooled" not in stored:
                t = time.perf_counter()
                with torch.inference_mode():
                    wp = model_probs(m.module, batches(split_windows(s, m.features), 64), m.task, embeddings=True)
                v = View.of(wp.clip_embeddings(len(s)).numpy(), wp.clip_probs(len(s)).numpy())
                fresh[f"{key}_pooled"], fresh[f"{key}_probs"] = v.pooled, v.probs
                print(f"embedded {split} with {m.name}: {len(s)} clips in {time.perf_counter() - t:.0f} s",
                      file=sys.stderr, flush=True)
            else:
                v = View(stored[f"{key}_pooled"], stored[f"{key}_probs"])
            views[m.name] = v
            out[split] = {"fnames": s.fnames.astype(str), "targets": s.targets, "views": views}
            out["vocabulary"] = [str(v) for v in s.vocabulary]
    if views_file and fresh:
        np.savez(views_file, **stored, **fresh)
    return out


_SHARED: dict = {}  # the arrays every fit reads: sent to each worker once, not with every task


def _share(arrays: dict) -> None:
    _SHARED.update(arrays)


def _one(task: tuple) -> tuple:
    """One (class, k, seed, protocol): AP, FPR and recall at the operating point on eval."""
    from sklearn.metrics import average_precision_score

    c, k, seed, protocol = task
    d = _SHARED
    rng = np.random.default_rng(seed * 100_003 + c * 7 + k)
    pick = rng.choice(np.flatnonzero(d["dev_y"][:, c]), size=k, replace=False)
    keep = ~np.isin(d["bg_fnames"], d["dev_fnames"][pick])
    if protocol == PROTOCOLS[1]:
        keep &= ~d["bg_has"][:, c]
    fitted = fit_probe(d["dev_x"][pick], d["bg_x"][keep], leave_one_out=False)
    ev_x, ev_y = d["ev_x"], d["ev_y"][:, c]
    s = fitted.probe.score(ev_x)
    ap = average_precision_score(ev_y, fitted.probe.decision(ev_x))
    return c, k, seed, protocol, ap, float((s[ev_y == 0] >= 0.5).mean()), float((s[ev_y == 1] >= 0.5).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=Path("assets/models"))
    ap.add_argument("--cache", type=Path, default=Path("cache"))
    ap.add_argument("--shots", default="1,3,5,10")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--min-eval", type=int, default=20)
    ap.add_argument("--views", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    from sklearn.metrics import average_precision_score

    t0 = time.perf_counter()
    data = clip_views(args.models, args.cache, args.views)
    names = data["names"]
    vocab = data["vocabulary"]  # the cache's target columns
    shots = [int(k) for k in args.shots.split(",")]
    dev_views = {n: View.stack([data["train"]["views"][n], data["val"]["views"][n]]) for n in names}
    dev_x = descriptor(dev_views, names)
    dev_y = np.concatenate([data["train"]["targets"], data["val"]["targets"]]) > 0
    dev_fnames = np.concatenate([data["train"]["fnames"], data["val"]["fnames"]])
    ev_x = descriptor(data["eval"]["views"], names)
    ev_y = data["eval"]["targets"] > 0
    bg = data["background"]
    bg_x = descriptor(bg.views, names)
    classes = [c for c in range(ev_y.shape[1]) if ev_y[:, c].sum() >= args.min_eval and dev_y[:, c].sum() >= max(shots)]
    # the shipped ensemble's own score for each class: its label models' weighted mean, as the app fuses
    w = data["label_weights"]
    ens = sum(data["eval"]["views"][n].probs * w[n] for n in w) / sum(w.values())
    upper = {c: average_precision_score(ev_y[:, c], ens[:, c]) for c in classes}
    # the background's clips of each cache class (its own columns may be ordered otherwise)
    bg_cols = [str(v) for v in bg.vocabulary]
    bg_has = np.stack([bg.targets[:, bg_cols.index(n)] > 0 if n in bg_cols else np.zeros(len(bg), bool)
                       for n in vocab], axis=1)
    shared = {"dev_x": dev_x, "dev_y": dev_y, "dev_fnames": dev_fnames, "bg_x": bg_x, "bg_fnames": bg.fnames,
              "bg_has": bg_has, "ev_x": ev_x, "ev_y": ev_y}
    tasks = [(c, k, seed, protocol) for c in classes for k in shots for seed in range(args.seeds) for protocol in PROTOCOLS]
    print(f"{len(classes)} classes with >= {args.min_eval} eval clips; {len(tasks)} fits "
          f"(background {len(bg):,} clips, {len(ev_x):,} eval clips); {args.jobs} processes", file=sys.stderr, flush=True)
    t1 = time.perf_counter()
    with ProcessPoolExecutor(args.jobs, initializer=_share, initargs=(shared,)) as pool:
        results = list(pool.map(_one, tasks, chunksize=8))
    fit_s = time.perf_counter() - t1
    counts = {c: int(ev_y[:, c].sum()) for c in classes}
    report(results, classes, shots, vocab, upper, counts, args, len(bg), len(ev_x), time.perf_counter() - t0, fit_s)


def report(results, classes, shots, vocab, upper, counts, args, n_bg, n_eval, total_s, fit_s) -> None:
    arr = {(c, k, s, p): (ap, fpr, tpr) for c, k, s, p, ap, fpr, tpr in results}
    up = float(np.mean([upper[c] for c in classes]))
    print(f"few-shot personal labels: {len(classes)} classes of the cache with >= {args.min_eval} eval clips, "
          f"{args.seeds} seeds, background {n_bg:,} clips, scored on {n_eval:,} eval clips")
    print()
    print("| protocol | k | mean AP (sd over seeds) | FPR at operating point | recall at operating point | goal (k=5) |")
    print("|---|---|---|---|---|---|")
    for p in PROTOCOLS:
        for k in shots:
            per_seed = [np.mean([arr[(c, k, s, p)][0] for c in classes]) for s in range(args.seeds)]
            fpr = np.mean([arr[(c, k, s, p)][1] for c in classes for s in range(args.seeds)])
            tpr = np.mean([arr[(c, k, s, p)][2] for c in classes for s in range(args.seeds)])
            goal = ("yes" if np.mean(per_seed) >= 0.80 and fpr <= 0.02 else "NO") if k == 5 else ""
            print(f"| {p} | {k} | {np.mean(per_seed):.3f} ({np.std(per_seed):.3f}) | {fpr:.2%} | {tpr:.1%} | {goal} |")
    print(f"| shipped ensemble, trained on all dev clips (upper reference) | all | {up:.3f} | | | |")
    print()
    k = 5 if 5 in shots else shots[-1]
    print(f"per class, k={k}, shipped background (mean over seeds):")
    print()
    print("| class | eval clips | few-shot AP | FPR | recall | ensemble AP |")
    print("|---|---|---|---|---|---|")
    rows = []
    for c in classes:
        v = np.mean([arr[(c, k, s, PROTOCOLS[0])] for s in range(args.seeds)], axis=0)
        rows.append((v[0], c, v))
    for _, c, v in sorted(rows, reverse=True):
        print(f"| {vocab[c]} | {counts[c]} | {v[0]:.3f} | {v[1]:.2%} | {v[2]:.0%} | {upper[c]:.3f} |")
    print()
    print(f"wall time {total_s:.0f} s ({fit_s:.0f} s fitting, {len(results)} fits, {args.jobs} processes)")


if __name__ == "__main__":
    main()
