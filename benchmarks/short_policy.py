"""How should a clip shorter than the model's window be filled? Tile, pad with silence, or pad with noise.

    python benchmarks/short_policy.py CACHE SOURCES_CSV RUN [RUN …] [--max-seconds 1.5]

Each RUN is a checkpoint or run folder trained with one ``features.short``
policy (its checkpoint says which; it is applied at inference too). The eval
split's clips under ``--max-seconds`` are grouped by the CSV's ``origin``
column and scored per group (trainer.groups: mAP against every other clip's
negatives, lwlrap, top-1, top family), plus Speech AP over the short clips.
The result is a table per run; docs/models.md records it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guesser.ensemble import load_model  # noqa: E402
from guesser.labels import FAMILIES_6, fold_families  # noqa: E402
from trainer.cache import find_cache  # noqa: E402
from trainer.evaluate import checkpoint_of, label_space, score  # noqa: E402
from trainer.fsd50k import family_targets  # noqa: E402
from trainer.groups import group_scores, load_groups  # noqa: E402
from trainer.device import pick_device  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache", type=Path)
    ap.add_argument("sources", help="CSV[:COLUMN] with fname and origin")
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--max-seconds", type=float, default=1.5)
    args = ap.parse_args()
    origin = load_groups(args.sources)
    print(f"{'run':<14} {'policy':<6} {'origin':<16} {'clips':>5} {'mAP':>6} {'lwlrap':>6} {'top-1':>6} {'top fam':>7} {'Speech AP':>9}")
    for run in args.runs:
        model = load_model(checkpoint_of(run))
        scores, _ = score(model, args.cache, "eval", pick_device("cpu"))
        split = find_cache(args.cache, model.features).split("eval")
        seconds = np.asarray(split.lengths) / model.features.frames_per_second
        short = {str(f): origin.get(str(f), "?") for f, s in zip(split.fnames, seconds) if s < args.max_seconds}
        space = label_space(model.classes)
        fams = family_targets(scores.targets, space, "6")
        folded = fold_families(scores.probs, space.family_matrix(FAMILIES_6))
        res = group_scores(scores.fnames, short, labels=scores.targets, label_probs=scores.probs, families=fams,
                           family_probs=folded, synthetic=())
        k = model.classes.index("Speech")
        mask = np.isin(scores.fnames, list(short))
        from sklearn.metrics import average_precision_score

        y = scores.targets[mask, k]
        sp = average_precision_score(y, scores.probs[mask, k]) if 0 < y.sum() < len(y) else float("nan")
        rows = sorted(res["groups"].items()) + [("all short", res.get("real", {"clips": 0}))]
        for name, m in rows:
            extra = f"{sp:9.3f}" if name == "all short" else ""
            print(f"{model.name:<14} {model.features.short:<6} {name:<16} {m['clips']:>5} {m.get('map', float('nan')):6.3f} "
                  f"{m.get('lwlrap', float('nan')):6.3f} {m.get('top1', float('nan')):6.3f} {m.get('top_family', float('nan')):7.3f} {extra}")


if __name__ == "__main__":
    main()
