"""Your sounds: the personal labels on this machine, to check, forget or re-embed.

Each row says how the label was made (examples, leave-one-out, false alarms,
date) and whether it was made with the models now loaded. A label made with
other models is not scored (its numbers would mean nothing with these); its
stored clips can be embedded again here (**e**). Forgetting (**f**) asks
first. The store is read, changed and re-attached to the ensemble in workers
(:mod:`guesser.tui.personal`).
"""

from __future__ import annotations

from functools import partial

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from guesser.tui import messages as m
from guesser.tui.personal import forget_label, list_labels, reembed_label
from guesser.tui.widgets import TitleBar

COLUMNS = ("name", "examples", "leave-one-out", "false alarms", "made", "models")


class PersonalScreen(Screen):
    BINDINGS = [
        Binding("f,delete", "forget", "Forget"),
        Binding("e", "reembed", "Re-embed"),
        Binding("t", "teach", "Teach another"),
        Binding("escape,b", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__(id="personal")
        self.labels: list = []
        self.current: frozenset | None = None  # stamps of the loaded models (None: still loading)
        self.busy = False

    def compose(self) -> ComposeResult:
        yield TitleBar("your sounds")
        yield Static("Reading your personal labels…", id="personal-intro")
        yield DataTable(id="personal-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="personal-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.reload()

    def reload(self) -> None:
        self.run_worker(partial(list_labels, self, self.app.ensemble), thread=True, group="personal-list",
                        exclusive=True, name="list personal labels")

    def is_current(self, label) -> bool | None:
        return None if self.current is None else set(label.models) == self.current

    def on_personal_listed(self, message: m.PersonalListed) -> None:
        self.labels, self.current = message.labels, message.current
        table = self.query_one(DataTable)
        table.clear()
        for lab in self.labels:
            e = lab.estimate
            ok = self.is_current(lab)
            models = Text("?" if ok is None else "current" if ok else "other: e re-embeds",
                          style="" if ok or ok is None else "yellow")
            table.add_row(Text(lab.name), str(lab.examples), f"{e.recognised}/{e.examples}",
                          f"{e.false_alarms:.1%}", lab.created[:10], models, key=lab.name)
        intro = self.query_one("#personal-intro", Static)
        if self.labels:
            intro.update(f"{len(self.labels)} personal label{'s' if len(self.labels) != 1 else ''}, scored next "
                         "to the AudioSet labels in every guess. [b]f[/b] forgets, [b]e[/b] re-embeds, "
                         "[b]t[/b] teaches another.")
        else:
            intro.update("No personal labels yet: press [b]t[/b] to teach guesser a sound of your own.")
        if message.problems:
            self.say("unreadable: " + "; ".join(message.problems), error=True)

    def on_personal_failed(self, message: m.PersonalFailed) -> None:
        self.busy = False
        self.say(str(message.error), error=True)

    def on_personal_changed(self, message: m.PersonalChanged) -> None:
        self.busy = False
        self.say(message.text)
        self.reload()

    def say(self, text: str, error: bool = False) -> None:
        status = self.query_one("#personal-status", Static)
        status.set_class(error, "error")
        status.update(escape(text))

    def selected(self):
        table = self.query_one(DataTable)
        if not self.labels or table.cursor_row is None or not 0 <= table.cursor_row < len(self.labels):
            return None
        return self.labels[table.cursor_row]

    # -- actions

    def action_forget(self) -> None:
        label = self.selected()
        if label is None or self.busy:
            return
        from guesser.tui.screens.pickers import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.busy = True
                self.say(f"forgetting {label.name!r}…")
                self.run_worker(partial(forget_label, self, self.app.ensemble, label.name), thread=True,
                                group="personal-change", name="forget")

        self.app.push_screen(ConfirmScreen(f"Forget {label.name!r}? Its {label.examples} takes and its classifier "
                                           "are deleted; guesser stops hearing it."), answered)

    def action_reembed(self) -> None:
        label = self.selected()
        if label is None or self.busy:
            return
        if self.app.ensemble is None:
            self.say("the models are still loading", error=True)
            return
        if self.is_current(label):
            self.say(f"{label.name!r} was made with the models now loaded: nothing to re-embed")
            return
        self.busy = True
        self.say(f"embedding the {label.examples} stored takes of {label.name!r} with the models now loaded…")
        self.run_worker(partial(reembed_label, self, self.app.ensemble, label.name), thread=True,
                        group="personal-change", name="re-embed")

    def action_teach(self) -> None:
        if not self.app.can_record(self):
            return
        from guesser.tui.screens.teach import TeachScreen

        self.app.switch_screen(TeachScreen())

    def action_back(self) -> None:
        self.app.pop_screen()
