"""``guesser train one`` / ``guesser train multi``: recipes in turn, caches built once, a models index.

The models index (``runs/index.json``) lists each member's best run by its
validation score; the app's ensemble reads exactly this file, so a freshly
trained set of models can be used with ``guesser classify --models runs``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from guesser.checkpoint import INDEX_NAME, IndexEntry, ModelsIndex, score_name
from guesser.errors import GuesserError
from guesser.features import FeatureConfig
from trainer.cache import cache_dir, is_complete
from trainer.cache_build import build_cache
from trainer.groups import csv_of
from trainer.preprocess import recorded_data_root
from trainer.recipe import Recipe, shipped_recipes
from trainer.records import RunSummary

console = Console(stderr=True)


def is_main_rank() -> bool:
    """False on torchrun's ranks other than 0: they train but neither print nor write."""
    return int(os.environ.get("RANK", 0)) == 0


def ensure_cache(cache: Path, cfg: FeatureConfig, data: Path | None, progress: bool) -> None:
    """Build the cache for ``cfg`` (resumable, with progress) unless it is already complete.

    The data set is ``--data`` or, failing that, the one the caches beside it
    were built from; an error names a command that builds exactly this cache.
    """
    from trainer.preprocess import build_hint, default_jobs

    d = cache_dir(cache, cfg)
    if is_complete(d):
        return
    data = data or recorded_data_root(cache)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:  # N ranks must not build one cache N times over
        raise GuesserError(f"no cache for feature setting {cfg.key} in {cache}; build it before a torchrun "
                           f"training with '{build_hint(cache, cfg, data)}' (on every machine)")
    if data is None:
        raise GuesserError(f"no cache for feature setting {cfg.key} in {cache}; "
                           f"run '{build_hint(cache, cfg)}' or pass --data DATA_ROOT")
    console.print(f"building cache {d} from {data} …", soft_wrap=True)
    build_cache(data, cache, cfg, jobs=default_jobs(), progress=progress)


def prepared(recipe: Recipe, epochs: int | None, batch_size: int | None, pretrained: Path | None) -> Recipe:
    r = recipe.with_train(epochs=epochs, batch_size=batch_size)
    if pretrained is not None and r.arch == "cnn6":
        r = r.with_train(pretrained=str(pretrained))
    return r


def train_recipe(name: str, *, cache: Path, data: Path | None, out: Path | None, epochs: int | None,
                 batch_size: int | None, device: str, pretrained: Path | None, resume: bool, progress: bool,
                 checkpoint_every: int = 0):
    """``guesser train one``: load the recipe, make sure its cache exists, train, say where the model is."""
    from trainer.train import train

    recipe = prepared(Recipe.load(name), epochs, batch_size, pretrained)
    ensure_cache(cache, recipe.feature_config(), data, progress)
    out = out or Path("runs") / recipe.name
    result = train(recipe, cache, out, device=device, resume=resume, progress=progress,
                   checkpoint_every=checkpoint_every)
    if is_main_rank():
        console.print(f"{recipe.name}: best {score_name(recipe.task)} {result.best_score:.4f} at epoch "
                      f"{result.best_epoch} -> {out / 'best.safetensors'}", soft_wrap=True)
    return result


def select_recipes(spec: str | None) -> list[Recipe]:
    recipes = shipped_recipes()
    if spec:
        wanted = [s.strip() for s in spec.split(",") if s.strip()]
        by_name = {r.name: r for r in recipes}
        missing = [w for w in wanted if w not in by_name and not Path(w).is_file()]
        if missing:
            raise GuesserError(f"unknown recipe(s) {', '.join(missing)}; see 'guesser train list'")
        recipes = [by_name[w] if w in by_name else Recipe.load(w) for w in wanted]
    return recipes


def train_all(*, cache: Path, data: Path | None, out: Path, recipes: str | None, epochs: int | None, device: str,
              pretrained: Path | None, resume: bool, progress: bool) -> Path:
    """Train every selected recipe (building each needed cache once), then write ``out/index.json``."""
    from trainer.train import train

    chosen = [prepared(r, epochs, None, pretrained) for r in select_recipes(recipes)]
    needed = {r.feature_config().key: r.feature_config() for r in chosen}
    for cfg in needed.values():
        ensure_cache(cache, cfg, data, progress)
    skipped: list[str] = []
    for i, r in enumerate(chosen, 1):
        run = out / r.name
        if (run / "run.json").exists() and resume:
            if is_main_rank():
                console.print(f"[dim]{i}/{len(chosen)} {r.name}: finished earlier, kept[/]", soft_wrap=True)
            continue
        if (needs := missing_input(r)) is not None:
            skipped.append(r.name)
            if is_main_rank():
                console.print(f"[yellow]{i}/{len(chosen)} {r.name}: skipped, it needs {needs}, which does "
                              "not exist here (train or select that first, from the folder that holds it)[/]",
                              soft_wrap=True)
            continue
        if is_main_rank():
            console.rule(f"{i}/{len(chosen)} {r.name} ({r.member}, {r.arch}, {r.task})")
        train(r, cache, run, device=device, resume=resume, progress=progress)
    if not is_main_rank():
        return out / INDEX_NAME
    index = write_index(out, [r.name for r in chosen])
    if skipped:
        console.print(f"[yellow]not trained (a file they need is missing): {', '.join(skipped)}[/]",
                      soft_wrap=True)
    return index


def missing_input(recipe: Recipe) -> str | None:
    """The file a recipe starts from (``train.init``), learns from (``train.distill``) or reads its
    smoothed groups from (``train.smooth_groups``' CSV) when it is not there.

    Why: the recipes that continue another run (``init = "runs/cnn4_long/…"``)
    or learn from a selected ensemble (``distill = "runs/round2.json"``) name
    paths relative to the folder the command runs in; in a fresh checkout
    those do not exist until their own recipes have run (and fsd50k-mini's
    sources.csv is not beside the real FSD50K), and one such recipe must not
    stop a ``train multi`` that has hours of other recipes to train.
    """
    groups_csv = str(csv_of(recipe.train.smooth_groups)) if recipe.train.smooth_groups else ""
    for path in (recipe.train.init, recipe.train.distill, groups_csv):
        if path and path != "shipped" and not Path(path).exists():
            return path
    return None


def write_index(out: Path, names: list[str] | None = None) -> Path:
    """Pick each member's best finished run by validation score; write ``out/index.json``."""
    runs = [RunSummary.read(rj) for rj in sorted(out.glob("*/run.json")) if (rj.parent / "best.safetensors").exists()]
    runs = [r for r in runs if names is None or r.name in names]
    best: dict[str, RunSummary] = {}
    for r in runs:
        if r.member not in best or r.best_score > best[r.member].best_score:
            best[r.member] = r
    if not best:
        raise GuesserError(f"{out}: no finished runs to index")
    entries = tuple(IndexEntry(path=f"{r.name}/best.safetensors", member=m, name=r.name, task=r.task,
                               score_name=score_name(r.task), val_score=round(r.best_score, 6))
                    for m, r in sorted(best.items()))
    index = ModelsIndex(entries).write(out / INDEX_NAME)
    table = Table(title=f"members' best runs → {index}")
    for col in ("member", "run", "task", "validation score"):
        table.add_column(col)
    for e in entries:
        table.add_row(e.member, e.name, e.task, f"{e.score_name} {e.val_score:.3f}")
    console.print(table)
    return index


def print_recipes() -> None:
    """One row per shipped recipe; the description gets its own line so narrow terminals stay readable."""
    table = Table(title="shipped recipes", show_lines=True)
    width = max(len(r.name) for r in shipped_recipes())
    table.add_column("name", min_width=width, ratio=1)  # the name never breaks: its column is as wide
    for col in ("member", "task", "front-end", "epochs"):
        table.add_column(col, no_wrap=True)
    for r in shipped_recipes():
        table.add_row(f"[bold]{r.name}[/]\n[dim]{r.description}[/]", r.member, r.task, r.features.preset,
                      str(r.train.epochs))
    Console().print(table)
