"""One training run as it is set up: the run folder, data, model, optimiser and where it stands.

:func:`prepare` builds a :class:`Run` (resuming its saved state when asked);
the loop in :mod:`trainer.train` advances it. Rank 0 alone writes files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from guesser.errors import GuesserError
from guesser.features import FeatureConfig
from guesser.labels import LabelSpace, Vocabulary, default_label_space
from guesser.models import build_model
from trainer import ddp
from trainer.background import ambient_clips
from trainer.batch import Targets, smooth_positives, task_targets
from trainer.cache import CachedSplit, FeatureCache, find_cache
from trainer.device import autocast_dtype
from trainer.distill import soft_targets
from trainer.groups import clips_in_groups
from trainer.losses import Criterion, positive_weights, prior_bias
from trainer.optim import make_ema, make_optimizer
from trainer.recipe import Recipe
from trainer.records import MetricsRow
from trainer.sampling import EpochSampler, oversampling_weights
from trainer.signals import StopRequests
from trainer.state import Counters, SavedState, resume_state, save_state
from trainer.weights import init_from_checkpoint


@dataclass
class RunData:
    """What a run learns from: the cache's splits, the recipe's front-end and the task's targets."""

    cache: FeatureCache
    cfg: FeatureConfig  # the cache's frames with the recipe's window and normalisation
    train_split: CachedSplit
    val_split: CachedSplit
    tr: Targets
    va: Targets
    trained_labels: list[str]  # the classes with at least one positive train clip
    background: np.ndarray | None  # ambient train clips for augment.background_p (trainer.background)


@dataclass
class Run:
    """One run as :func:`prepare` sets it up; the loop advances ``counters`` and ``history``."""

    recipe: Recipe
    out: Path
    rank: int
    world: int
    dev: torch.device
    data: RunData
    model: nn.Module
    net: nn.Module | None  # what trains: the model, or its DistributedDataParallel wrapper
    ema: nn.Module | None
    criterion: Criterion
    optimizer: torch.optim.Optimizer
    plateau: object | None
    scaler: torch.amp.GradScaler
    amp: torch.dtype | None
    sampler: EpochSampler
    steps_per_epoch: int
    counters: Counters  # everything besides tensors that a resumed run needs
    history: list[MetricsRow]
    stop: StopRequests
    console: object  # rich Console on stderr: the progress bar and stop notices
    log: Callable[[str], None]
    steps_this_call: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def evaluated(self) -> nn.Module:
        """What is validated and kept: the moving average of the weights when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def save_state(self) -> None:
        if self.main:
            save_state(self.out / "last.safetensors", self.model, self.optimizer, self.plateau, self.scaler,
                       self.counters, {"recipe": self.recipe.to_dict(),
                                       "history": [r.to_json() for r in self.history],
                                       "world_size": self.world}, self.ema)

    def write_metrics(self) -> None:
        if self.main:  # rewritten whole, so it always agrees with the checkpoint it belongs to
            MetricsRow.write_lines(self.out / "metrics.jsonl", self.history)

    def resume_command(self) -> str:
        """A command that continues this run as printed: the recipe (a shipped name, else RECIPE.toml for the
        file it came from), the cache and the overrides a resumed run must repeat to match the saved recipe."""
        from trainer.recipe import shipped_names

        r, t = self.recipe, self.recipe.train
        name = r.name if r.name in shipped_names() else "RECIPE.toml"
        return (f"guesser train one {name} --cache {self.data.cache.directory.parent} --out {self.out} "
                f"--epochs {t.epochs} --batch-size {t.batch_size} --resume")


def load_data(recipe: Recipe, cache_root: str | Path) -> RunData:
    """The cache's train and val splits with the recipe's front-end and the task's targets."""
    cache: FeatureCache = find_cache(cache_root, recipe.feature_config())
    cfg = replace(cache.feature_config(recipe.feature_config().norm),
                  clip_seconds=recipe.feature_config().clip_seconds, short=recipe.feature_config().short)
    space = default_label_space()
    train_split, val_split = cache.split("train"), cache.split("val")
    labels = LabelSpace(Vocabulary(train_split.vocabulary, space.vocabulary.mids), space.ontology)
    tr, va = task_targets(recipe, train_split, labels), task_targets(recipe, val_split, labels)
    if len(tr.keep) == 0 or len(va.keep) == 0:
        raise GuesserError(f"{cache.directory}: no usable train or val clips for task {recipe.task!r}")
    if recipe.train.label_smoothing:
        rows = clips_in_groups(recipe.train.smooth_groups, train_split.fnames) if recipe.train.smooth_groups else None
        tr = smooth_positives(tr, recipe.train.label_smoothing, rows)
    trained_labels = [tr.classes[k] for k in np.flatnonzero(tr.y[tr.keep].sum(axis=0) > 0)]
    background = ambient_clips(train_split.targets, train_split.vocabulary) if recipe.augment.background_p else None
    return RunData(cache, cfg, train_split, val_split, tr, va, trained_labels, background)


def with_teacher(tr: Targets, recipe: Recipe, cache_root, cache_dir: Path, dev: torch.device, main: bool,
                 world: int, log: Callable[[str], None]) -> Targets:
    """``tr`` with the teacher's soft targets (rank 0 computes and stores them once; the others read them)."""
    def load():
        return soft_targets(recipe.train.distill, Path(cache_root), cache_dir, "train", recipe.task, tr.classes,
                            dev, log=log if main else (lambda _: None))

    soft = load() if main else None
    if world > 1:
        torch.distributed.barrier()
        soft = soft or load()
    if main:
        log(json.dumps({"teacher": recipe.train.distill, "key": soft.key,
                        "classes_distilled": int(soft.known.sum()), "classes": len(soft.known)}))
    return replace(tr, soft=soft.probs, known=soft.known)


def build_model_for(recipe: Recipe, tr: Targets, dev: torch.device) -> nn.Module:
    """The recipe's network on ``dev``: seeded, from pretrained or given weights, with the prior as output bias."""
    t = recipe.train
    torch.manual_seed(t.seed)
    model = build_model(recipe.arch, tr.y.shape[1], **recipe.model)
    if t.pretrained:
        from guesser.models.panns import load_panns_weights

        load_panns_weights(model, t.pretrained)
    if t.init:
        init_from_checkpoint(model, t.init, recipe, tr.classes)
    if t.prior_bias and recipe.task == "labels":
        last_linear = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        with torch.no_grad():
            last_linear.bias.copy_(prior_bias(tr.y[tr.keep]))
    return model.to(dev, memory_format=torch.channels_last)  # faster convolutions on GPUs and on oneDNN CPUs


def restore(run: Run, state: dict, saved: SavedState) -> None:
    """Load a saved state into a freshly prepared run (before DDP wraps the model)."""
    try:  # a state of the same recipe whose tensors do not fit this model: one line, not a traceback
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        if run.ema is not None:
            run.ema.load_state_dict(state["ema"])
        if run.plateau is not None and saved.scheduler:
            run.plateau.load_state_dict(saved.scheduler)
        if saved.scaler:
            run.scaler.load_state_dict(saved.scaler)
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GuesserError(f"{run.out / 'last.safetensors'}: the saved state does not fit this run ({first[:160]}); "
                           "delete it to start over, or use another --out") from None
    run.counters = Counters.from_dict(saved.counters)
    last = run.out / "last.safetensors"
    run.history = [MetricsRow.from_json(r, f"{last}: history row {i + 1}") for i, r in enumerate(saved.history)]


def prepare(recipe: Recipe, cache_root: str | Path, out_dir: str | Path, rank: int, world: int, dev: torch.device,
            resume: bool, log: Callable[[str], None]) -> Run:
    """Set-up: the run folder, the state to resume, data and targets, model, loss, optimiser, EMA, sampler."""
    from rich.console import Console

    t = recipe.train
    main = rank == 0
    out = Path(out_dir)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".*.tmp"):  # a checkpoint half-written when the last run was killed
            stale.unlink(missing_ok=True)
    resumed = resume_state(out, resume, recipe, world, main)  # fails early, before any work
    data = load_data(recipe, cache_root)
    if t.distill:
        data = replace(data, tr=with_teacher(data.tr, recipe, cache_root, data.cache.directory, dev, main, world, log))
    tr = data.tr
    model = build_model_for(recipe, tr, dev)
    pos_weight = positive_weights(tr.y[tr.keep] > 0, t.pos_weight, t.pos_weight_cap) if t.loss == "bce" else None
    optimizer, plateau = make_optimizer(recipe, model)
    amp = autocast_dtype(t.precision, dev)
    weights = oversampling_weights(tr.y[tr.keep], t.oversample_power) if t.oversample else None
    sampler = EpochSampler(len(tr.keep), t.seed, weights, rank, world)
    console = Console(stderr=True)
    run = Run(recipe=recipe, out=out, rank=rank, world=world, dev=dev, data=data, model=model, net=model,
              ema=make_ema(recipe, model),
              criterion=Criterion(t.loss, pos_weight, t.focal_alpha, t.focal_gamma).to(dev),
              optimizer=optimizer, plateau=plateau, amp=amp,
              scaler=torch.amp.GradScaler("cuda", enabled=amp == torch.float16 and dev.type == "cuda"),
              sampler=sampler, steps_per_epoch=max(1, len(sampler) // t.batch_size), counters=Counters(),
              history=[], stop=StopRequests(lambda msg: console.print(f"[yellow]{msg}[/]") if main else None),
              console=console, log=log)
    if resumed is not None:
        restore(run, *resumed)
        if main:
            log(json.dumps({"resumed": str(out / "last.safetensors"), "epoch": run.counters.epoch + 1,
                            "step": run.counters.step}))
    run.net = ddp.wrap(model, world, dev)
    run.write_metrics()
    return run
