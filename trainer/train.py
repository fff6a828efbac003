"""The training loop: one recipe, one cache, one run folder; readable top to bottom.

    runs/<recipe>/
      best.safetensors    the model at its best validation score (what the app loads)
      last.safetensors    model + optimiser + schedule + counters: ``--resume`` continues from it
      metrics.jsonl       one JSON line per epoch (also printed on stdout)
      run.json            summary: recipe, best epoch and scores, time, parameters

Reproducible and resumable by construction: the epoch's order comes from
(seed, epoch) and every step reseeds from (seed, epoch, step), so a run resumed
from any saved step continues exactly as if never stopped. ``last`` is written
atomically after every epoch (and every ``checkpoint_every`` steps); Ctrl-C
writes it at the current step before exiting.

Runs unchanged under ``torchrun --nproc-per-node N``: DistributedDataParallel
(NCCL on GPUs, gloo on CPUs), every rank takes its slice of the same epoch
order, rank 0 validates and writes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from guesser.checkpoint import atomic_write_text, flatten, load_checkpoint, save_checkpoint, unflatten
from guesser.errors import GuesserError
from guesser.features import FeatureConfig, normalize
from guesser.labels import FAMILY_SETS, LabelSpace, Vocabulary, default_label_space
from guesser.models import build_model, count_parameters
from trainer.augment import augment_db, augment_normalised
from trainer.cache import CachedSplit, FeatureCache, find_cache
from trainer.fsd50k import family_targets
from trainer.inference import predict_split
from trainer.losses import Criterion, positive_weights, prior_bias
from trainer.metrics import mean_average_precision
from trainer.recipe import Recipe
from trainer.sampling import EpochSampler, oversampling_weights


@dataclass
class RunResult:
    directory: Path
    best_score: float
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------- setup helpers

def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GuesserError("--device cuda asked for, but no CUDA GPU is visible")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 where the hardware does it natively (Ampere+ GPUs, AVX512-BF16/AMX CPUs), else fp32."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    native = bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
    if precision == "bf16" or native:
        return torch.bfloat16
    return None


def step_seed(seed: int, epoch: int, step: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + step) % (2**63 - 1)


@dataclass
class Targets:
    """What the model learns from a split: a [N, K] float32 matrix and the clips to use."""

    y: np.ndarray
    keep: np.ndarray  # indices into the split
    classes: tuple[str, ...]


def task_targets(recipe: Recipe, split: CachedSplit, labels: LabelSpace) -> Targets:
    if recipe.task == "labels":
        return Targets(split.targets.astype(np.float32), np.arange(len(split)), split.vocabulary)
    fam = family_targets(split.targets, labels, recipe.train.families)
    keep = np.flatnonzero(fam.sum(axis=1) > 0)
    return Targets(fam, keep, FAMILY_SETS[recipe.train.families])


def score_name(task: str) -> str:
    return "val_map" if task == "labels" else "val_family_map"


def validation_loss(criterion: Criterion, probs: np.ndarray, y: np.ndarray, multilabel: bool) -> float:
    """The training criterion on validation probabilities (turned back into logits)."""
    p = torch.from_numpy(probs).clamp(1e-6, 1 - 1e-6)
    logits = torch.logit(p) if multilabel else torch.log(p)
    return float(criterion(logits, torch.from_numpy(y)))


def validation_score(probs: np.ndarray, t: Targets) -> float:
    y = (t.y[t.keep] > 0).astype(np.uint8)
    return mean_average_precision(y, probs[t.keep])


# ---------------------------------------------------------------- checkpoints

def model_meta(recipe: Recipe, cfg: FeatureConfig, classes, model: nn.Module, extra: dict) -> dict:
    """The JSON header of a model checkpoint: everything the app needs to run it."""
    return {
        "kind": "model",
        "name": recipe.name,
        "member": recipe.member,
        "arch": recipe.arch,
        "task": recipe.task,
        "classes": list(classes),
        "families_set": recipe.train.families if recipe.task == "families" else None,
        "model_hparams": recipe.model,
        "features": cfg.to_dict(),
        "recipe": recipe.to_dict(),
        "params": count_parameters(model),
        "commit": git_commit(),
        **extra,
    }


def save_model(path: Path, model: nn.Module, meta: dict, dtype: torch.dtype | None = None) -> None:
    sd = model.state_dict()
    if dtype is not None:
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    save_checkpoint(path, sd, meta)


def save_state(path: Path, model, optimizer, scheduler, counters: dict, meta: dict) -> None:
    """Everything to continue a run: model, optimiser and schedule state, counters, history."""
    skel, tensors = flatten({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    state = {"kind": "train-state", "skeleton": skel, "scheduler": scheduler.state_dict() if scheduler else None,
             "counters": counters, **meta}
    save_checkpoint(path, tensors, state)


def load_state(path: Path) -> tuple[dict, dict]:
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") != "train-state":
        raise GuesserError(f"{path}: not a resumable training state")
    return unflatten(meta["skeleton"], tensors), meta


# ---------------------------------------------------------------- the loop

def make_optimizer(recipe: Recipe, model: nn.Module):
    t = recipe.train
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    opt = cls(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    if t.scheduler == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=t.plateau_factor,
                                                           patience=t.plateau_patience, min_lr=t.min_lr)
    elif t.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t.epochs, eta_min=t.min_lr)
    else:
        sched = None
    return opt, sched


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
    log=print,
) -> RunResult:
    """Train ``recipe`` on the cache under ``cache_root``; write the run folder ``out_dir``.

    ``max_steps`` stops (as if interrupted) after that many optimiser steps of
    this call: tests use it to simulate a crash mid-epoch.
    """
    t = recipe.train
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    dev = pick_device(device)
    if world > 1:
        import torch.distributed as dist

        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    main = rank == 0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out / "last.safetensors", out / "best.safetensors"

    cache: FeatureCache = find_cache(cache_root, recipe.feature_config())
    cfg = cache.feature_config(recipe.feature_config().norm)
    from dataclasses import replace

    cfg = replace(cfg, clip_seconds=recipe.feature_config().clip_seconds, short=recipe.feature_config().short)
    labels = LabelSpace(Vocabulary(cache.split("train").vocabulary, default_label_space().vocabulary.mids),
                        default_label_space().ontology)
    train_split, val_split = cache.split("train"), cache.split("val")
    tr, va = task_targets(recipe, train_split, labels), task_targets(recipe, val_split, labels)
    n_out = tr.y.shape[1]

    torch.manual_seed(t.seed)
    model = build_model(recipe.arch, n_out, **recipe.model)
    if t.pretrained:
        from guesser.models.panns import load_panns_weights

        load_panns_weights(model, t.pretrained)
    if t.prior_bias and recipe.task == "labels":
        last_linear = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        with torch.no_grad():
            last_linear.bias.copy_(prior_bias(tr.y[tr.keep]))
    model.to(dev)
    model = model.to(memory_format=torch.channels_last)
    criterion = Criterion(t.loss, positive_weights(tr.y[tr.keep] > 0, t.pos_weight, t.pos_weight_cap)
                          if t.loss == "bce" else None, t.focal_alpha, t.focal_gamma).to(dev)
    optimizer, scheduler = make_optimizer(recipe, model)
    amp = autocast_dtype(t.precision, dev)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16 and dev.type == "cuda")

    weights = oversampling_weights(tr.y[tr.keep], t.oversample_power) if t.oversample else None
    sampler = EpochSampler(len(tr.keep), t.seed, weights, rank, world)
    steps_per_epoch = max(1, len(sampler) // t.batch_size)

    counters = {"epoch": 0, "step": 0, "best": -math.inf, "best_epoch": -1, "bad_epochs": 0, "seconds": 0.0,
                "loss_sum": 0.0, "loss_n": 0}
    history: list[dict] = []
    if resume and last_path.exists():
        state, meta = load_state(last_path)
        if meta.get("recipe") != recipe.to_dict():
            raise GuesserError(f"{last_path}: was written by a different recipe; use another --out or drop --resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and meta.get("scheduler"):
            scheduler.load_state_dict(meta["scheduler"])
        counters.update(meta["counters"])
        history = meta.get("history", [])
        if main:
            log(json.dumps({"resumed": str(last_path), "epoch": counters["epoch"], "step": counters["step"]}))
    elif main and last_path.exists() and not resume:
        raise GuesserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")

    net: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    run_meta = {"recipe": recipe.to_dict(), "history": history}
    trained = [c for c, n in zip(tr.classes, (tr.y[tr.keep] > 0).sum(axis=0)) if n > 0]
    extra_meta = lambda: {"metrics": history[-1] if history else {}, "best_epoch": counters["best_epoch"],
                          "trained_labels": trained,
                          "trained_seconds": counters["seconds"], "world_size": world}

    def checkpoint_state() -> None:
        if main:
            save_state(last_path, model, optimizer, scheduler, dict(counters), {**run_meta, "history": history})

    steps_this_call = 0
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.1f} clips/s"),
                   TimeRemainingColumn(), console=console, disable=not (progress and main), transient=True)
    multilabel = recipe.task == "labels"
    try:
        with bar:
            while counters["epoch"] < t.epochs:
                epoch = counters["epoch"]
                order = sampler.indices(epoch)
                task_id = bar.add_task(f"{recipe.name} epoch {epoch + 1}/{t.epochs}", total=steps_per_epoch,
                                       completed=counters["step"], loss=0.0, rate=0.0)
                net.train()
                t_epoch = time.perf_counter()
                seen = 0
                while counters["step"] < steps_per_epoch:
                    step = counters["step"]
                    idx = tr.keep[order[step * t.batch_size:(step + 1) * t.batch_size]]
                    seed = step_seed(t.seed, epoch, step)
                    torch.manual_seed(seed)
                    g = torch.Generator().manual_seed(seed)
                    rng = np.random.default_rng(seed) if t.random_crop else None
                    x = torch.from_numpy(train_split.crops(idx, cfg.clip_frames, rng))
                    y = torch.from_numpy(tr.y[idx])
                    x, y = augment_db(x, y, g, recipe.augment, multilabel)
                    x = normalize(x, cfg)
                    x, y = augment_normalised(x, y, g, recipe.augment)
                    x = x.unsqueeze(1).to(dev).contiguous(memory_format=torch.channels_last)
                    y = y.to(dev)
                    with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                        logits = net(x)
                    loss = criterion(logits, y)
                    if not torch.isfinite(loss):
                        raise GuesserError(f"{recipe.name}: loss became {loss.item()} at epoch {epoch + 1} step {step}; "
                                           "lower train.lr or check the cache")
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    counters["loss_sum"] += float(loss.item())
                    counters["loss_n"] += 1
                    counters["step"] += 1
                    steps_this_call += 1
                    seen += len(idx)
                    bar.update(task_id, advance=1, loss=counters["loss_sum"] / counters["loss_n"],
                               rate=seen * world / max(time.perf_counter() - t_epoch, 1e-9))
                    if checkpoint_every and counters["step"] % checkpoint_every == 0:
                        counters["seconds"] += time.perf_counter() - t_epoch
                        t_epoch = time.perf_counter()
                        checkpoint_state()
                    if max_steps is not None and steps_this_call >= max_steps:
                        raise _StopForTest()
                counters["seconds"] += time.perf_counter() - t_epoch
                bar.remove_task(task_id)

                # ---- end of epoch: validate (rank 0), agree on the score, schedule, checkpoint
                train_loss = counters["loss_sum"] / max(counters["loss_n"], 1)
                row = {"epoch": epoch + 1, "train_loss": round(train_loss, 6), "lr": optimizer.param_groups[0]["lr"]}
                validating = (epoch + 1) % t.val_every == 0 or epoch + 1 == t.epochs
                score = None
                if validating and main:
                    probs = predict_split(model, val_split, cfg, recipe.task, device=dev, autocast_dtype=amp)
                    row["val_loss"] = round(validation_loss(criterion, probs[va.keep], va.y[va.keep], multilabel), 6)
                    score = validation_score(probs, va)
                if validating and world > 1:
                    score = _broadcast(score)
                if validating:
                    improved = score > counters["best"]
                    if improved:
                        counters.update(best=score, best_epoch=epoch + 1, bad_epochs=0)
                    else:
                        counters["bad_epochs"] += 1
                    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        scheduler.step(score)
                    if main:
                        row[score_name(recipe.task)] = round(score, 6)
                        row["seconds"] = round(counters["seconds"], 1)
                        history.append(row)
                        if improved:
                            save_model(best_path, model, model_meta(recipe, cfg, tr.classes, model, extra_meta()))
                        log(json.dumps(row))
                        with open(out / "metrics.jsonl", "a") as f:
                            f.write(json.dumps(row) + "\n")
                if scheduler is not None and not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step()
                counters.update(epoch=epoch + 1, step=0, loss_sum=0.0, loss_n=0)
                checkpoint_state()
                if t.early_stop and counters["bad_epochs"] >= t.early_stop:
                    if main:
                        log(json.dumps({"early_stop": epoch + 1, "best_epoch": counters["best_epoch"]}))
                    break
    except KeyboardInterrupt:
        checkpoint_state()
        raise GuesserError(f"interrupted at epoch {counters['epoch'] + 1} step {counters['step']}; "
                           f"resume with: guesser train one {recipe.name} --out {out} --resume") from None
    except _StopForTest:
        checkpoint_state()
        return RunResult(out, counters["best"], counters["best_epoch"], counters["epoch"], counters["seconds"], history)

    result = RunResult(out, counters["best"], counters["best_epoch"], counters["epoch"], counters["seconds"], history)
    if main:
        summary = {"recipe": recipe.to_dict(), "member": recipe.member, "name": recipe.name, "task": recipe.task,
                   "score_name": score_name(recipe.task), "best_score": counters["best"],
                   "best_epoch": counters["best_epoch"], "epochs_run": counters["epoch"],
                   "trained_seconds": round(counters["seconds"], 1), "params": count_parameters(model),
                   "cache": str(cache.directory), "commit": git_commit(), "world_size": world}
        atomic_write_text(out / "run.json", json.dumps(summary, indent=1))
    return result


class _StopForTest(Exception):
    pass


def _broadcast(score: float | None) -> float:
    """Rank 0's validation score to every rank, so schedules and early stopping agree."""
    import torch.distributed as dist

    box = torch.tensor([score if score is not None else 0.0], dtype=torch.float64)
    dist.broadcast(box, src=0)
    return float(box.item())


def main_from_env() -> None:  # pragma: no cover - torchrun entry point helper
    """``torchrun -m trainer.train RECIPE CACHE OUT``: the same loop on every rank."""
    recipe, cache, out = sys.argv[1:4]
    train(Recipe.load(recipe), cache, out)


if __name__ == "__main__":  # pragma: no cover
    main_from_env()
