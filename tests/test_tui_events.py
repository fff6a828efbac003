"""The sound-event timeline under a take's spectrogram: rows, bars at the right columns, the app with the pilot."""

from __future__ import annotations

import pytest

from guesser.events import Event
from guesser.tui.screens.results import ResultsScreen
from guesser.tui.widgets import EventTimeline, Spectrogram
from guesser.tui.widgets.event_timeline import draw_row, rows_of
from test_tui_app import SIZE, file_app, make_app, ready, record
from tuikit import pilot_test


def test_rows_keep_the_strongest_of_related_labels_in_time_order():
    events = [Event("Animal", "Animal", 2.0, 4.0, 0.95), Event("Dog", "Animal", 2.0, 4.0, 0.99),
              Event("Bark", "Animal", 2.1, 3.9, 0.9), Event("Speech", "Human sounds", 0.5, 1.5, 0.8),
              Event("Dog", "Animal", 6.0, 7.0, 0.7)]
    rows = rows_of(events)
    assert [(label, family, len(spans)) for label, family, spans in rows] == [("Speech", "Human sounds", 1),
                                                                                ("Dog", "Animal", 2)]
    assert rows_of(events, max_rows=1)[0][0] == "Dog"


def test_a_row_draws_bars_where_the_events_are():
    spans = [Event("Dog", "Animal", 2.0, 4.0, 0.99), Event("Dog", "Animal", 6.0, 7.0, 0.7)]
    text = draw_row("Dog", spans, duration=10.0, width=50, style="bold")
    s = text.plain
    assert len(s) == 50
    bars = [c for c, ch in enumerate(s) if ch == "━"]
    assert bars == list(range(10, 20)) + list(range(30, 35))  # 2–4 s and 6–7 s of 10 s on 50 cells
    assert s[20:].startswith(" Dog 0.99 ")  # named after its first bar


def timeline_rows(screen) -> list[str]:
    """What the widget draws on screen, line by line (Textual's own rendering of it)."""
    widget = screen.query_one("#take-events", EventTimeline)
    return [widget.render_line(y).text for y in range(widget.region.height)]


@pytest.mark.slow
@pilot_test
async def test_after_a_recording_and_for_a_file_the_events_show_under_the_spectrogram(tmp_path):
    for app, ens in (make_app(tmp_path), file_app(tmp_path, 2.0)):
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            await record(pilot)
            screen = app.screen
            assert isinstance(screen, ResultsScreen)
            await pilot.pause()
            spec = screen.query_one("#take-spectrogram", Spectrogram)
            timeline = screen.query_one("#take-events", EventTimeline)
            assert timeline.display and [e.label for e in timeline.events] == ["Clapping"]
            # under the spectrogram, the same columns: the event (a quarter to three quarters of the take)
            assert timeline.region.y == spec.region.y + spec.region.height
            assert (timeline.region.x, timeline.region.width) == (spec.region.x, spec.region.width)
            (line,) = timeline_rows(screen)
            width = timeline.region.width
            bars = [c for c, ch in enumerate(line) if ch == "━"]
            assert bars[0] == int(0.25 * width) and bars[-1] == round(0.75 * width) - 1
            assert "Clapping 0.90" in line
            await pilot.press("escape")


@pilot_test
async def test_nothing_heard_is_said_and_no_events_hides_the_timeline(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE):
        timeline = EventTimeline()
        await app.screen.mount(timeline)
        timeline.show([], 3.0)
        assert timeline.display and "no sound events" in str(timeline.render())
        timeline.show(None, 3.0)
        assert not timeline.display
