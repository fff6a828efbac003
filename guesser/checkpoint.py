"""Checkpoints: safetensors for tensors, JSON in the header for everything else.

Why not ``torch.save``: a pickle can run code when it is loaded, and a sound
model is something people download and share. A safetensors file holds only
tensors plus a string-to-string header; guesser puts one JSON document under
``"guesser"`` in that header (architecture, task, labels, feature config with
its normalisation statistics, recipe, metrics, commit).

Writes are atomic (temp file in the same folder, fsync, rename), so a crash or a
full disk leaves the previous checkpoint intact, never a torn file.

Nested state (an optimizer's ``state_dict``) is stored by :func:`flatten`: every
tensor goes into the safetensors body under its path, and the rest of the tree
into the JSON, so resuming a run needs no pickle either.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from guesser.errors import CheckpointError
# The one atomic writer (high scores and recordings use it too) lives in guesser.fileio; re-exported here.
from guesser.fileio import atomic_write, atomic_write_text, check_regular, native_path  # noqa: F401

FORMAT = "guesser-checkpoint"
FORMAT_VERSION = 1
_TENSOR = "__tensor__"


def flatten(tree: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested dict/list tree into (JSON skeleton, {path: tensor})."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().cpu().contiguous()
            return {_TENSOR: path}
        if isinstance(node, dict):
            return {"__dict__": [[walk(k, f"{path}.k{i}"), walk(v, f"{path}.{i}")] for i, (k, v) in enumerate(node.items())]}
        if isinstance(node, (list, tuple)):
            return {"__list__": [walk(v, f"{path}.{i}") for i, v in enumerate(node)], "tuple": isinstance(node, tuple)}
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"cannot store {type(node).__name__} at {path or '<root>'}")

    return walk(tree, prefix), tensors


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten`."""
    if isinstance(skeleton, dict):
        if _TENSOR in skeleton:
            return tensors[skeleton[_TENSOR]]
        if "__dict__" in skeleton:
            return {unflatten(k, tensors): unflatten(v, tensors) for k, v in skeleton["__dict__"]}
        if "__list__" in skeleton:
            items = [unflatten(v, tensors) for v in skeleton["__list__"]]
            return tuple(items) if skeleton.get("tuple") else items
    return skeleton


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Atomically write ``tensors`` and the JSON-able ``meta`` to a safetensors file."""
    from safetensors.torch import save_file

    header = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    text = json.dumps(header, sort_keys=True)
    clean = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    def write(p: Path) -> None:
        try:
            str(p).encode("utf-8")
        except UnicodeEncodeError:  # a folder whose name is not UTF-8: safetensors takes only str paths
            from safetensors.torch import save

            p.write_bytes(save(clean, metadata={"guesser": text}))
            return
        save_file(clean, str(p), metadata={"guesser": text})

    atomic_write(Path(path), write)


def read_meta(path: str | Path) -> dict[str, Any]:
    """Only the JSON header: cheap (no tensor is read)."""
    from safetensors import safe_open

    p = Path(path)
    if not p.exists() or p.is_dir():
        raise CheckpointError(f"{p}: no such checkpoint")
    check_regular(p, CheckpointError)  # a FIFO or a device is refused, never opened
    try:
        with native_path(p) as name, safe_open(name, framework="pt") as f:
            header = f.metadata() or {}
    except Exception:
        raise CheckpointError(f"{p}: not a guesser checkpoint (not a safetensors file)") from None
    if "guesser" not in header:
        raise CheckpointError(f"{p}: not a guesser checkpoint (safetensors without guesser metadata)")
    try:
        meta = json.loads(header["guesser"])
    except ValueError:
        raise CheckpointError(f"{p}: corrupt guesser metadata") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a guesser checkpoint")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{p}: written by a newer guesser (format {meta['format_version']}); please upgrade")
    return meta


def load_checkpoint(path: str | Path, dtype: torch.dtype | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta); tensors optionally cast (fp16 shipped weights -> fp32 for CPU math)."""
    from safetensors.torch import load_file

    meta = read_meta(path)
    try:
        with native_path(path) as name:
            tensors = load_file(name)
    except Exception as e:
        raise CheckpointError(f"{path}: corrupt checkpoint ({str(e).splitlines()[0]})") from None
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    return tensors, meta
