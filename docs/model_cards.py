"""Write docs/models.md from the shipped models themselves (their checkpoint headers and eval results).

    python docs/model_cards.py [assets/models/index.json] [--ensemble runs/ship/ensemble_eval.json]

Everything in a card comes from the checkpoint's own metadata (recipe, epochs,
validation score, labels seen in training) or from the ``eval`` block that
``guesser export`` copied from ``guesser evaluate``'s results, so the page
cannot drift from the files it describes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from guesser.checkpoint import IndexEntry, ModelMeta, ModelsIndex, read_model_meta
from guesser.labels import default_label_space
from trainer.records import EvalResult

ROOT = Path(__file__).resolve().parents[1]

INTRO = """# The shipped models

`assets/models/` holds the ensemble that `guesser classify` and `guesser play` use when no
`--models` is given. Its members were chosen by value: `guesser select` ran Caruana's greedy
forward selection on the validation split over every run of the December 2026 rounds (the
fine-tune chain `*_real` → `*_long` → `cnn4_longer` → `cnn4_longest` → `cnn4_cycle5` →
`cnn4_cycle6*`, the from-scratch `*_scratch` runs, the distilled `cnn4_kd`, `cnn4_kd2` and
`cnn4_kd3`, the bigger `cnn4_wide` and the widened `cnn4_wide2` and `cnn3_wide2`), adding at each
step the run that raised val (label mAP + family mAP) / 2 most, with repeats as weights and one run
per member, and stopped when nothing helped; runs that never helped are not shipped (the selection
is printed in docs/training.md). The two label-smoothed runs were left out of the candidates: val
took one by 0.001, but it made taught personal labels false-alarm more (docs/training.md, round 4).
The corpus is
`fsd50k-mini` with its real speech, coughs and breathing and 865 Kitchen20 recordings (6,144
train / 1,291 val / 1,511 eval clips, 115 of the 200 labels).

How they were made ({hours:.1f} hours of training wall time for the shipped models' own last runs,
on this project's 2-core CPU shared with up to five other runs at a time; no GPU). Each `*_real`
recipe fine-tunes the model shipped before the kitchen part (`train.init = "shipped"`), each
`*_long` recipe continues the `*_real` model for a new cosine cycle (also `"shipped"`, after the
first round's export), and `cnn4_longer`, `cnn4_longest`, `cnn4_cycle5` and the `cnn4_cycle6*` runs
each continue the previous cycle's run (`init = "runs/…/best.safetensors"`):

```bash
guesser preprocess ../shared/fsd50k-mini --out cache --features compact
# round 1, from the models shipped before the kitchen part
guesser train one cnn4_real --cache cache --out runs/cnn4_real         # 12 epochs
guesser train one cnn3_real --cache cache --out runs/cnn3_real         # 6
guesser train one family_cnn_real --cache cache --out runs/family_cnn_real   # 6
guesser select runs/cnn4_real runs/cnn3_real runs/family_cnn_real --cache cache --out runs/round1.json
guesser train one cnn4_kd --cache cache --out runs/cnn4_kd           # 12, distilled from runs/round1.json
guesser export runs/round1.json --out assets/models
# round 2, from round 1's models; the comparisons from scratch, distilled and wide
guesser train one cnn4_long --cache cache --out runs/cnn4_long         # 24
guesser train one cnn3_long --cache cache --out runs/cnn3_long         # 24
guesser train one family_cnn_long --cache cache --out runs/family_cnn_long   # 16
guesser train one cnn4_longer --cache cache --out runs/cnn4_longer     # 16, from runs/cnn4_long
guesser train one cnn4_scratch --cache cache --out runs/cnn4_scratch   # 36
guesser train one cnn3_scratch --cache cache --out runs/cnn3_scratch   # 24
guesser train one family_cnn_scratch --cache cache --out runs/family_cnn_scratch   # 24
guesser train one cnn4_wide --cache cache --out runs/cnn4_wide         # 8
guesser select runs/*/ --cache cache --out runs/round2.json
guesser export runs/round2.json --out assets/models --background cache
# round 3, from round 2's models: a fourth and fifth cycle, round 2 as teacher, widened models
guesser train one cnn4_longest --cache cache --out runs/cnn4_longest   # 16, from runs/cnn4_longer
guesser train one cnn4_kd2 --cache cache --out runs/cnn4_kd2           # 8 of 16, taught by runs/round2.json
guesser train one cnn4_wide2 --cache cache --out runs/cnn4_wide2       # 12, runs/cnn4_longer widened
guesser train one cnn3_wide2 --cache cache --out runs/cnn3_wide2       # 12, runs/cnn3_long widened
guesser train one cnn4_cycle5 --cache cache --out runs/cnn4_cycle5     # 12, from runs/cnn4_longest
guesser select runs/cnn4_longest runs/family_cnn_real --cache cache --out runs/round3.json
guesser train one cnn4_kd3 --cache cache --out runs/cnn4_kd3           # 12, as cycle5 + 0.2 x runs/round3.json
# round 4: a sixth cycle from runs/cnn4_cycle5 (the control, label smoothing twice, balanced
# sampling), and 36 epochs from scratch for cnn3 and the family CNN
guesser train one cnn4_cycle6 --cache cache --out runs/cnn4_cycle6     # 10
guesser train one cnn4_cycle6_ls --cache cache --out runs/cnn4_cycle6_ls   # 10, positives 0.9
guesser train one cnn4_cycle6_lsc --cache cache --out runs/cnn4_cycle6_lsc # 10, Coswara positives 0.8
guesser train one cnn4_cycle6_bal --cache cache --out runs/cnn4_cycle6_bal # 10, oversample_power 1
guesser train one cnn3_scratch36 --cache cache --out runs/cnn3_scratch36     # 36, from scratch
guesser train one family_cnn_scratch36 --cache cache --out runs/family_cnn_scratch36   # 36
# every run but the two label-smoothed ones (why: docs/training.md, round 4)
guesser select $(ls -d runs/*/ | grep -v _cycle6_ls) --cache cache --out runs/selected.json
guesser evaluate runs/selected.json --cache cache --groups ../shared/fsd50k-mini/sources.csv:origin
guesser export runs/selected.json --out assets/models --background cache   # + background.safetensors
python benchmarks/real_sounds.py runs/selected.json cache ../shared/fsd50k-mini/sources.csv:origin
python docs/model_cards.py --ensemble runs/ensemble_eval.json --before previous/ensemble_eval.json \\
    --goals docs/real_sounds.txt
```

Run them in that order: the `*_real` and `*_long` recipes start from whatever `assets/models/`
holds, so once an export has replaced it, rerunning them fine-tunes the newer models again (keep a
copy of the previous `assets/models/` as `previous/` for `--before`).

`--background cache` embeds 2,500 random train clips with the exported models into
`assets/models/background.safetensors` (4.5 MB): what `guesser teach` fits a personal label against.

**Numbers on fsd50k-mini are not comparable to published FSD50K results** (a different, smaller,
partly synthetic corpus; see its README), nor with earlier versions of this page (another eval
split: before the kitchen part it had 1,409 clips; `benchmarks/real_sounds.py` reports both).
"""

LIMITS = """## Limits (all models)

* **Labels never seen in training** ({unseen} of 200) are still scored, but the scores carry no
  knowledge: the corpus has no clip of them. `guesser play`'s game only draws targets from labels
  the models were trained on. Unseen: {unseen_list}.
* **Synthetic parts of the corpus**: musical instruments are General-MIDI renders (one SoundFont):
  real instruments are recognised less well than the eval numbers suggest. Speech now includes
  2,200 real recordings (five sources, many speakers, four languages), but children's voices,
  singing, whispering and shouting are still absent.
* **Band-limited classes**: ESC-50-derived clips (laughter, footsteps, keyboard typing, knock,
  sneezing, …) exist in training only as 8 kHz band-limited copies (coughs and breathing now also
  come from Coswara's real phone and laptop recordings). Training band-limits
  other clips at random and synthesises a high band for these (`bandlimit_p`, `hf_fill_p`), so a
  full-band microphone recording is not rejected for having treble; the eval split has no clip of
  these classes, so how well this works is not measured here.
* **CNN6 is not shipped.** `cnn6_families` (PANNs CNN6 trained from scratch for 14 epochs, val
  family mAP 0.64 where the family CNN has 0.93) had weight 0 in the previous ensemble while
  costing 11.9 of its 13.4 GFLOP per clip; it was not retrained on the new corpus and is not
  among the selected models. `guesser train one cnn6_families --pretrained Cnn6_mAP=0.343.pth`
  with official PANNs weights is the way to make it earn a place.
* **"Not sure".** Below a top score of {min_top:.2f} (calibrated on val: the label shown first is
  right for {precision:.0%} of the val clips above it, {coverage:.0%} of them) the app and
  `classify` say "not sure — maybe X or Y" (JSON: `"confident": false`, `"maybe"`).
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
    lines.append(f"| weight in the ensemble | {entry.ensemble_weight:g} (times forward selection on val picked it) |")
    init = t.get("init")
    if init:
        start = (f"the previously shipped {meta.member} model (`train.init = \"shipped\"`)" if init == "shipped"
                 else f"`{init}` (`train.init`: the run's previous cycle)")
        lines.append(f"| started from | {start} |")
    return "\n".join(lines) + "\n"


def group_rows(result: EvalResult | None) -> dict:
    g = (result.groups if result is not None else None) or {}
    rows = dict(sorted((g.get("groups") or {}).items()))
    if "real" in g:
        rows["real recordings"] = g["real"]
    return rows


def ensemble_section(path: Path | None, before: Path | None = None, goals: Path | None = None) -> str:
    if path is None or not path.is_file():
        return ""
    data = EvalResult.read(path)
    old = EvalResult.read(before) if before is not None and before.is_file() else None
    s = data.summary
    out = ["## The ensemble", "",
           "Label probabilities and family scores are weighted means over the selected models (weights from",
           "the selection; see docs/inference.md). On the eval split"
           + (f", with the previously shipped ensemble ({', '.join(old.models or ())}) scored on the same clips:"
              if old else ":"), "",
           "| ensemble | mAP | d' | lwlrap | family mAP | F1 macro |", "|---|---|---|---|---|---|",
           f"| **shipped** | **{fmt(s.map)}** | {fmt(s.d_prime)} | {fmt(s.lwlrap)} | "
           f"{fmt(s.family_map)} | {fmt(s.f1_macro)} |"]
    if old:
        o = old.summary
        out.append(f"| previous | {fmt(o.map)} | {fmt(o.d_prime)} | {fmt(o.lwlrap)} | "
                   f"{fmt(o.family_map)} | {fmt(o.f1_macro)} |")
    out.append("")
    rows, old_rows = group_rows(data), group_rows(old)
    if rows:
        out += ["Per source (`guesser evaluate --groups sources.csv:origin`; mAP ranks a source's clips among every",
                "other clip without the label; top-1 and top family are the highest-scored label and family):", "",
                "| origin | clips | mAP | lwlrap | top-1 | top family | previous: mAP / top-1 / top family |",
                "|---|---|---|---|---|---|---|"]
        for name, m in rows.items():
            p = old_rows.get(name, {})
            prev = f"{fmt(p.get('map'))} / {fmt(p.get('top1'))} / {fmt(p.get('top_family'))}" if p else "–"
            shown = f"**{name}**" if name == "real recordings" else name
            out.append(f"| {shown} | {m.get('clips')} | {fmt(m.get('map'))} | {fmt(m.get('lwlrap'))} | "
                       f"{fmt(m.get('top1'))} | {fmt(m.get('top_family'))} | {prev} |")
        out.append("")
    if goals is not None and goals.is_file():
        out += ["The goals, from `python benchmarks/real_sounds.py` (shipped, then previous):", "", "```",
                goals.read_text().strip(), "```", ""]
    fw = data.family_weights
    if fw:
        chosen = ", ".join(f"{n} {w:g}" for n, w in fw["chosen"].items())
        out += [f"Family models' weights in the family ranking (label models 1), chosen on val among "
                f"{fw['combinations_tried']} combinations: {chosen}. Val family mAP {fmt(fw['val_family_map'])} "
                f"(equal weights: {fmt(fw['val_family_map_equal_weights'])}); eval family mAP above "
                f"(equal weights: {fmt(fw.get('eval_family_map_equal_weights'))}).", ""]
    labels = data.labels
    if labels:
        ap = [(n, a, p) for n, a, p in zip(labels.names, labels.ap, labels.positives) if p and a is not None]
        ap.sort(key=lambda x: x[1])
        out += ["Worst labels by AP on eval: " + ", ".join(f"{n.replace('_', ' ')} {a:.2f}" for n, a, _ in ap[:8]) + ".",
                "Best: " + ", ".join(f"{n.replace('_', ' ')} {a:.2f}" for n, a, _ in ap[-6:][::-1]) + ".", ""]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index", nargs="?", type=Path, default=ROOT / "assets" / "models" / "index.json")
    ap.add_argument("--ensemble", type=Path, default=None, help="ensemble_eval.json from guesser evaluate")
    ap.add_argument("--before", type=Path, default=None, help="the previous ensemble's ensemble_eval.json, same split")
    ap.add_argument("--goals", type=Path, default=None, help="benchmarks/real_sounds.py output to quote")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "models.md")
    args = ap.parse_args()
    index = ModelsIndex.read(args.index)
    paths = [(path, e) for (path, _), e in zip(index.checkpoints(args.index.parent), index.models)]
    metas = [read_model_meta(p) for p, _ in paths]
    seen = set().union(*(set(m.trained_labels or ()) for m in metas if m.task == "labels"))
    names = default_label_space().vocabulary.names
    unseen = [n.replace("_", " ") for n in names if n not in seen]
    hours = sum(m.trained_seconds or 0 for m in metas) / 3600
    text = INTRO.format(hours=hours) + "\n" + ensemble_section(args.ensemble, args.before, args.goals)
    text += "\n".join(card(p, e) for p, e in paths) + "\n"
    rule = index.confidence or {}
    text += LIMITS.format(unseen=len(unseen), unseen_list=", ".join(unseen), min_top=rule.get("min_top_score", 0.0),
                          precision=rule.get("val_precision") or 0.0, coverage=rule.get("val_coverage") or 0.0)
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
