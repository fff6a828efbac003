"""This session's recordings, newest first; selecting one reopens its results."""

from __future__ import annotations

from textual.message import Message
from textual.widgets import Label, ListItem, ListView

from guesser.labels import pretty
from guesser.tui.session import Take


class HistoryItem(ListItem):
    def __init__(self, take: Take) -> None:
        self.take = take
        top = take.prediction.labels[0] if take.prediction.labels else None
        what = f"{pretty(top.name)} {top.score:.2f}" if top else "?"
        saved = " ✓" if take.saved_to else ""
        super().__init__(Label(f"#{take.number:<2} {what}{saved}"), id=f"take-{take.number}")


class HistoryList(ListView):
    """ListView of :class:`HistoryItem`; posts :class:`HistoryList.Chosen` on enter/click."""

    class Chosen(Message):
        def __init__(self, take: Take) -> None:
            super().__init__()
            self.take = take

    def add_take(self, take: Take) -> None:
        self.insert(0, [HistoryItem(take)])
        self.index = 0

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        event.stop()
        if isinstance(event.item, HistoryItem):
            self.post_message(self.Chosen(event.item.take))
