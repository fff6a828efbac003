"""Widgets of the guesser app: spectrogram, event timeline, level meter, rankings (personal labels too), history."""

from guesser.tui.widgets.event_timeline import EventTimeline
from guesser.tui.widgets.history import HistoryList
from guesser.tui.widgets.level_meter import LevelMeter
from guesser.tui.widgets.personal import PersonalScores
from guesser.tui.widgets.ranking import ModelBreakdown, Ranking, score_bar
from guesser.tui.widgets.spectrogram import Spectrogram
from guesser.tui.widgets.title_bar import TitleBar

__all__ = ["EventTimeline", "HistoryList", "LevelMeter", "ModelBreakdown", "PersonalScores", "Ranking", "Spectrogram", "TitleBar", "score_bar"]
