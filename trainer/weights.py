"""The trainer's model checkpoints: what ``best.safetensors`` says about itself, and starting from one.

A run writes its best model with a :class:`~guesser.checkpoint.ModelMeta`
header (everything the app needs to run it) and may start from an existing
guesser checkpoint (``train.init``: a path or ``"shipped"``), after checking
that it is the same network.
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn

from guesser.checkpoint import ModelMeta, save_model_checkpoint
from guesser.errors import GuesserError
from guesser.features import FeatureConfig
from guesser.models import count_parameters
from trainer.recipe import Recipe


@lru_cache(maxsize=1)
def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def model_meta(recipe: Recipe, cfg: FeatureConfig, classes, model: nn.Module) -> ModelMeta:
    """The header of a model checkpoint: everything the app needs to run it (training results added by the caller)."""
    return ModelMeta(name=recipe.name, member=recipe.member, arch=recipe.arch, task=recipe.task,
                     classes=tuple(classes), features=cfg, model_hparams=dict(recipe.model),
                     families_set=recipe.train.families if recipe.task == "families" else None,
                     recipe=recipe.to_dict(), params=count_parameters(model), commit=git_commit())


def save_model(path: Path, model: nn.Module, meta: ModelMeta, dtype: torch.dtype | None = None) -> None:
    save_model_checkpoint(path, model.state_dict(), meta, dtype)


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
    normalisation statistics (the new train split brings its own). A wider
    variant (``[model] width``) of the checkpoint's network starts from it
    widened, function preserved (:mod:`trainer.widen`).
    """
    from guesser.checkpoint import load_model_checkpoint

    if path == "shipped":
        path = str(shipped_model_path(recipe.member))
    tensors, meta = load_model_checkpoint(path, dtype=torch.float32)
    theirs = (meta.arch, meta.task, tuple(meta.classes))
    if theirs != (recipe.arch, recipe.task, tuple(classes)):
        raise GuesserError(f"train.init {path}: a {theirs[0]} {theirs[1]} model with {len(theirs[2])} classes; "
                           f"the recipe trains {recipe.arch} {recipe.task} with {len(classes)}")
    theirs_width, ours_width = int(meta.model_hparams.get("width", 1)), int(recipe.model.get("width", 1))
    if theirs_width != ours_width:
        tensors = _widened(tensors, model, path, theirs_width, ours_width, recipe.train.seed)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise GuesserError(f"train.init {path}: weights do not fit {recipe.arch} ({str(e).splitlines()[0]})") from None


def _widened(tensors: dict[str, torch.Tensor], model: nn.Module, path: str, theirs: int, ours: int,
             seed: int) -> dict[str, torch.Tensor]:
    """``tensors`` (a width-``theirs`` model) grown to ``model``'s width ``ours`` by Net2WiderNet."""
    from trainer.widen import widen_state_dict

    if ours < theirs or ours % theirs:
        raise GuesserError(f"train.init {path}: a width-{theirs} model cannot start a width-{ours} one "
                           "(only a whole-factor widening keeps what it learned)")
    try:
        return widen_state_dict(tensors, model.state_dict(), seed=seed)
    except ValueError as e:
        raise GuesserError(f"train.init {path}: cannot widen it to width {ours} ({e})") from None
