"""Teach it your own sound: name it, record a few takes, keep the good ones, learn, then try it.

The steps, on one screen so the takes stay in view:

1. **name** the sound and choose how many takes (default 5); a name that is
   not usable, that is an AudioSet label, or that is already one of yours is
   said on the spot, before any recording;
2. **record** each take with the main screen's record panel (countdown,
   level, spectrogram); a silent or failed take is said and not kept; every
   take can be replayed (**r**) and dropped or kept again (**x**);
3. **learn** (**l**, once 3 takes are kept) in a worker
   (:func:`guesser.tui.personal.teach_label`): the label is written only
   when it is fitted, so a failure leaves nothing behind; the leave-one-out
   estimate is shown;
4. **try it**: **space** records one more take, scored with the new label
   (the ensemble is given it at once), and says whether it was heard.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from guesser.confidence import headline as say
from guesser.errors import GuesserError
from guesser.personal.probe import MIN_EXAMPLES
from guesser.tui import messages as m
from guesser.tui.personal import teach_label
from guesser.tui.problems import LOST, NO_DEVICE, PERMISSION, problem_for
from guesser.tui.session import Take
from guesser.tui.widgets import PersonalScores, TitleBar
from guesser.present import HEARD, is_heard
from guesser.tui.widgets.record_panel import RecordPanel

NAMING, RECORDING, LEARNING, TRYING = "naming", "recording", "learning", "trying"
DEFAULT_TAKES = 5
MAX_TAKES = 20  # guesser.personal.teach.MAX_EXAMPLES (not imported here: that module brings torch)
TAKE_SECONDS = 3.0  # a take is one sound: longer takes are mostly room noise, which teaches the room


@dataclass
class TeachTake:
    """One take of the sound: the recording (already classified) and whether it is kept."""

    take: Take
    number: int  # 1-based, in recording order (a dropped take keeps its number)
    kept: bool = True

    def describe(self) -> str:
        t = self.take
        state = "kept" if self.kept else "dropped"
        return f"take {self.number:<2} {state:<7} {t.duration:4.1f} s  {t.level.rms_db:4.0f} dBFS  ~ {say(t.prediction)}"


class TeachScreen(Screen):
    AUTO_FOCUS = "#teach-name"
    BINDINGS = [
        Binding("space", "record", "Record"),
        Binding("r", "replay", "Replay"),
        Binding("x", "drop", "Drop/keep"),
        Binding("l", "learn", "Learn"),
        Binding("escape", "leave", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__(id="teach")
        self.phase = NAMING
        self.name_: str | None = None
        self.wanted = DEFAULT_TAKES
        self.takes: list[TeachTake] = []
        self.label = None  # the learned PersonalLabel
        self.tries: list[Take] = []

    def compose(self) -> ComposeResult:
        yield TitleBar("teach it your own sound")
        with Vertical(id="teach-form"):
            yield Static("Name your sound (a kettle, your doorbell, a whistle) and how many takes to record, "
                         "then [b]enter[/b]:", id="teach-intro")
            with Horizontal(id="teach-inputs"):
                yield Input(placeholder="its name, e.g. kettle", id="teach-name", max_length=40)
                yield Input(str(DEFAULT_TAKES), id="teach-count", type="integer", max_length=2)
            yield Static("", id="teach-name-error")
        yield RecordPanel(id="teach-panel")
        yield Static("", id="teach-status")
        with Horizontal(id="teach-body"):
            yield OptionList(id="teach-takes")
            with Vertical(id="teach-right"):
                yield Static("", id="teach-result")
                yield PersonalScores("Yours", top_k=3, id="teach-personal")
        yield Footer()

    def on_mount(self) -> None:
        self.panel.set_device(self.app.device_text)
        self._idle()
        self.say("Name it first. Then record it the way it will be heard later: same room, same distance.")

    @property
    def panel(self) -> RecordPanel:
        return self.query_one(RecordPanel)

    @property
    def kept(self) -> list[TeachTake]:
        return [t for t in self.takes if t.kept]

    def say(self, text: str, error: bool = False) -> None:
        """The one status line (an error too: one line, never a traceback)."""
        status = self.query_one("#teach-status", Static)
        status.set_class(error, "error")
        status.update(escape(text) if error else text)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Shown greyed out (None) while not possible yet, so the keys are there to be learned."""
        if action == "learn":
            return True if self.phase == RECORDING and len(self.kept) >= MIN_EXAMPLES else None
        if action in ("replay", "drop"):
            return True if self.takes and (action == "replay" or self.phase == RECORDING) else None
        return True

    # -- 1. the name

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.phase == NAMING:
            self.accept_name()

    def accept_name(self) -> bool:
        """Check the name and the number of takes; on success, recording starts being possible."""
        error = self.query_one("#teach-name-error", Static)
        try:
            name = self._checked_name(self.query_one("#teach-name", Input).value)
            wanted = self._checked_count(self.query_one("#teach-count", Input).value)
        except GuesserError as e:
            error.update(escape(str(e)))
            return False
        error.update("")
        self.name_, self.wanted, self.phase = name, wanted, RECORDING
        for inp in self.query(Input):
            inp.disabled = True
        self.query_one("#teach-takes", OptionList).focus()
        self.query_one("#teach-intro", Static).update(f"Teaching [b]{escape(name)}[/b]: {wanted} takes.")
        self._idle()
        self.say(f"Take 1 of {wanted}: press [b]space[/b], wait for the countdown, then make the sound once.")
        self.refresh_bindings()
        return True

    @staticmethod
    def _checked_name(raw: str) -> str:
        from guesser.personal.store import Store, check_name

        name = check_name(raw)  # not usable, or an AudioSet label: one line
        if Store().exists(name):
            raise GuesserError(f"you already have a personal label {name!r}: forget it first (p on the main "
                               "screen), or choose another name")
        return name

    @staticmethod
    def _checked_count(raw: str) -> int:
        try:
            n = int(raw.strip() or DEFAULT_TAKES)
        except ValueError:
            n = 0
        if not MIN_EXAMPLES <= n <= MAX_TAKES:
            raise GuesserError(f"record {MIN_EXAMPLES} to {MAX_TAKES} takes (5 is a good number)")
        return n

    # -- 2. the takes

    def action_record(self) -> None:
        if self.phase == NAMING:
            if not self.accept_name():
                return
        if self.phase == LEARNING or self.panel.busy or not self.app.can_record(self):
            return
        if self.phase == RECORDING and len(self.kept) >= self.wanted:
            self.say(f"{len(self.kept)} takes kept: press [b]l[/b] to learn (or [b]x[/b] drops one to take again).")
            return
        s = self.app.settings
        self.panel.start(min(s.seconds, TAKE_SECONDS), 0 if s.file_mode else s.countdown)

    def on_record_panel_finished(self, message: RecordPanel.Finished) -> None:
        message.stop()
        if self.phase == TRYING:
            self.tried(message.take)
            return
        take = TeachTake(message.take, len(self.takes) + 1)
        self.takes.append(take)
        self.show_takes(highlight=len(self.takes) - 1)
        n = len(self.kept)
        if n < self.wanted:
            self.say(f"Take {take.number} kept. Take {n + 1} of {self.wanted}: [b]space[/b]  ·  "
                     "[b]r[/b] replays, [b]x[/b] drops the highlighted take")
        else:
            self.say(f"{n} takes kept: [b]l[/b] learns {escape(self.name_ or '')}  ·  "
                     "[b]r[/b] replays, [b]x[/b] drops a take")
        self.refresh_bindings()

    def on_record_panel_failed(self, message: RecordPanel.Failed) -> None:
        message.stop()
        what = "the try" if self.phase == TRYING else f"take {len(self.takes) + 1}"
        self.say(f"{what}: {message.error} (not kept; space records it again)", error=True)
        if problem_for(message.error).kind in (NO_DEVICE, PERMISSION, LOST):
            self.app.show_problem(message.error)

    def show_takes(self, highlight: int | None = None) -> None:
        takes = self.query_one("#teach-takes", OptionList)
        current = takes.highlighted if highlight is None else highlight
        takes.clear_options()
        takes.add_options([Option(t.describe() if t.kept else f"[dim strike]{escape(t.describe())}[/]", id=str(i))
                           for i, t in enumerate(self.takes)])
        if self.takes:
            takes.highlighted = min(current or 0, len(self.takes) - 1)

    def _highlighted(self) -> TeachTake | None:
        i = self.query_one("#teach-takes", OptionList).highlighted
        if i is None or not self.takes:
            return self.takes[-1] if self.takes else None
        return self.takes[i]

    def action_replay(self) -> None:
        chosen = self._highlighted()
        if chosen is not None:
            self.app.replay(chosen.take)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_replay()

    def action_drop(self) -> None:
        chosen = self._highlighted()
        if chosen is None or self.phase != RECORDING:
            return
        chosen.kept = not chosen.kept
        self.show_takes()
        verb = "kept again" if chosen.kept else "dropped"
        self.say(f"Take {chosen.number} {verb}: {len(self.kept)} of {self.wanted} kept"
                 + ("" if len(self.kept) >= self.wanted else "  ·  [b]space[/b] records another"))
        self.refresh_bindings()

    # -- 3. learn

    def action_learn(self) -> None:
        kept = self.kept
        if self.phase != RECORDING or self.panel.busy:
            return
        if len(kept) < MIN_EXAMPLES:
            self.say(f"{len(kept)} takes kept: at least {MIN_EXAMPLES} are needed to learn a sound", error=True)
            return
        self.phase = LEARNING
        self.refresh_bindings()
        self._idle()
        self.say(f"Learning {escape(self.name_ or '')} from {len(kept)} takes…")
        takes = [(t.take.samples, t.take.samplerate, f"microphone take {t.number}") for t in kept]
        self.run_worker(partial(teach_label, self, self.app.ensemble, self.name_, takes, self.app.settings.teach),
                        thread=True, group="teach", exclusive=True, name="teach")

    def on_teach_progress(self, message: m.TeachProgress) -> None:
        self.say(f"Learning {escape(self.name_ or '')}: {escape(message.text)}…")

    def on_taught(self, message: m.Taught) -> None:
        self.label = message.label
        self.phase = TRYING
        e = message.label.estimate
        lines = [f"[b]Learned {escape(message.label.name)}[/b] from {message.label.examples} takes.",
                 escape(e.text())]
        if e.recognised < e.examples:
            lines.append("[dim]Takes that differ a lot from each other, or from what you will play later, teach "
                         "less; a few more clear takes help.[/dim]")
        self.query_one("#teach-result", Static).update("\n".join(lines))
        self._idle()
        self.say("Now try it: press [b]space[/b] and make the sound once more  ·  [b]escape[/b] when done")
        self.refresh_bindings()

    def on_teach_failed(self, message: m.TeachFailed) -> None:
        self.phase = RECORDING  # the takes are still here: drop one, record more, or try again
        self._idle()
        self.say(f"not learned: {message.error}", error=True)
        self.refresh_bindings()

    # -- 4. try it

    def tried(self, take: Take) -> None:
        self.tries.append(take)
        self.app.add_take(take)  # a guess like any other: it joins the history
        personal = getattr(take.prediction, "personal", [])
        self.query_one("#teach-personal", PersonalScores).show(personal, highlight=self.name_)
        score = next((s.score for s in personal if s.name == self.name_), None)
        name = escape(self.name_ or "")
        if score is None:
            self.say(f"{name} was not scored on that take (see the notification); "
                     "press p on the main screen to check your labels", error=True)
        elif is_heard(score):
            self.say(f"[b magenta]✓ Heard: {name}[/] ({score:.2f})  ·  [b]space[/b] tries again, "
                     "[b]escape[/b] when done")
        else:
            self.say(f"Not heard: {name} scored {score:.2f} ({HEARD:.2f} is heard). Make it as in the takes, or teach it "
                     "again with more takes  ·  [b]space[/b] tries again")

    # -- leaving

    def action_leave(self) -> None:
        self.panel.cancel()
        self.app.pop_screen()  # a label being learned is still written whole (or not at all) by its worker

    def _idle(self) -> None:
        texts = {NAMING: "Name it first (above), then [b]enter[/b]",
                 RECORDING: "Press [b]space[/b] to record a take",
                 LEARNING: "Learning…",
                 TRYING: "Press [b]space[/b] to try it"}
        self.panel.set_idle_text(texts[self.phase])
