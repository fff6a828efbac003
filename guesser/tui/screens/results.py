"""One recording's answer: its spectrogram and sound events, ranked labels with score bars, the user's own labels,
families, and each model's view."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

from guesser.confidence import headline as say
from guesser.tui.session import Take
from guesser.tui.widgets import EventTimeline, ModelBreakdown, PersonalScores, Ranking, Spectrogram, TitleBar


class ResultsScreen(Screen):
    BINDINGS = [
        Binding("escape,b", "back", "Back"),
        Binding("space", "again", "Record again"),
        Binding("r", "replay", "Replay"),
        Binding("s", "save", "Save"),
        Binding("S", "save_as", "Save as…"),
    ]

    def __init__(self, take: Take) -> None:
        super().__init__(classes="results")
        self.take = take

    def compose(self) -> ComposeResult:
        t, p = self.take, self.take.prediction
        yield TitleBar("the guesses")
        top = p.labels[0] if p.labels else None
        heard = getattr(p, "heard_personal", [])
        yours = f"[b magenta]✓ yours: {escape(heard[0].name)}[/]  ·  " if heard else ""  # the user's own sound first
        headline = f"#{t.number}  {yours}[b]{escape(say(p))}[/b] ({top.score:.2f})" if top else f"#{t.number}"
        yield Static(f"{headline}  ·  {t.duration:.1f} s from {escape(t.source)}  ·  {t.level.rms_db:.0f} dBFS RMS",
                     id="result-title")
        with Horizontal(id="result-body"):
            with Vertical(id="result-left"):
                yield Spectrogram(fit=True, id="take-spectrogram")
                yield EventTimeline(id="take-events")
                yield PersonalScores("Yours", id="personal")
                yield Ranking("Labels", top_k=10, id="labels")
            with Vertical(id="result-right"):
                yield Ranking("Families", top_k=6, bar_width=16, id="families")
                yield ModelBreakdown(id="models")
                yield Static("", id="saved")
        yield Footer()

    def on_mount(self) -> None:
        p = self.take.prediction
        self.query_one("#take-spectrogram", Spectrogram).show(self.take.spectrum)
        self.query_one("#take-events", EventTimeline).show(getattr(p, "events", None), self.take.duration)
        self.query_one("#personal", PersonalScores).show(getattr(p, "personal", []), highlight=self.take.target)
        self.query_one("#labels", Ranking).show(p.labels, highlight=self.take.target)
        self.query_one("#families", Ranking).show(p.families, highlight=self.take.target)
        self.query_one(ModelBreakdown).show(p.models, p.agreement)
        self.show_saved()

    def show_saved(self) -> None:
        if self.take.saved_to is not None:
            self.query_one("#saved", Static).update(f"saved: {escape(str(self.take.saved_to))}")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "replay":
            return bool(self.app.player.available)
        return True

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_again(self) -> None:
        self.app.pop_screen()
        main = self.app.screen
        if hasattr(main, "action_record"):
            main.action_record()

    def action_replay(self) -> None:
        self.app.replay(self.take)

    def action_save(self) -> None:
        self.app.save(self.take)

    def action_save_as(self) -> None:
        self.app.save_as(self.take)
