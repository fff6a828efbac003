"""``guesser preprocess``: build (or resume, or merge) the caches for one or more feature presets."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from guesser.errors import GuesserError
from guesser.features import FeatureConfig
from trainer.cache import cache_dir, is_complete
from trainer.cache_build import BuildResult, build_cache, merge_parts
from trainer.fsd50k import SPLITS, Fsd50k
from trainer.recipe import PRESETS, shipped_recipes


def recipe_presets() -> list[str]:
    """The front-ends the shipped recipes train on, in PRESETS order: what ``train multi`` needs."""
    used = {r.features.preset for r in shipped_recipes()}
    return [n for n in PRESETS if n in used]


def parse_presets(spec: str) -> list[FeatureConfig]:
    """``recipes`` (default: what the shipped recipes need), ``all``, or comma-separated preset names."""
    spec = spec.strip()
    if spec == "all":
        names = list(PRESETS)
    elif spec == "recipes":
        names = recipe_presets()
    else:
        names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in PRESETS]
    if unknown or not names:
        raise GuesserError(f"--features: unknown preset(s) {', '.join(unknown) or '(none)'}; "
                           f"choose from {', '.join(PRESETS)}, recipes or all")
    return [PRESETS[n] for n in names]


def preset_of(cfg: FeatureConfig) -> str | None:
    """The preset whose cache ``cfg`` reads (same frames: same key), or None for a custom front-end."""
    return next((name for name, preset in PRESETS.items() if preset.key == cfg.key), None)


def build_hint(cache: str | Path, cfg: FeatureConfig, data_root: str | Path | None = None) -> str:
    """A command that builds the cache ``cfg`` needs, and works as printed (placeholders in capitals)."""
    root = str(data_root) if data_root else "DATA_ROOT"
    preset = preset_of(cfg)
    if preset is None:  # a front-end no preset has: only a recipe that uses it can build it
        return f"guesser train one RECIPE.toml --cache {cache} --data {root}"
    return f"guesser preprocess {root} --out {cache} --features {preset}"


def recorded_data_root(cache: str | Path) -> Path | None:
    """The data set another finished cache under ``cache`` was built from, if it is still there.

    Lets ``guesser train multi --cache c`` build a front-end that ``preprocess``
    did not, without asking the user again where the data is.
    """
    for manifest in sorted(Path(cache).glob("*/manifest.json")):
        try:
            root = json.loads(manifest.read_text()).get("data_root")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(root, str) and (Path(root) / "FSD50K.ground_truth").is_dir():
            return Path(root)
    return None


def merge_shards(data_root: str | Path, out: str | Path, cfg: FeatureConfig) -> BuildResult:
    """Join the parts that ``--shard`` runs built, after checking that every chunk is there.

    The parts must have been built from the same clips (``plan.json``); the
    merge lock keeps a shard that finishes now from merging at the same time.
    """
    from trainer.cache_build import CHUNK, _check_plan, _chunk_done, _take_lock

    ds = Fsd50k.open(data_root)
    d = cache_dir(out, cfg)
    if is_complete(d):
        return build_cache(data_root, out, cfg, progress=False)
    if not (d / "parts").is_dir():
        raise GuesserError(f"{d}: nothing to merge (no parts/ folder); build the shards with --out {out} first")
    _check_plan(d, ds, list(SPLITS))
    missing = [(s, c) for s in SPLITS for c in range((len(ds.splits[s]) + CHUNK - 1) // CHUNK)
               if not _chunk_done(d, s, c)]
    if missing:
        raise GuesserError(f"{d}: {len(missing)} chunk(s) not built yet (first: {missing[0][0]} #{missing[0][1]}); "
                           "run the remaining shards first")
    lock = d / ".merge.lock"
    if not _take_lock(lock):
        raise GuesserError(f"{d}: another process is merging (lock {lock}); if none is, delete the lock and rerun")
    try:
        return merge_parts(ds, d, cfg, list(SPLITS))
    finally:
        lock.unlink(missing_ok=True)


def default_jobs() -> int:
    """All cores, shared out between the ranks torchrun starts on this machine (LOCAL_WORLD_SIZE)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cores // max(local, 1))


def run_preprocess(data_root: Path, out: Path, *, jobs: int | None, features: str, shard: tuple[int, int],
                   merge_only: bool, progress: bool) -> list[BuildResult]:
    console = Console(stderr=True)
    results = []
    if jobs is not None and jobs < 1:
        raise GuesserError(f"--jobs must be at least 1, got {jobs}")
    if out.exists() and not out.is_dir():
        raise GuesserError(f"--out {out}: a file, not a folder; choose a folder for the caches")
    for cfg in parse_presets(features):
        if merge_only:
            res = merge_shards(data_root, out, cfg)
        else:
            res = build_cache(data_root, out, cfg, jobs=jobs or default_jobs(), shard=shard, progress=progress,
                              title=f"log-mel {preset_of(cfg) or cfg.key}")
        results.append(res)
        if res.merged:
            console.print(f"cache {escape(str(res.directory))}", soft_wrap=True)  # a path: never folded
            table = Table(show_header=True)
            for col in ("split", "clips"):
                table.add_column(col)
            for split, n in res.clips.items():
                table.add_row(split, str(n))
            console.print(table)
            if res.skipped:
                console.print(f"[yellow]skipped {len(res.skipped)} clip(s); see {escape(str(res.directory / 'report.json'))}[/]",
                              soft_wrap=True)  # a path: never folded
                for s in res.skipped[:5]:
                    console.print(f"  {s['split']} {s['fname']}: {s['reason']}", markup=False, highlight=False)
        elif res.merging_elsewhere:
            console.print(f"every chunk of {cfg.key} is built; another process is merging them "
                          f"(lock {res.directory / '.merge.lock'}; if none is, delete the lock and rerun)", markup=False,
                          soft_wrap=True)
        elif shard[1] > 1:
            console.print(f"shard {shard[0]}/{shard[1]} of {cfg.key} done; merge once every shard has finished "
                          f"(guesser preprocess {data_root} --out {out} --merge)", markup=False, soft_wrap=True)
        else:  # only when a part went missing under a concurrent run: the same command finishes it
            console.print(f"{cfg.key}: not finished (a concurrent run removed some parts); "
                          f"rerun: guesser preprocess {data_root} --out {out}", markup=False, soft_wrap=True)
    return results
