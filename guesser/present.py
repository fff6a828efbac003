"""How a prediction looks: one score bar, one terminal renderer, one "heard" threshold for every screen.

``guesser classify``, ``guesser listen`` and the app (:mod:`guesser.tui`)
draw scores alike: a bar as long as the score itself (0–1, in eighth cells, so
two weak guesses look weak rather than like a confident answer), and a
personal label marked ✓ at :data:`HEARD`. Imports nothing heavy (rich only
when a table is drawn), so the app and the CLI start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from guesser.labels import pretty

if TYPE_CHECKING:  # pragma: no cover
    from rich.text import Text

    from guesser.ensemble import Prediction

HEARD = 0.5
"""A personal label's score at its operating point (guesser.personal.probe): at or above it, the sound is heard."""

BAR_WIDTH = 20
TIMELINE_TOP = 3
_EIGHTHS = " ▏▎▍▌▋▊▉"


def score_bar(score: float, width: int = BAR_WIDTH) -> str:
    """``score`` in [0, 1] as a bar of ``width`` cells with 1/8-cell resolution (a stable width, readable without colour)."""
    eighths = int(round(max(0.0, min(1.0, score)) * width * 8))
    bar = "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")
    return bar.ljust(width)


def is_heard(score: float) -> bool:
    return score >= HEARD


def render_prediction(prediction: "Prediction", *, title: str, top_k: int, timeline: bool = False):
    """A rich renderable for one prediction: ranked labels with bars, families, agreement, each model's answer."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from rich import box

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("label")
    table.add_column("score", justify="right")
    table.add_column("", style="cyan", no_wrap=True)
    for i, s in enumerate(prediction.top(top_k), start=1):
        table.add_row(str(i), pretty(s.name), f"{s.score:.2f}", score_bar(s.score, BAR_WIDTH))
    parts: list = [Text(title, style="bold", overflow="ellipsis"), table]
    if not prediction.confident:
        parts.append(Text.assemble(("not sure ", "bold yellow"),
                                   ("— maybe " + " or ".join(pretty(n) for n in prediction.maybe), "yellow")))

    if prediction.personal:
        parts.append(personal_line(prediction.personal))

    fam = Text("families  ", style="bold")
    for i, f in enumerate(prediction.families[:3]):
        fam.append(("" if i == 0 else " · ") + f"{f.name} {f.score:.2f}", style="green" if i == 0 else "")
    parts.append(fam)

    top_family = prediction.families[0].name if prediction.families else "?"
    n = len(prediction.models)
    agree = round(prediction.agreement * n)
    parts.append(Text.assemble(("agreement ", "bold"),
                               (f"{agree}/{n} models put {top_family} first", "green" if agree == n else "yellow")))

    said = Text("models    ", style="bold")
    for i, m in enumerate(prediction.models):
        top = m.ranking[0] if m.ranking else None
        answer = f"{pretty(top.name)} {top.score:.2f}" if top else "—"
        said.append(("" if i == 0 else " · ") + f"{m.member}: {answer}")
    parts.append(said)

    if timeline and prediction.windows:
        tl = Table(title="timeline", title_justify="left", show_edge=False, pad_edge=False, box=None)
        tl.add_column("window", justify="right", style="dim", no_wrap=True)
        tl.add_column(f"top {TIMELINE_TOP} labels")
        for w in prediction.windows:
            tl.add_row(f"{w.start:6.1f}–{w.end:.1f} s",
                       " · ".join(f"{pretty(s.name)} {s.score:.2f}" for s in w.labels[:TIMELINE_TOP]))
        parts.append(tl)
    if prediction.events is not None:
        parts.append(render_events(prediction.events))
    return Group(*parts)


def render_events(events) -> "Table | Text":
    """The sounds heard, in order: start–end, label, family, peak score (or one line saying none)."""
    from rich.table import Table
    from rich.text import Text

    if not events:
        return Text("events    nothing heard above the event threshold", style="dim")
    table = Table(title="events", title_justify="left", show_edge=False, pad_edge=False, box=None)
    table.add_column("start–end", justify="right", style="dim", no_wrap=True)
    table.add_column("label")
    table.add_column("family", style="green")
    table.add_column("peak", justify="right")
    for e in events:
        table.add_row(f"{e.start:6.2f}–{e.end:.2f} s", pretty(e.label), e.family, f"{e.score:.2f}")
    return table


def personal_line(personal) -> "Text":
    """'yours     kettle 0.91 ✓ · doorbell 0.08': the user's own labels, heard ones (score ≥ :data:`HEARD`) marked."""
    from rich.text import Text

    line = Text("yours     ", style="bold")
    for i, s in enumerate(personal[:5]):
        heard = is_heard(s.score)
        line.append(("" if i == 0 else " · ") + f"{s.name} {s.score:.2f}" + (" ✓" if heard else ""),
                    style="bold magenta" if heard else "dim")
    return line


