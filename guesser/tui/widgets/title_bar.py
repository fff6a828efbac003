"""The one-line bar at the top of each screen: the app's name and what the screen is.

A plain Static rather than Textual's Header: Header updates its title from
watchers scheduled at mount, which can run after a quickly dismissed screen
has already lost its children (an error at exit); this bar has nothing to race.
"""

from __future__ import annotations

from textual.widgets import Static


class TitleBar(Static):
    DEFAULT_CSS = """
    TitleBar {
        dock: top;
        height: 1;
        width: 100%;
        background: $panel;
        color: $foreground;
        text-align: center;
    }
    """

    def __init__(self, what: str) -> None:
        super().__init__(f"[b]guesser[/b] · {what}")
