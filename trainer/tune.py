"""``guesser tune``: Optuna TPE + MedianPruner over a recipe's lr, dropout, batch size and augmentation strength.

    OUT/
      study.db            SQLite storage: rerunning the same command continues the same study
      trials/0007/        each trial's run folder (what ``guesser train one`` writes)
      best_recipe.toml    the best finished trial as a recipe: ``guesser train one OUT/best_recipe.toml``
      best_trial.json     its number, score and parameters

``--trials N`` is the study's total: a rerun after a crash or Ctrl-C runs only
the trials still missing (finished and pruned ones count). Every trial is an
ordinary :func:`trainer.train.train` run whose per-epoch validation score is
reported to Optuna through ``train``'s ``on_epoch`` hook, so the median pruner
stops trials that fall behind the median of earlier trials at the same epoch.

Optuna is an optional dependency (``pip install 'guesser[tune]'``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from guesser.checkpoint import atomic_write_text
from guesser.errors import GuesserError
from trainer.augment import AugmentConfig
from trainer.recipe import FeatureSettings, Recipe, TrainConfig
from trainer.records import MetricsRow

STUDY_DB = "study.db"
BEST_RECIPE = "best_recipe.toml"

# Augmentation knobs that "strength" scales, and how: widths and shifts stay integers, chances stay <= 1.
STRENGTH_INT = ("time_width", "freq_width", "freq_shift")
STRENGTH_FLOAT = ("gain_db", "mixup_alpha")
STRENGTH_PROB = ("mix_p", "bandlimit_p", "hf_fill_p")
# Used as the base when a recipe has no augmentation at all (strength 1 = this).
DEFAULT_AUGMENT = AugmentConfig(time_masks=2, time_width=40, freq_masks=2, freq_width=16, mixup_alpha=0.2)
# The model knob that "dropout" sets, per architecture (seed CNNs take one number for every hidden layer).
DROPOUT_KNOB = {"cnn6": "head_dropout"}


@dataclass(frozen=True)
class SearchSpace:
    """What a study varies; the defaults suit the seed CNNs on FSD50K."""

    lr: tuple[float, float] = (1e-4, 3e-3)  # log-uniform
    dropout: tuple[float, float] = (0.0, 0.6)
    batch_sizes: tuple[int, ...] = (16, 32, 64)
    aug_strength: tuple[float, float] = (0.0, 2.0)  # multiplier on the recipe's augmentation


def _optuna():
    try:
        import optuna
    except ImportError:
        raise GuesserError("guesser tune needs Optuna: pip install 'guesser[tune]'") from None
    return optuna


def scale_augment(cfg: AugmentConfig, strength: float) -> AugmentConfig:
    """The recipe's augmentation made ``strength`` times as strong (0: off); a recipe without any uses DEFAULT_AUGMENT."""
    base = cfg if cfg.active else DEFAULT_AUGMENT
    changes: dict[str, Any] = {}
    for name in STRENGTH_INT:
        changes[name] = int(round(getattr(base, name) * strength))
    for name in STRENGTH_FLOAT:
        changes[name] = float(getattr(base, name) * strength)
    for name in STRENGTH_PROB:
        changes[name] = float(min(1.0, getattr(base, name) * strength))
    return replace(base, **changes)


def apply_params(recipe: Recipe, params: dict[str, Any]) -> Recipe:
    """``recipe`` with a trial's parameters (lr, dropout, batch_size, aug_strength) filled in."""
    knob = DROPOUT_KNOB.get(recipe.arch, "dropout")
    model = {**recipe.model, knob: float(params["dropout"])}
    train = replace(recipe.train, lr=float(params["lr"]), batch_size=int(params["batch_size"]))
    return replace(recipe, model=model, train=train, augment=scale_augment(recipe.augment, float(params["aug_strength"])))


def suggest(trial, space: SearchSpace) -> dict[str, Any]:
    return {
        "lr": trial.suggest_float("lr", *space.lr, log=True),
        "dropout": trial.suggest_float("dropout", *space.dropout),
        "batch_size": trial.suggest_categorical("batch_size", list(space.batch_sizes)),
        "aug_strength": trial.suggest_float("aug_strength", *space.aug_strength),
    }


# ---------------------------------------------------------------- recipe -> TOML

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)  # shortest round-tripping form: '0.001', '1e-05', '2.0'
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def recipe_toml(recipe: Recipe) -> str:
    """A recipe file for ``recipe``: the top keys, then each table's values that differ from the defaults."""
    lines = [f"{k} = {_toml_value(getattr(recipe, k))}" for k in ("name", "member", "arch", "task", "description")]
    defaults = {"features": FeatureSettings(), "train": TrainConfig(), "augment": AugmentConfig()}
    for section in ("features", "model", "train", "augment"):
        values = asdict(getattr(recipe, section)) if section != "model" else dict(recipe.model)
        if section in defaults:
            base = asdict(defaults[section])
            values = {k: v for k, v in values.items() if v is not None and v != base[k]}
        lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the study

def run_tuning(
    recipe: str | Recipe,
    trials: int,
    cache: str | Path,
    out: str | Path,
    epochs: int | None = None,
    device: str = "auto",
    *,
    space: SearchSpace = SearchSpace(),
    startup_trials: int = 5,
    warmup_epochs: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = print,
):
    """Run (or continue) the study in ``out`` until it holds ``trials`` finished trials; returns the Optuna study.

    ``startup_trials``: random trials before TPE models the space, and finished
    trials before the pruner may prune; ``warmup_epochs``: epochs a trial always
    runs before it can be pruned. ``epochs`` shortens every trial; the written
    best recipe keeps the recipe's own epochs.
    """
    optuna = _optuna()
    from guesser.checkpoint import score_name
    from trainer.train import TrainingDiverged, TrainingInterrupted, train

    base = recipe if isinstance(recipe, Recipe) else Recipe.load(recipe)
    if trials < 1:
        raise GuesserError("--trials must be at least 1")
    if epochs is not None and epochs < 1:
        raise GuesserError("--epochs must be at least 1")
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise GuesserError("guesser tune runs in one process; for several GPUs start one tune per GPU "
                           "(CUDA_VISIBLE_DEVICES=i) on the same --out: they share the study")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    per_trial = base.with_train(epochs=epochs)
    key = score_name(base.task)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # A trial whose process died (kill -9) stops sending heartbeats: after the grace period it is
    # marked failed and retried once with the same parameters (Optuna >= 4.9 renamed the hook).
    with warnings.catch_warnings():  # heartbeats and retries are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
            retry = {"heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
        else:
            retry = {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=1)}
        storage = optuna.storages.RDBStorage(f"sqlite:///{(out / STUDY_DB).resolve()}", heartbeat_interval=60,
                                             grace_period=180, **retry)
    study = optuna.create_study(
        study_name=base.name,
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=base.train.seed, n_startup_trials=startup_trials),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs),
        load_if_exists=True,
    )
    study.set_user_attr("recipe", base.to_dict())
    done_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    remaining = trials - len(study.get_trials(deepcopy=False, states=done_states))
    if remaining < trials:
        log(json.dumps({"study": str(out / STUDY_DB), "continuing": True, "finished_trials": trials - max(remaining, 0)}))

    def objective(trial) -> float:
        params = suggest(trial, space)
        run_dir = out / "trials" / f"{trial.number:04d}"
        shutil.rmtree(run_dir, ignore_errors=True)  # a trial number is new by definition: leftovers are stale
        trial.set_user_attr("run", str(run_dir))

        def report(row: MetricsRow) -> None:
            score = row.score(key)
            if score is not None:
                trial.report(score, row.epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"{key} {score:.4f} after epoch {row.epoch}")

        try:
            result = train(apply_params(per_trial, params), cache, run_dir, device=device, progress=progress,
                           on_epoch=report, log=lambda s: None)
        except TrainingDiverged as e:  # too high a learning rate: an unpromising trial, not a broken study
            raise optuna.TrialPruned(str(e)) from None
        return result.best_score

    def after_trial(study, trial) -> None:
        log(json.dumps({"trial": trial.number, "state": trial.state.name.lower(), key: trial.value,
                        "params": trial.params}))
        if trial.state == optuna.trial.TrialState.COMPLETE and study.best_trial.number == trial.number:
            write_best(out, base, study.best_trial, key)

    if remaining > 0:
        try:
            study.optimize(objective, n_trials=remaining, callbacks=[after_trial])
        except TrainingInterrupted:
            raise TrainingInterrupted(f"tuning interrupted; rerun the same 'guesser tune' command to continue "
                                      f"the study in {out}") from None
    try:
        best = study.best_trial
    except ValueError:
        raise GuesserError(f"{out}: no trial has finished (all pruned or failed); try more --trials") from None
    write_best(out, base, best, key)
    log(json.dumps({"best_trial": best.number, key: best.value, "params": best.params,
                    "recipe": str(out / BEST_RECIPE)}))
    return study


def write_best(out: Path, base: Recipe, trial, key: str) -> Path:
    """``best_recipe.toml`` (loadable by :meth:`Recipe.load`) and ``best_trial.json`` for ``trial``."""
    tuned = apply_params(base, trial.params)
    tuned = replace(tuned, name=f"{base.name}_tuned",
                    description=f"{base.name} tuned by guesser tune: trial {trial.number}, {key} {trial.value:.4f}")
    path = out / BEST_RECIPE
    atomic_write_text(path, recipe_toml(tuned))
    atomic_write_text(out / "best_trial.json", json.dumps(
        {"trial": trial.number, key: trial.value, "params": trial.params, "run": trial.user_attrs.get("run")}, indent=1))
    return path

