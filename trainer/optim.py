"""The optimiser, the learning-rate schedule and the moving average of the weights."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from trainer.recipe import Recipe, TrainConfig


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


def make_ema(recipe: Recipe, model: nn.Module):
    """An exponential moving average of the weights (what is validated and kept), or None (``ema_decay`` 0)."""
    t = recipe.train
    if t.ema_decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    average = ema_with_warmup(t.ema_decay) if t.ema_warmup else get_ema_multi_avg_fn(t.ema_decay)
    return AveragedModel(model, multi_avg_fn=average, use_buffers=True)
