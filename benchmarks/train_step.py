"""Training step throughput: the cache loader's batches vs the same model on in-memory random tensors.

    python benchmarks/train_step.py --cache /tmp/cache --steps 20

For each step it does exactly what :func:`trainer.train.train` does (the shared
:func:`trainer.train.make_batch`: crops from the memory-mapped cache, dB-domain
augmentation, normalisation, SpecAugment/mixup; then channels-last, autocast
forward, loss, backward, optimiser step), and times the batch preparation
apart. The baseline runs the identical step on random tensors that are already
in memory, in the same process. Printed: clips/s of both, their ratio, the
share of a step spent preparing batches (goal: < 10 %), and the projected time
of one epoch over FSD50K's 40,966 dev clips on this machine.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from guesser.features import FeatureConfig
from guesser.labels import LabelSpace, Vocabulary, default_label_space
from guesser.models import build_model
from trainer.batch import make_batch, step_seed, task_targets
from trainer.cache import find_cache
from trainer.device import autocast_dtype
from trainer.losses import Criterion
from trainer.recipe import Recipe
from trainer.sampling import EpochSampler, oversampling_weights

FSD50K_DEV_CLIPS = 40_966


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default="cache", help="cache root (holding the recipe's feature setting)")
    ap.add_argument("--recipe", default="cnn4_student")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per variant (after 2 warm-up steps)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--precision", default=None, help="override the recipe's: auto, fp32, bf16")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = Recipe.load(args.recipe).with_train(batch_size=args.batch_size)
    if args.precision:
        recipe = recipe.with_train(precision=args.precision)
    t = recipe.train
    cache = find_cache(args.cache, recipe.feature_config())
    cfg: FeatureConfig = replace(cache.feature_config(recipe.feature_config().norm),
                                 clip_seconds=recipe.feature_config().clip_seconds, short=recipe.feature_config().short)
    split = cache.split("train")
    space = default_label_space()
    targets = task_targets(recipe, split, LabelSpace(Vocabulary(split.vocabulary, space.vocabulary.mids), space.ontology))
    weights = oversampling_weights(targets.y[targets.keep], t.oversample_power) if t.oversample else None
    order = EpochSampler(len(targets.keep), t.seed, weights).indices(0)
    dev = torch.device("cpu")
    amp = autocast_dtype(t.precision, dev)

    def fresh():
        torch.manual_seed(0)
        model = build_model(recipe.arch, targets.y.shape[1], **recipe.model).to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=t.lr) if t.optimizer == "adamw" else \
            torch.optim.Adam(model.parameters(), lr=t.lr)
        return model.train(), opt, Criterion(t.loss, None, t.focal_alpha, t.focal_gamma)

    def step(model, opt, crit, x, y) -> None:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(x)
        loss = crit(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    bs, n_steps = t.batch_size, args.steps + 2
    n_steps = min(n_steps, len(order) // bs)

    # ---- the cache loader, as train() runs it
    model, opt, crit = fresh()
    prep, total = 0.0, 0.0
    for s in range(n_steps):
        t0 = time.perf_counter()
        idx = targets.keep[order[s * bs:(s + 1) * bs]]
        x, y = make_batch(split, targets, idx, cfg, recipe, step_seed(t.seed, 0, s))
        t1 = time.perf_counter()
        step(model, opt, crit, x, y)
        t2 = time.perf_counter()
        if s >= 2:
            prep += t1 - t0
            total += t2 - t0
    timed = n_steps - 2
    real_rate = timed * bs / total

    # ---- the baseline: the same steps on tensors already in memory
    model, opt, crit = fresh()
    g = torch.Generator().manual_seed(0)
    x_mem = torch.randn(bs, 1, cfg.n_mels, cfg.clip_frames, generator=g)
    y_mem = (torch.rand(bs, targets.y.shape[1], generator=g) < 0.02).float()
    base = 0.0
    for s in range(n_steps):
        t0 = time.perf_counter()
        step(model, opt, crit, x_mem, y_mem)
        if s >= 2:
            base += time.perf_counter() - t0
    base_rate = timed * bs / base

    share = prep / total
    print(f"recipe {recipe.name} ({recipe.arch}), batch {bs}, input [{bs}, 1, {cfg.n_mels}, {cfg.clip_frames}], "
          f"autocast {amp or 'off (fp32)'}, {torch.get_num_threads()} torch threads, {timed} timed steps")
    print(f"cache loader + augment : {real_rate:8.1f} clips/s  (batch preparation {1000 * prep / timed:.1f} ms/step, "
          f"{100 * share:.1f} % of a step)")
    print(f"in-memory tensors      : {base_rate:8.1f} clips/s")
    print(f"ratio cache/in-memory  : {real_rate / base_rate:8.3f}")
    print(f"one FSD50K epoch ({FSD50K_DEV_CLIPS:,} dev clips) on this machine: "
          f"{FSD50K_DEV_CLIPS / real_rate / 60:.1f} min (in-memory bound {FSD50K_DEV_CLIPS / base_rate / 60:.1f} min)")
    print(f"goal: batch preparation < 10 % of a step: {'met' if share < 0.10 else 'NOT met'}")


if __name__ == "__main__":
    main()
