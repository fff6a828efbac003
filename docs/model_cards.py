"""Write docs/models.md from the shipped models themselves (their checkpoint headers and eval results).

    python docs/model_cards.py [assets/models/index.json] [--ensemble runs/ship/ensemble_eval.json]

Everything in a card comes from the checkpoint's own metadata (recipe, epochs,
validation score, labels seen in training) or from the ``eval`` block that
``guesser export`` copied from ``guesser evaluate``'s results, so the page
cannot drift from the files it describes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from guesser.checkpoint import IndexEntry, ModelMeta, ModelsIndex, read_model_meta
from guesser.labels import default_label_space

ROOT = Path(__file__).resolve().parents[1]

INTRO = """# The shipped models

`assets/models/` holds the ensemble that `guesser classify` and `guesser play` use when no
`--models` is given: the best model of each member of the student project (plus PANNs' CNN6),
each trained with guesser's own `guesser train multi` on `fsd50k-mini` (the small FSD50K-layout
corpus next to the repository: 4,036 train / 783 val / 1,062 eval clips, 105 of the 200 labels),
picked by validation score, and exported with `guesser export` as float16 safetensors.

How they were made (about {hours:.1f} CPU-hours on this project's 2-core machine):

```bash
guesser preprocess ../shared/fsd50k-mini --out cache --features all
guesser train multi --recipes cnn4_mix,cnn3_mix,family_cnn_mix,cnn6_families --cache cache --out runs/ship
guesser evaluate --index runs/ship/index.json --cache cache
guesser export runs/ship/index.json --out assets/models
python docs/model_cards.py
```

**Numbers on fsd50k-mini are not comparable to published FSD50K results** (a different, smaller,
partly synthetic corpus; see its README). For orientation on the same eval split: a logistic
regression on per-clip log-mel mean/std reaches mAP 0.42, the student project's plain cnn4 recipe
(tiled 6 s crops, SpecAugment, mixup, 12 epochs) 0.62.
"""

LIMITS = """## Limits (all models)

* **Labels never seen in training** ({unseen} of 200) are still scored, but the scores carry no
  knowledge: the corpus has no clip of them. `guesser play`'s game only draws targets from labels
  the models were trained on. Unseen: {unseen_list}.
* **Synthetic parts of the corpus**: musical instruments are General-MIDI renders (one SoundFont),
  speech is espeak-ng's synthesiser: real instruments and real voices are recognised less well
  than the eval numbers suggest, and *Speech synthesizer* is scored high for any speech.
* **Band-limited classes**: ESC-50-derived clips (cough, laughter, footsteps, keyboard typing,
  knock, breathing, …) exist in training only as 8 kHz band-limited copies. Training band-limits
  other clips at random and synthesises a high band for these (`bandlimit_p`, `hf_fill_p`), so a
  full-band microphone recording is not rejected for having treble; the eval split has no clip of
  these classes, so how well this works is not measured here.
* **Family models and the family ranking.** The family models' weights are chosen on val, and
  val cannot see the corpus's biggest shift: dev's *Natural sounds* are mostly band-limited
  ESC-50 copies (wind, rain, thunderstorm, water drops), eval's are full-band ESC-10 and GM
  recordings, and val is not recording-disjoint from train for those classes (the corpus
  README warns). On the eval split the family models raise top-family accuracy over the two
  label models alone (0.811 vs 0.793) but lower family mAP (0.827 vs 0.900), all of it on
  *Natural sounds* (AP 0.43 vs 0.79; family_cnn alone 0.38). To rank families by the label
  models only, set `family_weight` to 0 for both family models in `assets/models/index.json`
  (measured with `guesser evaluate runs/ship/cnn4_mix runs/ship/cnn3_mix --cache cache`).
  CNN6, trained from scratch for 14 epochs on 2 s crops (val family mAP 0.64), gets weight 0:
  it still runs and its answer is shown in the per-model breakdown.
* **Weakest on real-world street recordings** (UrbanSound8K: engine idling vs air conditioner,
  see the worst labels above) and on mixtures.
"""


def fmt(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def card(path: Path, entry: IndexEntry) -> str:
    meta: ModelMeta = read_model_meta(path)
    r = meta.recipe
    t = r["train"]
    ev = meta.eval or {}
    f = meta.features
    lines = [f"## {meta.member}: `{meta.name}` ({meta.arch}, {meta.task})", "",
             r.get("description", ""), "",
             "| | |", "|---|---|",
             f"| file | `assets/models/{path.name}` ({path.stat().st_size / 1e6:.1f} MB, float16) |",
             f"| parameters | {meta.params:,} |",
             f"| front-end | {r['features']['preset']}: {f.sample_rate} Hz, {f.n_mels} mels, "
             f"hop {f.hop_length}, {f.clip_seconds:g} s windows |",
             f"| recipe | `trainer/recipes/{meta.name}.toml`: {t['loss']} loss, {t['optimizer']} lr {t['lr']:g} "
             f"({t['scheduler']}), batch {t['batch_size']}, oversampling {'on' if t['oversample'] else 'off'}, "
             f"EMA {t['ema_decay'] or 'off'} |",
             f"| training | best epoch {meta.best_epoch} of {t['epochs']}, "
             f"{(meta.trained_seconds or 0) / 60:.0f} min on 2 CPU cores, commit {meta.commit or '?'} |",
             f"| validation | {meta.score_name.replace('_', ' ')} {fmt(meta.val_score)} |"]
    if meta.task == "labels":
        lines.append(f"| eval ({ev.get('clips', '?')} clips) | mAP {fmt(ev.get('map'))}, d' {fmt(ev.get('d_prime'))}, "
                     f"lwlrap {fmt(ev.get('lwlrap'))}, family mAP {fmt(ev.get('family_map'))}, "
                     f"F1 macro {fmt(ev.get('f1_macro'))} (val-tuned thresholds) |")
        lines.append(f"| labels seen in training | {len(meta.trained_labels or ())} of 200 |")
    else:
        lines.append(f"| eval ({ev.get('clips', '?')} clips) | family mAP {fmt(ev.get('family_map'))}, "
                     f"top-family accuracy {fmt(ev.get('family_accuracy'))} |")
        lines.append(f"| classes | {', '.join(meta.classes)} |")
        lines.append(f"| weight in the ensemble's family ranking | {entry.family_weight:g} "
                     "(label models: 1; chosen on val by `guesser evaluate`) |")
    return "\n".join(lines) + "\n"


def ensemble_section(path: Path | None) -> str:
    if path is None or not path.is_file():
        return ""
    data = json.loads(path.read_text())
    s = data.get("summary", {})
    out = ["## The ensemble", "",
           "Label probabilities averaged over the label models; families from the folded label scores and the",
           "family models' softmax (see docs/inference.md). On the eval split:", "",
           "| mAP | d' | lwlrap | family mAP | F1 macro |", "|---|---|---|---|---|",
           f"| **{fmt(s.get('map'))}** | {fmt(s.get('d_prime'))} | {fmt(s.get('lwlrap'))} | {fmt(s.get('family_map'))} "
           f"| {fmt(s.get('f1_macro'))} |", ""]
    fw = data.get("family_weights")
    if fw:
        chosen = ", ".join(f"{n} {w:g}" for n, w in fw["chosen"].items())
        out += [f"Family models' weights in the family ranking (label models 1), chosen on val among "
                f"{fw['combinations_tried']} combinations: {chosen}. Val family mAP {fmt(fw['val_family_map'])} "
                f"(equal weights: {fmt(fw['val_family_map_equal_weights'])}); eval family mAP above "
                f"(equal weights: {fmt(fw.get('eval_family_map_equal_weights'))}).", ""]
    labels = data.get("labels")
    if labels:
        ap = [(n, a, p) for n, a, p in zip(labels["names"], labels["ap"], labels["positives"]) if p and a is not None]
        ap.sort(key=lambda x: x[1])
        out += ["Worst labels by AP on eval: " + ", ".join(f"{n.replace('_', ' ')} {a:.2f}" for n, a, _ in ap[:8]) + ".",
                "Best: " + ", ".join(f"{n.replace('_', ' ')} {a:.2f}" for n, a, _ in ap[-6:][::-1]) + ".", ""]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index", nargs="?", type=Path, default=ROOT / "assets" / "models" / "index.json")
    ap.add_argument("--ensemble", type=Path, default=None, help="ensemble_eval.json from guesser evaluate")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "models.md")
    args = ap.parse_args()
    index = ModelsIndex.read(args.index)
    paths = [(path, e) for (path, _), e in zip(index.checkpoints(args.index.parent), index.models)]
    metas = [read_model_meta(p) for p, _ in paths]
    seen = set().union(*(set(m.trained_labels or ()) for m in metas if m.task == "labels"))
    names = default_label_space().vocabulary.names
    unseen = [n.replace("_", " ") for n in names if n not in seen]
    hours = sum(m.trained_seconds or 0 for m in metas) / 3600
    text = INTRO.format(hours=hours) + "\n" + ensemble_section(args.ensemble)
    text += "\n".join(card(p, e) for p, e in paths) + "\n"
    text += LIMITS.format(unseen=len(unseen), unseen_list=", ".join(unseen))
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
