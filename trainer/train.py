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
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from guesser.checkpoint import (HeaderFields, ModelMeta, atomic_write_text, flatten, load_checkpoint,
                                save_checkpoint, save_model_checkpoint, score_name, unflatten)
from guesser.errors import GuesserError
from guesser.features import FeatureConfig, normalize
from guesser.labels import FAMILY_SETS, LabelSpace, Vocabulary, default_label_space
from guesser.models import build_model, count_parameters
from trainer.augment import augment_db, augment_normalised
from trainer.background import ambient_clips
from trainer.cache import CachedSplit, FeatureCache, find_cache
from trainer.fsd50k import family_targets
from trainer.inference import predict_split
from trainer.distill import distillation_loss, soft_targets
from trainer.losses import Criterion, positive_weights, prior_bias
from trainer.metrics import mean_average_precision
from trainer.recipe import Recipe, TrainConfig
from trainer.sampling import EpochSampler, oversampling_weights


@dataclass
class RunResult:
    directory: Path
    best_score: float
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    finished: bool = True  # False: stopped early by ``max_steps`` (resume to continue)
    model: nn.Module | None = field(default=None, repr=False)  # the trained module (this rank's copy)


class TrainingDiverged(GuesserError):
    """The loss became NaN or infinite (usually too high a learning rate)."""


class TrainingInterrupted(GuesserError):
    """Ctrl-C / SIGTERM: ``last`` was saved at the current step; exit like an interrupted command."""

    exit_code = 130


# ---------------------------------------------------------------- setup helpers

@lru_cache(maxsize=1)
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
    try:
        return torch.device(name)
    except RuntimeError:
        raise GuesserError(f"--device {name!r}: not a device (auto, cpu, cuda, cuda:1 …)") from None


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision``, or None for plain fp32.

    ``auto``: bf16 where the hardware does it natively (Ampere+ GPUs, AVX512-BF16/AMX
    CPUs), fp16 on older GPUs (with a GradScaler), else fp32. ``bf16`` forces bf16.
    """
    from guesser.fastpath import bf16_native

    if precision == "fp32":
        return None
    if precision == "bf16" or bf16_native(device.type):
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else None


def step_seed(seed: int, epoch: int, step: int, rank: int = 0) -> int:
    """The seed of one step on one rank: batch crops, augmentation and dropout all derive from it."""
    return (seed * 1_000_003 + epoch * 10_007 + step * 101 + rank) % (2**63 - 1)


@dataclass
class Targets:
    """What the model learns from a split: a [N, K] float32 matrix and the clips to use."""

    y: np.ndarray
    keep: np.ndarray  # indices into the split
    classes: tuple[str, ...]
    soft: np.ndarray | None = None  # [N, K] a teacher's probabilities (distillation), rows as ``y``
    known: np.ndarray | None = None  # [K] bool: the classes the teacher learned


def task_targets(recipe: Recipe, split: CachedSplit, labels: LabelSpace) -> Targets:
    if recipe.task == "labels":
        return Targets(split.targets.astype(np.float32), np.arange(len(split)), split.vocabulary)
    fam = family_targets(split.targets, labels, recipe.train.families)
    keep = np.flatnonzero(fam.sum(axis=1) > 0)
    return Targets(fam, keep, FAMILY_SETS[recipe.train.families])


def validation_loss(criterion: Criterion, probs: np.ndarray, y: np.ndarray, multilabel: bool) -> float:
    """The training criterion on validation probabilities (turned back into logits)."""
    dev = criterion.pos_weight.device
    p = torch.from_numpy(probs).to(dev).clamp(1e-6, 1 - 1e-6)
    logits = torch.logit(p) if multilabel else torch.log(p)
    return float(criterion(logits, torch.from_numpy(y).to(dev)))


def validation_score(probs: np.ndarray, t: Targets) -> float:
    y = (t.y[t.keep] > 0).astype(np.uint8)
    return mean_average_precision(y, probs[t.keep])


def make_batch(split: CachedSplit, targets: Targets, idx: np.ndarray, cfg: FeatureConfig, recipe: Recipe,
               seed: int, background: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch: crops -> dB augmentation -> normalise -> SpecAugment/mixup; [B, 1, M, T], [B, K].

    ``background`` holds the indices (into ``split``) of the ambient clips that
    ``augment.background_p`` may put under a clip (:mod:`trainer.background`).
    A pure function of its arguments (every random draw comes from ``seed``),
    which is what makes a resumed run identical to an uninterrupted one.
    """
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed) if recipe.train.random_crop else None
    t = recipe.train
    frames = int(round(t.crop_seconds * cfg.frames_per_second)) if t.crop_seconds else cfg.clip_frames
    x = torch.from_numpy(split.crops(idx, frames, rng, policy=cfg.short))
    y = torch.from_numpy(targets.y[idx])
    if targets.soft is not None:  # the teacher's columns ride along, so mixing treats them as the labels
        y = torch.cat([y, torch.from_numpy(targets.soft[idx])], dim=1)
    multilabel = recipe.task == "labels"
    bg = None
    if recipe.augment.background_p and background is not None and len(background):
        bg_rng = np.random.default_rng([seed, 1])
        bg = torch.from_numpy(split.crops(bg_rng.choice(background, len(idx)), frames, bg_rng, policy="tile"))
    x, y = augment_db(x, y, g, recipe.augment, multilabel, background=bg, frames_per_second=cfg.frames_per_second)
    x = normalize(x, cfg)
    x, y = augment_normalised(x, y, g, recipe.augment, fill="mean" if cfg.norm == "none" else 0.0)
    return x.unsqueeze(1), y


def resume_command(recipe: Recipe, cache_root: str | Path, out: Path) -> str:
    """A command that continues this run as printed: the recipe (a shipped name, else RECIPE.toml for the
    file it came from), the cache and the overrides a resumed run must repeat to match the saved recipe."""
    from trainer.recipe import shipped_names

    name = recipe.name if recipe.name in shipped_names() else "RECIPE.toml"
    t = recipe.train
    return (f"guesser train one {name} --cache {cache_root} --out {out} --epochs {t.epochs} "
            f"--batch-size {t.batch_size} --resume")


def shipped_model_path(member: str) -> Path:
    """The checkpoint the shipped models index (``$GUESSER_MODELS`` or assets/models) lists for ``member``."""
    from guesser.checkpoint import ModelsIndex
    from guesser.ensemble import default_models_index

    index = default_models_index()
    try:
        entry = next(e for e in ModelsIndex.read(index).models if e.member == member)
    except (GuesserError, StopIteration):
        raise GuesserError(f"train.init = 'shipped': no shipped {member} model in {index}") from None
    return index.parent / entry.path


def init_from_checkpoint(model: nn.Module, path: str, recipe: Recipe, classes: tuple[str, ...]) -> None:
    """Start from a guesser checkpoint's weights (fine-tuning), after checking it is the same network.

    ``path`` may be ``"shipped"``: the member's model among the shipped ones.
    Its architecture, task and class names must match the recipe's, or the
    weights would be silently misplaced; the front-end may differ only in its
    normalisation statistics (the new train split brings its own).
    """
    from guesser.checkpoint import load_model_checkpoint

    if path == "shipped":
        path = str(shipped_model_path(recipe.member))
    tensors, meta = load_model_checkpoint(path, dtype=torch.float32)
    theirs = (meta.arch, meta.task, tuple(meta.classes))
    if theirs != (recipe.arch, recipe.task, tuple(classes)):
        raise GuesserError(f"train.init {path}: a {theirs[0]} {theirs[1]} model with {len(theirs[2])} classes; "
                           f"the recipe trains {recipe.arch} {recipe.task} with {len(classes)}")
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise GuesserError(f"train.init {path}: weights do not fit {recipe.arch} ({str(e).splitlines()[0]})") from None


def ema_with_warmup(decay: float):
    """An EMA whose decay ramps up as (1 + n) / (10 + n) towards ``decay`` (n: updates so far).

    With a fixed 0.999 the average still holds (0.999)^n of the initial weights:
    28 % after 1,300 steps, which on a small data set is most of a run. The
    ramp (as TensorFlow's ExponentialMovingAverage with num_updates) follows the
    weights closely early on and settles into the long average later.
    """

    @torch.no_grad()
    def update(ema_params, params, num_averaged):
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        if torch.is_floating_point(ema_params[0]):
            torch._foreach_lerp_(ema_params, params, 1.0 - d)
        else:  # integer buffers (BatchNorm's batch counter): follow the model
            for e, p in zip(ema_params, params, strict=True):
                e.copy_(p)

    return update


# ---------------------------------------------------------------- learning rate

def make_optimizer(recipe: Recipe, model: nn.Module):
    """Adam/AdamW, plus a ReduceLROnPlateau for ``plateau`` (other schedules are :func:`scheduled_lr`)."""
    t = recipe.train
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    opt = cls(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    plateau = None
    if t.scheduler == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=t.plateau_factor,
                                                             patience=t.plateau_patience, min_lr=t.min_lr)
    return opt, plateau


def scheduled_lr(t: TrainConfig, it: int, steps_per_epoch: int) -> float | None:
    """Learning rate of optimiser step ``it`` (counted over the whole run), as nanoGPT's ``get_lr``.

    Linear warmup over ``warmup_epochs``, then: ``cosine`` decays to ``min_lr`` by the
    last step, ``none`` stays at ``lr``, ``plateau`` returns None (after warmup the
    ReduceLROnPlateau owns the rate; it lives in the optimiser state, so it resumes).
    """
    warm = t.warmup_epochs * steps_per_epoch
    if it < warm:
        return t.lr * (it + 1) / warm
    if t.scheduler == "cosine":
        ratio = min(1.0, (it - warm) / max(1, t.epochs * steps_per_epoch - warm))
        return t.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (t.lr - t.min_lr)
    if t.scheduler == "plateau":
        return None
    return t.lr


# ---------------------------------------------------------------- checkpoints

def model_meta(recipe: Recipe, cfg: FeatureConfig, classes, model: nn.Module) -> ModelMeta:
    """The header of a model checkpoint: everything the app needs to run it (training results added by the caller)."""
    return ModelMeta(name=recipe.name, member=recipe.member, arch=recipe.arch, task=recipe.task,
                     classes=tuple(classes), features=cfg, model_hparams=dict(recipe.model),
                     families_set=recipe.train.families if recipe.task == "families" else None,
                     recipe=recipe.to_dict(), params=count_parameters(model), commit=git_commit())


def save_model(path: Path, model: nn.Module, meta: ModelMeta, dtype: torch.dtype | None = None) -> None:
    save_model_checkpoint(path, model.state_dict(), meta, dtype)


def save_state(path: Path, model, optimizer, plateau, scaler, counters: dict, meta: dict, ema=None) -> None:
    """Everything to continue a run: model, optimiser, EMA, plateau and grad-scaler state, counters, history."""
    tree = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    if ema is not None:
        tree["ema"] = ema.state_dict()
    skel, tensors = flatten(tree)
    state = {"kind": "train-state", "skeleton": skel, "scheduler": plateau.state_dict() if plateau else None,
             "scaler": scaler.state_dict(), "counters": counters, **meta}
    save_checkpoint(path, tensors, state)


@dataclass
class SavedState:
    """The header of ``last.safetensors`` (besides the tensors): what a resumed run continues from."""

    counters: dict
    recipe: dict
    history: list
    scheduler: dict | None
    scaler: dict | None
    world_size: int | None

    @classmethod
    def from_header(cls, header: dict, where: Path) -> "SavedState":
        f = HeaderFields(header, str(where), "the training state")
        return cls(counters=f.dict("counters"), recipe=f.dict("recipe", {}), history=f.list("history", []),
                   scheduler=f.dict("scheduler", None), scaler=f.dict("scaler", None),
                   world_size=f.int("world_size", None))


def load_state(path: Path) -> tuple[dict, SavedState]:
    """(model/optimiser/EMA state dicts, the checked header) of a run's ``last.safetensors``.

    Its shape is checked too: a well-formed file of the wrong content (a missing
    tensor, counters of the wrong type or sign) is one line, not a traceback.
    """
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") != "train-state":
        raise GuesserError(f"{path}: not a resumable training state")
    saved = SavedState.from_header(meta, path)
    try:
        state = unflatten(HeaderFields(meta, str(path), "the training state").any("skeleton"), tensors)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise GuesserError(f"{path}: an inconsistent training state (a tensor is missing: {e}); "
                           "delete it to start over, or use another --out") from None
    problem = state_problem(state, meta)
    if problem:
        raise GuesserError(f"{path}: an inconsistent training state ({problem}); "
                           "delete it to start over, or use another --out")
    return state, saved


COUNTER_TYPES = {"epoch": int, "step": int, "best": (int, float), "best_epoch": int, "seconds": (int, float),
                 "loss_sum": (int, float), "loss_n": int, "done": bool}


def state_problem(state, meta: dict) -> str | None:
    """What is wrong with a loaded state's structure and counters (None: nothing)."""
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) or "optimizer" not in state:
        return "no model or optimizer state"
    if not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        return "model state holds something other than tensors"
    counters = meta.get("counters")
    if not isinstance(counters, dict):
        return "no counters"
    for key, kind in COUNTER_TYPES.items():  # a counter added since the state was written takes its default
        if key not in counters and key not in ("epoch", "step"):
            continue
        v = counters.get(key)
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            return f"counter {key} is {v!r}"
    if any(counters.get(k, 0) < 0 for k in ("epoch", "step", "loss_n")):
        return "negative counters"
    history = meta.get("history", [])
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        return "history is not a list of epochs"
    return None


def recipe_difference(saved: dict, current: dict, prefix: str = "") -> str | None:
    """The first key where two recipe dicts differ (after a JSON round trip), e.g. ``train.lr (0.001 vs 0.01)``."""
    a, b = json.loads(json.dumps(saved)), json.loads(json.dumps(current))
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return None if a == b else f"{prefix} ({a!r} vs {b!r})"
    for k in sorted(set(a) | set(b)):
        d = recipe_difference(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
        if d:
            return d
    return None


def _with_defaults(saved: dict) -> dict:
    """A saved recipe with the fields added since it was written filled in by their defaults.

    So a run started before a new (defaulted) recipe option existed can still be resumed.
    """
    try:
        return Recipe.from_dict(saved).to_dict()
    except GuesserError:
        return saved


def resume_state(out: Path, resume: bool, recipe: Recipe, world: int, main: bool):
    """(state, meta) to continue from, or None for a fresh run; rank 0 decides and reads, then tells every rank.

    Raises on every rank alike (so no rank waits forever for one that failed).
    """
    last = out / "last.safetensors"
    answer: tuple = (None, None)
    if main:
        try:
            if last.exists() and not resume:
                raise GuesserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
            if last.exists():
                state, meta = load_state(last)
                diff = recipe_difference(_with_defaults(meta.recipe), recipe.to_dict())
                if diff:
                    raise GuesserError(f"{last}: was written by a different recipe ({diff}); "
                                       "use another --out or drop --resume")
                answer = ("state", (state, meta))
        except GuesserError as e:
            answer = ("error", str(e))
    if world > 1:
        import torch.distributed as dist

        box = [answer]
        dist.broadcast_object_list(box, src=0)
        answer = box[0]
    if answer[0] == "error":
        raise GuesserError(answer[1])
    return answer[1]


# ---------------------------------------------------------------- distributed and signals

def setup_distributed(dev: torch.device) -> tuple[int, int, torch.device, bool]:
    """(rank, world, device, created) from torchrun's environment; joins the process group if needed."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1:
        return 0, 1, dev, False
    import torch.distributed as dist

    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    created = not dist.is_initialized()
    if created:
        # rank 0 validates alone while the others wait: allow a long validation on a big split
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(hours=2))
    return rank, world, dev, created


def broadcast_float(value: float | None, dev: torch.device) -> float:
    """Rank 0's value on every rank (so schedules and early stopping agree). NCCL needs a device tensor."""
    import torch.distributed as dist

    box = torch.tensor([value if value is not None else 0.0], dtype=torch.float64, device=dev)
    dist.broadcast(box, src=0)
    return float(box.item())


def any_rank(flag: bool, world: int, dev: torch.device) -> bool:
    """True on every rank when it is True on any (a stop request must stop all ranks at the same step)."""
    if world <= 1:
        return flag
    import torch.distributed as dist

    box = torch.tensor([1.0 if flag else 0.0], device=dev)
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return bool(box.item() > 0)


def sum_ranks(values: list[float], world: int, dev: torch.device) -> list[float]:
    """Element-wise sum over ranks (the logged train loss is every rank's, not rank 0's alone)."""
    if world <= 1:
        return values
    import torch.distributed as dist

    box = torch.tensor(values, dtype=torch.float64, device=dev)
    dist.all_reduce(box)
    return box.tolist()


class StopRequests:
    """First SIGINT/SIGTERM: ask the loop to stop after the current step; a second SIGINT: stop now."""

    def __init__(self, log: Callable[[str], None]):
        self.requested = False
        self.log = log
        self.previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.log("stopping after this step to save a resumable checkpoint (Ctrl-C again to quit without saving)")

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)


# ---------------------------------------------------------------- the loop

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
    on_epoch: Callable[[dict], None] | None = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train ``recipe`` on the cache under ``cache_root``; write the run folder ``out_dir``.

    ``on_epoch(row)`` is called on rank 0 after every epoch, once its checkpoint is
    written, with that epoch's metrics row (the score under ``score_name(task)``
    when the epoch was validated); it may raise to end the run (``guesser tune``
    prunes trials this way). ``max_steps`` stops (as if interrupted) after that
    many optimiser steps of this call: tests use it to simulate a crash mid-epoch.

    Under torchrun the process group is torn down on every way out (finished,
    paused, interrupted, diverged, failed), never left to the interpreter's exit.
    """
    rank, world, dev, created_group = setup_distributed(pick_device(device))
    run: Run | None = None
    agreed = False  # every rank leaves together: safe to wait for the others before tearing down
    try:
        run = prepare(recipe, cache_root, out_dir, rank, world, dev, resume, log)
        paused = False
        with run.stop, progress_bar(run, progress) as bar:
            while run.counters["epoch"] < recipe.train.epochs and not run.counters["done"]:
                paused = train_epoch(run, bar, max_steps, checkpoint_every)
                if paused:
                    break
                end_epoch(run, on_epoch)
        if run.main and not paused:
            write_summary(run)
        agreed = True
        return run.result(finished=not paused)
    except (TrainingInterrupted, TrainingDiverged):  # raised on every rank at the same step
        agreed = True
        raise
    finally:
        if created_group:
            teardown(run, wait_for_others=agreed)


@dataclass
class Run:
    """One run as :func:`prepare` sets it up: data, model, optimiser, counters; the loop advances it."""

    recipe: Recipe
    out: Path
    rank: int
    world: int
    dev: torch.device
    cache: FeatureCache
    cfg: FeatureConfig
    train_split: CachedSplit
    val_split: CachedSplit
    tr: Targets
    va: Targets
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
    trained_labels: list[str]
    counters: dict  # everything besides tensors that a resumed run needs
    history: list[dict]
    stop: StopRequests
    console: object  # rich Console on stderr: the progress bar and stop notices
    log: Callable[[str], None]
    background: np.ndarray | None = None  # ambient train clips for augment.background_p (trainer.background)
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
                       dict(self.counters), {"recipe": self.recipe.to_dict(), "history": self.history,
                                             "world_size": self.world}, self.ema)

    def write_metrics(self) -> None:
        if self.main:  # rewritten whole, so it always agrees with the checkpoint it belongs to
            atomic_write_text(self.out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))

    def interrupted(self, where: str) -> TrainingInterrupted:
        return TrainingInterrupted(f"interrupted {where}; checkpoint saved, resume with: "
                                   f"{resume_command(self.recipe, self.cache.directory.parent, self.out)}")

    def result(self, finished: bool) -> RunResult:
        c = self.counters
        return RunResult(self.out, c["best"], c["best_epoch"], c["epoch"], c["seconds"], self.history, finished,
                         self.model)


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


def prepare(recipe: Recipe, cache_root: str | Path, out_dir: str | Path, rank: int, world: int, dev: torch.device,
            resume: bool, log: Callable[[str], None]) -> Run:
    """Set-up: the run folder, the state to resume, data and targets, model, loss, optimiser, EMA, sampler."""
    t = recipe.train
    main = rank == 0
    out = Path(out_dir)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".*.tmp"):  # a checkpoint half-written when the last run was killed
            stale.unlink(missing_ok=True)
    resumed = resume_state(out, resume, recipe, world, main)  # fails early, before any work

    # ---- data: the cache's frames, the recipe's window and normalisation, the task's targets
    cache: FeatureCache = find_cache(cache_root, recipe.feature_config())
    cfg = replace(cache.feature_config(recipe.feature_config().norm),
                  clip_seconds=recipe.feature_config().clip_seconds, short=recipe.feature_config().short)
    space = default_label_space()
    train_split, val_split = cache.split("train"), cache.split("val")
    labels = LabelSpace(Vocabulary(train_split.vocabulary, space.vocabulary.mids), space.ontology)
    tr, va = task_targets(recipe, train_split, labels), task_targets(recipe, val_split, labels)
    if len(tr.keep) == 0 or len(va.keep) == 0:
        raise GuesserError(f"{cache.directory}: no usable train or val clips for task {recipe.task!r}")
    if t.distill:
        tr = with_teacher(tr, recipe, cache_root, cache.directory, dev, main, world, log)

    # ---- model, loss, optimiser
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
    model = model.to(dev, memory_format=torch.channels_last)  # faster convolutions on GPUs and on oneDNN CPUs
    pos_weight = positive_weights(tr.y[tr.keep] > 0, t.pos_weight, t.pos_weight_cap) if t.loss == "bce" else None
    criterion = Criterion(t.loss, pos_weight, t.focal_alpha, t.focal_gamma).to(dev)
    optimizer, plateau = make_optimizer(recipe, model)
    ema = None
    if t.ema_decay > 0:  # an exponential moving average of the weights: what is validated and kept
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        average = ema_with_warmup(t.ema_decay) if t.ema_warmup else get_ema_multi_avg_fn(t.ema_decay)
        ema = AveragedModel(model, multi_avg_fn=average, use_buffers=True)
    amp = autocast_dtype(t.precision, dev)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16 and dev.type == "cuda")
    weights = oversampling_weights(tr.y[tr.keep], t.oversample_power) if t.oversample else None
    sampler = EpochSampler(len(tr.keep), t.seed, weights, rank, world)

    counters = {"epoch": 0, "step": 0, "best": -math.inf, "best_epoch": -1, "seconds": 0.0,
                "loss_sum": 0.0, "loss_n": 0, "done": False}
    history: list[dict] = []
    if resumed is not None:
        state, saved = resumed
        try:  # a state of the same recipe whose tensors do not fit this model: one line, not a traceback
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
            if plateau is not None and saved.scheduler:
                plateau.load_state_dict(saved.scheduler)
            if saved.scaler:
                scaler.load_state_dict(saved.scaler)
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise GuesserError(f"{out / 'last.safetensors'}: the saved state does not fit this run ({first[:160]}); "
                               "delete it to start over, or use another --out") from None
        counters.update(saved.counters)
        history = saved.history
        if main:
            log(json.dumps({"resumed": str(out / "last.safetensors"), "epoch": counters["epoch"] + 1,
                            "step": counters["step"]}))
    net: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    trained_labels = [tr.classes[k] for k in np.flatnonzero(tr.y[tr.keep].sum(axis=0) > 0)]
    background = ambient_clips(train_split.targets, train_split.vocabulary) if recipe.augment.background_p else None
    from rich.console import Console

    console = Console(stderr=True)
    stop = StopRequests(lambda msg: console.print(f"[yellow]{msg}[/]") if main else None)
    run = Run(recipe, out, rank, world, dev, cache, cfg, train_split, val_split, tr, va, model, net, ema, criterion,
              optimizer, plateau, scaler, amp, sampler, max(1, len(sampler) // t.batch_size), trained_labels,
              counters, history, stop, console, log, background)
    run.write_metrics()
    return run


def progress_bar(run: Run, progress: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.1f} clips/s"),
                    TimeRemainingColumn(), console=run.console, disable=not (progress and run.main), transient=True)


def train_epoch(run: Run, bar, max_steps: int | None, checkpoint_every: int) -> bool:
    """The rest of the current epoch, step by step; True when ``max_steps`` paused the run mid-epoch.

    The first stop request (on any rank) ends it after the step in flight, with
    ``last`` saved: :class:`TrainingInterrupted` on every rank at the same step.
    """
    t, c = run.recipe.train, run.counters
    epoch = c["epoch"]
    order = run.sampler.indices(epoch)
    task_id = bar.add_task(f"{run.recipe.name} epoch {epoch + 1}/{t.epochs}", total=run.steps_per_epoch,
                           completed=c["step"], loss=0.0, rate=0.0)
    run.net.train()
    t_epoch = t_rate = time.perf_counter()
    seen = 0
    while c["step"] < run.steps_per_epoch:
        seen += train_step(run, order)
        bar.update(task_id, advance=1, loss=c["loss_sum"] / c["loss_n"],
                   rate=seen * run.world / max(time.perf_counter() - t_rate, 1e-9))
        paused = max_steps is not None and run.steps_this_call >= max_steps
        interrupted = any_rank(run.stop.requested, run.world, run.dev)
        if paused or interrupted or (checkpoint_every and c["step"] % checkpoint_every == 0):
            c["seconds"] += time.perf_counter() - t_epoch
            t_epoch = time.perf_counter()
            run.save_state()
        if interrupted:
            raise run.interrupted(f"at epoch {epoch + 1} step {c['step']}")
        if paused:
            bar.remove_task(task_id)
            return True
    bar.remove_task(task_id)
    c["seconds"] += time.perf_counter() - t_epoch
    return False


def train_step(run: Run, order: np.ndarray) -> int:
    """One optimiser step on the batch at ``counters["step"]`` of this epoch's ``order``; returns its size."""
    t, c = run.recipe.train, run.counters
    epoch, step = c["epoch"], c["step"]
    idx = run.tr.keep[order[step * t.batch_size:(step + 1) * t.batch_size]]
    seed = step_seed(t.seed, epoch, step, run.rank)
    x, y = make_batch(run.train_split, run.tr, idx, run.cfg, run.recipe, seed, run.background)
    x = x.to(run.dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
    y = y.to(run.dev, non_blocking=True)
    lr = scheduled_lr(t, epoch * run.steps_per_epoch + step, run.steps_per_epoch)
    if lr is not None:
        for group in run.optimizer.param_groups:
            group["lr"] = lr
    torch.manual_seed(seed)  # dropout
    with torch.autocast(run.dev.type, dtype=run.amp or torch.float32, enabled=run.amp is not None):
        logits = run.net(x)
    loss = training_loss(run, logits, y)
    value = float(loss.item())
    if any_rank(not math.isfinite(value), run.world, run.dev):  # every rank stops at the same step
        raise TrainingDiverged(f"{run.recipe.name}: loss became {value if not math.isfinite(value) else 'nan'} "
                               f"at epoch {epoch + 1} step {step}; lower train.lr or check the cache")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    c["loss_sum"] += value
    c["loss_n"] += 1
    c["step"] += 1
    run.steps_this_call += 1
    return len(idx)


def training_loss(run: Run, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The recipe's criterion on the hard labels, plus the distillation term when a teacher is set (fp32)."""
    if run.tr.soft is None:
        return run.criterion(logits, y)  # Criterion casts the logits
    k, w = logits.shape[1], run.recipe.train.distill_weight
    known = torch.from_numpy(run.tr.known).to(y.device)
    soft = distillation_loss(logits, y[:, k:], known, multilabel=run.recipe.task == "labels")
    return (1 - w) * run.criterion(logits, y[:, :k]) + w * soft


def end_epoch(run: Run, on_epoch: Callable[[dict], None] | None) -> None:
    """Validate (rank 0; every rank agrees on the score), schedule, stop early, keep the best, checkpoint, log."""
    t, c = run.recipe.train, run.counters
    epoch = c["epoch"]
    loss_sum, loss_n = sum_ranks([c["loss_sum"], c["loss_n"]], run.world, run.dev)
    row = {"epoch": epoch + 1, "train_loss": round(loss_sum / max(loss_n, 1), 6),
           "lr": run.optimizer.param_groups[0]["lr"]}
    if (epoch + 1) % t.val_every == 0 or epoch + 1 == t.epochs:
        score = validate(run, row)
        row[score_name(run.recipe.task)] = round(score, 6)
        if score > c["best"]:
            c.update(best=score, best_epoch=epoch + 1)
            save_best(run, row)
        if run.plateau is not None and epoch + 1 >= t.warmup_epochs:
            run.plateau.step(score)
        if t.early_stop and epoch + 1 - c["best_epoch"] >= t.early_stop:
            c["done"] = True  # saved with the state: a resumed run stays stopped
    row["seconds"] = round(c["seconds"], 1)
    run.history.append(row)
    c.update(epoch=epoch + 1, step=0, loss_sum=0.0, loss_n=0)
    run.save_state()
    run.write_metrics()
    if run.main:
        run.log(json.dumps(row))
        if c["done"]:
            run.log(json.dumps({"early_stop": epoch + 1, "best_epoch": c["best_epoch"]}))
        if on_epoch is not None:
            on_epoch(row)
    if any_rank(run.stop.requested, run.world, run.dev):
        raise run.interrupted(f"after epoch {epoch + 1}")


def validate(run: Run, row: dict) -> float:
    """The validation score (rank 0 scores the val split the app's way; every rank gets its value)."""
    score = None
    if run.main:
        va = run.va
        probs = predict_split(run.evaluated, run.val_split, run.cfg, run.recipe.task, device=run.dev,
                              autocast_dtype=run.amp)
        row["val_loss"] = round(validation_loss(run.criterion, probs[va.keep], va.y[va.keep],
                                                run.recipe.task == "labels"), 6)
        score = validation_score(probs, va)
    if run.world > 1:
        score = broadcast_float(score, run.dev)
    return score


def save_best(run: Run, row: dict) -> None:
    """``best.safetensors``: the validated weights and everything the app needs to run them (rank 0)."""
    if run.main:
        c = run.counters
        meta = replace(model_meta(run.recipe, run.cfg, run.tr.classes, run.evaluated), metrics=dict(row),
                       best_epoch=row["epoch"], trained_seconds=c["seconds"],
                       trained_labels=tuple(run.trained_labels), world_size=run.world)
        save_model(run.out / "best.safetensors", run.evaluated, meta)


def write_summary(run: Run) -> None:
    """``run.json``: what ``guesser train multi`` indexes and ``guesser report`` shows."""
    c, r = run.counters, run.recipe
    summary = {"recipe": r.to_dict(), "member": r.member, "name": r.name, "task": r.task,
               "score_name": score_name(r.task), "best_score": c["best"], "best_epoch": c["best_epoch"],
               "epochs_run": c["epoch"], "early_stopped": c["done"], "trained_seconds": round(c["seconds"], 1),
               "params": count_parameters(run.model), "cache": str(run.cache.directory), "commit": git_commit(),
               "world_size": run.world}
    atomic_write_text(run.out / "run.json", json.dumps(summary, indent=1))


def teardown(run: Run | None, *, wait_for_others: bool) -> None:
    """Leave the process group this process created, on every way out of :func:`train`.

    DDP's reducer holds the process group: the wrapper (and its reference cycles)
    is dropped first, so the group is torn down here on every rank, not by the
    garbage collector while the interpreter exits (where gloo's threads could be
    destroyed still running: SIGABRT). When every rank leaves together (finished,
    interrupted, diverged) each waits for the others first; after a failure on
    one rank alone there is no one to wait for, and leaving makes the others fail
    rather than wait forever.
    """
    import gc

    import torch.distributed as dist

    if run is not None:
        run.net = None
    gc.collect()
    if wait_for_others:
        dist.barrier()
    dist.destroy_process_group()


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
