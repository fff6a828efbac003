"""Where guesser keeps a user's things: high scores, saved recordings, crash logs.

One function so that tests (and people with unusual setups) can move all of it
with one environment variable, ``GUESSER_DATA_DIR``; otherwise the platform's
user data folder (``~/.local/share/guesser`` on Linux) and, for crash logs,
its log folder (``~/.local/state/guesser/log``).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "GUESSER_DATA_DIR"


def data_dir() -> Path:
    """The user data folder (not created here: only writers create it, when they write)."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("guesser", appauthor=False))


def recordings_dir() -> Path:
    """Default folder for recordings saved from the app."""
    return data_dir() / "recordings"


def highscores_path() -> Path:
    return data_dir() / "highscores.json"


def log_dir() -> Path:
    """Where crash logs go (:mod:`guesser.crashlog`): ``$GUESSER_DATA_DIR/logs``, else the platform's log folder."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser() / "logs"
    from platformdirs import user_log_dir

    return Path(user_log_dir("guesser", appauthor=False))
