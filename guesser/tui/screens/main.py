"""The main screen: device, level, live spectrogram, the record action, listen mode, history; teach and yours."""

from __future__ import annotations

from datetime import datetime
from functools import partial

from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, LoadingIndicator, RichLog, Static

from guesser.confidence import headline as say
from guesser.labels import pretty
from guesser.recorder import LIVE_HOP_SECONDS, LIVE_WINDOW_SECONDS
from guesser.tui import messages as m
from guesser.tui import workers
from guesser.tui.widgets import HistoryList, PersonalScores, Ranking, TitleBar
from guesser.tui.widgets.record_panel import RecordPanel

LOG_LINES = 200
"""Sounds the listen log keeps (it scrolls; older lines drop off the top)."""


def log_line(event, clock: float, end: float) -> str:
    """'12:03:04 Bark 1.2 s': when a sound event began (wall clock), what it was and how long it lasted."""
    began = datetime.fromtimestamp(clock - (end - event.start)).strftime("%H:%M:%S")
    return f"[dim]{began}[/dim] [b]{escape(pretty(event.label))}[/b] {event.end - event.start:.1f} s [dim]({event.family})[/dim]"


class MainScreen(Screen):
    AUTO_FOCUS = ""  # nothing: space/enter must reach the record action, not the history list
    BINDINGS = [
        Binding("space", "record", "Record"),
        Binding("enter", "record", "Record", show=False),
        Binding("l", "listen", "Listen"),
        Binding("g", "game", "Game"),
        Binding("t", "teach", "Teach"),
        Binding("p", "personal", "Yours"),
        Binding("d", "devices", "Device"),
        Binding("r", "replay", "Replay"),
        Binding("s", "save", "Save"),
        Binding("S", "save_as", "Save as", show=False),
        Binding("h", "history", "History", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="main")
        self.listening = False

    def compose(self) -> ComposeResult:
        yield TitleBar("what did I just hear?")
        with Horizontal(id="main-body"):
            with Vertical(id="main-left"):
                yield RecordPanel(id="panel")
                with Horizontal(id="models-loading"):
                    yield LoadingIndicator()
                    yield Label("Loading models…")
                yield Static("", id="listen-title")
                yield PersonalScores("", top_k=3, id="listen-personal")
                yield Ranking(top_k=5, bar_width=30, id="listen-ranking")
                yield RichLog(max_lines=LOG_LINES, markup=True, wrap=False, auto_scroll=True, id="listen-log")
            with Vertical(id="side"):
                yield Label("History", classes="side-title")
                yield HistoryList(id="history")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_state()

    @property
    def panel(self) -> RecordPanel:
        return self.query_one(RecordPanel)

    def refresh_state(self) -> None:
        """Follow the app's device/models state (called by the app when either changes)."""
        app = self.app
        self.panel.set_device(app.device_text)
        if app.ensemble is not None or app.models_error is not None:
            for w in self.query("#models-loading"):
                w.remove()
        s = app.settings
        if app.models_error is not None:
            text = "[b]No models[/b]: recording is off (see the message: press [b]?[/b] for help)"
        elif app.ensemble is None:
            text = "Loading models…"
        elif s.file_mode:
            text = f"Press [b]space[/b] to run {escape(s.file.name)} ({s.seconds:.1f} s) through the guesser"
        else:
            text = f"Press [b]space[/b] to record {s.seconds:g} s  ·  [b]l[/b] listen live  ·  [b]g[/b] play the game"
        self.panel.set_idle_text(text)
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("replay",):
            return bool(self.app.player.available and self.app.session.last)
        if action in ("save", "save_as"):
            return self.app.session.last is not None
        return True

    # -- record

    def action_record(self) -> None:
        if not self.app.can_record(self):
            return
        self.stop_listening()
        s = self.app.settings
        self.panel.start(s.seconds, 0 if s.file_mode else s.countdown)

    def on_record_panel_finished(self, message: RecordPanel.Finished) -> None:
        take = self.app.add_take(message.take)
        self.refresh_bindings()
        from guesser.tui.screens.results import ResultsScreen

        self.app.push_screen(ResultsScreen(take))

    def on_record_panel_failed(self, message: RecordPanel.Failed) -> None:
        self.app.show_problem(message.error)

    # -- listen mode

    def action_listen(self) -> None:
        if self.listening:
            self.stop_listening()
            return
        if not self.app.can_record(self):
            return
        self.listening = True
        self.add_class("listening")
        self.query_one("#listen-title", Static).update("[b]Listening[/b] (l to stop)…")
        self.query_one("#listen-ranking", Ranking).show([])
        s = self.app.settings
        self.run_worker(partial(workers.listen, self, self.app.recorder, self.app.ensemble,
                                min(s.seconds, LIVE_WINDOW_SECONDS), LIVE_HOP_SECONDS),
                        thread=True, group="listen", exclusive=True, name="listen")

    def stop_listening(self) -> None:
        if self.listening:
            self.listening = False
            self.workers.cancel_group(self, "listen")
            self.remove_class("listening")
            self.query_one("#listen-personal", PersonalScores).show([])

    def on_listen_update(self, message: m.ListenUpdate) -> None:
        if not self.listening:
            return
        log = self.query_one("#listen-log", RichLog)
        for event in message.events:
            log.write(log_line(event, message.clock, message.end))
        title = self.query_one("#listen-title", Static)
        ranking = self.query_one("#listen-ranking", Ranking)
        if message.prediction is None:
            title.update(f"[b]Listening[/b] at {message.end:.0f} s: silence ({message.level.rms_db:.0f} dBFS)")
            ranking.show([], empty="…")
        else:
            p = message.prediction
            fam = p.families[0].name
            heard = getattr(p, "heard_personal", [])
            yours = "".join(f"[b magenta]✓ {escape(s.name)}[/] · " for s in heard)  # the user's own sound first
            title.update(f"[b]Listening[/b] at {message.end:.0f} s: {yours}{escape(say(p))} ({fam})")
            ranking.show(p.labels)
        self.query_one("#listen-personal", PersonalScores).show(
            getattr(message.prediction, "personal", []) if message.prediction is not None else [])

    def on_record_failed(self, message: m.RecordFailed) -> None:  # from the listen worker
        self.stop_listening()
        self.app.show_problem(message.error)

    # -- the rest

    def action_game(self) -> None:
        if not self.app.can_record(self):
            return
        self.stop_listening()
        from guesser.tui.screens.game import GameScreen

        self.app.push_screen(GameScreen())

    def action_teach(self) -> None:
        if not self.app.can_record(self):
            return
        self.stop_listening()
        from guesser.tui.screens.teach import TeachScreen

        self.app.push_screen(TeachScreen())

    def action_personal(self) -> None:
        self.stop_listening()
        from guesser.tui.screens.personal import PersonalScreen

        self.app.push_screen(PersonalScreen())

    def action_devices(self) -> None:
        self.stop_listening()
        self.app.action_devices()

    def action_replay(self) -> None:
        if self.app.session.last:
            self.app.replay(self.app.session.last)

    def action_save(self) -> None:
        if self.app.session.last:
            self.app.save(self.app.session.last)

    def action_save_as(self) -> None:
        if self.app.session.last:
            self.app.save_as(self.app.session.last)

    def action_history(self) -> None:
        self.query_one(HistoryList).focus()

    def on_history_list_chosen(self, message: HistoryList.Chosen) -> None:
        from guesser.tui.screens.results import ResultsScreen

        self.app.push_screen(ResultsScreen(message.take))

    def add_take(self, take) -> None:
        self.query_one(HistoryList).add_take(take)
