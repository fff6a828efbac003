"""``guesser export``: turn a models index into a shippable one (fp16 weights, one file per member).

The shipped ensemble in ``assets/models`` is made this way from the index that
``guesser train multi`` writes: each member's best checkpoint is copied with its
floating-point tensors in float16 (half the bytes; the app computes in fp32 or
bf16 anyway, and fp16 keeps ~3 significant digits, far below what changes a
ranking), its metadata kept and extended with its evaluation results when
``guesser evaluate`` has written them.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from rich.text import Text

from guesser.checkpoint import (INDEX_NAME, ModelsIndex, index_file, load_model_checkpoint, read_model_meta,
                                save_model_checkpoint)
from guesser.errors import CheckpointError, GuesserError
from trainer.records import EvalResult

MEMBER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
"""A member name as exported: ``<member>.safetensors`` stays inside ``--out`` whatever the checkpoint says."""


def eval_summary(run_dir: Path) -> dict | None:
    """The headline numbers of ``run_dir/eval.json`` (written by ``guesser evaluate``), if any."""
    path = run_dir / "eval.json"
    if not path.is_file():
        return None
    try:
        result = EvalResult.read(path)
    except GuesserError as e:
        raise GuesserError(f"{e}; rerun guesser evaluate") from None
    s = result.summary
    keep = {"map": s.map, "d_prime": s.d_prime, "lwlrap": s.lwlrap, "family_map": s.family_map,
            "family_accuracy": s.family_accuracy, "f1_macro": s.f1_macro}
    return {"split": str(result.split), "clips": result.clips, **{k: v for k, v in keep.items() if v is not None}}


def export_models(index: Path, out: Path, *, dtype: torch.dtype = torch.float16) -> Path:
    """Copy every model of ``index`` into ``out`` as ``<member>.safetensors`` + a new ``index.json``.

    Every member is checked (headers and eval results only) before anything is
    written: a member name that is not a plain file name (``../../x``, ``/x``),
    two models of one member, or a damaged ``eval.json`` export nothing. The new
    index keeps the source's weights, selection and "not sure" rule.
    """
    index = index_file(index)
    if not index.is_file():
        raise CheckpointError(f"{index}: no models index there (train some with 'guesser train multi')")
    src = ModelsIndex.read(index)
    pairs = list(zip(src.models, src.checkpoints(index.parent)))
    members: list[str] = []
    written: dict[str, Path] = {}
    for entry, (path, _) in pairs:
        meta = read_model_meta(path)
        member = meta.member or entry.member or path.parent.name
        if not isinstance(member, str) or not MEMBER_NAME.fullmatch(member):
            # the name becomes a file name in --out: '../../x' or '/etc/x' would write outside it
            raise GuesserError(f"{path}: member name {member!r:.60} is not a plain file name "
                               "(letters, digits, '_', '-', '.'; no '/' or '..'); nothing was exported")
        if member in written:
            raise GuesserError(f"{path}: a second model for member {member!r} (the first is {written[member]}); "
                               "an exported index holds one model per member; nothing was exported")
        written[member] = path
        members.append(member)
        eval_summary(path.parent)  # a damaged eval.json stops the export here, before any write
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GuesserError(f"--out {out}: cannot create the folder ({e.strerror or e})") from None
    entries = []
    table = Table(title=Text(f"exported to {out}"))
    for col in ("member", "model", "task", "MB", "eval"):
        table.add_column(col)
    for (entry, (path, _)), member in zip(pairs, members):
        tensors, meta = load_model_checkpoint(path)
        ev = eval_summary(path.parent)
        meta = replace(meta, exported_from=str(path), weights_dtype=str(dtype).removeprefix("torch."),
                       eval=ev if ev else meta.eval)
        target = out / f"{member}.safetensors"
        save_model_checkpoint(target, tensors, meta, dtype=dtype)
        entries.append(replace(entry, path=target.name, eval=ev if ev else entry.eval))
        table.add_row(member, meta.name, meta.task, f"{target.stat().st_size / 1e6:.1f}",
                      ", ".join(f"{k} {v:.3f}" for k, v in (ev or {}).items() if isinstance(v, float)))
    replaced = previous_members(out)
    new_index = replace(src, models=tuple(entries)).write(out / INDEX_NAME)
    for name in replaced - {e.path for e in entries}:
        (out / name).unlink(missing_ok=True)  # a member the new ensemble dropped: not left behind unused
    Console(stderr=True).print(table)
    return new_index


def previous_members(out: Path) -> set[str]:
    """The checkpoint files that ``out``'s current index (an earlier export) lists; nothing else is ever removed."""
    try:
        old = ModelsIndex.read(out / INDEX_NAME)
    except (OSError, GuesserError):
        return set()
    return {e.path for e in old.models if MEMBER_NAME.fullmatch(Path(e.path).stem) and Path(e.path).name == e.path}
