"""``guesser export``: turn a models index into a shippable one (fp16 weights, one file per member).

The shipped ensemble in ``assets/models`` is made this way from the index that
``guesser train multi`` writes: each member's best checkpoint is copied with its
floating-point tensors in float16 (half the bytes; the app computes in fp32 or
bf16 anyway, and fp16 keeps ~3 significant digits, far below what changes a
ranking), its metadata kept and extended with its evaluation results when
``guesser evaluate`` has written them.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from guesser.checkpoint import INDEX_NAME, ModelsIndex, load_model_checkpoint, save_model_checkpoint
from guesser.errors import CheckpointError


def eval_summary(run_dir: Path) -> dict | None:
    """The headline numbers of ``run_dir/eval.json`` (written by ``guesser evaluate``), if any."""
    path = run_dir / "eval.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    keep = ("map", "d_prime", "lwlrap", "family_map", "family_accuracy", "f1_macro")
    summary = data.get("summary", {})
    return {"split": data.get("split"), "clips": data.get("clips"),
            **{k: summary[k] for k in keep if isinstance(summary.get(k), (int, float))}}


def export_models(index: Path, out: Path, *, dtype: torch.dtype = torch.float16) -> Path:
    """Copy every model of ``index`` into ``out`` as ``<member>.safetensors`` + a new ``index.json``."""
    index = Path(index)
    index = index / INDEX_NAME if index.is_dir() else index
    if not index.is_file():
        raise CheckpointError(f"{index}: no models index there (train some with 'guesser train multi')")
    src = ModelsIndex.read(index)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    table = Table(title=f"exported to {out}")
    for col in ("member", "model", "task", "MB", "eval"):
        table.add_column(col)
    for entry, (path, _) in zip(src.models, src.checkpoints(index.parent)):
        tensors, meta = load_model_checkpoint(path)
        member = meta.member or entry.member or path.parent.name
        ev = eval_summary(path.parent)
        meta = replace(meta, exported_from=str(path), weights_dtype=str(dtype).removeprefix("torch."),
                       eval=ev if ev else meta.eval)
        target = out / f"{member}.safetensors"
        save_model_checkpoint(target, tensors, meta, dtype=dtype)
        entries.append(replace(entry, path=target.name, eval=ev if ev else entry.eval))
        table.add_row(member, meta.name, meta.task, f"{target.stat().st_size / 1e6:.1f}",
                      ", ".join(f"{k} {v:.3f}" for k, v in (ev or {}).items() if isinstance(v, float)))
    new_index = ModelsIndex(tuple(entries)).write(out / INDEX_NAME)
    Console(stderr=True).print(table)
    return new_index
