"""The app driven with keys (Textual pilot): recording, results, failures, the game, saving, listening.

Audio comes from :class:`ArrayBackend` (a microphone that hears a numpy array,
20× faster than real time); the ensemble is :class:`tuikit.FakeEnsemble`
except in one test that runs a real random-weight checkpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from guesser.game import HighScores
from guesser.recorder import ArrayBackend, PermissionDeniedError
from guesser.tui.app import GuesserApp, file_settings
from guesser.tui.problems import LOST, NO_DEVICE, NO_MODELS, PERMISSION, SILENT
from guesser.tui.screens.error import ErrorScreen
from guesser.tui.screens.game import GameOverScreen, GameScreen
from guesser.tui.screens.help import HelpScreen
from guesser.tui.screens.main import MainScreen
from guesser.tui.screens.pickers import DevicePicker, TargetPicker
from guesser.tui.screens.results import ResultsScreen
from guesser.tui.session import Settings
from guesser.tui.widgets import HistoryList, Ranking
from guesser.tui.widgets.record_panel import RecordPanel
from tuikit import FakeEnsemble, FakePlayer, chirp_clip, pilot_test, until

pytestmark = pytest.mark.slow  # the app driven by keys, seconds a test

SR = 22050
SIZE = (100, 32)


def make_app(tmp_path: Path, *, clip: np.ndarray | None = None, ensemble=None, backend=None, **overrides):
    ens = ensemble or FakeEnsemble()
    settings = Settings(
        seconds=1.0,
        backend=backend or ArrayBackend(chirp_clip() if clip is None else clip, SR, speed=20),
        load_ensemble=lambda models: ens, countdown=0, player=FakePlayer(),
        save_dir=tmp_path / "saved", highscores=tmp_path / "highscores.json", seed=7,
        today=lambda: "2026-01-02", player_name="tester",
    )
    for k, v in overrides.items():
        setattr(settings, k, v)
    return GuesserApp(settings), ens


def file_app(tmp_path: Path, clip_seconds: float):
    """The app in ``play --file`` mode on a chirp of ``clip_seconds`` written to a WAV file (read 20x real time)."""
    path = tmp_path / "clip.wav"
    sf.write(path, chirp_clip(clip_seconds), SR)
    backend, seconds = file_settings(path, 6.0)
    backend.speed = 20
    return make_app(tmp_path, backend=backend, seconds=seconds, file=path)


async def ready(pilot) -> None:
    app = pilot.app
    await until(pilot, lambda: app.ensemble is not None and app.audio_ok, what="models and audio")


async def record(pilot, key: str = "space") -> None:
    await pilot.press(key)
    await until(pilot, lambda: isinstance(pilot.app.screen, ResultsScreen), what="results")


def problem_kind(app) -> str | None:
    return app.screen.problem.kind if isinstance(app.screen, ErrorScreen) else None


@pilot_test
async def test_record_shows_ranked_results_for_exactly_the_recording(tmp_path):
    clip = chirp_clip(1.0)
    app, ens = make_app(tmp_path, clip=clip)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await record(pilot)
        waveform, sr = ens.calls[0]
        assert sr == SR and np.array_equal(waveform, clip)  # the capture starts at the clip's first sample
        screen = app.screen
        assert screen.query_one("#labels", Ranking).rows()[0][1].name == "Clapping"
        assert screen.query_one("#families", Ranking).items[0].name == "Human sounds"
        rows = screen.query_one("#models").rows
        assert [r[0] for r in rows] == ["cnn4_fake", "cnn6_fake"] and rows[0][2].startswith("Clapping 0.90")
        assert len(app.session.takes) == 1 and app.session.takes[0].number == 1
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        assert len(app.screen.query_one(HistoryList).children) == 1


@pilot_test
async def test_record_button_records_like_space(tmp_path):
    app, ens = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.click("#record-button")
        await until(pilot, lambda: isinstance(app.screen, ResultsScreen), what="results after a click")
        assert len(ens.calls) == 1


@pilot_test
async def test_countdown_comes_before_recording(tmp_path):
    app, ens = make_app(tmp_path, countdown=2)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        panel = app.screen.query_one(RecordPanel)
        pressed = time.monotonic()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ResultsScreen), what="results after countdown")
        # predict() runs after countdown (2 s) + recording (1 s at 20×): never earlier, however loaded the machine
        assert ens.call_times[0] - pressed >= 2.0
        assert panel.state == "idle" and len(ens.calls) == 1


@pilot_test
async def test_silent_input_says_i_heard_nothing(tmp_path):
    app, ens = make_app(tmp_path, clip=np.zeros(SR, np.float32))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("space")
        await until(pilot, lambda: problem_kind(app) == SILENT, what="silence screen")
        assert app.screen.problem.title == "I heard nothing"
        assert not ens.calls and not app.session.takes
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


@pilot_test
async def test_no_input_device_screen(tmp_path):
    app, _ = make_app(tmp_path, backend=ArrayBackend(devices=()))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: problem_kind(app) == NO_DEVICE, what="no-device screen")
        assert "No microphone" in app.screen.problem.title and "--file" in app.screen.problem.advice
        await pilot.press("r")  # retry: still nothing there
        await until(pilot, lambda: problem_kind(app) == NO_DEVICE, what="no-device screen again")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen), what="main screen")
        await pilot.press("space")  # refused, with a notification, not a crash
        assert not app.session.takes and isinstance(app.screen, MainScreen)


@pilot_test
async def test_permission_denied_screen(tmp_path):
    backend = ArrayBackend(chirp_clip(), SR, open_error=PermissionDeniedError("permission denied for Test microphone"))
    app, _ = make_app(tmp_path, backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: problem_kind(app) == PERMISSION, what="permission screen")
        assert "Privacy" in app.screen.problem.advice


@pilot_test
async def test_device_lost_mid_recording(tmp_path):
    app, ens = make_app(tmp_path, backend=ArrayBackend(chirp_clip(), SR, speed=20, lose_after=0.3))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("space")
        await until(pilot, lambda: problem_kind(app) == LOST, what="device-lost screen")
        assert not ens.calls and not app.audio_ok
        await pilot.press("r")  # reconnected: retry reopens the device
        await until(pilot, lambda: app.audio_ok and isinstance(app.screen, MainScreen), what="device reopened")
        assert len(app.settings.backend.opened) == 2


@pilot_test
async def test_missing_models_screen(tmp_path):
    from guesser.ensemble import Ensemble

    app, _ = make_app(tmp_path, load_ensemble=Ensemble.load, models=[tmp_path / "nowhere" / "index.json"])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: problem_kind(app) == NO_MODELS, what="missing-models screen")
        assert "guesser train multi" in app.screen.problem.advice
        await pilot.press("escape")
        await pilot.press("space")  # recording stays off and says why
        await until(pilot, lambda: problem_kind(app) == NO_MODELS, what="missing-models screen again")
        assert not app.session.takes


@pilot_test
async def test_game_round_scores_by_rank_and_fills_the_high_score_table(tmp_path):
    app, ens = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, GameScreen), what="game screen")
        game_screen = app.screen
        game_screen.game.rounds = 2
        first = game_screen.target
        assert first.name in ens.known or first.kind == "family"

        def place(rank: int) -> None:  # the ensemble will put the current target at ``rank``
            t = game_screen.target
            if t.kind == "label":
                ens.answer_next(["Cough", "Knock", "Dog"][: rank - 1] + [t.name])
            else:
                ens.answer_next(["Speech"], [f for f in ("Animal", "Music", "Natural sounds") if f != t.name][: rank - 1] + [t.name])

        place(2)
        await pilot.press("space")
        await until(pilot, lambda: len(game_screen.game.results) == 1, what="round 1")
        r1 = game_screen.game.results[0]
        assert r1.target == first and r1.rank == 2
        assert r1.points == (60 if first.kind == "label" else 20)
        assert game_screen.target != first  # a new target for round 2
        assert app.session.takes[-1].target == first.name

        place(1)
        await pilot.press("space")
        await until(pilot, lambda: isinstance(app.screen, GameOverScreen), what="game over")
        r2 = game_screen.game.results[1]
        assert r2.rank == 1 and r2.points == (100 if r2.target.kind == "label" else 50)
        total = game_screen.game.score
        await pilot.press("enter")  # keep the default name
        await until(pilot, lambda: app.screen.position == 1, what="high score saved")
        saved = HighScores.load(tmp_path / "highscores.json")
        assert [(e.name, e.score, e.date) for e in saved.entries] == [("tester", total, "2026-01-02")]
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen), what="back to main")


@pilot_test
async def test_player_picks_the_target(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, GameScreen), what="game screen")
        game_screen = app.screen
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, TargetPicker), what="target picker")
        wanted = app.screen.pool[2]
        await pilot.press("down", "down", "enter")
        await until(pilot, lambda: app.screen is game_screen, what="back in the game")
        assert game_screen.target == wanted


@pilot_test
async def test_corrupt_high_scores_are_backed_up(tmp_path):
    (tmp_path / "highscores.json").write_text("{ not json")
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, GameScreen), what="game screen")
        assert "starting a fresh table" in app.screen.highscores.notice
        assert (tmp_path / "highscores.json.corrupt").read_text() == "{ not json"


@pilot_test
async def test_device_picker_reopens_the_chosen_device(tmp_path):
    backend = ArrayBackend(chirp_clip(), SR, speed=20, devices=("Built-in mic", "USB mic"))
    app, _ = make_app(tmp_path, backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert app.recorder.device_name == "Built-in mic"
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, DevicePicker), what="device picker")
        await pilot.press("down", "enter")
        await until(pilot, lambda: app.audio_ok and app.recorder.device_name == "USB mic", what="USB mic open")
        assert [d.name for d in backend.opened] == ["Built-in mic", "USB mic"]
        assert "USB mic" in app.device_text


@pilot_test
async def test_save_writes_wav_and_predictions(tmp_path):
    clip = chirp_clip(1.0)
    app, _ = make_app(tmp_path, clip=clip)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await record(pilot)
        await pilot.press("s")
        await until(pilot, lambda: app.session.takes[0].saved_to is not None, what="saved")
        wav = app.session.takes[0].saved_to
        assert wav.parent == tmp_path / "saved"
        data, sr = sf.read(wav, dtype="float32")
        assert sr == SR and data.shape == clip.shape and np.abs(data - clip).max() < 1e-3
        doc = json.loads(wav.with_suffix(".json").read_text())
        assert doc["file"] == wav.name and doc["labels"][0]["label"] == "Clapping" and len(doc["labels"]) == 200


@pilot_test
async def test_replay_plays_the_recording(tmp_path):
    clip = chirp_clip(1.0)
    app, _ = make_app(tmp_path, clip=clip)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await record(pilot)
        await pilot.press("r")
        await until(pilot, lambda: bool(app.player.played), what="playback")
        samples, sr = app.player.played[0]
        assert sr == SR and np.array_equal(samples, clip)


@pilot_test
async def test_no_replay_without_output_device(tmp_path):
    from guesser.recorder import NullPlayer

    app, _ = make_app(tmp_path, player=NullPlayer())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await record(pilot)
        assert app.screen.check_action("replay", ()) is False
        assert app.screen.check_action("save", ()) is True


@pilot_test
async def test_listen_mode_classifies_live(tmp_path):
    backend = ArrayBackend(chirp_clip(), SR, speed=20, loop=True)
    app, ens = make_app(tmp_path, backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("l")
        ranking = app.screen.query_one("#listen-ranking", Ranking)
        await until(pilot, lambda: bool(ranking.items), what="a live answer")
        assert ranking.items[0].name == "Clapping" and ranking.display
        await pilot.press("l")
        calls = len(ens.calls)
        assert not app.screen.listening and not ranking.display
        await pilot.pause(0.3)
        assert len(ens.calls) <= calls + 1  # stopped (at most one window was in flight)


@pilot_test
async def test_listen_mode_logs_what_it_heard_and_when(tmp_path):
    import re

    from textual.widgets import RichLog

    clip = np.concatenate([chirp_clip(1.0), np.zeros(2 * SR, np.float32)])  # a 1 s sound every 3 s
    app, _ = make_app(tmp_path, backend=ArrayBackend(clip, SR, speed=4, loop=True))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("l")
        log = app.screen.query_one("#listen-log", RichLog)
        await until(pilot, lambda: len(log.lines) >= 2, timeout=20, what="two sounds in the log")
        lines = [strip.text for strip in log.lines]
        assert log.display
        # the most specific sound of each event, when it began and how long it lasted; Speech is not what
        # Clapping implies, so it is its own line
        assert re.fullmatch(r"\d\d:\d\d:\d\d Clapping \d+\.\d s \(Human sounds\)", lines[0].rstrip()), lines
        assert {line.split()[1] for line in lines} <= {"Clapping", "Speech"}


@pilot_test
async def test_file_mode_runs_the_whole_file(tmp_path):
    clip = chirp_clip(2.5)  # what file_app writes (a chirp is deterministic)
    app, ens = file_app(tmp_path, 2.5)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert "clip.wav" in app.device_text
        await record(pilot)
        waveform, sr = ens.calls[0]
        assert sr == SR and waveform.shape == clip.shape and np.abs(waveform - clip).max() < 1e-4


@pilot_test
async def test_help_screen_opens_and_closes(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


@pilot_test
async def test_real_random_weight_ensemble_runs_in_the_app(tmp_path, light_model_index):
    from guesser.ensemble import Ensemble

    app, _ = make_app(tmp_path, load_ensemble=Ensemble.load, models=[light_model_index])
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await record(pilot)
        p = app.session.takes[0].prediction
        assert len(p.labels) == 200 and len(p.families) == 6
        assert [m.name for m in p.models] == ["cnn3_random", "family_cnn_random"]
        assert abs(p.duration - 1.0) < 1e-6
