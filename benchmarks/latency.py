"""How soon after a sound starts does ``guesser listen`` name it? End to end, through a virtual microphone.

    python benchmarks/latency.py [--corpus /work/shared/fsd50k-mini] [--hop 0.25] [--seconds 6] [--simulate]

Clips: the six demo clips (assets/demo) and six corpus eval clips of other
classes, each the first eval clip (1–10 s long) of a new label that the
shipped ensemble recognises from the file itself (a label of the clip in its
top 3): latency is measured on sounds the models can name, not on
recognition. Each clip (its first 4 s) is placed in a scene after 7 s of
digital silence (longer than the window, so every clip starts from a silent
window), at a random fraction of a hop, and its onset is the first 10 ms
whose RMS is within 30 dB of the clip's loudest.

Default: the scene is played with ``paplay -d vsink`` into the virtual
microphone (tests/e2e/setup_virtual_mic.sh) while ``guesser listen --json
--device pulse`` runs as a subprocess; each JSON line is stamped when it
arrives. Latency = arrival of the first line whose answer is right - (the
moment paplay was started + the onset's place in the scene). It includes
paplay's start, PulseAudio, PortAudio's blocks, the hop, the models and the
pipe. ``--simulate`` feeds the same scene to :func:`guesser.live.LiveScorer`
hop by hop without a microphone (latency = hop end - onset + compute time):
for choosing settings without audio hardware.

Printed: per clip the time to the first correct top family and to the first
correct label in the top 3, then the medians against the goals (0.35 s and
0.6 s). The baseline in the same run: the same listener at the previous
default hop (half the 6 s window: ``--hop 3``), unless ``--no-baseline``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import cpu_name  # noqa: E402
from guesser.audio import load_audio  # noqa: E402
from guesser.ensemble import Ensemble  # noqa: E402
from guesser.events import label_families  # noqa: E402
from guesser.features import resample  # noqa: E402

SR = 44100  # the virtual microphone's rate (PulseAudio's default)
GAP_SECONDS = 7.0
CLIP_SECONDS = 4.0
GOAL_FAMILY, GOAL_TOP3 = 0.35, 0.6


@dataclass
class Clip:
    name: str
    samples: np.ndarray  # mono float32 at SR
    labels: set[str]
    families: set[str]
    onset: float = 0.0  # seconds into the clip
    at: float = 0.0  # onset's place in the scene, seconds


def clip_families(labels: set[str], names: tuple[str, ...], fams: tuple[str, ...]) -> set[str]:
    return {fams[names.index(n)] for n in labels if n in names}


def onset_of(x: np.ndarray, sr: int) -> float:
    frame = sr // 100
    rms = np.sqrt(np.mean(x[: len(x) // frame * frame].reshape(-1, frame) ** 2, axis=1) + 1e-20)
    db = 20 * np.log10(rms)
    return float(np.argmax(db >= db.max() - 30) * frame / sr)


def pick_clips(ensemble: Ensemble, corpus: Path | None, n_corpus: int = 6) -> list[Clip]:
    names = ensemble.label_names
    fams = label_families(names)
    clips: list[Clip] = []
    used: set[str] = set()  # each clip's first (most specific) label: one clip per class
    with (ROOT / "assets" / "demo.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            labels = [s.strip() for s in row["labels"].split(",")]
            clips.append(_clip(row["file"], ROOT / "assets" / "demo" / row["file"], set(labels), names, fams))
            used.add(labels[0])
    if corpus is None:
        return clips
    with (corpus / "FSD50K.ground_truth" / "eval.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        labels = set(row["labels"].split(","))
        first = row["labels"].split(",")[0]
        if first in used:
            continue
        path = corpus / "FSD50K.eval_audio" / f"{row['fname']}.ogg"
        audio = load_audio(path)
        if not 1.0 <= audio.duration <= 10.0:
            continue
        top3 = {s.name for s in ensemble.predict(audio.samples, audio.sample_rate).labels[:3]}
        if not top3 & labels:
            continue
        used.add(first)
        clips.append(_clip(f"eval/{row['fname']} ({first})", path, labels, names, fams))
        if len(clips) >= 6 + n_corpus:
            break
    return clips


def _clip(name: str, path: Path, labels: set[str], names, fams) -> Clip:
    audio = load_audio(path)
    x = resample(torch.from_numpy(audio.samples.mean(axis=0)), audio.sample_rate, SR).numpy()[: int(CLIP_SECONDS * SR)]
    x = (x / max(1e-6, float(np.abs(x).max())) * 0.5).astype(np.float32)  # the same loudness for every clip
    return Clip(name, x, labels, clip_families(labels, names, fams), onset_of(x, SR))


def build_scene(clips: list[Clip], hop: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts, pos = [], 0
    for c in clips:
        gap = int((GAP_SECONDS + rng.uniform(0, hop)) * SR)
        parts += [np.zeros(gap, np.float32), c.samples]
        c.at = (pos + gap) / SR + c.onset
        pos += gap + len(c.samples)
    parts.append(np.zeros(int(2 * SR), np.float32))
    return np.concatenate(parts)


def correct(doc: dict, clip: Clip) -> tuple[bool, bool]:
    if "families" not in doc:
        return False, False
    family = doc["families"][0]["family"] in clip.families
    top3 = bool({d["label"] for d in doc["labels"][:3]} & clip.labels)
    return family, top3


def latencies(lines: list[tuple[float, dict]], clips: list[Clip]) -> list[tuple[float | None, float | None]]:
    """(arrival, JSON) lines and clips (``at`` on the same clock) -> per clip (to family, to top-3 label)."""
    out = []
    for i, c in enumerate(clips):
        until = clips[i + 1].at - clips[i + 1].onset if i + 1 < len(clips) else float("inf")
        fam = top = None
        for t, doc in lines:
            if t < c.at or t >= until:
                continue
            f, k = correct(doc, c)
            if f and fam is None:
                fam = t - c.at
            if k and top is None:
                top = t - c.at
        out.append((fam, top))
    return out


def simulate(ensemble: Ensemble, scene: np.ndarray, seconds: float, hop: float) -> list[tuple[float, dict]]:
    from guesser.live import LiveScorer
    from guesser.recorder import Level

    torch.set_num_threads(1)  # as guesser.live.listen runs
    scorer = LiveScorer(ensemble, SR, seconds)
    step, n = int(hop * SR), int(seconds * SR)
    lines = []
    end = step
    while end <= len(scene):
        window = scene[max(0, end - n): end]
        t0 = time.perf_counter()
        scorer.feed(window, end)
        pred = None if Level.of(window).silent else scorer.predict()
        spent = time.perf_counter() - t0
        lines.append((end / SR + spent, pred.to_json(top_k=3) if pred is not None else {"silent": True}))
        end += step
    return lines


def through_microphone(scene: np.ndarray, seconds: float, hop: float, models: list[str]) -> list[tuple[float, dict]]:
    import soundfile as sf

    cmd = [sys.executable, "-m", "guesser", "listen", "--json", "--device", "pulse", "--top-k", "3",
           "--seconds", str(seconds), "--hop", str(hop)] + [a for m in models for a in ("--models", m)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[tuple[float, dict]] = []
    first = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append((time.monotonic(), json.loads(line)))
            first.set()
        first.set()

    threading.Thread(target=read, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "scene.wav"
        sf.write(wav, scene, SR, subtype="FLOAT")
        try:
            if not first.wait(180) or proc.poll() is not None:
                raise SystemExit(f"guesser listen did not start: {proc.stderr.read()}")
            time.sleep(1.0)
            t_play = time.monotonic()
            subprocess.run(["paplay", "-d", "vsink", str(wav)], check=True)
            time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(30)
    return [(t - t_play, doc) for t, doc in lines]


def report(title: str, clips: list[Clip], lat: list[tuple[float | None, float | None]]) -> tuple[float, float]:
    print(f"\n{title}")
    print(f"{'clip':42s} {'onset':>6s} {'family':>8s} {'top-3':>8s}")
    for c, (f, k) in zip(clips, lat):
        fmt = lambda v: "never" if v is None else f"{v:.2f} s"  # noqa: E731
        print(f"{c.name[:42]:42s} {c.onset:5.2f}s {fmt(f):>8s} {fmt(k):>8s}")
    never = float("inf")
    fam = statistics.median([f if f is not None else never for f, _ in lat])
    top = statistics.median([k if k is not None else never for _, k in lat])
    print(f"median time to the first correct family: {fam:.2f} s (goal <= {GOAL_FAMILY} s); "
          f"to a correct label in the top 3: {top:.2f} s (goal <= {GOAL_TOP3} s)   [never counts as infinite]")
    return fam, top


def main() -> None:
    from guesser.live import LIVE_HOP_SECONDS, LIVE_WINDOW_SECONDS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path("/work/shared/fsd50k-mini"))
    ap.add_argument("--hop", type=float, default=LIVE_HOP_SECONDS)
    ap.add_argument("--seconds", type=float, default=LIVE_WINDOW_SECONDS)
    ap.add_argument("--models", action="append", default=[])
    ap.add_argument("--simulate", action="store_true", help="no microphone: feed the live scorer directly")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--also-hop", type=float, action="append", default=[], help="more hops to try (same window)")
    args = ap.parse_args()
    ensemble = Ensemble.load(args.models or None)
    clips = pick_clips(ensemble, args.corpus if args.corpus.is_dir() else None)
    print(f"{cpu_name()}; {len(clips)} clips, {len(clips)} classes; "
          f"{'simulated' if args.simulate else 'virtual microphone'}")
    runs = [(args.seconds, args.hop)] + [(args.seconds, h) for h in args.also_hop] + \
        ([] if args.no_baseline else [(6.0, 3.0)])
    for seconds, hop in runs:
        scene = build_scene(clips, hop)
        lines = simulate(ensemble, scene, seconds, hop) if args.simulate else \
            through_microphone(scene, seconds, hop, args.models)
        report(f"window {seconds:g} s, hop {hop:g} s", clips, latencies(lines, clips))


if __name__ == "__main__":
    main()
