"""The sounds heard in a take, on a time axis under its spectrogram: one row per sound, a bar where it sounded.

The spectrogram above is stretched to the widget's width (``fit``), so column
``c`` of both is the same moment: ``c · duration / width`` seconds. A label
and its ancestors usually fire together (*Bark*, *Dog*, *Animal*), so a row is
kept only for a label unrelated to those already shown (the strongest first),
and at most :data:`MAX_ROWS` rows are drawn. Nothing heard is said in one line.
"""

from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.widget import Widget

from guesser.labels import default_label_space, pretty

MAX_ROWS = 4
FAMILY_STYLES = {"Human sounds": "bold #f28e2b", "Animal": "bold #59a14f", "Music": "bold #b07aa1",
                 "Natural sounds": "bold #4e79a7", "Sounds of things": "bold #edc948",
                 "Source-ambiguous sounds": "bold #bab0ac"}


def rows_of(events: Sequence, max_rows: int = MAX_ROWS) -> list[tuple[str, str, list]]:
    """(label, family, its events) for the strongest labels that are not one another's ancestors."""
    space = default_label_space()
    by_label: dict[str, list] = {}
    for e in events:
        by_label.setdefault(e.label, []).append(e)
    order = sorted(by_label, key=lambda n: -max(e.score for e in by_label[n]))
    chosen: list[str] = []
    for name in order:
        if len(chosen) < max_rows and not any(space.related(name, c) for c in chosen):
            chosen.append(name)
    chosen.sort(key=lambda n: min(e.start for e in by_label[n]))
    return [(n, by_label[n][0].family, by_label[n]) for n in chosen]


def draw_row(label: str, spans: Sequence, duration: float, width: int, style: str) -> Text:
    """One row ``width`` cells wide: a bar over each span, the label's name after its first bar."""
    cells = [" "] * width
    styled = [False] * width
    for e in spans:
        a = int(e.start / duration * width) if duration > 0 else 0
        b = max(a + 1, int(round(e.end / duration * width)) if duration > 0 else width)
        for c in range(max(0, a), min(width, b)):
            cells[c], styled[c] = "━", True
    first = min(spans, key=lambda e: e.start)
    name = f" {pretty(label)} {first.score:.2f} "
    end = min(width, max(1, int(round(first.end / duration * width)) if duration > 0 else 0))
    at = end if end + len(name) <= width else max(0, int(first.start / duration * width) - len(name))
    for i, ch in enumerate(name):  # the name in the free cells after (or before) the first bar
        if at + i < width and not styled[at + i]:
            cells[at + i] = ch
    text = Text()
    for c in range(width):
        text.append(cells[c], style=style if styled[c] else "")
    return text


class EventTimeline(Widget):
    """:meth:`show` a take's events and its duration; rows are laid out at render time from the width."""

    DEFAULT_CSS = """
    EventTimeline { height: auto; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.events: list = []
        self.duration = 0.0
        self.rows: list[tuple[str, str, list]] = []

    def show(self, events: Sequence | None, duration: float) -> None:
        """The events of a take ``duration`` seconds long (None: events were not computed: hidden)."""
        self.display = events is not None
        self.events, self.duration = list(events or []), float(duration)
        self.rows = rows_of(self.events)
        self.refresh(layout=True)

    def render(self) -> Text:
        width = max(1, self.size.width)
        if not self.rows:
            return Text("no sound events heard", style="dim")
        lines = [draw_row(label, spans, self.duration, width, FAMILY_STYLES.get(family, "bold"))
                 for label, family, spans in self.rows]
        return Text("\n").join(lines)
