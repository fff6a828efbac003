"""``guesser listen``: the microphone guesser without the app.

Shares :class:`~guesser.recorder.Recorder` with ``guesser play`` so both see
devices, levels and failures the same way. ``--once`` records one window and
prints it; otherwise a sliding window (half-overlapping) is classified until
Ctrl-C. JSON Lines carry the same fields as ``guesser classify --json`` plus
the window's time and input level, so scripts can treat a microphone like a
stream of files.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from guesser.errors import GuesserError
from guesser.fileio import printable
from guesser.labels import pretty
from guesser.recorder import AudioBackend, Level, Recorder, SilentInputError

MAX_SECONDS = 30.0


def listen_record(prediction: Any, level: Level, *, device: str, start: float, end: float, top_k: int) -> dict:
    """One JSON Lines object: where and when it was heard, how loud, and the ensemble's answer."""
    out: dict[str, Any] = {"device": device, "start": round(start, 3), "end": round(end, 3),
                           "rms_dbfs": round(level.rms_db, 1), "peak_dbfs": round(level.peak_db, 1)}
    if prediction is None:
        out["silent"] = True
        return out
    out.update(prediction.to_json(top_k=top_k))
    return out


def _bar(score: float, width: int = 20) -> str:
    full = int(round(max(0.0, min(1.0, score)) * width))
    return "█" * full + "·" * (width - full)


def print_prediction(console, prediction: Any, top_k: int, title: str) -> None:
    """A rich table of the top labels, then families and what each model said."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("label")
    table.add_column("score", justify="right")
    table.add_column("", style="cyan")
    for i, s in enumerate(prediction.top(top_k), start=1):
        table.add_row(str(i), pretty(s.name), f"{s.score:.2f}", _bar(s.score))
    console.print(table)
    if prediction.personal:
        console.print("yours:    " + " · ".join(f"{printable(s.name)} {s.score:.2f}" + (" ✓" if s.score >= 0.5 else "")
                                            for s in prediction.personal[:5]), markup=False)
    console.print("families: " + " · ".join(f"{f.name} {f.score:.2f}" for f in prediction.families[:3]))
    console.print("models:   " + " · ".join(f"{m.name} → {pretty(m.ranking[0].name)} {m.ranking[0].score:.2f}"
                                            for m in prediction.models))


def run_listen(once: bool = False, json_out: bool = False, device: str | None = None, seconds: float = 6.0,
               top_k: int = 5, models: list[Path] | None = None, *, backend: AudioBackend | None = None,
               ensemble: Any = None, hop: float | None = None, max_windows: int | None = None,
               out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Record from the microphone and print what the ensemble hears; returns the exit code.

    Device and model problems raise :class:`GuesserError` (one line from the CLI).
    A silent ``--once`` recording raises :class:`SilentInputError` (exit 3).
    """
    from rich.console import Console

    out = out or sys.stdout
    err = err or sys.stderr
    if not 0 < seconds <= MAX_SECONDS:
        raise GuesserError(f"--seconds must be in (0, {MAX_SECONDS:g}], got {seconds:g}")
    if top_k < 0:
        raise GuesserError(f"--top-k must be >= 0, got {top_k}")
    console = Console(file=out, highlight=False)
    note = Console(file=err, highlight=False, stderr=True)

    with Recorder(backend, device) as rec:
        if ensemble is None:
            from guesser.ensemble import Ensemble

            ensemble = Ensemble.load(models)
            from guesser.personal.matcher import attach

            for line in attach(ensemble).notices():
                note.print(f"note: {printable(line)}", markup=False)
        sr = rec.samplerate

        def emit(samples: np.ndarray, start: float, end: float, *, must_hear: bool) -> None:
            level = Level.of(samples)
            if level.silent:
                if must_hear:
                    raise SilentInputError(level, rec.device_name)
                pred = None
            else:
                pred = ensemble.predict(samples, sr)
            if json_out:
                rec_json = listen_record(pred, level, device=rec.device_name, start=start, end=end, top_k=top_k)
                out.write(json.dumps(rec_json) + "\n")
                out.flush()
            elif pred is None:
                console.print(f"[dim]{start:6.1f}–{end:.1f} s  (silence, {level.rms_db:.0f} dBFS)[/dim]")
            elif once:
                print_prediction(console, pred, top_k, f"{rec.device_name}: {end - start:.1f} s")
            else:
                top = " · ".join(f"{pretty(s.name)} {s.score:.2f}" for s in pred.top(top_k or 5))
                if pred.heard_personal:  # the user's own sound, when heard, comes first
                    top = " · ".join(f"[b magenta]{s.name} {s.score:.2f} ✓[/b magenta]"
                                     for s in pred.heard_personal) + " · " + top
                console.print(f"{start:6.1f}–{end:.1f} s  {top}  [dim]({pred.families[0].name})[/dim]")

        if once:
            note.print(f"listening for {seconds:g} s on {rec.device_name}…")
            err.flush()
            samples = rec.capture(seconds)
            assert samples is not None
            emit(samples, 0.0, float(seconds), must_hear=True)
            return 0
        return _loop(rec, seconds, hop or seconds / 2, emit, note, max_windows)


def _loop(rec: Recorder, seconds: float, hop: float, emit: Callable[..., None], note, max_windows: int | None) -> int:
    """Classify the last ``seconds`` every ``hop`` seconds (:meth:`Recorder.windows`) until Ctrl-C."""
    note.print(f"listening on {rec.device_name}: a {seconds:g} s window every {hop:g} s; Ctrl-C to stop")
    try:
        for heard in itertools.islice(rec.windows(seconds, hop), max_windows):
            emit(heard.samples, heard.start, heard.end, must_hear=False)
    except KeyboardInterrupt:
        note.print("stopped")
    return 0
