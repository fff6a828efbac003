"""Write an FSD50K-shaped tree at FSD50K's size, for a dress rehearsal of the whole training flow.

    python benchmarks/make_fsd50k_scale.py OUT [--clips 51197] [--source ROOT] [--jobs 2]
    python benchmarks/make_fsd50k_scale.py OUT --subset-of BIG --clips 10240

Nothing in it is FSD50K; it only has FSD50K's shape, so that preprocessing,
the cache, training, evaluation and the report meet what the real 51,197 clips
(108 hours, ~34 GB of WAV) would put in front of them:

* the release's layout and CSV formats: ``FSD50K.ground_truth/vocabulary.csv``
  (``idx,label,mid``, no header, all 200 labels), ``dev.csv``
  (``fname,labels,mids,split``), ``eval.csv`` (``fname,labels,mids``), 16-bit
  44.1 kHz mono WAV in ``FSD50K.dev_audio/`` and ``FSD50K.eval_audio/``;
  ``ontology.json`` copied from ``--source`` when it has one (guesser ships
  AudioSet's otherwise);
* FSD50K's split sizes, scaled to ``--clips`` (40,966 dev of which 4,170 val,
  10,231 eval), clip lengths from 0.3 to 30 s with a mean near 7.6 s and a
  pile-up at the 30 s cut, labels leaf-first with their in-vocabulary
  ancestors, every one of the 200 labels used with a long-tailed frequency;
* the real data's oddities: a few labels with exactly one eval clip, clips of
  exactly 30 s and of exactly 0.3 s, and a few corrupt files (empty, garbage,
  a WAV header cut short) that a build must skip and report.

The audio is tiled from real clips of ``--source`` (an FSD50K-layout root such
as ``fsd50k-mini``, OGG/WAV/FLAC at any rate), each clip from its own random
offset with its own gain plus a low noise floor, so the WAVs are real audio
that does not compress away; without ``--source`` every label gets a few
synthesised sounds (harmonics and filtered noise of its own) instead, so tests
need no data set. A label's clips are always tiled from that label's sources,
so a model can learn something. Everything is a function of ``--seed`` and
the clip's number: a rerun skips the WAVs that are already complete (resume),
and ``--jobs`` does not change a byte.

``--subset-of BIG`` writes a smaller root that reads BIG's audio (the two
audio folders are symlinks) with a seeded sample of its CSV rows, split sizes
kept in proportion: a 10k-clip tree for the size comparison costs no disk.
The tree is generated, never committed; ``scale.json`` lists what it holds.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

GT = "FSD50K.ground_truth"
DEV, EVAL = "FSD50K.dev_audio", "FSD50K.eval_audio"
RATE = 44100
FSD = {"clips": 51197, "dev": 40966, "val": 4170, "eval": 10231}  # the real release's counts
MIN_S, MAX_S = 0.3, 30.0
P_30S = 0.07  # share of clips cut at exactly 30 s (FSD50K's long Freesound uploads end at its cap)
LOGN_MEDIAN, LOGN_SIGMA = 4.0, 0.95  # the rest: lognormal, truncated to 0.3-30 s; mean of all ~ 7.6 s
N_SHORT = 30  # clips of exactly 0.3 s
N_LONG = 5  # clips of exactly 30 s even when --seconds-scale shortens the rest
N_RARE = 6  # labels with exactly one eval clip
P_MIX = 0.15  # clips that mix two labels' sounds (the union of their labels)
SOURCES_PER_LABEL = 6
NOISE_DB = -66.0


@dataclass
class ClipPlan:
    """One clip to write: where, how long, which sources; all decided before any audio is made."""

    index: int
    fname: str
    split: str  # train | val | eval
    seconds: float
    labels: list[str]  # vocabulary names, leaf first
    sources: list[int]  # indices into the source pool, mixed
    corrupt: str = ""  # "", "empty", "garbage", "header"


@dataclass
class Plan:
    clips: list[ClipPlan]
    vocabulary: list[tuple[str, str]]  # (label, mid) in vocabulary order
    rare_eval_labels: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- labels


def label_space(source: Path | None):
    """The vocabulary and ontology: --source's if it has them, else guesser's (the same 200 rows)."""
    from guesser.labels import LabelSpace, Ontology, Vocabulary, default_label_space

    space = default_label_space()
    if source is not None:
        vocab = Vocabulary.from_csv(source / GT / "vocabulary.csv")
        onto = source / "ontology.json"
        space = LabelSpace(vocab, Ontology.from_json(onto) if onto.is_file() else space.ontology)
    return space


def with_ancestors(space, leaves: list[int]) -> list[int]:
    """Leaves first, then their in-vocabulary ancestors, deepest first: FSD50K's order (never parent before child)."""
    depth = [len(a) for a in space.ancestors]
    out = list(dict.fromkeys(leaves))
    ups = {a for leaf in leaves for a in space.ancestors[leaf]} - set(out)
    return out + sorted(ups, key=lambda a: (-depth[a], a))


# ---------------------------------------------------------------- the plan


def leaves_of(space, labels: list[int]) -> list[int]:
    """The labels of a list that are no other listed label's ancestor (a source's own leaves)."""
    above = {a for lab in labels for a in space.ancestors[lab]}
    return [lab for lab in labels if lab not in above]


def split_sizes(n: int) -> dict[str, int]:
    """FSD50K's dev/val/eval proportions at ``n`` clips."""
    n_eval = max(1, round(n * FSD["eval"] / FSD["clips"]))
    n_dev = n - n_eval
    n_val = max(1, round(n_dev * FSD["val"] / FSD["dev"]))
    return {"train": n_dev - n_val, "val": n_val, "eval": n_eval}


def durations(rng: np.random.Generator, n: int, scale: float = 1.0) -> np.ndarray:
    """FSD50K-like lengths: a lognormal body in 0.3-30 s, 7 % cut at 30 s, and N_SHORT clips of exactly 0.3 s.

    ``scale`` < 1 shortens every clip (a quick test of the same flow) but keeps
    a few at exactly 30 s and 0.3 s: the oddities stay.
    """
    d = np.exp(rng.normal(np.log(LOGN_MEDIAN), LOGN_SIGMA, n))
    d = np.clip(d, MIN_S, MAX_S)
    d[rng.random(n) < P_30S] = MAX_S
    d = np.clip(d * scale, MIN_S, MAX_S)
    odd = rng.choice(n, size=min(N_SHORT, n // 20) + N_LONG, replace=False)
    d[odd[:N_LONG]] = MAX_S
    d[odd[N_LONG:]] = MIN_S
    return np.round(d * RATE) / RATE


def make_plan(n: int, pool_labels: list[list[int]], space, seed: int, seconds_scale: float = 1.0) -> Plan:
    """Splits, fnames, lengths, labels and sources of every clip (deterministic in ``seed``)."""
    rng = np.random.default_rng([seed, 1])
    n_labels = len(space.vocabulary)
    by_label: dict[int, list[int]] = {}
    for s, labs in enumerate(pool_labels):
        by_label.setdefault(labs[0], []).append(s)
    leaves = sorted(by_label)
    # long-tailed label frequency (FSD50K: a few thousand clips for the commonest labels, tens for the rarest)
    weights = 1.0 / (rng.permutation(len(leaves)) + 8.0) ** 0.9
    weights /= weights.sum()
    is_ancestor = {a for anc in space.ancestors for a in anc}
    rare = [lab for lab in rng.permutation(leaves).tolist() if lab not in is_ancestor][:N_RARE]

    sizes = split_sizes(n)
    split = np.array(["train"] * sizes["train"] + ["val"] * sizes["val"] + ["eval"] * sizes["eval"])
    # dev and eval are separate uploads in FSD50K: ids interleave, so shuffle who gets which id
    ids = rng.choice(np.arange(1, max(10 * n, 1000)), size=n, replace=False)
    secs = durations(rng, n, seconds_scale)
    eval_idx = np.flatnonzero(split == "eval")
    designated = dict(zip(eval_idx[: len(rare)].tolist(), rare))  # eval clip -> its one rare label

    def draw(exclude: set[int]) -> int:
        while True:
            lab = leaves[int(rng.choice(len(leaves), p=weights))]
            if lab not in exclude:
                return lab

    clips = []
    for i in range(n):
        exclude = set(rare) if split[i] == "eval" else set()
        first = designated.get(i, None)
        if first is None:
            first = draw(exclude)
        chosen = [first]
        if rng.random() < P_MIX:
            second = draw(exclude | {first})
            if second not in space.ancestors[first] and first not in space.ancestors[second]:
                chosen.append(second)
        sources = [int(rng.choice(by_label[lab])) for lab in chosen]
        labels = with_ancestors(space, [leaf for s in sources for leaf in leaves_of(space, pool_labels[s])])
        if split[i] == "eval" and i not in designated and set(labels) & set(rare):
            labels = with_ancestors(space, chosen)  # a source's own extra leaf may be rare: keep the tally exact
        clips.append(ClipPlan(i, str(int(ids[i])), str(split[i]), float(secs[i]),
                              [space.vocabulary.names[k] for k in labels], sources))
    # a few files no decoder reads: FSD50K's users meet a damaged download now and then
    dev_idx = np.flatnonzero(split != "eval")
    for kind, idx in zip(("empty", "garbage", "header"), rng.choice(dev_idx, 3, replace=False).tolist()):
        clips[idx].corrupt = kind
    for kind, idx in zip(("garbage", "header"), rng.choice(eval_idx[len(rare):], 2, replace=False).tolist()):
        clips[idx].corrupt = kind
    vocab = list(zip(space.vocabulary.names, space.vocabulary.mids))
    assert len(vocab) == n_labels
    return Plan(clips, vocab, [space.vocabulary.names[r] for r in rare])


# ---------------------------------------------------------------- the sources


def read_sources(source: Path, space, per_label: int, seed: int) -> tuple[list[np.ndarray], list[list[int]]]:
    """Up to ``per_label`` clips of each leaf label of an FSD50K-layout root, as 44.1 kHz float32.

    A label that leads no clip there borrows a few clips of other labels (its
    own seeded pick): it still sounds the same in every clip that carries it.
    """
    import soundfile as sf
    import torch

    from guesser.features import resample

    rng = np.random.default_rng([seed, 2])
    rows: dict[int, list[tuple[Path, list[int]]]] = {}
    index = space.vocabulary.index
    for csv_name, folder in (("dev.csv", DEV), ("eval.csv", EVAL)):
        with open(source / GT / csv_name, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                labs = [index[x] for x in row["labels"].split(",") if x in index]
                if labs:
                    rows.setdefault(labs[0], []).append((source / folder / row["fname"], labs))
    picked: list[tuple[Path, list[int]]] = []
    for lab in sorted(rows):
        cand = rows[lab]
        for k in rng.permutation(len(cand))[:per_label].tolist():
            picked.append(cand[k])
    audio, labels = [], []
    files = {p.stem: p for folder in (DEV, EVAL) for p in (source / folder).iterdir()}
    for stem_path, labs in picked:
        path = files.get(stem_path.name)
        if path is None:
            continue
        try:
            x, sr = sf.read(path, dtype="float32", always_2d=True)
        except Exception:  # noqa: BLE001 - a source we cannot read is simply not used
            continue
        x = x.mean(axis=1)
        if len(x) < sr // 10 or not np.isfinite(x).all() or np.abs(x).max() < 1e-4:
            continue
        if sr != RATE:
            x = resample(torch.from_numpy(np.ascontiguousarray(x)), sr, RATE).numpy().reshape(-1)
        audio.append((x / max(np.abs(x).max(), 1e-6) * 0.8).astype(np.float32))
        labels.append(labs)
    have = {labs[0] for labs in labels}
    for lab in range(len(space.vocabulary)):
        if lab not in have:  # borrowed sounds, relabelled as this label (and its ancestors)
            for k in rng.choice(len(audio), size=2, replace=False).tolist():
                audio.append(audio[k])
                labels.append([lab])
    return audio, labels


def synth_sources(n_labels: int, seed: int, per_label: int = 2) -> tuple[list[np.ndarray], list[list[int]]]:
    """Without a source set: every label gets sounds of its own (harmonics at its pitch + noise in its band)."""
    audio, labels = [], []
    for lab in range(n_labels):
        rng = np.random.default_rng([seed, 3, lab])
        for _ in range(per_label):
            n = int(RATE * rng.uniform(1.5, 3.0))
            t = np.arange(n) / RATE
            f0 = 60.0 * 2 ** (lab / n_labels * 6.5)  # 60 Hz .. 5.4 kHz, one pitch per label
            x = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.3)) / h for h in range(1, 2 + lab % 5))
            x = x * (0.6 + 0.4 * np.sin(2 * np.pi * (0.5 + lab % 7) * t))  # its own tremolo
            # its own noise band: smoothed noise (a box low-pass) moved up to 2 x its pitch (ring modulation)
            width = max(2, int(RATE / (f0 * 2)))
            band = np.convolve(rng.standard_normal(n), np.ones(width) / width, mode="same")
            band *= np.sin(2 * np.pi * 2 * f0 * t)
            x = x + 0.1 * band / max(float(np.std(band)), 1e-9)
            audio.append((x / np.abs(x).max() * 0.8).astype(np.float32))
            labels.append([lab])
    return audio, labels


# ---------------------------------------------------------------- writing audio

_POOL: list[np.ndarray] = []
_NOISE = np.zeros(0, np.float32)


def _set_pool(pool: list[np.ndarray], seed: int) -> None:
    global _POOL, _NOISE
    _POOL = pool
    _NOISE = (np.random.default_rng([seed, 4]).standard_normal(RATE * 7) * 10 ** (NOISE_DB / 20)).astype(np.float32)


def render(clip: ClipPlan, seed: int) -> np.ndarray:
    """Clip ``clip``'s int16 samples: each source tiled from a random offset, its own gain, a noise floor."""
    rng = np.random.default_rng([seed, 5, clip.index])
    n = int(round(clip.seconds * RATE))
    out = np.zeros(n, np.float32)
    for s in clip.sources:
        src = _POOL[s]
        start = int(rng.integers(len(src)))
        gain = np.float32(10 ** (rng.uniform(-18, 0) / 20))
        k = 0
        while k < n:  # tile: src[start:], then whole copies (a short source repeats, as a loop would)
            piece = src[start : start + n - k]
            out[k : k + len(piece)] += gain * piece
            k += len(piece)
            start = 0
    off = int(rng.integers(len(_NOISE) - RATE))
    k = 0
    while k < n:
        step = min(n - k, len(_NOISE) - off)
        out[k : k + step] += _NOISE[off : off + step]
        k += step
        off = 0
    np.clip(out, -1.0, 32767 / 32768, out=out)
    return (out * 32768).astype("<i2")


def wav_bytes(n: int) -> int:
    return 44 + 2 * n


def write_clip(args: tuple[ClipPlan, str, int]) -> int:
    """Write one clip (atomically: a killed run leaves no half file under the real name); its byte count."""
    import soundfile as sf

    clip, path, seed = args
    p = Path(path)
    n = int(round(clip.seconds * RATE))
    if clip.corrupt:
        rng = np.random.default_rng([seed, 6, clip.index])
        data = {"empty": b"", "garbage": rng.bytes(4096),
                "header": b"RIFF" + (36 + 2 * n).to_bytes(4, "little") + b"WAVEfmt "}[clip.corrupt]
        p.write_bytes(data)
        return len(data)
    if p.exists() and p.stat().st_size == wav_bytes(n):
        return 0  # a previous run wrote it
    tmp = p.with_name(f".{p.name}.tmp")
    sf.write(tmp, render(clip, seed), RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, p)
    return wav_bytes(n)


# ---------------------------------------------------------------- the tree


def write_csvs(out: Path, clips: list[ClipPlan], vocab: list[tuple[str, str]]) -> None:
    """vocabulary.csv, dev.csv and eval.csv exactly as FSD50K writes them."""
    mid = dict(vocab)
    gt = out / GT
    gt.mkdir(parents=True, exist_ok=True)
    with open(gt / "vocabulary.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        for i, (label, m) in enumerate(vocab):
            w.writerow([i, label, m])
    with open(gt / "dev.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["fname", "labels", "mids", "split"])
        for c in clips:
            if c.split != "eval":
                w.writerow([c.fname, ",".join(c.labels), ",".join(mid[x] for x in c.labels), c.split])
    with open(gt / "eval.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["fname", "labels", "mids"])
        for c in clips:
            if c.split == "eval":
                w.writerow([c.fname, ",".join(c.labels), ",".join(mid[x] for x in c.labels)])


def summary(clips: list[ClipPlan], rare: list[str]) -> dict:
    secs = np.array([c.seconds for c in clips])
    eval_counts: dict[str, int] = {}
    for c in clips:
        if c.split == "eval":
            for lab in c.labels:
                eval_counts[lab] = eval_counts.get(lab, 0) + 1
    return {
        "clips": len(clips),
        "splits": {s: sum(c.split == s for c in clips) for s in ("train", "val", "eval")},
        "hours": round(float(secs.sum()) / 3600, 2),
        "seconds": {"min": float(secs.min()), "mean": round(float(secs.mean()), 3), "max": float(secs.max()),
                    "at_30s": int((secs >= MAX_S).sum()), "at_0_3s": int((secs <= MIN_S).sum())},
        "labels_per_clip": round(float(np.mean([len(c.labels) for c in clips])), 3),
        "labels_used": len({lab for c in clips for lab in c.labels}),
        "rare_eval_labels": {lab: eval_counts.get(lab, 0) for lab in rare},
        "corrupt": {c.fname: c.corrupt for c in clips if c.corrupt},
        "wav_bytes": int(sum(wav_bytes(int(round(c.seconds * RATE))) for c in clips if not c.corrupt)),
    }


def generate(out: Path, n: int, source: Path | None, jobs: int, seed: int, progress: bool = True,
             seconds_scale: float = 1.0) -> dict:
    """Write the whole tree under ``out``; returns what ``scale.json`` records."""
    t0 = time.perf_counter()
    space = label_space(source)
    pool, pool_labels = (read_sources(source, space, SOURCES_PER_LABEL, seed) if source is not None
                         else synth_sources(len(space.vocabulary), seed))
    plan = make_plan(n, pool_labels, space, seed, seconds_scale)
    for folder in (DEV, EVAL):
        (out / folder).mkdir(parents=True, exist_ok=True)
    write_csvs(out, plan.clips, plan.vocabulary)
    if source is not None and (source / "ontology.json").is_file():
        shutil.copyfile(source / "ontology.json", out / "ontology.json")
    tasks = [(c, str(out / (EVAL if c.split == "eval" else DEV) / f"{c.fname}.wav"), seed) for c in plan.clips]
    _set_pool(pool, seed)
    written, t_audio = 0, time.perf_counter()
    if jobs <= 1:
        results = map(write_clip, tasks)
        ctx_pool = None
    else:  # fork: the workers share the decoded source pool instead of decoding it again
        ctx_pool = mp.get_context("fork").Pool(jobs)
        results = ctx_pool.imap(write_clip, tasks, chunksize=16)
    try:
        for k, b in enumerate(results, 1):
            written += b
            if progress and (k % 2000 == 0 or k == n):
                el = time.perf_counter() - t_audio
                print(f"{k}/{n} clips, {written / 1e9:.2f} GB written, {el:.0f} s", file=sys.stderr, flush=True)
    finally:
        if ctx_pool is not None:
            ctx_pool.close()
            ctx_pool.join()
    info = summary(plan.clips, plan.rare_eval_labels)
    info.update({"seed": seed, "source": str(source) if source else "synthesised", "source_clips": len(pool),
                 "seconds_to_write": round(time.perf_counter() - t0, 1)})
    (out / "scale.json").write_text(json.dumps(info, indent=1))
    return info


def subset(out: Path, big: Path, n: int, seed: int) -> dict:
    """A root with a seeded sample of BIG's rows (split proportions kept) that reads BIG's audio through symlinks."""
    rng = np.random.default_rng([seed, 7])
    rows: dict[str, list[list[str]]] = {}
    with open(big / GT / "dev.csv", newline="", encoding="utf-8") as f:
        r = csv.reader(f)
        dev_header = next(r)
        for row in r:
            rows.setdefault(row[3], []).append(row)
    with open(big / GT / "eval.csv", newline="", encoding="utf-8") as f:
        r = csv.reader(f)
        eval_header = next(r)
        rows["eval"] = list(r)
    sizes = split_sizes(n)
    keep = {s: [rows[s][k] for k in sorted(rng.choice(len(rows[s]), min(sizes[s], len(rows[s])), replace=False))]
            for s in ("train", "val", "eval")}
    (out / GT).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(big / GT / "vocabulary.csv", out / GT / "vocabulary.csv")
    dev_rows = keep["train"] + keep["val"]
    for name, header, body in (("dev.csv", dev_header, dev_rows), ("eval.csv", eval_header, keep["eval"])):
        with open(out / GT / name, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(body)
    for folder in (DEV, EVAL):
        link = out / folder
        if not link.exists():
            link.symlink_to((big / folder).resolve(), target_is_directory=True)
    if (big / "ontology.json").is_file():
        shutil.copyfile(big / "ontology.json", out / "ontology.json")
    info = {"subset_of": str(big.resolve()), "clips": sum(len(v) for v in keep.values()),
            "splits": {s: len(v) for s, v in keep.items()}, "seed": seed}
    (out / "scale.json").write_text(json.dumps(info, indent=1))
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--clips", type=int, default=FSD["clips"])
    ap.add_argument("--source", type=Path, default=None, help="FSD50K-layout root whose clips are tiled (default: synthesise)")
    ap.add_argument("--subset-of", type=Path, default=None, help="sample the rows of this generated tree instead")
    ap.add_argument("--jobs", "-j", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds-scale", type=float, default=1.0,
                    help="shorten every clip by this factor (tests); a few stay at exactly 30 s and 0.3 s")
    args = ap.parse_args(argv)
    if not 0 < args.seconds_scale <= 1:
        print(f"error: --seconds-scale must be in (0, 1], got {args.seconds_scale}", file=sys.stderr)
        return 2
    if args.clips < 60:
        print(f"error: --clips must be at least 60 (the oddities need room), got {args.clips}", file=sys.stderr)
        return 2
    for p, what in ((args.source, "--source"), (args.subset_of, "--subset-of")):
        if p is not None and not (p / GT).is_dir():
            print(f"error: {what} {p}: not an FSD50K-layout root (no {GT}/)", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    if args.subset_of is not None:
        info = subset(args.out, args.subset_of, args.clips, args.seed)
    else:
        info = generate(args.out, args.clips, args.source, max(1, args.jobs), args.seed,
                        seconds_scale=args.seconds_scale)
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
