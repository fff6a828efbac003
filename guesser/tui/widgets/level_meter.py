"""A horizontal input level meter: RMS bar, peak tick, and the numbers in dBFS.

Why RMS *and* peak: RMS is what "how loud" means and what the silence check
uses; the peak shows clipping (a red bar near 0 dBFS means "move back").
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from guesser.recorder import SILENCE_DBFS, Level

METER_FLOOR_DB = -72.0
_EIGHTHS = " ▏▎▍▌▋▊▉"


def _zone(db: float) -> str:
    if db >= -6.0:
        return "red"
    if db >= -18.0:
        return "yellow"
    return "green" if db >= SILENCE_DBFS else "grey50"


class LevelMeter(Widget):
    """Shows a :class:`Level`; set :attr:`level` from the UI thread."""

    DEFAULT_CSS = """
    LevelMeter { height: 1; }
    """

    level: reactive[Level] = reactive(Level, always_update=True)

    def render(self) -> Text:
        lv = self.level
        label = f" {lv.rms_db:6.1f} dB RMS  peak {lv.peak_db:6.1f} "
        if lv.rms_db <= -119:
            label = "   silent  (no signal)        "
        width = max(4, self.size.width - len(label) - 2)
        frac = min(1.0, max(0.0, (lv.rms_db - METER_FLOOR_DB) / -METER_FLOOR_DB))
        eighths = int(round(frac * width * 8))
        bar = "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")
        cells = [" "] * width
        peak_at = int(min(1.0, max(0.0, (lv.peak_db - METER_FLOOR_DB) / -METER_FLOOR_DB)) * (width - 1))
        text = Text("▕", style="grey50")
        text.append(bar, style=_zone(lv.rms_db))
        rest = cells[len(bar):]
        if lv.peak_db > METER_FLOOR_DB and peak_at >= len(bar):
            rest[peak_at - len(bar)] = "│"
        text.append("".join(rest), style=_zone(lv.peak_db))
        text.append("▏", style="grey50")
        text.append(label, style="bold" if not lv.silent else "dim")
        return text
