"""The user's own labels next to the AudioSet ones: each score, the heard ones marked.

A personal label's score is 0.5 at its operating point (guesser.personal.probe),
so one rule marks every label: at or above 0.5 it is *heard* ("this is your
sound"), below it is shown dim, for reference. The widget hides itself when
there is nothing to show (no personal labels taught), so screens without
them look as they always did.
"""

from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.widgets import Static

from guesser.game import HEARD
from guesser.tui.widgets.ranking import score_bar


def is_heard(score: float) -> bool:
    return score >= HEARD


class PersonalScores(Static):
    """Rows ``✓ kettle ████████ 0.91 heard``; :meth:`show` with ``Scored``-like items, best first."""

    DEFAULT_CSS = """
    PersonalScores { height: auto; }
    """

    def __init__(self, title: str = "Yours", *, top_k: int = 5, bar_width: int = 16, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title, self.top_k, self.bar_width = title, top_k, bar_width
        self.items: list = []
        self.display = False

    @property
    def heard(self) -> list[str]:
        """Names of the shown labels that are heard."""
        return [s.name for s in self.items if is_heard(s.score)]

    def show(self, items: Sequence, highlight: str | None = None) -> None:
        self.items = list(items)[: self.top_k]
        extra = [s for s in items if s.name == highlight and s not in self.items]
        self.items += extra
        self.display = bool(self.items)
        text = Text()
        if self.title:
            text.append(self.title + "\n", style="bold")
        for n, s in enumerate(self.items):
            heard = is_heard(s.score)
            hit = s.name == highlight
            text.append("✓ " if heard else "  ", style="bold magenta")
            # a name the user typed: Text, never markup ("[/oops]" is a name)
            text.append(s.name[:24].ljust(24), style="bold reverse" if hit else ("bold magenta" if heard else "dim"))
            text.append(" ")
            text.append(score_bar(s.score, self.bar_width), style="magenta" if heard else "dim cyan")
            text.append(f" {s.score:4.2f}")
            text.append("  heard" if heard else "", style="bold magenta")
            if n < len(self.items) - 1:
                text.append("\n")
        self.update(text)
