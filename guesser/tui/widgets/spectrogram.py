"""A true-colour log-mel spectrogram in half-block characters.

Each terminal cell shows two pixels: "▀" with the upper pixel as foreground
and the lower one as background, so a 12-row widget draws 24 mel bands. Time
runs left to right; the newest column is at the right edge (``live``), or the
whole recording is stretched to the width (``fit``).

Colours come from a magma-like map quantised to :data:`LEVELS` steps: few
enough distinct styles to cache, and a picture that does not flicker on
sub-decibel noise. The range is the loudest value on screen down
:data:`DYNAMIC_RANGE_DB`, so quiet rooms and loud claps both use the whole map.
"""

from __future__ import annotations

from collections import deque
from functools import lru_cache

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from guesser.tui.spectrum import DISPLAY_MELS, FLOOR_DB

LEVELS = 32
DYNAMIC_RANGE_DB = 80.0
MAX_COLUMNS = 1024

_MAGMA = (  # (position, (r, g, b))
    (0.00, (0, 0, 4)), (0.13, (28, 16, 68)), (0.25, (79, 18, 123)), (0.38, (129, 37, 129)),
    (0.50, (181, 54, 122)), (0.63, (229, 80, 100)), (0.75, (251, 135, 97)), (0.88, (254, 194, 135)),
    (1.00, (252, 253, 191)),
)


def colormap(levels: int = LEVELS) -> list[Color]:
    """``levels`` colours from dark to bright along the magma anchors (linear in RGB)."""
    pos = np.array([p for p, _ in _MAGMA])
    rgb = np.array([c for _, c in _MAGMA], dtype=float)
    out = []
    for t in np.linspace(0.0, 1.0, levels):
        r, g, b = (int(round(np.interp(t, pos, rgb[:, k]))) for k in range(3))
        out.append(Color.from_rgb(r, g, b))
    return out


_COLORS = colormap()


@lru_cache(maxsize=LEVELS * LEVELS)
def _style(top: int, bottom: int) -> Style:
    return Style(color=_COLORS[top], bgcolor=_COLORS[bottom])


def quantise(columns: np.ndarray, height_px: int, width: int, fit: bool) -> np.ndarray:
    """[M, T] dB -> [height_px, width] colour levels (row 0 = highest frequency).

    ``fit`` stretches/squeezes time to the width (nearest column); otherwise the
    last ``width`` columns are shown right-aligned and the rest is silence.
    """
    m = columns.shape[0] if columns.ndim == 2 else DISPLAY_MELS
    t = columns.shape[1] if columns.ndim == 2 else 0
    if fit and t:
        idx = np.minimum((np.arange(width) * t) // max(width, 1), t - 1)
        view = columns[:, idx]
    else:
        view = np.full((m, width), FLOOR_DB, np.float32)
        if t:
            keep = columns[:, -width:]
            view[:, width - keep.shape[1] :] = keep
    top = max(float(view.max()) if view.size else FLOOR_DB, FLOOR_DB + DYNAMIC_RANGE_DB)
    norm = np.clip((view - (top - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB, 0.0, 1.0)
    rows = np.minimum((np.arange(height_px)[::-1] * m) // max(height_px, 1), m - 1)  # bottom pixel = lowest mel
    return np.minimum((norm[rows] * LEVELS).astype(np.int16), LEVELS - 1)


class Spectrogram(Widget):
    """Live (scrolling) or fitted log-mel picture; feed it with :meth:`push` or :meth:`show`."""

    DEFAULT_CSS = """
    Spectrogram { height: 12; }
    """

    fit: reactive[bool] = reactive(False)

    def __init__(self, *, fit: bool = False, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._columns: deque[np.ndarray] = deque(maxlen=MAX_COLUMNS)
        self._fitted: np.ndarray | None = None
        self._cache: tuple[tuple[int, int, int], np.ndarray] | None = None
        self.set_reactive(Spectrogram.fit, fit)

    @property
    def column_count(self) -> int:
        return self._fitted.shape[1] if self.fit and self._fitted is not None else len(self._columns)

    def push(self, columns: np.ndarray) -> None:
        """Append [M, k] new columns (live mode)."""
        if columns.size == 0:
            return
        self._columns.extend(np.asarray(columns, np.float32).T)
        self._invalidate()

    def show(self, columns: np.ndarray) -> None:
        """Show a whole recording [M, T], stretched to the width."""
        self._fitted = np.asarray(columns, np.float32)
        self.fit = True
        self._invalidate()

    def follow(self) -> None:
        """Back to the live picture."""
        self.fit = False
        self._invalidate()

    def clear(self) -> None:
        self._columns.clear()
        self._fitted = None
        self._invalidate()

    def watch_fit(self) -> None:
        self._invalidate()

    def _invalidate(self) -> None:
        self._cache = None
        self.refresh()

    def _levels(self) -> np.ndarray:
        w, h = self.size.width, self.size.height
        key = (w, h, self.column_count)
        if self._cache is None or self._cache[0] != key:
            if self.fit and self._fitted is not None:
                data = self._fitted
            else:
                n = min(len(self._columns), w)
                data = np.stack(list(self._columns)[-n:], axis=1) if n else np.zeros((DISPLAY_MELS, 0), np.float32)
            self._cache = (key, quantise(data, 2 * h, w, self.fit and self._fitted is not None))
        return self._cache[1]

    def render_line(self, y: int) -> Strip:
        w = self.size.width
        if w <= 0 or y >= self.size.height:
            return Strip.blank(w)
        lv = self._levels()
        top, bottom = lv[2 * y], lv[2 * y + 1]
        segments = [Segment("▀", _style(int(a), int(b))) for a, b in zip(top, bottom)]
        return Strip(segments, w).simplify()
