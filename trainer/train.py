"""The training loop: one recipe, one cache, one run folder; readable top to bottom.

    runs/<recipe>/
      best.safetensors    the model at its best validation score (what the app loads)
      last.safetensors    model + optimiser + schedule + counters: ``--resume`` continues from it
      metrics.jsonl       one JSON line per epoch (also printed on stdout)
      run.json            summary: recipe, best epoch and scores, time, parameters

Reproducible and resumable by construction: the epoch's order comes from
(seed, epoch), every batch (crops, augmentation) and every step's dropout from
(seed, epoch, step, rank), and the learning rate is a function of the step
(or, for ``plateau``, part of the saved state). So a run resumed from any saved
step continues exactly as if it had never stopped: on CPU the weights are
bit-identical. ``last`` is written atomically after every epoch (and every
``checkpoint_every`` steps); the first Ctrl-C (or SIGTERM, as schedulers and
torchrun send) finishes the current step, writes ``last`` and exits; a second
one quits at once, leaving the previous ``last``.

Runs unchanged under ``torchrun --nproc-per-node N``: DistributedDataParallel
(NCCL on GPUs, gloo on CPUs), every rank takes its own slice of the same epoch
order, rank 0 validates, writes every file and hands a resumed state to the
others (so only rank 0 needs the run folder).

This module is the loop itself; around it, one job each: :mod:`trainer.run`
(set-up: data, model, optimiser, resuming), :mod:`trainer.state` (the saved
state and its checks), :mod:`trainer.batch` (a seeded batch),
:mod:`trainer.optim` (optimiser, schedule, EMA), :mod:`trainer.ddp` (what ranks
agree on), :mod:`trainer.signals` (Ctrl-C / SIGTERM) and :mod:`trainer.weights`
(``best.safetensors``'s header).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from guesser.checkpoint import score_name
from guesser.errors import GuesserError
from guesser.models import count_parameters
from trainer import ddp
from trainer.batch import Targets, make_batch, step_seed
from trainer.device import pick_device
from trainer.distill import distillation_loss
from trainer.inference import predict_split
from trainer.losses import Criterion
from trainer.metrics import mean_average_precision
from trainer.optim import scheduled_lr
from trainer.recipe import Recipe
from trainer.records import MetricsRow, RunSummary
from trainer.run import Run, prepare
from trainer.weights import git_commit, model_meta, save_model


@dataclass
class RunResult:
    directory: Path
    best_score: float
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[MetricsRow] = field(default_factory=list)
    finished: bool = True  # False: stopped early by ``max_steps`` (resume to continue)
    model: nn.Module | None = field(default=None, repr=False)  # the trained module (this rank's copy)


class TrainingDiverged(GuesserError):
    """The loss became NaN or infinite (usually too high a learning rate)."""


class TrainingInterrupted(GuesserError):
    """Ctrl-C / SIGTERM: ``last`` was saved at the current step; exit like an interrupted command."""

    exit_code = 130


def train(
    recipe: Recipe,
    cache_root: str | Path,
    out_dir: str | Path,
    *,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    checkpoint_every: int = 0,
    max_steps: int | None = None,
    on_epoch: Callable[[MetricsRow], None] | None = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train ``recipe`` on the cache under ``cache_root``; write the run folder ``out_dir``.

    ``on_epoch(row)`` is called on rank 0 after every epoch, once its checkpoint is
    written, with that epoch's :class:`MetricsRow` (``row.score(score_name(task))``
    when the epoch was validated); it may raise to end the run (``guesser tune``
    prunes trials this way). ``max_steps`` stops (as if interrupted) after that
    many optimiser steps of this call: tests use it to simulate a crash mid-epoch.

    Under torchrun the process group is torn down on every way out (finished,
    paused, interrupted, diverged, failed), never left to the interpreter's exit.
    """
    rank, world, dev, created_group = ddp.setup_distributed(pick_device(device))
    run: Run | None = None
    agreed = False  # every rank leaves together: safe to wait for the others before tearing down
    try:
        run = prepare(recipe, cache_root, out_dir, rank, world, dev, resume, log)
        c = run.counters
        paused = False
        with run.stop, progress_bar(run, progress) as bar:
            while c.epoch < recipe.train.epochs and not c.done:
                paused = train_epoch(run, bar, max_steps, checkpoint_every)
                if paused:
                    break
                end_epoch(run, on_epoch)
        if run.main and not paused:
            write_summary(run)
        agreed = True
        return RunResult(directory=run.out, best_score=c.best, best_epoch=c.best_epoch, epochs_run=c.epoch,
                         seconds=c.seconds, history=run.history, finished=not paused, model=run.model)
    except (TrainingInterrupted, TrainingDiverged):  # raised on every rank at the same step
        agreed = True
        raise
    finally:
        if created_group:
            if run is not None:
                run.net = None  # DDP's reducer holds the group: dropped before it is torn down
            ddp.leave_group(wait_for_others=agreed)


def train_epoch(run: Run, bar, max_steps: int | None, checkpoint_every: int) -> bool:
    """The rest of the current epoch, step by step; True when ``max_steps`` paused the run mid-epoch.

    The first stop request (on any rank) ends it after the step in flight, with
    ``last`` saved: :class:`TrainingInterrupted` on every rank at the same step.
    """
    t, c = run.recipe.train, run.counters
    order = run.sampler.indices(c.epoch)
    task_id = bar.add_task(f"{run.recipe.name} epoch {c.epoch + 1}/{t.epochs}", total=run.steps_per_epoch,
                           completed=c.step, loss=0.0, rate=0.0)
    run.net.train()
    t_epoch = t_rate = time.perf_counter()
    seen = 0
    while c.step < run.steps_per_epoch:
        seen += train_step(run, order)
        bar.update(task_id, advance=1, loss=c.loss_sum / c.loss_n,
                   rate=seen * run.world / max(time.perf_counter() - t_rate, 1e-9))
        paused = max_steps is not None and run.steps_this_call >= max_steps
        interrupted = ddp.any_rank(run.stop.requested, run.world, run.dev)
        if paused or interrupted or (checkpoint_every and c.step % checkpoint_every == 0):
            c.seconds += time.perf_counter() - t_epoch
            t_epoch = time.perf_counter()
            run.save_state()
        if interrupted:
            raise interrupted_error(run, f"at epoch {c.epoch + 1} step {c.step}")
        if paused:
            bar.remove_task(task_id)
            return True
    bar.remove_task(task_id)
    c.seconds += time.perf_counter() - t_epoch
    return False


def train_step(run: Run, order: np.ndarray) -> int:
    """One optimiser step on the batch at ``counters.step`` of this epoch's ``order``; returns its size."""
    t, c, d = run.recipe.train, run.counters, run.data
    idx = d.tr.keep[order[c.step * t.batch_size:(c.step + 1) * t.batch_size]]
    seed = step_seed(t.seed, c.epoch, c.step, run.rank)
    x, y = make_batch(d.train_split, d.tr, idx, d.cfg, run.recipe, seed, d.background)
    x = x.to(run.dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
    y = y.to(run.dev, non_blocking=True)
    lr = scheduled_lr(t, c.epoch * run.steps_per_epoch + c.step, run.steps_per_epoch)
    if lr is not None:
        for group in run.optimizer.param_groups:
            group["lr"] = lr
    torch.manual_seed(seed)  # dropout
    with torch.autocast(run.dev.type, dtype=run.amp or torch.float32, enabled=run.amp is not None):
        logits = run.net(x)
    loss = training_loss(run, logits, y)
    value = float(loss.item())
    if ddp.any_rank(not math.isfinite(value), run.world, run.dev):  # every rank stops at the same step
        raise TrainingDiverged(f"{run.recipe.name}: loss became {value if not math.isfinite(value) else 'nan'} "
                               f"at epoch {c.epoch + 1} step {c.step}; lower train.lr or check the cache")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    c.loss_sum += value
    c.loss_n += 1
    c.step += 1
    run.steps_this_call += 1
    return len(idx)


def training_loss(run: Run, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The recipe's criterion on the hard labels, plus the distillation term when a teacher is set (fp32)."""
    tr = run.data.tr
    if tr.soft is None:
        return run.criterion(logits, y)  # Criterion casts the logits
    k, w = logits.shape[1], run.recipe.train.distill_weight
    known = torch.from_numpy(tr.known).to(y.device)
    soft = distillation_loss(logits, y[:, k:], known, multilabel=run.recipe.task == "labels")
    return (1 - w) * run.criterion(logits, y[:, :k]) + w * soft


def end_epoch(run: Run, on_epoch: Callable[[MetricsRow], None] | None) -> None:
    """Validate (rank 0; every rank agrees on the score), schedule, stop early, keep the best, checkpoint, log."""
    t, c = run.recipe.train, run.counters
    epoch = c.epoch
    loss_sum, loss_n = ddp.sum_ranks([c.loss_sum, c.loss_n], run.world, run.dev)
    row = MetricsRow(epoch=epoch + 1, train_loss=round(loss_sum / max(loss_n, 1), 6),
                     lr=run.optimizer.param_groups[0]["lr"])
    if (epoch + 1) % t.val_every == 0 or epoch + 1 == t.epochs:
        score, val_loss = validate(run)
        row = replace(row, val_loss=val_loss, **{score_name(run.recipe.task): round(score, 6)})
        if score > c.best:
            c.best, c.best_epoch = score, epoch + 1
            save_best(run, row)
        if run.plateau is not None and epoch + 1 >= t.warmup_epochs:
            run.plateau.step(score)
        if t.early_stop and epoch + 1 - c.best_epoch >= t.early_stop:
            c.done = True  # saved with the state: a resumed run stays stopped
    row = replace(row, seconds=round(c.seconds, 1))
    run.history.append(row)
    c.epoch, c.step, c.loss_sum, c.loss_n = epoch + 1, 0, 0.0, 0
    run.save_state()
    run.write_metrics()
    if run.main:
        run.log(json.dumps(row.to_json()))
        if c.done:
            run.log(json.dumps({"early_stop": epoch + 1, "best_epoch": c.best_epoch}))
        if on_epoch is not None:
            on_epoch(row)
    if ddp.any_rank(run.stop.requested, run.world, run.dev):
        raise interrupted_error(run, f"after epoch {epoch + 1}")


def validate(run: Run) -> tuple[float, float | None]:
    """(score, val loss): rank 0 scores the val split the app's way; every rank gets the score (the loss: rank 0)."""
    score = val_loss = None
    if run.main:
        d = run.data
        probs = predict_split(run.evaluated, d.val_split, d.cfg, run.recipe.task, device=run.dev,
                              autocast_dtype=run.amp)
        val_loss = round(validation_loss(run.criterion, probs[d.va.keep], d.va.y[d.va.keep],
                                         run.recipe.task == "labels"), 6)
        score = validation_score(probs, d.va)
    if run.world > 1:
        score = ddp.broadcast_float(score, run.dev)
    return score, val_loss


def validation_loss(criterion: Criterion, probs: np.ndarray, y: np.ndarray, multilabel: bool) -> float:
    """The training criterion on validation probabilities (turned back into logits)."""
    dev = criterion.pos_weight.device
    p = torch.from_numpy(probs).to(dev).clamp(1e-6, 1 - 1e-6)
    logits = torch.logit(p) if multilabel else torch.log(p)
    return float(criterion(logits, torch.from_numpy(y).to(dev)))


def validation_score(probs: np.ndarray, t: Targets) -> float:
    y = (t.y[t.keep] > 0).astype(np.uint8)
    return mean_average_precision(y, probs[t.keep])


def save_best(run: Run, row: MetricsRow) -> None:
    """``best.safetensors``: the validated weights and everything the app needs to run them (rank 0)."""
    if run.main:
        d = run.data
        meta = replace(model_meta(run.recipe, d.cfg, d.tr.classes, run.evaluated), metrics=row.to_json(),
                       best_epoch=row.epoch, trained_seconds=run.counters.seconds,
                       trained_labels=tuple(d.trained_labels), world_size=run.world)
        save_model(run.out / "best.safetensors", run.evaluated, meta)


def write_summary(run: Run) -> None:
    """``run.json``: what ``guesser train multi`` indexes and ``guesser report`` shows."""
    c, r = run.counters, run.recipe
    RunSummary(recipe=r.to_dict(), member=r.member, name=r.name, task=r.task, score_name=score_name(r.task),
               best_score=c.best, best_epoch=c.best_epoch, epochs_run=c.epoch, early_stopped=c.done,
               trained_seconds=round(c.seconds, 1), params=count_parameters(run.model),
               cache=str(run.data.cache.directory), commit=git_commit(), world_size=run.world).write(run.out / "run.json")


def interrupted_error(run: Run, where: str) -> TrainingInterrupted:
    return TrainingInterrupted(f"interrupted {where}; checkpoint saved, resume with: {run.resume_command()}")


def progress_bar(run: Run, progress: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.1f} clips/s"),
                    TimeRemainingColumn(), console=run.console, disable=not (progress and run.main), transient=True)


def main_from_env() -> None:  # pragma: no cover - thin script entry
    """``torchrun --nproc-per-node N -m trainer.train RECIPE CACHE OUT [--resume]``.

    ``torchrun … -m guesser train one RECIPE --cache CACHE --out OUT`` does the
    same with every CLI option; this entry is kept for scripts.
    """
    args = [a for a in sys.argv[1:] if a != "--resume"]
    if len(args) != 3:
        sys.exit("usage: python -m trainer.train RECIPE CACHE OUT [--resume]")
    try:
        train(Recipe.load(args[0]), args[1], args[2], resume="--resume" in sys.argv)
    except GuesserError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":  # pragma: no cover
    main_from_env()
