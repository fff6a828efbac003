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
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from guesser.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from guesser.ensemble import resolve_model_paths
from guesser.errors import GuesserError


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
    paths = resolve_model_paths([index])
    src = json.loads((index / "index.json" if index.is_dir() else index).read_text())
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    table = Table(title=f"exported to {out}")
    for col in ("member", "model", "task", "MB", "eval"):
        table.add_column(col)
    for entry, path in zip(src["models"], paths):
        tensors, meta = load_checkpoint(path)
        if meta.get("kind") != "model":
            raise GuesserError(f"{path}: not a model checkpoint")
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
        member = meta.get("member") or entry.get("member") or path.parent.name
        ev = eval_summary(path.parent)
        meta = {**meta, "exported_from": str(path), "weights_dtype": str(dtype).removeprefix("torch.")}
        if ev:
            meta["eval"] = ev
        target = out / f"{member}.safetensors"
        save_checkpoint(target, tensors, {k: v for k, v in meta.items() if k not in ("format", "format_version")})
        entries.append({**{k: v for k, v in entry.items() if k != "path"}, "path": target.name,
                        **({"eval": ev} if ev else {})})
        table.add_row(member, meta.get("name", "?"), meta.get("task", "?"), f"{target.stat().st_size / 1e6:.1f}",
                      ", ".join(f"{k} {v:.3f}" for k, v in (ev or {}).items() if isinstance(v, float)))
    new_index = out / "index.json"
    atomic_write_text(new_index, json.dumps({"version": 1, "models": entries}, indent=1))
    Console(stderr=True).print(table)
    return new_index
