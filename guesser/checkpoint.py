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

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from guesser.errors import CheckpointError, DiskFullError

FORMAT = "guesser-checkpoint"
FORMAT_VERSION = 1
_TENSOR = "__tensor__"


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``; the old file survives any failure.

    A full disk (or quota) becomes :class:`DiskFullError`, one line for the user;
    checkpoints, caches and run logs all go through here, so none of them can
    leave a torn file or a traceback behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result gets a normal file's mode
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"disk full while writing {path}; free some space and rerun "
                                "(the previous version of the file is intact)") from None
        raise


def _umask() -> int:
    """The process umask; read from /proc where possible (setting it to read it races other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(Path(path), lambda p: p.write_text(text))


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
    atomic_write(Path(path), lambda p: save_file(clean, str(p), metadata={"guesser": text}))


def read_meta(path: str | Path) -> dict[str, Any]:
    """Only the JSON header: cheap (no tensor is read)."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint")
    try:
        with safe_open(str(p), framework="pt") as f:
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
        tensors = load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"{path}: corrupt checkpoint ({str(e).splitlines()[0]})") from None
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    return tensors, meta
