"""Tiny but real run folders for evaluation and report tests.

Three runs trained by the real :func:`trainer.train.train` on the session's
synthetic cache (``fsd_cache`` in conftest): two label models (cnn4, cnn3) and
a family model, 1 s windows, 1-2 epochs (cnn4 has two, for a loss curve), plus the models index ``write_index``
makes. Built once per session (a few seconds) and copied by tests that write
into run folders.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from trainer.recipe import Recipe

RECIPES = (
    {"name": "tiny_cnn4", "member": "cnn4", "arch": "cnn4", "task": "labels"},
    {"name": "tiny_cnn3", "member": "cnn3", "arch": "cnn3", "task": "labels", "train": {"epochs": 1}},
    {"name": "tiny_family", "member": "family_cnn", "arch": "family_cnn", "task": "families",
     "train": {"loss": "ce", "epochs": 1}},
)


def recipe(spec: dict) -> Recipe:
    train = {"epochs": 2, "batch_size": 8, "early_stop": 0, "seed": 0, **spec.get("train", {})}
    return Recipe.from_dict({**spec, "features": {"preset": "seed", "clip_seconds": 1.0}, "train": train})


def build_runs(cache_root: Path, out: Path) -> Path:
    """Train the tiny runs into ``out`` (once: reused when ``out/index.json`` exists); return ``out``."""
    from trainer.multi import write_index
    from trainer.train import train

    if (out / "index.json").exists():
        return out
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for spec in RECIPES:
        train(recipe(spec), cache_root, tmp / spec["name"], device="cpu", progress=False, log=lambda *_: None)
    write_index(tmp)
    tmp.rename(out)
    return out


def copy_runs(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
