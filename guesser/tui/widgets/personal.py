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
from textual.widget import Widget

from guesser.present import is_heard, score_bar


class PersonalScores(Widget):
    """Rows ``✓ kettle ████████ 0.91 heard``; :meth:`show` with ``Scored``-like items, best first.

    Laid out at render time from the widget's width, like :class:`~guesser.tui.widgets.ranking.Ranking`.
    """

    DEFAULT_CSS = """
    PersonalScores { height: auto; }
    """

    def __init__(self, title: str = "Yours", *, top_k: int = 5, bar_width: int = 16, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title, self.top_k, self.bar_width = title, top_k, bar_width
        self.items: list = []
        self.highlight: str | None = None
        self.display = False

    @property
    def heard(self) -> list[str]:
        """Names of the shown labels that are heard."""
        return [s.name for s in self.items if is_heard(s.score)]

    def show(self, items: Sequence, highlight: str | None = None) -> None:
        """Show the top k (and the highlighted one wherever it ranks); hidden when there are none."""
        items = list(items)
        self.items = items[: self.top_k] + [s for s in items[self.top_k:] if s.name == highlight]
        self.highlight = highlight
        self.display = bool(self.items)
        self.refresh(layout=True)

    def get_content_height(self, container, viewport, width: int) -> int:
        return (1 if self.title else 0) + max(1, len(self.items))

    def render(self) -> Text:
        width = max(24, self.size.width)
        bar_w = max(4, min(self.bar_width, width - 2 - 8 - 12))
        name_w = width - 2 - 1 - bar_w - 5 - 7
        out = Text()
        if self.title:
            out.append(self.title + "\n", style="bold")
        for n, s in enumerate(self.items):
            heard = is_heard(s.score)
            name = s.name if len(s.name) <= name_w else s.name[: name_w - 1] + "…"
            out.append("✓ " if heard else "  ", style="bold magenta")
            # a name the user typed: Text, never markup ("[/oops]" is a name)
            out.append(name.ljust(name_w),
                       style="bold reverse" if s.name == self.highlight else ("bold magenta" if heard else "dim"))
            out.append(" ")
            out.append(score_bar(s.score, bar_w), style="magenta" if heard else "dim cyan")
            out.append(f" {s.score:4.2f}")
            out.append("  heard" if heard else "", style="bold magenta")
            if n < len(self.items) - 1:
                out.append("\n")
        return out
