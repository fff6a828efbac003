"""The failure screen: what went wrong and what to do, instead of a traceback."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from guesser.tui.problems import Problem

RETRY, DEVICES = "retry", "devices"


class ErrorScreen(ModalScreen[str | None]):
    """Dismissed with :data:`RETRY`, :data:`DEVICES` or None (back); q quits the app."""

    BINDINGS = [
        Binding("escape,enter", "back", "Back"),
        Binding("r", "retry", "Retry"),
        Binding("d", "devices", "Pick device"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, problem: Problem, *, can_retry: bool = False) -> None:
        super().__init__(classes=f"problem-{problem.kind}")
        self.problem, self.can_retry = problem, can_retry

    def compose(self) -> ComposeResult:
        p = self.problem
        with Vertical(id="error-box"):
            yield Static(f"[b]{p.title}[/b]", id="error-title")
            yield Static(p.message, id="error-message", markup=False)
            yield Static(p.advice, id="error-advice", markup=False)
            keys = "[b]escape[/b] back"
            if self.can_retry:
                keys += "  ·  [b]r[/b] retry"
            yield Static(keys + "  ·  [b]d[/b] pick a device  ·  [b]q[/b] quit", id="error-keys")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.can_retry if action == "retry" else True

    def action_back(self) -> None:
        self.dismiss(None)

    def action_retry(self) -> None:
        self.dismiss(RETRY)

    def action_devices(self) -> None:
        self.dismiss(DEVICES)
