"""A tiny, synthetic FSD50K-layout tree for tests (no download, no ../shared).

The tree has FSD50K's exact layout and CSV formats, the real 200-row
vocabulary (``guesser/data/vocabulary.csv``) and labels propagated to their
in-vocabulary ancestors, leaf first, as FSD50K does. Its audio is synthesised
so that every class *sounds* different (a small model can learn it):

=========  =============================================  ================================
class      sound                                          labels (leaf, then ancestors)
=========  =============================================  ================================
piano      harmonic tone (fundamental 220-880 Hz), decay   Piano + Keyboard/Musical/Music
rain       white noise                                     Rain + Water
bark       short 700 Hz bursts in silence                  Bark + Dog/Domestic/Animal
engine     low 60-120 Hz hum with harmonics                Engine
bark+piano the sum of the two (a two-family clip)          the union
=========  =============================================  ================================

Files come in several encodings, rates and channel counts (WAV 16-bit and
float, FLAC, OGG/Vorbis; 16/22.05/44.1/48 kHz; mono and stereo) and lengths
from 0.3 s to 7 s (shorter and longer than the 6 s model window), so the data
layer and the cache meet what FSD50K and user files contain.

``write_fsd_tree(root, bad=True)`` adds the failure cases a cache builder must
survive: an undecodable file, a 0-byte file, a WAV with a header but no
samples, and a CSV row whose audio file does not exist.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from guesser.labels import default_label_space

CLASSES: dict[str, tuple[str, ...]] = {
    "piano": ("Piano",),
    "rain": ("Rain",),
    "bark": ("Bark",),
    "engine": ("Engine",),
    "mix": ("Bark", "Piano"),
}

# (extension, soundfile subtype, sample rate, channels): cycled over the clips.
FORMATS: tuple[tuple[str, str, int, int], ...] = (
    ("wav", "PCM_16", 22050, 1),
    ("flac", "PCM_16", 44100, 2),
    ("ogg", "VORBIS", 22050, 1),
    ("wav", "FLOAT", 48000, 2),
    ("wav", "PCM_16", 16000, 1),
    ("ogg", "VORBIS", 44100, 1),
)
# 7 lengths against 6 formats and 5 classes: every class meets every length and format.
DURATIONS: tuple[float, ...] = (1.0, 2.5, 0.3, 7.0, 1.7, 4.0, 0.8)


@dataclass(frozen=True)
class FakeClip:
    fname: str
    split: str  # train | val | eval
    cls: str
    labels: tuple[str, ...]  # leaf first, then in-vocabulary ancestors
    path: Path
    sample_rate: int
    channels: int
    seconds: float


@dataclass
class FsdTree:
    """What ``write_fsd_tree`` wrote: the root and every clip in CSV order (dev rows, then eval rows)."""

    root: Path
    clips: list[FakeClip] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)  # fname -> why it cannot be cached

    def split(self, name: str) -> list[FakeClip]:
        return [c for c in self.clips if c.split == name]

    @property
    def ground_truth(self) -> Path:
        return self.root / "FSD50K.ground_truth"


def propagate(leaves: tuple[str, ...]) -> tuple[str, ...]:
    """Leaves, then their in-vocabulary ancestors (each once), as FSD50K lists labels."""
    space = default_label_space()
    names = space.vocabulary.names
    out = list(leaves)
    for leaf in leaves:
        for a in space.ancestors[space.vocabulary.index[leaf]]:
            if names[a] not in out:
                out.append(names[a])
    return tuple(out)


def synth(cls: str, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [samples] in [-1, 1] that sounds like ``cls`` (see the module table)."""
    n = max(1, int(round(seconds * sr)))
    t = np.arange(n) / sr
    if cls == "piano":
        f0 = rng.uniform(220, 880)
        x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5) if k * f0 < sr / 2)
        x = x * np.exp(-t * rng.uniform(0.5, 2.0))
    elif cls == "rain":
        x = rng.standard_normal(n) * 0.3
    elif cls == "bark":
        x = np.zeros(n)
        gate = (np.mod(t, 0.4) < 0.12).astype(float)
        x = np.sin(2 * np.pi * 700 * t) * gate + 0.5 * np.sin(2 * np.pi * 1400 * t) * gate
    elif cls == "engine":
        f0 = rng.uniform(60, 120)
        x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 8))
    elif cls == "mix":
        x = synth("bark", seconds, sr, rng) + synth("piano", seconds, sr, rng)
    else:  # pragma: no cover - a typo in a test
        raise ValueError(cls)
    x = np.asarray(x, np.float64)
    return (0.7 * x / max(np.abs(x).max(), 1e-9)).astype(np.float32)


def write_fsd_tree(
    root: Path,
    *,
    per_class: tuple[int, int, int] = (5, 2, 2),
    classes: tuple[str, ...] = tuple(CLASSES),
    bad: bool = False,
    seed: int = 0,
) -> FsdTree:
    """Write an FSD50K-layout tree under ``root``; ``per_class`` = (train, val, eval) clips per class.

    The default (5 classes x 9 clips = 45 clips, ~2.5 s each) decodes and
    log-mels in about a second on one core.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    gt = root / "FSD50K.ground_truth"
    dev_dir, eval_dir = root / "FSD50K.dev_audio", root / "FSD50K.eval_audio"
    for d in (gt, dev_dir, eval_dir):
        d.mkdir(parents=True, exist_ok=True)
    vocab_src = Path(__file__).resolve().parents[1] / "guesser" / "data" / "vocabulary.csv"
    (gt / "vocabulary.csv").write_bytes(vocab_src.read_bytes())
    space = default_label_space()
    mid_of = dict(zip(space.vocabulary.names, space.vocabulary.mids))

    tree = FsdTree(root)
    k = 0
    fname = 1000
    for split, count in zip(("train", "val", "eval"), per_class):
        for _ in range(count):
            for cls in classes:
                ext, subtype, sr, ch = FORMATS[k % len(FORMATS)]
                seconds = DURATIONS[k % len(DURATIONS)]
                k += 1
                fname += int(rng.integers(1, 50))
                x = synth(cls, seconds, sr, rng)
                data = np.stack([x, 0.8 * x], axis=1) if ch == 2 else x
                path = (eval_dir if split == "eval" else dev_dir) / f"{fname}.{ext}"
                sf.write(path, data, sr, subtype=subtype)
                tree.clips.append(FakeClip(str(fname), split, cls, propagate(CLASSES[cls]), path, sr, ch, seconds))

    if bad:
        fname += 1
        garbage = dev_dir / f"{fname}.wav"
        garbage.write_bytes(b"RIFF\x00\x00\x00\x00not really a wav file" * 10)
        tree.clips.append(FakeClip(str(fname), "train", "rain", propagate(("Rain",)), garbage, 0, 0, 0.0))
        tree.bad[str(fname)] = "cannot decode"
        fname += 1
        empty = dev_dir / f"{fname}.ogg"
        empty.write_bytes(b"")
        tree.clips.append(FakeClip(str(fname), "train", "rain", propagate(("Rain",)), empty, 0, 0, 0.0))
        tree.bad[str(fname)] = "cannot decode"
        fname += 1
        no_samples = eval_dir / f"{fname}.wav"
        sf.write(no_samples, np.zeros(0, np.float32), 22050, subtype="PCM_16")
        tree.clips.append(FakeClip(str(fname), "eval", "rain", propagate(("Rain",)), no_samples, 22050, 1, 0.0))
        tree.bad[str(fname)] = "empty audio"
        fname += 1
        tree.clips.append(FakeClip(str(fname), "val", "rain", propagate(("Rain",)), dev_dir / f"{fname}.wav", 0, 0, 0.0))
        tree.bad[str(fname)] = "audio file not found"

    # FSD50K's dev.csv interleaves train and val rows: so does this one (seeded).
    dev = [c for c in tree.clips if c.split != "eval"]
    dev = [dev[i] for i in rng.permutation(len(dev))]
    tree.clips = dev + [c for c in tree.clips if c.split == "eval"]

    def row(c: FakeClip) -> list[str]:
        return [c.fname, ",".join(c.labels), ",".join(mid_of[n] for n in c.labels)]

    with (gt / "dev.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fname", "labels", "mids", "split"])
        for c in tree.clips:
            if c.split != "eval":
                w.writerow(row(c) + [c.split])
    with (gt / "eval.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fname", "labels", "mids"])
        for c in tree.clips:
            if c.split == "eval":
                w.writerow(row(c))
    return tree
