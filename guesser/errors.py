"""User-facing errors.

Anything a user can cause (a bad file, a wrong CSV, no microphone) raises a
``GuesserError``. The CLI turns it into one red line and a non-zero exit, so a
user never sees a traceback for their own mistake. Anything else (a bug) is
one line too, naming a log file that holds the traceback for a bug report
(:mod:`guesser.crashlog`), and exit code 70.
"""

from __future__ import annotations


class GuesserError(Exception):
    """An error caused by input or environment, explained in one line."""

    exit_code = 1


class AudioError(GuesserError):
    """A file that cannot be decoded, is empty, silent-by-NaN, or not audio."""


class DataError(GuesserError):
    """A data set that does not follow FSD50K's layout (missing folder, bad CSV row, unknown label)."""


class CheckpointError(GuesserError):
    """A file that is not a guesser checkpoint, or disagrees with its own metadata."""


class DeviceError(GuesserError):
    """No usable input/output audio device (none present, permission denied, lost)."""


class RecipeError(GuesserError):
    """A recipe file with unknown keys or values out of range."""


class DiskFullError(GuesserError):
    """No space left (or quota exceeded) while writing; the previous file is kept."""


class OutputError(GuesserError):
    """Standard output (or the file it points at) cannot take the results: a full disk, a closed pipe."""


class InternalError(GuesserError):
    """An unexpected failure (a bug): one line naming the log file that holds the traceback."""

    exit_code = 70  # EX_SOFTWARE (sysexits.h): not the user's input, guesser's own fault
