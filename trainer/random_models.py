"""Random-weight stand-ins for the shipped models: same architectures, same checkpoint format.

Why: the inference path (``guesser classify``, the TUI, ``benchmarks/infer.py``)
must be testable and measurable before any model is trained, and tests must not
depend on trained models being good. A random-weight checkpoint written through
the trainer's own :func:`~trainer.weights.model_meta` / :func:`~trainer.weights.save_model`
exercises exactly the loading code the real models go through, and costs exactly
the same FLOPs.

``ENSEMBLE_SPECS`` mirrors the ensemble the lead ships: cnn4 and cnn3 for the
200 labels, family_cnn (seed front-end) and PANNs CNN6 (PANNs front-end) for
the six families.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from guesser.checkpoint import INDEX_NAME, IndexEntry, ModelsIndex, score_name
from guesser.labels import FAMILIES_6, default_label_space
from guesser.models import TASK_LABELS, build_model


@dataclass(frozen=True)
class RandomSpec:
    """One member of a random ensemble."""

    arch: str
    task: str
    preset: str  # "seed" or "panns"
    member: str | None = None  # default: the arch

    @property
    def name(self) -> str:
        return f"{self.member or self.arch}_random"


ENSEMBLE_SPECS: tuple[RandomSpec, ...] = (
    RandomSpec("cnn4", "labels", "seed"),
    RandomSpec("cnn3", "labels", "seed"),
    RandomSpec("family_cnn", "families", "seed"),
    RandomSpec("cnn6", "families", "panns"),
)

# Plausible train-split statistics of the seed front-end's log-mel (dB), so that
# normalised inputs have roughly unit scale, as they would for a trained model.
SEED_STATS = ((-40.0,), (20.0,))


def write_random_model(path: str | Path, spec: RandomSpec, *, seed: int = 0, val_score: float = 0.0,
                       trained_labels: list[str] | None = None, dtype: torch.dtype | None = None) -> Path:
    """Build ``spec.arch`` with seeded random weights and save it as a guesser model checkpoint."""
    from trainer.recipe import Recipe
    from trainer.weights import model_meta, save_model

    recipe = Recipe.from_dict({
        "name": spec.name, "member": spec.member or spec.arch, "arch": spec.arch, "task": spec.task,
        "description": "random weights (tests and benchmarks only)",
        "features": {"preset": spec.preset},
        "train": {"loss": "bce" if spec.task == TASK_LABELS else "ce"},
    }, source=f"<random {spec.arch}>")
    cfg = recipe.feature_config()
    if cfg.norm != "none":
        cfg = cfg.with_stats(*SEED_STATS)
    classes = default_label_space().vocabulary.names if spec.task == TASK_LABELS else FAMILIES_6
    torch.manual_seed(seed)
    model = build_model(spec.arch, len(classes), **recipe.model).eval()
    meta = replace(model_meta(recipe, cfg, classes, model), metrics={"epoch": 1, score_name(spec.task): val_score},
                   best_epoch=1, random_weights=True,
                   trained_labels=tuple(trained_labels) if trained_labels is not None else None)
    path = Path(path)
    save_model(path, model, meta, dtype=dtype)
    return path


def write_random_ensemble(out: str | Path, specs: tuple[RandomSpec, ...] = ENSEMBLE_SPECS, *, seed: int = 0,
                          dtype: torch.dtype | None = None) -> Path:
    """Write one random checkpoint per spec under ``out`` plus ``out/index.json`` (the trainer's index format)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, spec in enumerate(specs):
        rel = f"{spec.name}/best.safetensors"
        score = round(0.1 + 0.01 * i, 6)
        write_random_model(out / rel, spec, seed=seed + i, val_score=score, dtype=dtype)
        entries.append(IndexEntry(path=rel, member=spec.member or spec.arch, name=spec.name, task=spec.task,
                                  score_name=score_name(spec.task), val_score=score))
    return ModelsIndex(tuple(entries)).write(out / INDEX_NAME)
