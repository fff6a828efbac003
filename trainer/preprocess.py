"""``guesser preprocess``: build (or resume, or merge) the caches for one or more feature presets."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from guesser.errors import GuesserError
from guesser.features import FeatureConfig
from trainer.cache import BuildResult, build_cache, cache_dir, is_complete, merge_parts
from trainer.fsd50k import SPLITS, Fsd50k
from trainer.recipe import PRESETS


def parse_presets(spec: str) -> list[FeatureConfig]:
    names = list(PRESETS) if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in PRESETS]
    if unknown or not names:
        raise GuesserError(f"--features: unknown preset(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(PRESETS)} or all")
    return [PRESETS[n] for n in names]


def merge_shards(data_root: str | Path, out: str | Path, cfg: FeatureConfig) -> BuildResult:
    """Join the parts that ``--shard`` runs built, after checking that every chunk is there."""
    from trainer.cache import CHUNK, _part_path

    ds = Fsd50k.open(data_root)
    d = cache_dir(out, cfg)
    if is_complete(d):
        return build_cache(data_root, out, cfg, progress=False)
    missing = [(s, c) for s in SPLITS for c in range((len(ds.splits[s]) + CHUNK - 1) // CHUNK)
               if not _part_path(d, s, c).exists()]
    if missing:
        raise GuesserError(f"{d}: {len(missing)} chunk(s) not built yet (first: {missing[0][0]} #{missing[0][1]}); "
                           "run the remaining shards first")
    return merge_parts(ds, d, cfg, list(SPLITS))


def run_preprocess(data_root: Path, out: Path, *, jobs: int | None, features: str, shard: tuple[int, int],
                   merge_only: bool, progress: bool) -> list[BuildResult]:
    console = Console(stderr=True)
    results = []
    for cfg in parse_presets(features):
        if merge_only:
            res = merge_shards(data_root, out, cfg)
        else:
            res = build_cache(data_root, out, cfg, jobs=jobs, shard=shard, progress=progress)
        results.append(res)
        if res.merged:
            table = Table(title=f"cache {res.directory}", show_header=True)
            for col in ("split", "clips"):
                table.add_column(col)
            for split, n in res.clips.items():
                table.add_row(split, str(n))
            console.print(table)
            if res.skipped:
                console.print(f"[yellow]skipped {len(res.skipped)} clip(s); see {res.directory / 'report.json'}[/]")
                for s in res.skipped[:5]:
                    console.print(f"  {s['split']} {s['fname']}: {s['reason']}")
        else:
            console.print(f"shard {shard[0]}/{shard[1]} of {cfg.key} done; merge once every shard has finished "
                          f"(guesser preprocess {data_root} --out {out} --merge)")
    return results
