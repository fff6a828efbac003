"""Snapshots (pytest-textual-snapshot) of the app's main screens, at a fixed 100×32 size.

Deterministic by construction: a fake ensemble with fixed answers, a fixed
test sound captured from its first sample (ArrayBackend cues the clip when
recording starts), silence between takes (so the live spectrogram and level
meter are constant), a seeded game, no dates or timings on screen.
Regenerate after an intended change with ``pytest tests/test_tui_snapshots.py --snapshot-update``
and look at the SVGs before committing them.
"""

from __future__ import annotations

import pytest

from guesser.recorder import ArrayBackend
from guesser.tui.screens.error import ErrorScreen
from guesser.tui.screens.game import GameScreen
from guesser.tui.screens.help import HelpScreen
from guesser.tui.screens.results import ResultsScreen
from guesser.tui.widgets import LevelMeter
from test_tui_app import make_app, ready
from tuikit import until

pytestmark = pytest.mark.slow  # the app rendered to SVG

SIZE = (100, 32)


async def settle_silent(pilot) -> None:
    """Wait until the level meter shows the silence after a take (a fixed picture)."""
    await until(pilot, lambda: all(m.level.rms_db <= -119 for m in pilot.app.screen.query(LevelMeter)),
                what="silence on the meter")
    await pilot.pause(0.1)


def test_main_screen(snap_compare, tmp_path):
    app, _ = make_app(tmp_path)

    async def run_before(pilot) -> None:
        await ready(pilot)
        await settle_silent(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_results_screen(snap_compare, tmp_path):
    app, _ = make_app(tmp_path)

    async def run_before(pilot) -> None:
        await ready(pilot)
        await pilot.press("space")
        await until(pilot, lambda: isinstance(pilot.app.screen, ResultsScreen), what="results")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_game_screen_after_a_round(snap_compare, tmp_path):
    app, ens = make_app(tmp_path)

    async def run_before(pilot) -> None:
        await ready(pilot)
        await pilot.press("g")
        await until(pilot, lambda: isinstance(pilot.app.screen, GameScreen), what="game")
        target = pilot.app.screen.target.name
        ens.answer_next(["Cough", target, "Knock" if target != "Knock" else "Typing"], ["Human sounds", "Sounds of things"])
        await pilot.press("space")
        await until(pilot, lambda: len(pilot.app.screen.game.results) == 1, what="a round")
        await settle_silent(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_no_device_screen(snap_compare, tmp_path):
    app, _ = make_app(tmp_path, backend=ArrayBackend(devices=()))

    async def run_before(pilot) -> None:
        await until(pilot, lambda: isinstance(pilot.app.screen, ErrorScreen) and pilot.app.ensemble is not None,
                    what="no-device screen")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare, tmp_path):
    app, _ = make_app(tmp_path)

    async def run_before(pilot) -> None:
        await ready(pilot)
        await settle_silent(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), what="help")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
