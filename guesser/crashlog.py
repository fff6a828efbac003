"""The last line of defence: an unexpected exception becomes one line and a log file, never a traceback.

Every input a user can produce should meet a :class:`~guesser.errors.GuesserError`
with a precise message long before it gets here; what still arrives is a bug.
:func:`report` writes the full traceback (with the command line, versions and
platform) to a new file under :func:`guesser.userdata.log_dir`, and returns the
one line to print: what broke, and the file to attach to a bug report.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import traceback
from pathlib import Path

from guesser.fileio import shown


def write_log(error: BaseException, *, where: str = "guesser") -> Path | None:
    """Write ``error``'s traceback to a fresh log file; its path, or None if no log could be written."""
    from guesser.userdata import log_dir

    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = folder / f"crash-{stamp}-{os.getpid()}.log"
        n = 1
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # may hold private paths
                break
            except FileExistsError:
                path = folder / f"crash-{stamp}-{os.getpid()}-{n}.log"
                n += 1
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(f"{where} crashed at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
            f.write(f"command: {' '.join(shown(a) for a in sys.argv)}\n")
            f.write(f"python {sys.version.split()[0]} on {platform.platform()}\n")
            f.write(f"versions: {_versions()}\n\n")
            f.write("".join(traceback.format_exception(type(error), error, error.__traceback__)))
        return path
    except Exception:  # noqa: BLE001 - a read-only home must not turn one error into two
        return None


def _versions() -> str:
    from importlib import metadata

    out = []
    for dist in ("guesser", "torch", "torchaudio", "numpy", "soundfile", "av", "textual", "typer"):
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(out)


def one_line(error: BaseException, log: Path | None) -> str:
    """``internal error (ValueError: …); details in LOG — please attach it to a bug report``."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    what = f"{type(error).__name__}: {text}" if text else type(error).__name__
    if len(what) > 200:
        what = what[:197] + "..."
    where = f"the traceback is in {shown(log)}" if log else "no log could be written"
    return f"internal error ({what}); {where}, please attach it to a bug report"


def report(error: BaseException, *, where: str = "guesser") -> str:
    """Log ``error`` and return the one line for the user."""
    return one_line(error, write_log(error, where=where))
