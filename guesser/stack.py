"""Check that the native stack (torch + torchaudio) loads before any command runs.

torchaudio's native library is built against exactly one torch release. A
mismatched pair (pip once resolved ``torchaudio==2.11.*`` to 2.11.1 beside torch
2.11.0) imports fine as Python and then dies in ``import torchaudio.functional``
with ``OSError: undefined symbol …``. A user should see which versions they
have and the one command that repairs them, not a 30-line traceback, so every
CLI command calls :func:`check_stack` first.

The versions guesser needs are read from its own installed metadata (the exact
pins in ``pyproject.toml``), so they are written in one place only.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata

from guesser.errors import GuesserError

PINNED = ("torch", "torchaudio")


class StackError(GuesserError):
    """torch or torchaudio is missing or its native library does not load."""

    exit_code = 3


def installed_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def required_versions() -> dict[str, str]:
    """{'torch': '2.11.0', 'torchaudio': '2.11.0'} from guesser's own ``Requires-Dist`` pins."""
    wanted: dict[str, str] = {}
    try:
        requires = metadata.requires("guesser") or []
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        requires = []
    for req in requires:
        m = re.match(r"^\s*(torch|torchaudio)\s*==\s*([\w.+-]+)\s*(;.*)?$", req)
        if m and "extra" not in (m.group(3) or ""):
            wanted[m.group(1)] = m.group(2)
    return wanted


def repair_command() -> str:
    wanted = required_versions()
    pins = " ".join(f"'{d}=={wanted[d]}'" if d in wanted else d for d in PINNED)
    return f"{sys.executable} -m pip install --force-reinstall {pins}"


def _load() -> None:
    """Import what guesser's commands import, including torchaudio's native kernels."""
    import torch  # noqa: F401
    import torchaudio  # noqa: F401
    import torchaudio.functional  # noqa: F401  (this is where a mismatched libtorchaudio fails)
    import torchaudio.transforms  # noqa: F401


def check_stack() -> None:
    """Raise :class:`StackError` (one line: versions found, repair command) if the stack does not load."""
    try:
        _load()
    except (ImportError, OSError, RuntimeError, AttributeError) as e:
        found = ", ".join(f"{d} {installed_version(d)}" for d in PINNED)
        wanted = required_versions()
        need = ", ".join(f"{d} {wanted[d]}" for d in PINNED if d in wanted) or "matching torch and torchaudio"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if len(reason) > 160:
            reason = reason[:157] + "…"
        raise StackError(
            f"PyTorch does not load ({type(e).__name__}: {reason}); found {found}, guesser needs {need}; "
            f"repair with: {repair_command()}"
        ) from None
