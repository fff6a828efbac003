"""Issue 11's goals for a models index on the eval split: real speech, coughs, breathing, every origin.

    python benchmarks/real_sounds.py INDEX CACHE SOURCES_CSV [--origins coswara,speechcommands,emodb,ravdess,arabic-digits]

Scores every model of INDEX on the eval split of CACHE, fuses them with the
index's weights exactly as the app does (trainer.evaluate.ensemble_scores),
and prints: overall mAP and lwlrap; over the real-speech clips (the origins
given, clips labelled Speech) the share with Speech in the top 3, the Speech
AP (those clips against every eval clip without Speech) and the share whose
top family is Human sounds; Cough and Breathing AP over the split; and
mAP/top-1/top-family per origin (trainer.groups).
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
from trainer.groups import group_scores, load_groups  # noqa: E402
from trainer.device import pick_device  # noqa: E402

REAL_SPEECH = ("coswara", "speechcommands", "emodb", "ravdess", "arabic-digits")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index", type=Path)
    ap.add_argument("cache", type=Path)
    ap.add_argument("sources")
    ap.add_argument("--origins", default=",".join(REAL_SPEECH))
    args = ap.parse_args()
    runs = []
    for path, weight in resolve_models([args.index]):
        m = load_model(path)
        m.family_weight = weight
        s, d = score(m, args.cache, "eval", pick_device("cpu"))
        runs.append(ModelRun(m, s, None, d))
    labels, families = ensemble_scores(runs, "split")
    names = default_label_space().vocabulary.names
    y = (labels.targets > 0).astype(np.uint8)
    p = labels.probs
    origin = load_groups(args.sources)
    org = np.asarray([origin.get(str(f), "") for f in labels.fnames])
    speech = names.index("Speech")
    real_speech = np.isin(org, args.origins.split(",")) & (y[:, speech] > 0)
    top3 = np.argsort(-p, axis=1)[:, :3]
    in_top3 = (top3 == speech).any(axis=1)
    rows = real_speech | (y[:, speech] == 0)
    speech_ap = average_precision_score(y[rows, speech], p[rows, speech])
    hs = FAMILIES_6.index("Human sounds")
    top_family_hs = families.probs[real_speech].argmax(axis=1) == hs
    cough = average_precision_score(y[:, names.index("Cough")], p[:, names.index("Cough")])
    breathing = average_precision_score(y[:, names.index("Breathing")], p[:, names.index("Breathing")])
    print(f"models: {', '.join(f'{r.model.name}×{r.model.family_weight:g}' for r in runs)}; eval clips {len(y)}")
    print(f"overall mAP {M.mean_average_precision(y, p):.3f}  lwlrap {M.lwlrap(y, p):.3f}")
    print(f"real speech ({int(real_speech.sum())} clips): Speech in top 3 {in_top3[real_speech].mean():.3f}  "
          f"Speech AP {speech_ap:.3f}  top family Human sounds {top_family_hs.mean():.3f}")
    print(f"Cough AP {cough:.3f}  Breathing AP {breathing:.3f}")
    fams = family_targets(labels.targets, label_space(names), "6")
    g = group_scores(labels.fnames, origin, labels=labels.targets, label_probs=p, families=fams,
                     family_probs=families.probs)
    print(f"{'origin':<16}{'clips':>6}{'mAP':>7}{'lwlrap':>8}{'top-1':>7}{'top fam':>8}")
    for name, m in sorted(g["groups"].items()) + [("real recordings", g.get("real", {}))]:
        print(f"{name:<16}{m.get('clips', 0):>6}{m.get('map', float('nan')):>7.3f}{m.get('lwlrap', float('nan')):>8.3f}"
              f"{m.get('top1', float('nan')):>7.3f}{m.get('top_family', float('nan')):>8.3f}")


if __name__ == "__main__":
    main()
