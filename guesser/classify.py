"""``guesser classify`` and ``guesser models``: the ensemble on files, as tables or JSON Lines.

Start-up matters here (a user runs this on one file and waits), so this module
imports nothing heavy at import time: torch arrives with the ensemble, rich
only when a table is drawn, and nothing from ``trainer/`` ever.

A bad file never stops the others: it gets one ``error: …`` line on stderr and
the exit code becomes 1 once every other file has been classified. Bad
``--models`` stop everything before any file is decoded (nothing could be
classified). A silent file is a result (``"silent": true``), not an error.
Files of any length are scored in bounded memory (:mod:`guesser.stream`).
Exit codes: 0 all files classified; 1 a file could not be classified, or no
models/no files, or the output could not be written (see docs/inference.md).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence, TextIO

from guesser.errors import AudioError, GuesserError, OutputError
from guesser.fileio import shown
from guesser.labels import pretty
from guesser.present import render_prediction

if TYPE_CHECKING:  # pragma: no cover
    from guesser.ensemble import Ensemble, Prediction
    from guesser.sed import EventSettings

# OpenMP threads that finish early sleep instead of spinning. On an idle machine this costs
# a few microseconds per parallel region; on a busy one (a laptop compiling, a shared
# server) spinning threads fight the other processes for the cores and a prediction got
# 3x slower (2 threads, load 4.5 on 2 cores: p50 343 ms spinning, 113 ms sleeping).
# Only takes effect if set before torch is first imported, which is why it is here: torch
# arrives later, with the ensemble. An explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# ---------------------------------------------------------------- inputs


def expand_inputs(paths: Sequence[Path]) -> list[tuple[Path, str | None]]:
    """Arguments -> [(audio file, None) or (argument, one-line error)], in the order given.

    Folders are searched recursively for audio extensions (sorted); a file
    argument is kept as given, whatever its extension, so that a mislabelled
    file still gets a try and a clear error if it is not audio. Nothing is
    opened here: a FIFO, a device or an unreadable file is refused when its
    turn comes (:func:`guesser.audio.open_audio`), after the files before it.
    """
    from guesser.audio import find_audio_files

    items: list[tuple[Path, str | None]] = []
    for p in paths:
        try:
            is_dir, exists = p.is_dir(), os.path.lexists(os.fsencode(p))
        except OSError as e:  # a name too long, a loop of links
            items.append((p, f"{shown(p)}: {e.strerror or e}"))
            continue
        if is_dir:
            try:
                found = find_audio_files([p])
            except OSError as e:
                items.append((p, f"{shown(p)}: cannot list this folder ({e.strerror or e})"))
                continue
            items.extend((f, None) for f in found)
            if not found:
                items.append((p, f"{shown(p)}: no audio files in this folder"))
        elif not exists:
            items.append((p, f"{shown(p)}: no such file"))
        else:
            items.append((p, None))
    return items


def classify_file(ensemble: "Ensemble", path: Path, *, timeline: bool = False) -> "Prediction":
    """Decode ``path`` and run the ensemble; :class:`AudioError` (one line) for anything unusable.

    Digital silence is refused here (a caller that expects a recording);
    ``guesser classify`` uses :func:`classify_path`, where silence is a result.
    """
    prediction, silent = classify_path(ensemble, path, timeline=timeline)
    if silent:
        from guesser.audio import silent_message

        raise AudioError(silent_message(shown(path)))
    return prediction


def classify_path(ensemble: "Ensemble", path: Path, *, timeline: bool = False,
                  events: "EventSettings | None" = None) -> tuple["Prediction", bool]:
    """(prediction, silent) for one file of any length, decoded and scored block by block (+ its sound events)."""
    from guesser.audio import open_audio
    from guesser.stream import is_silent, predict_source

    with open_audio(path) as source:
        prediction = predict_source(ensemble, source, timeline=timeline, events=events)
        return prediction, is_silent(source)


# ---------------------------------------------------------------- output


def prediction_json(path: Path | str, prediction: "Prediction", top_k: int, silent: bool = False) -> dict:
    """The JSON Lines object for one file: file, labels, families, models, agreement, duration, silent (+ timeline)."""
    obj = prediction.to_json(file=shown(path), top_k=top_k)
    obj["silent"] = bool(silent)
    return obj


def _title(path: Path, prediction: "Prediction", silent: bool = False) -> str:
    windows = len(prediction.windows) if prediction.windows else None
    extra = f" · {windows} windows" if windows and windows > 1 else ""
    quiet = " · silent" if silent else ""  # a result, not an error: the scores describe near-silence
    return f"{shown(path)} · {prediction.duration:.1f} s{extra} · {prediction.seconds * 1000:.0f} ms{quiet}"


# ---------------------------------------------------------------- commands


def run_classify(paths: Iterable[Path], json_out: bool = False, top_k: int = 5,
                 models: Sequence[Path] | None = None, timeline: bool = False,
                 events: "bool | EventSettings" = False, *,
                 ensemble: "Ensemble | None" = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Classify every file (folders recursively); return the exit code (0, or 1 if any file failed).

    ``ensemble``/``out``/``err`` let callers and tests reuse a loaded ensemble
    and capture the streams; the CLI passes none of them. ``events`` adds the
    sounds heard with their start and end (:mod:`guesser.sed`) to each file.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    if top_k < 0:
        raise GuesserError(f"--top-k must be 0 (all labels) or more, got {top_k}")
    items = expand_inputs([Path(p) for p in paths])
    if not items:
        raise GuesserError("no audio files given")
    console = None
    if not json_out:
        from rich.console import Console

        console = Console(file=out, highlight=False)
    report = _error_printer(err)
    if ensemble is None and any(e is None for _, e in items):
        from guesser.ensemble import Ensemble

        ensemble = Ensemble.load(models or None)  # once, before any file: bad --models stop everything
        from guesser.personal.matcher import attach

        for line in attach(ensemble).notices():  # the user's own labels, scored next to AudioSet's
            err.write(f"note: {line}\n")
    settings = None  # --events: the default settings; callers and tests may pass their own
    if events:
        from guesser.sed import EventSettings

        settings = events if isinstance(events, EventSettings) else EventSettings()
    failed = 0
    for path, problem in items:
        if problem is None:
            try:
                pred, silent = classify_path(ensemble, path, timeline=timeline, events=settings)
            except AudioError as e:
                problem = str(e)
        if problem is not None:
            failed += 1
            report(problem)
            continue
        try:
            if json_out:
                # allow_nan=False: a NaN can never reach stdout as invalid JSON (combine() refuses them first)
                out.write(json.dumps(prediction_json(path, pred, top_k, silent), ensure_ascii=False,
                                     allow_nan=False) + "\n")
                out.flush()
            else:
                console.print(render_prediction(pred, title=_title(path, pred, silent), top_k=top_k,
                                                timeline=timeline))
                console.print()
                out.flush()
        except OSError as e:  # a full disk or a closed pipe behind stdout: nothing more can be shown
            raise OutputError(f"cannot write the results to standard output ({e.strerror or e})") from None
    return 1 if failed else 0


def _error_printer(err: TextIO):
    """One red ``error: …`` line per problem (plain text when ``err`` is not a terminal)."""
    colour = getattr(err, "isatty", lambda: False)()

    def show(message: str) -> None:
        line = f"error: {message}"
        try:
            err.write((f"\x1b[31m{line}\x1b[0m" if colour else line) + "\n")
            err.flush()
        except OSError:  # stderr itself is gone: the exit code still tells
            pass

    return show


def model_rows(sources: Sequence[Path] | None) -> list[dict]:
    """What ``guesser models`` shows, from the checkpoints' headers only (no weights are read)."""
    from guesser.checkpoint import read_model_meta
    from guesser.ensemble import resolve_models

    rows = []
    for path, weight in resolve_models(sources or None):
        meta = read_model_meta(path)
        rows.append({
            "member": meta.member,
            "name": meta.name,
            "arch": meta.arch,
            "task": meta.task,
            "params": meta.params,
            "val_score": meta.val_score,
            "score_name": meta.score_name,
            "features": _feature_summary(meta.features),
            "classes": len(meta.classes),
            "trained": len(meta.trained_labels) if meta.trained_labels is not None else None,
            "path": str(path),
            "family_weight": weight,
        })
    return rows


def _feature_summary(feats) -> str:
    """'22.05 kHz 128 mel 6 s' (+ ', no norm') from a FeatureConfig: what a model hears, compactly."""
    text = f"{feats.sample_rate / 1000:g} kHz {feats.n_mels} mel {feats.clip_seconds:g} s"
    return text + (", no norm" if feats.norm == "none" else "")


def run_models(models: Sequence[Path] | None = None, *, out: TextIO | None = None) -> None:
    """Print the table of the models the ensemble would use (from their headers: instant)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    rows = model_rows(models)
    caption = "val: validation mAP (labels) or family mAP (families); ×w: the model's weight in the family ranking"
    table = Table(title="models in the ensemble", title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False, caption=caption, caption_justify="left")
    for col, just in (("member / run", "left"), ("task", "left"), ("params", "right"), ("val", "right"),
                      ("features", "left"), ("trained", "right")):
        table.add_column(col, justify=just, no_wrap=col != "features", overflow="fold",
                         min_width=12 if col == "features" else None)
    for r in rows:
        score = f"{r['val_score']:.3f}" if isinstance(r["val_score"], (int, float)) else "—"
        params = f"{r['params'] / 1e6:.2f} M" if isinstance(r["params"], int) else "?"
        if r["task"] == "labels":
            trained = f"{r['trained']}/{r['classes']}" if r["trained"] is not None else "—"
        else:
            trained = f"{r['classes']} fam."
        who = Text.assemble((r["member"], "bold"), "\n", (r["name"], "dim"))
        task = Text(r["task"])
        if r["task"] != "labels" or r["family_weight"] != 1.0:
            task.append(f"\n×{r['family_weight']:g}", style="dim")
        table.add_row(who, task, params, score, r["features"], trained)
    Console(file=out or sys.stdout, highlight=False).print(table)
