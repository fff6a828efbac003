"""The training state: what ``last.safetensors`` holds and the checks before a run resumes from it.

Besides the tensors (model, optimiser, EMA) the header holds the
:class:`Counters`, the recipe, the metrics history, the plateau schedule and the
grad scaler. A run resumes only from a state of the same recipe (compared after
filling in options added since it was written), and a state of the wrong shape
is one line naming the file, never a traceback.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from guesser.checkpoint import HeaderFields, flatten, load_checkpoint, save_checkpoint, unflatten
from guesser.errors import GuesserError
from trainer.ddp import broadcast_object
from trainer.recipe import Recipe


@dataclass
class Counters:
    """Where a run stands, besides its tensors: saved with every state, so a resumed run continues exactly."""

    epoch: int = 0  # epochs finished
    step: int = 0  # optimiser steps finished in the current epoch
    best: float = -math.inf  # the best validation score so far
    best_epoch: int = -1
    seconds: float = 0.0  # training time so far (all calls together)
    loss_sum: float = 0.0  # this epoch's train loss so far (summed over its steps)
    loss_n: int = 0
    done: bool = False  # stopped early: a resumed run stays stopped

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Counters":
        """The saved counters; one added since the state was written takes its default."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


COUNTER_TYPES = {"epoch": int, "step": int, "best": (int, float), "best_epoch": int, "seconds": (int, float),
                 "loss_sum": (int, float), "loss_n": int, "done": bool}
assert set(COUNTER_TYPES) == {f.name for f in fields(Counters)}


def save_state(path: Path, model, optimizer, plateau, scaler, counters: Counters, meta: dict, ema=None) -> None:
    """Everything to continue a run: model, optimiser, EMA, plateau and grad-scaler state, counters, history."""
    tree = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    if ema is not None:
        tree["ema"] = ema.state_dict()
    skel, tensors = flatten(tree)
    state = {"kind": "train-state", "skeleton": skel, "scheduler": plateau.state_dict() if plateau else None,
             "scaler": scaler.state_dict(), "counters": counters.to_dict(), **meta}
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
    answer = broadcast_object(answer, world)
    if answer[0] == "error":
        raise GuesserError(answer[1])
    return answer[1]
