"""Ranked guesses with score bars: labels, families, and what each model said.

A bar's length is the score itself (0–1), not the score relative to the top
guess: two weak guesses should look weak, not like a confident answer.
"""

from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

from guesser.labels import pretty
from guesser.present import score_bar

__all__ = ["ModelBreakdown", "Ranking", "score_bar"]


class Ranking(Widget):
    """Top-k rows: rank, name, bar, score. :meth:`show` with ``Scored``-like items (``.name``, ``.score``).

    Laid out at render time from the widget's width: names get what the bar
    and numbers leave over, and are cut with an ellipsis rather than wrapped.
    """

    DEFAULT_CSS = """
    Ranking { height: auto; }
    """

    def __init__(self, title: str = "", *, top_k: int = 10, bar_width: int = 24, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title, self.top_k, self.bar_width = title, top_k, bar_width
        self.items: list = []
        self.highlight: str | None = None
        self.empty = ""

    def show(self, items: Sequence, highlight: str | None = None, empty: str = "") -> None:
        self.items, self.highlight, self.empty = list(items), highlight, empty
        self.refresh(layout=True)

    def rows(self) -> list[tuple[int, object]]:
        """(rank, item) pairs shown: the top k, plus the highlighted item wherever it ranks."""
        rows = list(enumerate(self.items, start=1))
        shown = rows[: self.top_k]
        if self.highlight is not None and all(s.name != self.highlight for _, s in shown):
            shown += [(i, s) for i, s in rows if s.name == self.highlight]
        return shown

    def get_content_height(self, container, viewport, width: int) -> int:
        return (1 if self.title else 0) + max(1, len(self.rows()))

    def render(self) -> Text:
        width = max(20, self.size.width)
        out = Text()
        if self.title:
            out.append(self.title + "\n", style="bold")
        shown = self.rows()
        if not shown:
            out.append(self.empty, style="dim")
            return out
        bar_w = max(4, min(self.bar_width, width - 3 - 14 - 6))
        name_w = width - 3 - 1 - bar_w - 1 - 5
        for n, (i, s) in enumerate(shown):
            hit = s.name == self.highlight
            name = pretty(s.name)
            if len(name) > name_w:
                name = name[: name_w - 1] + "…"
            out.append(f"{i:>3} ", style="dim")
            out.append(name.ljust(name_w), style="bold reverse" if hit else ("bold" if i == 1 else ""))
            out.append(" ")
            out.append(score_bar(s.score, bar_w), style="magenta" if hit else "cyan")
            out.append(f" {s.score:4.2f}")
            if n < len(shown) - 1:
                out.append("\n")
        return out


class ModelBreakdown(Static):
    """Per model: its name and task, then its top guesses on the next line, so disagreement is visible."""

    DEFAULT_CSS = """
    ModelBreakdown { height: auto; }
    """

    rows: list[tuple[str, str, str]] = []

    def show(self, models: Sequence, agreement: float | None = None, top: int = 3) -> None:
        self.rows = [(m.name, m.task, " · ".join(f"{pretty(s.name)} {s.score:.2f}" for s in m.ranking[:top]))
                     for m in models]
        text = Text()
        text.append("What each model said\n", style="bold")
        for name, task, guesses in self.rows:
            text.append(name, style="bold")
            text.append(f" ({task})\n", style="dim")
            text.append(f"  {guesses}\n")
        if agreement is not None and models:
            agree = round(agreement * len(models))
            text.append(f"{agree} of {len(models)} models agree on the family", style="italic dim")
        self.update(text)
