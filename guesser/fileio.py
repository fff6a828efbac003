"""Files as a user or a file system hands them over: only regular files are read, every write is atomic.

Reading. A path can name a FIFO with no writer (opening it blocks forever), a
device (``/dev/zero`` never ends), a socket, a folder, a file this user may not
read, or a name whose bytes are not UTF-8. :func:`open_regular` is the one way
guesser opens a file it did not write itself: it ``stat``\\ s the path first
(nothing is opened unless it is a regular file), opens it non-blocking and
checks the descriptor again (the path may have been swapped in between), and
turns every refusal into one line naming the file. Paths are passed to the OS as
bytes (``os.fsencode``), so a non-UTF-8 name opens like any other, and
:func:`shown` renders such a name printable (``caf\\xe9.wav``).

Writing. :func:`atomic_write` is the one way guesser writes a file a user keeps
(checkpoints, caches, run logs, models indexes, high scores, recordings): a
uniquely named temporary file beside the target (``mkstemp``: exclusive create),
written, given the mode the umask allows, fsynced, then renamed over the target
(or, with ``exclusive=True``, hard-linked to it, which fails rather than
overwrite a file that appeared meanwhile). Two processes writing the same file
never share a temporary file, a crash leaves the previous file intact, and a
full disk is one line (:class:`~guesser.errors.DiskFullError`).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Type

from guesser.errors import DiskFullError, GuesserError

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def shown(path: str | os.PathLike | bytes) -> str:
    """A path as text that any terminal, log or JSON document accepts (undecodable bytes as ``\\xNN``).

    Control characters (an escape sequence in a file name would drive the
    terminal) are written out as escapes too (:func:`printable`).
    """
    return printable(os.fsencode(path).decode("utf-8", "backslashreplace"))


def printable(text: str) -> str:
    """``text`` safe to print: control characters, and the invisible ones that reorder text, as escapes.

    Every untrusted string that reaches a terminal (file names, label names,
    the data folder's path) goes through here: ``\\x1b[2J`` prints as those
    characters instead of clearing the screen, and a newline cannot start a
    second line that looks like guesser's own.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else _escape(c) for c in text)


def _escape(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def kind_of(mode: int) -> str:
    """'a FIFO (named pipe)', 'a folder', … for a non-regular ``st_mode``."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _refusal(path, err: OSError) -> str:
    reason = {errno.ENOENT: "no such file", errno.EACCES: "permission denied (not readable)",
              errno.EPERM: "permission denied (not readable)", errno.ENOTDIR: "no such file (a parent is not a folder)",
              errno.ELOOP: "too many levels of symbolic links", errno.ENAMETOOLONG: "file name too long"}
    return f"{shown(path)}: {reason.get(err.errno, err.strerror or type(err).__name__)}"


def check_regular(path: str | os.PathLike, error: Type[GuesserError] = GuesserError) -> os.stat_result:
    """``stat`` the path (following links) and refuse anything but a regular file, with ``error``."""
    try:
        st = os.stat(os.fsencode(path))
    except OSError as e:
        raise error(_refusal(path, e)) from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{shown(path)}: {kind_of(st.st_mode)}, not a regular file")
    return st


def open_regular(path: str | os.PathLike, error: Type[GuesserError] = GuesserError):
    """A binary file object for a regular file, never blocking on a FIFO or a device; ``error`` otherwise."""
    check_regular(path, error)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(os.fsencode(path), flags)
    except OSError as e:
        raise error(_refusal(path, e)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped between stat and open
            raise error(f"{shown(path)}: {kind_of(st.st_mode)}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike, error: Type[GuesserError] = GuesserError, *, limit: int | None = None) -> bytes:
    """The bytes of a regular file (``error`` for anything else, or for a file over ``limit`` bytes)."""
    with open_regular(path, error) as f:
        data = f.read() if limit is None else f.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise error(f"{shown(path)}: too large (over {limit // 1_000_000} MB)")
    return data


def read_text(path: str | os.PathLike, error: Type[GuesserError] = GuesserError, *, limit: int | None = None) -> str:
    """UTF-8 text of a regular file (a BOM is dropped); ``error`` when it is not UTF-8."""
    data = read_bytes(path, error, limit=limit)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise error(f"{shown(path)}: not a UTF-8 text file") from None


@contextmanager
def native_path(path: str | os.PathLike) -> Iterator[str]:
    """A UTF-8 ``str`` naming ``path``, for libraries that take only that (safetensors, through Rust).

    A name that is not UTF-8 (Python holds it with surrogate escapes) cannot be
    passed as such: the file is opened here (for reading) and named by its
    descriptor (``/proc/self/fd/N`` or ``/dev/fd/N``), which the library then reopens.
    """
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        yield text
        return
    except UnicodeEncodeError:
        pass
    fd = os.open(os.fsencode(path), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        fd_dir = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
        yield f"{fd_dir}/{fd}"
    finally:
        os.close(fd)


# ---------------------------------------------------------------- writing


def umask() -> int:
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


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, exclusive: bool = False) -> Path:
    """Call ``write(tmp_path)``, then put the result at ``path`` in one step; returns ``path``.

    ``exclusive=True`` never replaces an existing file: ``FileExistsError``
    (the temporary file is removed) when ``path`` exists, even if another
    process created it a moment ago. Otherwise ``path`` is replaced and the old
    file survives any failure. The file gets the mode a plain ``open()`` would
    give it (0666 less the umask), whatever ``write`` did to the temporary file.
    A full disk (or quota) becomes :class:`DiskFullError`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())  # after write: some writers (safetensors) recreate the file as 0600
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if exclusive:
            _link_exclusive(tmp, path)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"disk full while writing {shown(path)}; free some space and rerun "
                                "(the previous version of the file is intact)") from None
        raise
    return path


def _link_exclusive(tmp: Path, path: Path) -> None:
    """``tmp`` becomes ``path`` unless ``path`` exists (``FileExistsError``); ``tmp`` is gone either way."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT, some network file systems): claim the name, then fill it
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        os.close(fd)
        os.replace(tmp, path)
        return
    tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (where a folder can be opened; not on Windows)."""
    fsync_path(folder)


def fsync_path(path: str | os.PathLike) -> None:
    """fsync a file or a folder by name, best effort (a folder cannot be opened on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if os.path.isdir(path) else 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str, *, exclusive: bool = False) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"), exclusive=exclusive)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, exclusive: bool = False) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data), exclusive=exclusive)
