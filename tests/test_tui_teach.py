"""Personal labels in the app, driven with keys (Textual pilot): teach, try, show, forget, re-embed, play.

Two kinds of test. With :class:`tuikit.FakeEnsemble` and a fake ``teach``,
the screens' behaviour is checked against exactly known answers: which
takes are kept, what is passed to teaching, what is shown when a personal
label is heard or not, a failure as one line. With the shipped models and
their background sample (loaded once for the module), a beep pattern is
taught from takes heard by the fake microphone and is recognised on the next
take: what a new user does in ``guesser play``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from guesser.errors import GuesserError
from guesser.personal.probe import Estimate
from guesser.personal.store import ModelStamp, Store
from guesser.recorder import ArrayBackend
from guesser.tui.screens.game import GameScreen
from guesser.tui.screens.main import MainScreen
from guesser.tui.screens.personal import PersonalScreen
from guesser.tui.screens.pickers import ConfirmScreen, TargetPicker
from guesser.tui.screens.results import ResultsScreen
from guesser.tui.screens.teach import LEARNING, RECORDING, TRYING, TeachScreen
from guesser.tui.widgets import PersonalScores, Ranking
from test_tui_app import SIZE, SR, make_app, ready
from tuikit import FakeEnsemble, TakesBackend, chirp_clip, pilot_test, store_label, until

pytestmark = pytest.mark.slow  # the app driven by keys, seconds a test

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "assets" / "models"


class FakeTeach:
    """Stands in for guesser.personal.teach.teach: remembers what it was given, answers a label (or fails)."""

    def __init__(self, fail: GuesserError | None = None):
        self.calls: list[tuple[str, list]] = []
        self.fail = fail

    def __call__(self, name, examples, ensemble, progress=None, **_):
        self.calls.append((name, list(examples)))
        if progress:
            progress("embedding")
        if self.fail is not None:
            raise self.fail
        return SimpleNamespace(name=name, examples=len(examples), estimate=Estimate(len(examples), len(examples),
                                                                                      0.004, 3000))


def status(app) -> str:
    return str(app.screen.query_one("#teach-status").render())


async def open_teach(pilot) -> TeachScreen:
    await ready(pilot)
    await pilot.press("t")
    await until(pilot, lambda: isinstance(pilot.app.screen, TeachScreen), what="teach screen")
    return pilot.app.screen


async def name_it(pilot, name: str, takes: int | None = None) -> None:
    screen = pilot.app.screen
    await pilot.press(*[("space" if c == " " else c) for c in name])
    if takes is not None:
        count = screen.query_one("#teach-count")
        count.value = ""
        count.focus()
        await pilot.press(*str(takes))
    await pilot.press("enter")
    await pilot.pause()


async def take(pilot, screen: TeachScreen, key: str = "space") -> None:
    before = (len(screen.takes), len(screen.tries), status(pilot.app))
    await pilot.press(key)
    await until(pilot, lambda: not screen.panel.busy and (len(screen.takes), len(screen.tries), status(pilot.app))
                != before, what="a take")


# ---------------------------------------------------------------- fake ensemble: the screens' behaviour


@pilot_test
async def test_teach_flow_keeps_drops_learns_and_tries(tmp_path):
    clips = [chirp_clip(1.0, amp=0.2 + 0.05 * i) for i in range(6)]
    clips.insert(1, np.zeros(SR, np.float32))  # the second take is silent
    teach = FakeTeach()
    app, ens = make_app(tmp_path, backend=TakesBackend(clips, SR, speed=20), teach=teach)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_teach(pilot)
        await name_it(pilot, "kettle", takes=4)
        assert screen.phase == RECORDING and screen.name_ == "kettle" and screen.wanted == 4

        await take(pilot, screen)
        await take(pilot, screen)  # silent: said, not kept
        assert len(screen.takes) == 1 and "heard nothing" in status(app) and "not kept" in status(app)
        for _ in range(3):
            await take(pilot, screen)
        assert [t.kept for t in screen.takes] == [True] * 4
        assert screen.check_action("learn", ()) is True

        await pilot.press("home", "x")  # drop take 1
        assert [t.kept for t in screen.takes] == [False, True, True, True] and "dropped" in status(app)
        await pilot.press("r")  # replay the highlighted take
        await until(pilot, lambda: bool(app.player.played), what="replay")
        assert np.array_equal(app.player.played[0][0], screen.takes[0].take.samples)
        await take(pilot, screen)  # one more, to have 4 kept again
        assert len(screen.kept) == 4
        await pilot.press("space")  # enough takes: says so, records nothing
        assert "learn" in status(app) and len(screen.takes) == 5

        await pilot.press("l")
        await until(pilot, lambda: screen.phase == TRYING, what="learned")
        name, examples = teach.calls[0]
        assert name == "kettle" and [e.source for e in examples] == [f"microphone take {i}" for i in (2, 3, 4, 5)]
        assert all(np.array_equal(e.samples, t.take.samples) for e, t in zip(examples, screen.kept))
        result = str(screen.query_one("#teach-result").render())
        assert "Learned kettle from 4 takes" in result and "leave-one-out: 4 of 4" in result

        ens.answer_next(["Speech"], personal={"kettle": 0.91, "doorbell": 0.1})
        await take(pilot, screen)
        assert "Heard: kettle" in status(app) and "0.91" in status(app)
        assert screen.query_one("#teach-personal", PersonalScores).heard == ["kettle"]
        assert app.session.takes[-1] is screen.tries[0]  # the try joins the history
        ens.answer_next(["Speech"], personal={"kettle": 0.2})
        await take(pilot, screen)
        assert "Not heard: kettle scored 0.20" in status(app)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


@pilot_test
async def test_a_name_clash_is_said_inline_before_any_recording(tmp_path):
    store_label("kettle")
    app, ens = make_app(tmp_path, teach=FakeTeach())
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_teach(pilot)
        error = screen.query_one("#teach-name-error")
        await name_it(pilot, "Doorbell")
        assert "AudioSet label" in str(error.render()) and screen.phase == "naming"
        screen.query_one("#teach-name").value = ""
        await name_it(pilot, "Kettle")  # one of yours already (names are matched by their slug)
        assert "already have a personal label" in str(error.render()) and screen.phase == "naming"
        await pilot.press("space")  # recording is refused until the name is right
        assert not ens.calls
        screen.query_one("#teach-name").value = ""
        await name_it(pilot, "kettle two", takes=2)
        assert "3 to 20 takes" in str(error.render())
        screen.query_one("#teach-count").value = "3"
        await pilot.press("enter")
        assert screen.phase == RECORDING and str(error.render()) == ""


@pilot_test
async def test_a_failed_teach_is_one_line_and_keeps_the_takes(tmp_path):
    teach = FakeTeach(fail=GuesserError("these models have no background sample, so personal labels cannot be "
                                        "taught with them"))
    app, ens = make_app(tmp_path, teach=teach)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_teach(pilot)
        await name_it(pilot, "kettle", takes=3)
        await pilot.press("l")  # not yet: nothing kept
        assert not teach.calls
        for _ in range(3):
            await take(pilot, screen)
        await pilot.press("l")
        await until(pilot, lambda: screen.phase == RECORDING and bool(teach.calls), what="teach failed")
        assert status(app).startswith("not learned: these models have no background sample")
        assert "\n" not in status(app) and "Traceback" not in status(app)
        assert len(screen.kept) == 3 and Store().names() == []  # nothing written


@pilot_test
async def test_personal_labels_show_next_to_the_audioset_ones(tmp_path):
    ens = FakeEnsemble(personal={"kettle": 0.83, "doorbell": 0.12})
    app, _ = make_app(tmp_path, ensemble=ens, backend=ArrayBackend(chirp_clip(), SR, speed=20, loop=True))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("space")
        await until(pilot, lambda: isinstance(app.screen, ResultsScreen), what="results")
        yours = app.screen.query_one("#personal", PersonalScores)
        assert yours.display and [s.name for s in yours.items] == ["kettle", "doorbell"] and yours.heard == ["kettle"]
        assert "✓ yours: kettle" in str(app.screen.query_one("#result-title").render())
        await pilot.press("escape")
        await pilot.press("l")  # listen mode: heard ones first in the title, the scores below
        live = app.screen.query_one("#listen-personal", PersonalScores)
        await until(pilot, lambda: live.heard == ["kettle"], what="a live answer")
        assert "✓ kettle" in str(app.screen.query_one("#listen-title").render())
        await pilot.press("l")
        assert not live.display


@pilot_test
async def test_without_personal_labels_nothing_changes_on_screen(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("space")
        await until(pilot, lambda: isinstance(app.screen, ResultsScreen), what="results")
        assert not app.screen.query_one("#personal", PersonalScores).display


@pilot_test
async def test_personal_screen_lists_and_forgets_after_confirmation(tmp_path):
    store_label("kettle")
    store_label("old whistle", models=(ModelStamp("cnn4", "0" * 64),), examples=5)
    app, ens = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await until(pilot, lambda: ens.personal is not None, what="personal labels attached")
        assert ens.personal.names == ["kettle"] and [s.name for s in ens.personal.stale] == ["old whistle"]
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PersonalScreen) and bool(app.screen.labels),
                    what="your sounds")
        screen = app.screen
        table = screen.query_one("#personal-table")
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows == [["kettle", "4", "3/4", "0.4%", "2026-01-02", "current"],
                        ["old whistle", "5", "4/5", "0.4%", "2026-01-02", "other: e re-embeds"]]

        await pilot.press("f")  # forget kettle: asked first; n keeps it
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen, what="back, nothing forgotten")
        assert Store().names() == ["kettle", "old-whistle"]
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("y")
        await until(pilot, lambda: [lab.name for lab in screen.labels] == ["old whistle"], what="forgotten")
        assert Store().names() == ["old-whistle"] and "forgot 'kettle'" in str(screen.query_one("#personal-status").render())
        assert ens.personal is None  # no longer scored: nothing usable is left for these models
        await pilot.press("e")  # re-embedding needs real models: one line, no traceback
        await until(pilot, lambda: "error" in screen.query_one("#personal-status").classes, what="re-embed refused")
        assert Store().names() == ["old-whistle"]


@pilot_test
async def test_a_label_made_with_other_models_is_named_on_start(tmp_path):
    store_label("old whistle", models=(ModelStamp("cnn4", "0" * 64),))
    app, ens = make_app(tmp_path)
    notes: list[str] = []
    original = app.notify
    app.notify = lambda message, *a, **k: (notes.append(str(message)), original(message, *a, **k))[1]
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await until(pilot, lambda: bool(notes), what="a notice")
        assert "'old whistle' was made with other models" in notes[0] and "press p" in notes[0]


@pilot_test
async def test_the_game_can_target_a_personal_label(tmp_path):
    store_label("kettle")
    app, ens = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await until(pilot, lambda: ens.personal is not None, what="personal labels attached")
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, GameScreen), what="game screen")
        game = app.screen
        assert game.pool[0].kind == "personal" and game.pool[0].title == "your kettle"
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, TargetPicker), what="target picker")
        await pilot.press("enter")  # the first: your kettle
        await until(pilot, lambda: app.screen is game and game.target.kind == "personal", what="picked")
        assert "YOUR KETTLE" in str(game.query_one("#game-target").render())

        ens.answer_next(["Speech"], personal={"kettle": 0.77})
        await pilot.press("space")
        await until(pilot, lambda: len(game.game.results) == 1, what="round 1")
        r = game.game.results[0]
        assert (r.rank, r.points, r.hit) == (1, 100, True)
        assert "heard (0.77)" in str(game.query_one("#round-result").render())
        answer = game.query_one("#game-answer", Ranking)
        assert answer.items[0].name == "kettle" and answer.highlight == "kettle"

        game.target = game.pool[0]
        ens.answer_next(["Speech"], personal={"kettle": 0.3})
        await pilot.press("space")
        await until(pilot, lambda: len(game.game.results) == 2, what="round 2")
        assert game.game.results[1].points == 0 and "not heard (0.30)" in str(game.query_one("#round-result").render())
        assert app.session.takes[-1].target == "kettle"


# ---------------------------------------------------------------- the shipped models: what a new user does


@pytest.fixture(scope="module")
def shipped():
    """The shipped ensemble and its background sample (what a user has), loaded once for this module."""
    if not (SHIPPED / "background.safetensors").is_file():
        pytest.fail("assets/models/background.safetensors is missing: personal labels cannot be taught")
    from guesser.ensemble import Ensemble

    ensemble = Ensemble.load()
    yield ensemble
    ensemble.personal = None


@pilot_test
async def test_a_new_user_teaches_a_beep_pattern_and_it_is_heard_on_the_next_take(tmp_path, shipped,
                                                                                   one_torch_thread):
    from test_personal import beeps, other_sound

    seconds = 2.0
    b = [beeps(seed=i, seconds=seconds) for i in range(5)]
    silent = np.zeros(int(SR * seconds), np.float32)
    noise = other_sound("noise", seed=3, seconds=seconds)  # a take that is not the sound: dropped
    tries = [beeps(seed=99, seconds=seconds, snr_db=12.0),  # other timing, more noise than any take
             other_sound("clicks", seed=5, seconds=seconds)]  # another sound (a sweep through the beep's
    # pitch is not: round 2's models score it 0.69, round 1's 0.48; docs/benchmarks.md, few-shot, round 2)
    backend = TakesBackend([b[0], b[1], silent, b[2], noise, b[3], b[4], *tries], SR, speed=20)
    app, _ = make_app(tmp_path, ensemble=shipped, backend=backend, seconds=seconds)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_teach(pilot)
        await name_it(pilot, "desk beeper")  # 5 takes, the default
        await take(pilot, screen)
        await take(pilot, screen)
        await take(pilot, screen)
        assert "heard nothing" in status(app) and len(screen.takes) == 2  # the silent take: said, not kept
        await take(pilot, screen)
        await take(pilot, screen)
        await pilot.press("end", "r", "x")  # listen to the last take: not the sound, drop it
        await until(pilot, lambda: bool(app.player.played), what="replay")
        for _ in range(2):
            await take(pilot, screen)
        assert [t.kept for t in screen.takes] == [True, True, True, False, True, True]
        assert backend.heard == 7 and screen.check_action("learn", ()) is True

        await pilot.press("l")
        await until(pilot, lambda: screen.phase != "learning", timeout=300, what="learned")
        assert screen.phase == TRYING, status(app)
        label = Store().get("desk beeper")
        assert label.sources == tuple(f"microphone take {i}" for i in (1, 2, 3, 5, 6))
        assert len(label.clip_paths()) == 5 and label.estimate.recognised >= 4
        assert label.estimate.text() in str(screen.query_one("#teach-result").render()).replace("\n", " ")
        assert shipped.personal is not None and shipped.personal.names == ["desk beeper"]  # scored from now on

        await take(pilot, screen)
        assert "Heard: desk beeper" in status(app), status(app)
        await take(pilot, screen)
        assert "Not heard: desk beeper" in status(app), status(app)

        await pilot.press("escape")
        await pilot.press("space")  # any later recording on the main screen scores it too
        await until(pilot, lambda: isinstance(app.screen, ResultsScreen), what="results")
        assert [s.name for s in app.screen.take.prediction.personal] == ["desk beeper"]


@pilot_test
async def test_a_label_made_with_other_models_is_reembedded_from_your_sounds(tmp_path, shipped, one_torch_thread):
    from test_personal import beeps

    from guesser.personal.teach import Example, teach

    store = Store()
    made = teach("desk beeper", [Example(beeps(seed=i, seconds=2.0), SR, f"take {i}") for i in range(4)], shipped,
                 store)
    made.models = tuple(ModelStamp(s.name, "0" * 64) for s in made.models)  # as if the models were updated since
    store.write(made, None, replace=True)
    app, _ = make_app(tmp_path, ensemble=shipped)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PersonalScreen) and bool(app.screen.labels), what="yours")
        screen = app.screen
        assert screen.is_current(screen.labels[0]) is False
        await pilot.press("e")
        await until(pilot, lambda: not screen.busy and screen.labels and screen.is_current(screen.labels[0]),
                    timeout=300, what="re-embedded")
        assert "embedded again from its 4 stored clips" in str(screen.query_one("#personal-status").render())
        assert shipped.personal is not None and shipped.personal.names == ["desk beeper"]
