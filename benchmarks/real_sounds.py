"""The shipped ensemble's goals (issues 11 and 21) for a models index on the eval split.

    python benchmarks/real_sounds.py INDEX CACHE SOURCES_CSV [--origins coswara,speechcommands,emodb,ravdess,arabic-digits]

Scores every model of INDEX on the eval split of CACHE, fuses them with the
index's weights exactly as the app does (trainer.evaluate.ensemble_scores),
and prints: overall mAP and lwlrap; over the real-speech clips (the origins
given, clips labelled Speech) the share with Speech in the top 3, the Speech
AP (those clips against every eval clip without Speech) and the share whose
top family is Human sounds; Cough and Breathing AP over the split; and
mAP/top-1/top-family per origin (trainer.groups); the labels with the lowest AP;
all of it on the whole eval split and on the previous one (without the
kitchen20 clips), then each goal of issue 21, met or not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guesser.ensemble import load_model, resolve_models  # noqa: E402
from guesser.labels import FAMILIES_6, default_label_space  # noqa: E402
from trainer import metrics as M  # noqa: E402
from trainer.evaluate import ModelRun, ensemble_scores, label_space, score  # noqa: E402
from trainer.fsd50k import family_targets  # noqa: E402
from trainer.groups import SYNTHETIC_DEFAULT, group_scores, load_groups  # noqa: E402
from trainer.device import pick_device  # noqa: E402

REAL_SPEECH = ("coswara", "speechcommands", "emodb", "ravdess", "arabic-digits")


NEW_ORIGINS = ("kitchen20",)
"""Origins added to the corpus after the previous eval split (1,409 clips): reported with and without them."""

GOALS = (("mAP (previous split)", "prev_map", 0.86), ("mAP (new split)", "map", 0.84),
         ("kitchen20 mAP", "kitchen_map", 0.70), ("kitchen20 top-1", "kitchen_top1", 0.70),
         ("lwlrap", "lwlrap", 0.90), ("real recordings top-1", "real_top1", 0.78),
         ("real recordings top family", "real_top_family", 0.90), ("us8k top-1", "us8k_top1", 0.60),
         ("Cough AP", "cough", 0.90), ("Breathing AP", "breathing", 0.80), ("synthetic mix mAP", "mix_map", 0.55),
         ("lowest real origin mAP", "min_real_map", 0.70), ("Speech in top 3", "speech_top3", 0.97),
         ("Speech AP", "speech_ap", 0.99))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index", type=Path)
    ap.add_argument("cache", type=Path)
    ap.add_argument("sources")
    ap.add_argument("--origins", default=",".join(REAL_SPEECH))
    ap.add_argument("--worst", type=int, default=10, help="list the N labels with the lowest AP")
    args = ap.parse_args()
    runs = []
    for path, weight in resolve_models([args.index]):
        m = load_model(path)
        m.family_weight = weight
        s, d = score(m, args.cache, "eval", pick_device("cpu"))
        runs.append(ModelRun(m, s, None, d))
    labels, families = ensemble_scores(runs, "split")
    origin = load_groups(args.sources)
    org = np.asarray([origin.get(str(f), "") for f in labels.fnames])
    print(f"models: {', '.join(f'{r.model.name}×{r.model.family_weight:g}' for r in runs)}")
    whole = report(labels.targets, labels.probs, families.probs, labels.fnames, org, origin, args,
                   f"eval split ({len(org)} clips)")
    prev = ~np.isin(org, NEW_ORIGINS)
    before = report(labels.targets[prev], labels.probs[prev], families.probs[prev], labels.fnames[prev], org[prev],
                    origin, args, f"previous eval split, without {', '.join(NEW_ORIGINS)} ({int(prev.sum())} clips)")
    whole["prev_map"] = before["map"]
    print("\ngoals (eval split unless named):")
    for title, key, goal in GOALS:
        v = whole.get(key, float("nan"))
        print(f"  {title:<30}{v:>7.3f}  goal >= {goal:.2f}  {'met' if v >= goal else 'NOT met'}")


def report(targets, p, family_probs, fnames, org, origin, args, title: str) -> dict:
    """Print one split's figures; return the ones the goals name."""
    names = default_label_space().vocabulary.names
    y = (targets > 0).astype(np.uint8)
    speech = names.index("Speech")
    real_speech = np.isin(org, args.origins.split(",")) & (y[:, speech] > 0)
    top3 = np.argsort(-p, axis=1)[:, :3]
    in_top3 = (top3 == speech).any(axis=1)
    rows = real_speech | (y[:, speech] == 0)
    speech_ap = average_precision_score(y[rows, speech], p[rows, speech])
    hs = FAMILIES_6.index("Human sounds")
    top_family_hs = family_probs[real_speech].argmax(axis=1) == hs
    cough = average_precision_score(y[:, names.index("Cough")], p[:, names.index("Cough")])
    breathing = average_precision_score(y[:, names.index("Breathing")], p[:, names.index("Breathing")])
    out = {"map": M.mean_average_precision(y, p), "lwlrap": M.lwlrap(y, p), "cough": cough, "breathing": breathing,
           "speech_ap": speech_ap, "speech_top3": float(in_top3[real_speech].mean())}
    print(f"\n{title}")
    print(f"overall mAP {out['map']:.3f}  lwlrap {out['lwlrap']:.3f}")
    print(f"real speech ({int(real_speech.sum())} clips): Speech in top 3 {in_top3[real_speech].mean():.3f}  "
          f"Speech AP {speech_ap:.3f}  top family Human sounds {top_family_hs.mean():.3f}")
    print(f"Cough AP {cough:.3f}  Breathing AP {breathing:.3f}")
    fams = family_targets(targets, label_space(names), "6")
    g = group_scores(fnames, origin, labels=targets, label_probs=p, families=fams, family_probs=family_probs)
    print(f"{'origin':<16}{'clips':>6}{'mAP':>7}{'lwlrap':>8}{'top-1':>7}{'top fam':>8}")
    for name, m in sorted(g["groups"].items()) + [("real recordings", g.get("real", {}))]:
        print(f"{name:<16}{m.get('clips', 0):>6}{m.get('map', float('nan')):>7.3f}{m.get('lwlrap', float('nan')):>8.3f}"
              f"{m.get('top1', float('nan')):>7.3f}{m.get('top_family', float('nan')):>8.3f}")
    groups = g["groups"]
    real = g.get("real", {})
    out.update(real_top1=real.get("top1", float("nan")), real_top_family=real.get("top_family", float("nan")),
               kitchen_map=groups.get("kitchen20", {}).get("map", float("nan")),
               kitchen_top1=groups.get("kitchen20", {}).get("top1", float("nan")),
               us8k_top1=groups.get("us8k", {}).get("top1", float("nan")),
               mix_map=groups.get("mix", {}).get("map", float("nan")),
               min_real_map=min((m["map"] for n, m in groups.items() if n not in SYNTHETIC_DEFAULT), default=float("nan")))
    ap = M.per_label_ap(y, p)
    have = [k for k in range(len(names)) if y[:, k].any()]
    worst = sorted(have, key=lambda k: ap[k])[: args.worst]
    print("worst labels by AP: " + ", ".join(f"{names[k]} {ap[k]:.2f} ({int(y[:, k].sum())})" for k in worst))
    return out


if __name__ == "__main__":
    main()
