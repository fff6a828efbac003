"""Sound events against scenes with known answers: DCASE event-based F1 with a 0.25 s onset collar.

    python benchmarks/scenes.py DATA_ROOT --split val --tune      # choose window/hop/EventRules on val
    python benchmarks/scenes.py DATA_ROOT --split eval            # report the defaults on eval

A scene is ``--clips`` corpus clips of the split (one sound each: labels that are
one label and its ancestors, as a clip with two unrelated labels holds two sounds
at unknown times; 0.3–8 s, leading and trailing quiet trimmed at 40 dB under the
clip's peak, so the reference onset is where the sound starts) laid end to end with 1–4 s between them, over a bed of silence
(``--bed silence``: -90 dBFS white noise) or low noise (``--bed noise``: pink
noise at -50 dBFS RMS). The reference events are each clip's labels (FSD50K's
ground truth, ancestors included) from its start to its end; at the family level,
its families (guesser.labels). The system's events are ``guesser classify
--events``' (:class:`guesser.sed.EventFeed` over :meth:`Ensemble.predict`), and
family events are its label events grouped by family (overlaps joined).

Scored with :mod:`trainer.event_metrics` (sed_eval's definitions): overall F1
with the onset collar only (the goal: >= 0.70 families, >= 0.50 labels), and
with DCASE's offset condition too. ``--tune`` scores every sub-window setting
(rows recorded once per scene) and a grid of EventRules on them, and prints
the best by family F1 + label F1. docs/benchmarks.md records the output.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guesser.audio import load_audio  # noqa: E402
from guesser.ensemble import Ensemble  # noqa: E402
from guesser.events import EventRules, detect_events, label_families  # noqa: E402
from guesser.features import to_mono  # noqa: E402
from guesser.labels import FAMILIES_6  # noqa: E402
from guesser.sed import EventFeed, EventSettings  # noqa: E402
from guesser.scoring import batches, model_probs, windows  # noqa: E402
from trainer.event_metrics import EventBasedMetrics, Span, merge_spans  # noqa: E402
from trainer.fsd50k import Fsd50k  # noqa: E402

SR = 22050


def trim(x: np.ndarray, sr: int, below_db: float = 40.0) -> np.ndarray:
    """The clip from its first to its last 10 ms frame within ``below_db`` of its loudest."""
    hop = sr // 100
    n = len(x) // hop
    if n < 2:
        return x
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > -below_db)
    return x[loud[0] * hop : (loud[-1] + 1) * hop]


def bed(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "silence":
        return (rng.standard_normal(n) * 10 ** (-90 / 20)).astype(np.float32)
    from scipy.signal import lfilter

    # pink (1/f power) noise: white noise through J. O. Smith's 3-pole/3-zero approximation
    x = lfilter([0.049922035, -0.095993537, 0.050612699, -0.004408786], [1, -2.494956002, 2.017265875, -0.522189400],
                rng.standard_normal(n))
    return (x / np.sqrt(np.mean(x ** 2)) * 10 ** (-50 / 20)).astype(np.float32)


def one_sound(labels: tuple[int, ...], space) -> bool:
    """A clip whose labels are one sound and its ancestors (*Bark, Dog, Animal*): its timing is known.

    A clip labelled *Gunshot* and *Female speech* holds two sounds at unknown times; weak
    (clip-level) labels give both the clip's extent, which no detector could match."""
    names = [space.vocabulary.names[i] for i in labels]
    return all(space.related(a, b) for a in names for b in names)


def build_scenes(root: Path, split: str, n_scenes: int, per_scene: int, kind: str, seed: int):
    """[(waveform at 22.05 kHz, [(label names, onset, offset)])] from the split's one-sound clips."""
    data = Fsd50k.open(root)
    names = data.vocabulary.names
    rng = np.random.default_rng(seed)
    clips = [c for c in data.splits[split].clips if c.path is not None and one_sound(c.labels, data.labels)]
    order = rng.permutation(len(clips))
    scenes, k = [], 0
    for _ in range(n_scenes):
        parts, refs, t = [], [], float(rng.uniform(1.0, 2.0))
        while len(refs) < per_scene and k < len(order):
            c = clips[order[k]]
            k += 1
            a = load_audio(c.path)
            x = to_mono(a.samples).numpy()
            if a.sample_rate != SR:
                from guesser.features import resample
                import torch

                x = resample(torch.from_numpy(x), a.sample_rate, SR).numpy()
            x = trim(x, SR)
            if not 0.3 <= len(x) / SR <= 8.0:
                continue
            parts.append((t, x))
            refs.append((tuple(names[i] for i in c.labels), t, t + len(x) / SR))
            t += len(x) / SR + float(rng.uniform(1.0, 4.0))
        out = bed(kind, int((t + 1.0) * SR), rng)
        for at, x in parts:
            i = int(round(at * SR))
            out[i : i + len(x)] += x
        scenes.append((out, refs))
    return scenes


def reference_spans(refs, family_of) -> tuple[list[Span], list[Span]]:
    labels = [Span(n, a, b) for names, a, b in refs for n in names]
    fams = [Span(f, a, b) for names, a, b in refs for f in sorted({family_of[n] for n in names})]
    return labels, fams


def rows_for(ens: Ensemble, wav: np.ndarray, settings: EventSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fused per-hop scores of one scene (what EventFeed tracks), recorded: times, labels, families."""
    import torch

    feed = EventFeed(ens, settings, record=True)
    logmels = ens._log_mels(torch.from_numpy(wav), SR)
    for i, m in enumerate(ens.models):
        sub = windows(logmels[m.features.key], m.features, settings.hop, settings.window)
        feed.add(i, list(sub.starts), model_probs(m.module, batches([sub], 32), m.task).probs)
    return np.asarray(feed.times), torch.stack(feed.scores).numpy(), torch.stack(feed.family_scores).numpy()


def score(scenes, recorded, rules: EventRules, names, families, family_of, collar: float, stride: int = 1,
          shift: float = 0.0):
    """Overall counts over the scenes: (families grouped from label events, families tracked on the fused
    family scores, labels), each with the onset collar only, then with the offset condition too.

    ``shift`` moves every row but the first later (an anchor past the sub-window's centre)."""
    metrics = [EventBasedMetrics(collar, offset=off) for off in (False, True) for _ in range(3)]
    for (wav, refs), (times, rows, fam_rows) in zip(scenes, recorded):
        times, rows, fam_rows = times[::stride].copy(), rows[::stride], fam_rows[::stride]
        times[1:] += shift
        end = len(wav) / SR
        events = detect_events(times, rows, names, families, rules, t_end=end)
        est_labels = [Span(e.label, e.start, e.end) for e in events]
        est_grouped = merge_spans(Span(e.family, e.start, e.end) for e in events)
        est_tracked = [Span(e.label, e.start, e.end)
                       for e in detect_events(times, fam_rows, FAMILIES_6, FAMILIES_6, rules, t_end=end)]
        ref_labels, ref_fams = reference_spans(refs, family_of)
        for i, m in enumerate(metrics):
            m.evaluate(*[(ref_fams, est_grouped), (ref_fams, est_tracked), (ref_labels, est_labels)][i % 3])
    return tuple(m.overall for m in metrics)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    ap.add_argument("--split", default="eval", choices=["val", "eval"])
    ap.add_argument("--scenes", type=int, default=30)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--bed", default="noise", choices=["noise", "silence"])
    ap.add_argument("--collar", type=float, default=0.25)
    ap.add_argument("--also-collars", nargs="*", type=float, default=[],
                    help="also print the defaults' F1 with these onset collars (how much is timing, how much naming)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tune", action="store_true")
    ap.add_argument("--windows", nargs="*", type=float, default=[0.5, 1.0, 2.0])
    args = ap.parse_args()
    ens = Ensemble.load()
    names = ens.label_names
    families = label_families(names)
    family_of = dict(zip(names, families))
    t0 = time.perf_counter()
    scenes = build_scenes(args.root, args.split, args.scenes, args.clips, args.bed, args.seed)
    audio = sum(len(w) for w, _ in scenes) / SR
    n_refs = sum(len(r) for _, r in scenes)
    print(f"{args.split}: {len(scenes)} scenes, {n_refs} clips, {audio:.0f} s, bed {args.bed} "
          f"(built in {time.perf_counter() - t0:.0f} s); onset collar {args.collar} s")
    default = EventSettings()
    settings = [EventSettings(window=w, hop=0.25, anchor=default.anchor) for w in args.windows] if args.tune else [default]
    grid = ([EventRules(on, off, d, g) for on, off, d, g in itertools.product(
        (0.5, 0.6, 0.7, 0.8, 0.9), (0.1, 0.2, 0.3), (0.0, 0.25), (0.5, 1.0))] if args.tune else [default.rules])
    print(f"{'window':>6} {'hop':>5} {'anchor':>6} {'on':>4} {'off':>4} {'min dur':>7} {'min gap':>7} "
          f"{'fam F1':>6} {'famT F1':>7} {'lab F1':>6} {'fam P':>5} {'fam R':>5} {'lab P':>5} {'lab R':>5} "
          f"{'+offset: fam':>12} {'famT':>5} {'lab':>5} {'x real time':>11}")
    best: dict[str, tuple] = {}
    anchors = (0.5, 0.75, 1.0) if args.tune else (default.anchor,)
    default_row = (default.window, default.hop, default.anchor, default.rules)
    for s in settings:
        t0 = time.perf_counter()
        recorded = [rows_for(ens, w, s) for w, _ in scenes]
        speed = audio / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for stride, anchor, rules in itertools.product((1, 2) if args.tune else (1,), anchors, grid):
            fam, famt, lab, fam_off, famt_off, lab_off = score(
                scenes, recorded, rules, names, families, family_of, args.collar, stride, (anchor - s.anchor) * s.window)
            row = (f"{s.window:6.2f} {s.hop * stride:5.2f} {anchor:6.2f} {rules.on:4.2f} {rules.off:4.2f} "
                   f"{rules.min_duration:7.2f} {rules.min_gap:7.2f} {fam.f1:6.3f} {famt.f1:7.3f} {lab.f1:6.3f} "
                   f"{fam.precision:5.2f} {fam.recall:5.2f} {lab.precision:5.2f} {lab.recall:5.2f} "
                   f"{fam_off.f1:12.3f} {famt_off.f1:5.3f} {lab_off.f1:5.3f} {speed * stride:11.1f}")
            for key, value in (("families + labels", fam.f1 + lab.f1), ("tracked families + labels", famt.f1 + lab.f1),
                               ("labels", lab.f1)):
                if key not in best or value > best[key][0]:
                    best[key] = (value, row)
            if not args.tune or (s.window, s.hop * stride, anchor, rules) == default_row:
                print(row, flush=True)
        if args.tune:
            print(f"  ({time.perf_counter() - t0:.0f} s for the rules grid)", flush=True)
        for collar in args.also_collars:
            fam, famt, lab, *_ = score(scenes, recorded, default.rules, names, families, family_of, collar)
            print(f"onset collar {collar:.2f} s: family F1 {fam.f1:.3f} (P {fam.precision:.2f} R {fam.recall:.2f}), "
                  f"tracked families {famt.f1:.3f}, label F1 {lab.f1:.3f} (P {lab.precision:.2f} R {lab.recall:.2f})",
                  flush=True)
    for key, (_, row) in best.items():
        print(f"best by {key}:\n{row}")


if __name__ == "__main__":
    main()
