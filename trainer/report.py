"""``guesser report``: what the runs learned, in the terminal (and as an HTML page).

Reads only the files of run folders, so it works on runs trained on another
machine and copied here (no cache, no model, no GPU needed):

    run.json        recipe, parameters, training time, best validation score
    metrics.jsonl   one line per epoch: the loss curves
    eval.json       written by ``guesser evaluate``: every test metric
    ../ensemble_eval.json   the ensemble of the evaluated models

Sections: a leaderboard (with published reference rows, clearly marked as
measured on the full FSD50K), the best and worst labels by AP, train/val loss
curves and ROC curves (plotext charts), and the confusion matrix of the
top-family decision as a coloured heatmap. ``--html FILE`` records the same
console output and saves it as a self-contained page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from rich import box
from rich.color import Color
from rich.console import Console
from rich.style import Style
from rich.table import Table
from rich.text import Text

from guesser.errors import GuesserError
from guesser.labels import pretty
from trainer.records import EvalResult, MetricsRow, RunSummary, Summary

EVAL_FILE = "eval.json"
ENSEMBLE_FILE = "ensemble_eval.json"
RUN_FILES = ("run.json", "metrics.jsonl", EVAL_FILE)


@dataclass(frozen=True)
class Reference:
    """A published result: shown for orientation, never ranked with the runs."""

    name: str
    source: str
    map: float | None = None
    d_prime: float | None = None
    lwlrap: float | None = None
    family_map: float | None = None


REFERENCES: tuple[Reference, ...] = (
    Reference("cnn4", "student", map=0.470, d_prime=2.309, lwlrap=0.643),
    Reference("cnn3", "student", map=0.414),
    Reference("family CNN", "student", family_map=0.577),
    Reference("PANNs CNN6", "student", family_map=0.624),
    Reference("VGG-like", "paper", map=0.434, d_prime=2.167),
    Reference("CRNN", "paper", map=0.417),
    Reference("ResNet-18", "paper", map=0.373),
    Reference("DenseNet-121", "paper", map=0.425),
)
REFERENCE_NOTE = ("ref rows (student: the student project's best models; paper: the FSD50K paper's baselines) were "
                  "measured on the full FSD50K eval split (10,231 clips): not comparable with runs evaluated on a "
                  "subset such as the mini corpus.")

FAMILY_SHORT = {"Human sounds": "Human", "Animal": "Animal", "Music": "Music", "Natural sounds": "Natural",
                "Sounds of things": "Things", "Source-ambiguous sounds": "Ambiguous"}


@dataclass
class RunFolder:
    """What a run folder holds; every part may be missing except the folder itself."""

    folder: Path
    info: RunSummary | None = None  # run.json
    history: list[MetricsRow] = field(default_factory=list)  # metrics.jsonl
    evaluation: EvalResult | None = None  # eval.json

    @property
    def name(self) -> str:
        return (self.info and self.info.name) or (self.evaluation and self.evaluation.name) or self.folder.name


# ---------------------------------------------------------------- reading

def is_run(folder: Path) -> bool:
    return any((folder / f).is_file() for f in RUN_FILES)


def load_run(folder: Path) -> RunFolder:
    run = RunFolder(folder)
    if (folder / "run.json").is_file():
        run.info = RunSummary.read(folder / "run.json")
    if (folder / "metrics.jsonl").is_file():
        run.history = MetricsRow.read_lines(folder / "metrics.jsonl")
    if (folder / EVAL_FILE).is_file():
        run.evaluation = EvalResult.read(folder / EVAL_FILE)
    return run


def find_runs(runs: list[Path], root: Path) -> tuple[list[RunFolder], list[EvalResult]]:
    """(run folders, ensemble results) from the given paths, else from every run under ``root``."""
    folders: list[Path] = []
    containers: list[Path] = []
    for p in map(Path, runs):
        if not p.exists():
            raise GuesserError(f"{p}: no such run folder")
        if p.is_file():
            p = p.parent
        if is_run(p):
            folders.append(p)
        else:
            subs = sorted(d for d in p.iterdir() if d.is_dir() and is_run(d))
            if not subs:
                raise GuesserError(f"{p}: not a run folder (no run.json, metrics.jsonl or eval.json)")
            folders += subs
            containers.append(p)
    if not runs:
        root = Path(root)
        if not root.is_dir():
            raise GuesserError(f"{root}: no such folder; train with 'guesser train one RECIPE' or pass run folders")
        folders = sorted(d for d in root.iterdir() if d.is_dir() and is_run(d))
        containers = [root]
        if not folders:
            raise GuesserError(f"{root}: no runs found; train with 'guesser train one RECIPE' or pass run folders")
    parents = {f.resolve().parent for f in folders} | {c.resolve() for c in containers}
    ensembles = [EvalResult.read(d / ENSEMBLE_FILE) for d in sorted(parents) if (d / ENSEMBLE_FILE).is_file()]
    return [load_run(f) for f in folders], ensembles


# ---------------------------------------------------------------- formatting

def num(v, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def params_text(n) -> str:
    if not n:
        return "—"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def duration_text(seconds) -> str:
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def rank_key(summary: Summary) -> tuple[int, float]:
    """Label results by mAP, then family-only results by family mAP, then runs not evaluated."""
    if summary.map is not None:
        return 0, -summary.map
    if summary.family_map is not None:
        return 1, -summary.family_map
    return 2, 0.0


def leaderboard(runs: list[RunFolder], ensembles: list[EvalResult]) -> Table:
    """Runs, members and ensembles by test mAP (family mAP for family models), then the reference rows.

    Eight columns so that it fits an 80-column terminal; the second line of a
    run's cell says what it is (member, task, best validation score).
    """
    results = [r.evaluation for r in runs if r.evaluation] + ensembles
    notes = {e.split_note for e in results}
    uniform = len(notes) == 1  # every result on the same split and clips: say it once, in the title
    title = "leaderboard" + (f" (test metrics on {next(iter(notes))})" if uniform else "")
    caption = ("val: best validation score in training (mAP; family mAP for family models). F1: macro over labels "
               "at thresholds tuned on val (families: macro over families of the top-family decision).\n"
               + REFERENCE_NOTE)
    table = Table(title=title, box=box.SIMPLE_HEAD, caption=caption, caption_justify="left", pad_edge=False)
    table.add_column("run", overflow="fold", min_width=20, ratio=1)
    for col in ("mAP", "d'", "lwlrap", "fam mAP", "F1", "params", "time"):
        table.add_column(col, justify="right", no_wrap=True)

    def cells(s: Summary) -> list[str]:
        return [num(s.map), num(s.d_prime), num(s.lwlrap), num(s.family_map), num(s.f1)]

    rows = []
    for r in runs:
        ev, info = r.evaluation, r.info
        s = ev.summary if ev else Summary()
        tags = [(info and info.member) or (ev and ev.member) or "", (info and info.task) or (ev and ev.task) or ""]
        if info is not None:
            tags.append(f"val {num(info.best_score)}")
        if ev and not uniform:
            tags.append(ev.split_note)
        label = Text(r.name)
        label.append("\n" + " · ".join(t for t in tags if t), style="dim")
        rows.append((rank_key(s),
                     [label, *cells(s), params_text((info and info.params) or (ev and ev.params)),
                      duration_text(info.trained_seconds if info else None)]))
    for e in ensembles:
        label = Text(e.name, style="bold")
        tags = [f"{len(e.models or ())} models"] + ([e.split_note] if not uniform else [])
        label.append("\n" + " · ".join(tags), style="dim")
        rows.append((rank_key(e.summary), [label, *cells(e.summary), params_text(e.params), "—"]))
    rows.sort(key=lambda kr: kr[0])
    for _, row in rows:
        table.add_row(*row)
    table.add_section()
    for ref in REFERENCES:
        table.add_row(Text(f"ref: {ref.name} ({ref.source})", style="italic"), num(ref.map), num(ref.d_prime),
                      num(ref.lwlrap), num(ref.family_map), "", "", "", style="dim")
    return table


def best_worst_labels(result: EvalResult, k: int = 8) -> Table | None:
    """Two columns: the ``k`` best and ``k`` worst labels by AP (labels with a positive only)."""
    labels = result.labels
    if not labels:
        return None
    rows = [(ap, n, pos) for n, ap, pos in zip(labels.names, labels.ap, labels.positives) if ap is not None]
    if not rows:
        return None
    rows.sort(key=lambda r: -r[0])
    n_best = min(k, (len(rows) + 1) // 2)
    n_worst = min(k, len(rows) - n_best)  # the two lists never share a label
    best, worst = rows[:n_best], rows[::-1][:n_worst]

    def half(title: str, items) -> Table:
        t = Table(title=title, box=box.SIMPLE, pad_edge=False)
        t.add_column("label", overflow="fold")
        t.add_column("AP", justify="right")
        t.add_column("clips", justify="right")
        for ap, name, pos in items:
            t.add_row(Text(pretty(str(name))), num(ap), str(pos))
        return t

    grid = Table.grid(padding=(0, 3))
    grid.title = Text(f"{result.name}: labels by AP on {result.split} ({len(rows)} labels with positives)")
    grid.add_row(half("best", best), half("worst", worst))
    return grid


def chart(series: list[tuple[str, list[float], list[float], bool]], title: str, xlabel: str, width: int,
          height: int = 15, limits: tuple[float, float] | None = None, legend: str = "top") -> Text:
    """A plotext line chart rendered to rich Text: ``series`` = (label, xs, ys, connect).

    The legend goes in the right-hand corner (``legend`` top or bottom) where
    the curves are not: loss curves fall from the upper left, ROC curves rise
    along the upper left. (plotext places a legend in data coordinates.)
    """
    import plotext as plt

    fig = plt.figure
    fig.clear()
    fig.plot_size(width, height)
    fig.theme("simple")  # no painted background: reads on dark and light terminals alike
    for label, xs, ys, connect in series:
        sig = fig.signal(list(xs), list(ys)).label(label)
        fig.draw(sig.lines() if connect and len(xs) > 1 else sig)
    xs_all = [x for _, xs, _, _ in series for x in xs]
    ys_all = [y for _, _, ys, _ in series for y in ys]
    lo, hi = limits if limits is not None else (min(ys_all), max(ys_all))
    fig.legend(x=limits[1] if limits is not None else max(xs_all), y=hi if legend == "top" else lo,
               ha="right", va=legend, relative=True)
    if limits is not None:
        fig.ruler(axis=0).lim(*limits)
        fig.ruler(axis=1).lim(*limits)
    fig.title(title)
    fig.label(xlabel, axis=0)
    text = Text.from_ansi(fig.build().string())
    fig.clear()
    return text


def loss_chart(run: RunFolder, width: int) -> Text | None:
    h = run.history
    if not h:
        return None
    if len(h) == 1:  # a chart of two dots says less than the numbers
        r = h[0]
        val = f", val loss {r.val_loss:.4f}" if r.val_loss is not None else ""
        return Text(f"{run.name}: loss per epoch — one epoch only: train loss {r.train_loss:.4f}{val} "
                    "(a curve needs two epochs)")
    finite = math.isfinite  # a diverged epoch's NaN loss is left out of the curve, not drawn
    train = [(r.epoch, r.train_loss) for r in h if finite(r.train_loss)]
    val = [(r.epoch, r.val_loss) for r in h if r.val_loss is not None and finite(r.val_loss)]
    if not train:
        return Text(f"{run.name}: loss per epoch — no finite train loss (the run diverged)")
    series = [("train loss", [e for e, _ in train], [v for _, v in train], True)]
    if val:
        series.append(("val loss", [e for e, _ in val], [v for _, v in val], True))
    return chart(series, f"{run.name}: loss per epoch", "epoch", width)


def roc_chart(results: list[EvalResult], key: str, title: str, width: int) -> Text | None:
    series = []
    for r in results:
        roc = getattr(r, key)
        if roc is not None and roc.fpr:
            series.append((f"{r.name} (AUC {num(roc.auc)})", roc.fpr, roc.tpr, True))
    if not series:
        return None
    series.append(("chance", [0.0, 1.0], [0.0, 1.0], True))
    return chart(series, title, "false positive rate (y: true positive rate)", width, height=18, limits=(0.0, 1.0),
                 legend="bottom")


def heat_style(v: float) -> Style:
    """White -> deep blue with the value; dark text on light cells, white on dark."""
    lo, hi = (247, 251, 255), (8, 48, 107)
    rgb = tuple(int(round(a + (b - a) * v)) for a, b in zip(lo, hi))
    return Style(bgcolor=Color.from_rgb(*rgb), color="white" if v > 0.5 else "black")


def confusion_heatmap(result: EvalResult) -> Table | None:
    conf = result.confusion
    if not conf:
        return None
    classes = [FAMILY_SHORT.get(c, c) for c in conf.classes]
    support = (result.families and result.families.support) or [None] * len(classes)
    t = Table(title=Text(f"{result.name}: top family, row-normalised (rows: true, columns: predicted)"),
              box=box.SIMPLE, pad_edge=False, caption_justify="left",
              caption="clips: clips of the true family (a clip of two families counts ½ in each row)")
    t.add_column("true \\ pred")
    for c in classes:
        t.add_column(c, justify="right")
    t.add_column("clips", justify="right", style="dim")
    for name, row, n in zip(classes, conf.matrix, support):
        if not n:  # no clip of this family: nothing to normalise
            t.add_row(Text(str(name)), *["·"] * len(row), "0", style="dim")
            continue
        cells = [Text(f"{v * 100:.0f}%", style=heat_style(v)) for v in row]
        t.add_row(Text(str(name)), *cells, f"{n:g}")
    return t


def not_evaluated(run: RunFolder) -> str:
    cache = Path(run.info.cache).parent if run.info and run.info.cache else Path("cache")
    return f"{run.name}: not evaluated yet — run: guesser evaluate {run.folder} --cache {cache}"


# ---------------------------------------------------------------- the command

def render(console: Console, runs: list[RunFolder], ensembles: list[EvalResult], width: int) -> None:
    console.rule("[bold]guesser report")
    console.print(leaderboard(runs, ensembles))
    for r in runs:
        if r.evaluation is None:
            console.print(Text(not_evaluated(r), style="yellow"))
    results = [r.evaluation for r in runs if r.evaluation] + ensembles
    for res in results:  # per-source scores, where guesser evaluate --groups computed them
        if res.groups and res.groups.get("groups"):
            from trainer.evaluate import group_table

            console.print(group_table(res))
    for res in results:
        table = best_worst_labels(res)
        if table is not None:
            console.print(table)
    plot_width = max(40, min(width, 110))
    for r in runs:
        c = loss_chart(r, plot_width)
        if c is not None:
            console.print(c)
    for key, title in (("roc_labels", "ROC, labels (every clip × label decision pooled)"),
                       ("roc_families", "ROC, families (every clip × family decision pooled)")):
        c = roc_chart(results, key, title, plot_width)
        if c is not None:
            console.print(c)
    for res in results:
        t = confusion_heatmap(res)
        if t is not None:
            console.print(t)


def run_report(runs: list[Path], root: Path = Path("runs"), html: Path | None = None, width: int | None = None,
               *, console: Console | None = None) -> str:
    """Print the report of ``runs`` (default: every run under ``root``); save it as HTML too; return its text."""
    found, ensembles = find_runs(list(runs), Path(root))
    console = console or Console(record=True, width=width)
    render(console, found, ensembles, width or console.width)
    text = console.export_text(clear=False) if console.record else ""
    if html is not None:
        if not console.record:
            raise GuesserError("internal: HTML export needs a recording console")
        try:
            Path(html).parent.mkdir(parents=True, exist_ok=True)
            console.save_html(str(html), clear=False)
        except OSError as e:
            raise GuesserError(f"{html}: cannot write the HTML report ({e.strerror})") from None
        Console(stderr=True).print(f"[dim]report saved → {html}[/]")
    return text
