"""Guess a noise: make the sound you are shown (a label, a family or one of your own), score it; then the high scores."""

from __future__ import annotations

import getpass

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, Static

from guesser.errors import GuesserError
from guesser.game import (FAMILY, PERSONAL, Game, HighScore, HighScores, RoundResult, Target, draw_target,
                          personal_score, target_pool)
from guesser.labels import pretty
from guesser.tui.widgets import PersonalScores, Ranking, TitleBar
from guesser.tui.widgets.record_panel import RecordPanel


def describe(result: RoundResult, prediction=None) -> str:
    if result.target.kind == PERSONAL:  # heard or not: a personal label has no rank (guesser.game)
        score = personal_score(result.target, prediction) if prediction is not None else None
        where = ("heard" if result.rank else "not heard") + (f" ({score:.2f})" if score is not None else "")
    else:
        where = "not ranked" if result.rank is None else f"ranked #{result.rank}"
    text = f"{escape(result.target.title)}: {where} → [b]{result.points}[/b] points"
    if result.bonus:
        text += f" + {result.bonus} streak bonus"
    if result.hit:
        text += f"  ·  streak {result.streak}"
    return text


class GameScreen(Screen):
    AUTO_FOCUS = ""
    BINDINGS = [
        Binding("space", "record", "Make the sound"),
        Binding("enter", "record", show=False),
        Binding("p", "pick", "Pick target"),
        Binding("n", "new_target", "Another target"),
        Binding("escape", "leave", "Leave game"),
    ]

    def __init__(self, rounds: int | None = None) -> None:
        super().__init__(id="game")
        self.game = Game(rounds) if rounds else Game()
        personal = getattr(self.app.ensemble, "personal", None)  # a PersonalSet, when labels were taught
        self.pool = target_pool(self.app.ensemble.known_labels(), personal=personal.names if personal else ())
        self.target: Target = draw_target(self.pool, self.app.session.rng)
        self.highscores = HighScores.load(self.app.highscores_path)

    def compose(self) -> ComposeResult:
        yield TitleBar("guess a noise")
        yield Static("", id="game-target")
        yield Static("", id="game-stats")
        yield RecordPanel(freeze=True, id="game-panel")
        with Horizontal(id="game-bottom"):
            with Vertical(id="game-answer-box"):
                yield Static("", id="round-result")
                yield Ranking(top_k=5, bar_width=20, id="game-answer")
                yield PersonalScores("Yours", top_k=3, id="game-personal")
            yield Static("", id="game-scores")
        yield Footer()

    def on_mount(self) -> None:
        if self.highscores.notice:
            self.notify(self.highscores.notice, severity="warning", timeout=8, markup=False)
        self.query_one(RecordPanel).set_device(self.app.device_text)
        self.query_one(RecordPanel).set_idle_text("Press [b]space[/b] and make the sound  ·  [b]p[/b] pick  ·  "
                                                  "[b]n[/b] another")
        self.show_target()
        self.show_scores()

    def show_target(self) -> None:
        kind = {FAMILY: "a sound of the family", PERSONAL: "your own sound"}.get(self.target.kind, "this sound")
        self.query_one("#game-target", Static).update(
            f"Make {kind}:  [b reverse] {escape(self.target.title.upper())} [/]")
        g = self.game
        best = self.highscores.entries[0].score if self.highscores.entries else 0
        self.query_one("#game-stats", Static).update(
            f"Round {min(g.round_no, g.rounds)}/{g.rounds}  ·  score [b]{g.score}[/b]  ·  streak {g.streak}"
            f"  ·  best streak {g.best_streak}  ·  high score {best}")

    def show_scores(self, mark: int | None = None) -> None:
        self.query_one("#game-scores", Static).update(scores_table(self.highscores, mark))

    # -- actions

    def action_record(self) -> None:
        if self.game.finished or not self.app.can_record(self):
            return
        s = self.app.settings
        self.query_one(RecordPanel).start(s.seconds, 0 if s.file_mode else s.countdown, game_target=self.target.name)

    def action_pick(self) -> None:
        if self.query_one(RecordPanel).busy:
            return
        from guesser.tui.screens.pickers import TargetPicker

        def picked(target: Target | None) -> None:
            if target is not None:
                self.target = target
                self.show_target()

        self.app.push_screen(TargetPicker(self.pool), picked)

    def action_new_target(self) -> None:
        if not self.query_one(RecordPanel).busy:
            self.target = draw_target(self.pool, self.app.session.rng, avoid=self.target)
            self.show_target()

    def action_leave(self) -> None:
        self.query_one(RecordPanel).cancel()
        self.app.pop_screen()

    # -- a round

    def on_record_panel_finished(self, message: RecordPanel.Finished) -> None:
        take = self.app.add_take(message.take)
        p = take.prediction
        result = self.game.play(self.target, p)
        personal = getattr(p, "personal", [])
        ranked = {FAMILY: p.families, PERSONAL: personal}.get(self.target.kind, p.labels)
        self.query_one("#game-answer", Ranking).show(ranked, highlight=self.target.name)
        # the user's own labels beside the answer, unless the answer already is them
        self.query_one("#game-personal", PersonalScores).show([] if self.target.kind == PERSONAL else personal)
        self.query_one("#round-result", Static).update(describe(result, p))
        if self.game.finished:
            self.show_target()
            self.app.push_screen(GameOverScreen(self.game, self.highscores, self.app.player_name,
                                                self.app.settings.today()), self._after_game)
            return
        self.target = draw_target(self.pool, self.app.session.rng, avoid=self.target)
        self.show_target()

    def on_record_panel_failed(self, message: RecordPanel.Failed) -> None:
        self.app.show_problem(message.error)  # the round is not counted: try again

    def _after_game(self, _: object) -> None:
        self.app.pop_screen()


def scores_table(scores: HighScores, mark: int | None = None) -> Table | Text:
    if not scores.entries:
        return Text("No high scores yet.", style="dim")
    table = Table(title="High scores", title_style="bold", title_justify="left", show_edge=False, pad_edge=False)
    for col, just in (("#", "right"), ("name", "left"), ("score", "right"), ("streak", "right"), ("date", "left")):
        table.add_column(col, justify=just, no_wrap=True)
    for i, e in enumerate(scores.entries, start=1):
        # Text, not a string: a player's name is never parsed as markup ("[/oops]" would crash the table)
        table.add_row(str(i), Text(e.name), str(e.score), str(e.best_streak), Text(e.date),
                      style="bold reverse" if i == mark else None)
    return table


class GameOverScreen(ModalScreen[int | None]):
    """Final score; a name for the table if it qualifies; dismissed with the table position (or None)."""

    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, game: Game, scores: HighScores, name: str | None, today: str) -> None:
        super().__init__()
        self.game, self.scores, self.today = game, scores, today
        self.default_name = name or _user_name()
        self.position: int | None = None

    def compose(self) -> ComposeResult:
        g = self.game
        with Vertical(id="gameover-box"):
            yield Static(f"[b]Game over[/b]: {g.score} points in {g.rounds} rounds, best streak {g.best_streak}",
                         id="gameover-title")
            lines = [f"{i}. {_name(r.target)}: " + _where(r) + f" → {r.total}" for i, r in enumerate(g.results, start=1)]
            yield Static("\n".join(lines), id="gameover-rounds", markup=False)
            if self.scores.qualifies(g.score):
                yield Static("A high score! Your name (enter saves):")
                yield Input(self.default_name, id="player-name", max_length=24)
            else:
                yield Static("Not a high score this time; escape closes.", id="gameover-no")
            yield Static(scores_table(self.scores), id="gameover-table")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        name = event.value.strip() or self.default_name
        entry = HighScore(name, self.game.score, self.game.rounds, self.game.best_streak, self.today)
        self.position = self.scores.add(entry)
        try:
            self.scores.save()  # merged with scores another instance saved meanwhile: the position may move
            self.position = self.scores.entries.index(entry) + 1 if entry in self.scores.entries else None
        except (OSError, GuesserError) as e:
            self.notify(f"could not save the high scores: {e}", severity="error", markup=False)
        event.input.disabled = True
        self.query_one("#gameover-table", Static).update(scores_table(self.scores, self.position))
        self.focus_next()

    def action_close(self) -> None:
        self.dismiss(self.position)


def _name(target: Target) -> str:
    return target.title if target.kind == PERSONAL else pretty(target.name)


def _where(result: RoundResult) -> str:
    if result.target.kind == PERSONAL:
        return "heard" if result.rank else "—"
    return "—" if result.rank is None else f"#{result.rank}"


def _user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers)
        return "player"
