"""What changing the resampler (torchaudio's sinc -> libsoxr) did to the log-mel and to the eval mAP.

    python benchmarks/resampler.py logmel --root /work/shared/fsd50k-mini [--clips 100]
    python benchmarks/resampler.py map --root /work/shared/fsd50k-mini [--rates 44100 48000] [--clips 0]

``logmel``: eval clips (22 050 Hz) are brought to each common rate by scipy's
polyphase resampler (an independent third party, so neither resampler under
test made the input), then turned into each shipped front-end's log-mel by the
old resampler (``torchaudio.functional.resample``, which the old
``guesser.features.resample`` equalled bit for bit) and by the new one
(``guesser.features.resample``). It prints the mean, 99th percentile and
largest absolute difference in dB, and the time each resampler took.

``map``: the shipped ensemble's label mAP on the eval split, with every clip
brought to each rate as above and scored by ``Ensemble.predict`` through the
old and the new resampler (the 22 050 Hz baseline involves no resampling for
the shipped 22 050 Hz front-ends).
"""

from __future__ import annotations

import argparse
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guesser import ensemble as ensemble_module  # noqa: E402
from guesser.audio import load_audio  # noqa: E402
from guesser.features import PANNS, SEED_CNN, COMPACT, log_mel, resample  # noqa: E402

RATES = (8000, 16000, 22050, 32000, 44100, 48000, 96000)


def old_resample(x: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """The resampler guesser used before: torchaudio's band-limited sinc (its default kernel)."""
    import torchaudio.functional as AF

    return x if orig == new else AF.resample(x, orig, new)


def to_rate(x: np.ndarray, rate: int, src: int = 22050) -> np.ndarray:
    """scipy's polyphase resampler: the input at ``rate``, made by neither resampler under test."""
    from scipy.signal import resample_poly

    if rate == src:
        return x.astype(np.float32)
    f = Fraction(rate, src)
    return resample_poly(x, f.numerator, f.denominator).astype(np.float32)


def eval_clips(root: Path, n: int):
    from trainer.fsd50k import Fsd50k

    data = Fsd50k.open(root)
    clips = [c for c in data.splits["eval"].clips if c.path is not None]
    targets = data.targets("eval")
    keep = [i for i, c in enumerate(data.splits["eval"].clips) if c.path is not None]
    if n:
        keep = keep[:: max(1, len(keep) // n)][:n]
    return [data.splits["eval"].clips[i] for i in keep], targets[keep], clips


def logmel_part(args) -> None:
    clips, _, _ = eval_clips(args.root, args.clips)
    fronts = {"seed 22.05k/128": SEED_CNN, "compact 22.05k/64": COMPACT, "panns 32k/64": PANNS}
    print(f"{len(clips)} eval clips; |new - old| log-mel in dB (new: soxr HQ; old: torchaudio sinc)")
    print(f"{'input rate':>10} {'front-end':>18} {'mean':>7} {'p99':>7} {'max':>7} {'old s':>7} {'new s':>7}")
    for rate in args.rates:
        inputs = [to_rate(load_audio(c.path).mono, rate) for c in clips]
        for name, cfg in fronts.items():
            diffs, t_old, t_new = [], 0.0, 0.0
            for x in inputs:
                xt = torch.from_numpy(x)
                t0 = time.perf_counter()
                a = old_resample(xt, rate, cfg.sample_rate)
                t_old += time.perf_counter() - t0
                t0 = time.perf_counter()
                b = resample(xt, rate, cfg.sample_rate)
                t_new += time.perf_counter() - t0
                la, lb = log_mel(a, cfg.sample_rate, cfg), log_mel(b, cfg.sample_rate, cfg)
                t = min(la.shape[1], lb.shape[1])  # lengths may differ by one sample (ceil vs round)
                diffs.append((lb[:, :t] - la[:, :t]).abs().flatten())
            d = torch.cat(diffs).numpy()
            print(f"{rate:>10} {name:>18} {d.mean():7.3f} {np.percentile(d, 99):7.3f} {d.max():7.2f} "
                  f"{t_old:7.2f} {t_new:7.2f}", flush=True)


def map_part(args) -> None:
    from trainer.metrics import mean_average_precision

    torch.set_num_threads(args.threads)
    clips, targets, _ = eval_clips(args.root, args.clips)
    ens = ensemble_module.Ensemble.load([args.models])
    index = {n: i for i, n in enumerate(ens.label_names)}
    print(f"{len(clips)} eval clips, ensemble {args.models}: label mAP")
    sources = [load_audio(c.path).mono for c in clips]
    for rate in args.rates:
        inputs = [to_rate(x, rate) for x in sources]
        for name, fn in (("old", old_resample), ("new", resample)):
            if rate == 22050 and name == "old":
                continue  # no resampling at all: one number
            ensemble_module.resample = fn  # what Ensemble._log_mels calls
            scores = np.zeros(targets.shape, np.float32)
            t0 = time.perf_counter()
            with torch.inference_mode():
                for i, x in enumerate(inputs):
                    for s in ens.predict(x, rate).labels:
                        scores[i, index[s.name]] = s.score
            m = mean_average_precision(targets, scores)
            label = "none" if rate == 22050 else name
            print(f"rate {rate:>6}  resampler {label:>4}  mAP {m:.4f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    ensemble_module.resample = resample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("logmel", "map"))
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--clips", type=int, default=100, help="eval clips (evenly spaced); 0: all")
    ap.add_argument("--rates", type=int, nargs="+", default=None)
    ap.add_argument("--models", default=str(Path(__file__).resolve().parents[1] / "assets/models/index.json"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.rates is None:
        args.rates = list(RATES) if args.part == "logmel" else [22050, 44100, 48000]
    (logmel_part if args.part == "logmel" else map_part)(args)


if __name__ == "__main__":
    main()
