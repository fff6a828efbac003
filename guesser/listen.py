"""``guesser listen``: the microphone guesser without the app.

Shares :class:`~guesser.recorder.Recorder` with ``guesser play`` so both see
devices, levels and failures the same way. ``--once`` records one window and
prints it; otherwise the newest ``--seconds`` are scored every ``--hop``
(default 0.125 s, :mod:`guesser.live`) until Ctrl-C. JSON Lines carry the same
fields as ``guesser classify --json`` plus the window's time and input level,
so scripts can treat a microphone like a stream of files, and ``"events"``:
the sound events (:mod:`guesser.events`) that ended by that window, usually
``[]``; after Ctrl-C one last line ``{"device", "start", "end", "events"}``
closes those still open, if any.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any, Callable, TextIO


from guesser.errors import GuesserError
from guesser.labels import pretty
from guesser.live import LIVE_HOP_SECONDS, LIVE_WINDOW_SECONDS, LiveEvents, listen
from guesser.present import render_prediction
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


def run_listen(once: bool = False, json_out: bool = False, device: str | None = None,
               seconds: float = LIVE_WINDOW_SECONDS, top_k: int = 5, models: list[Path] | None = None, *,
               backend: AudioBackend | None = None, ensemble: Any = None, hop: float | None = None,
               max_windows: int | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Record from the microphone and print what the ensemble hears; returns the exit code.

    Device and model problems raise :class:`GuesserError` (one line from the CLI).
    A silent ``--once`` recording raises :class:`SilentInputError` (exit 3).
    """
    from rich.console import Console

    out = out or sys.stdout
    err = err or sys.stderr
    hop = LIVE_HOP_SECONDS if hop is None else hop
    if not 0 < seconds <= MAX_SECONDS:
        raise GuesserError(f"--seconds must be in (0, {MAX_SECONDS:g}], got {seconds:g}")
    if not 0 < hop <= MAX_SECONDS:
        raise GuesserError(f"--hop must be in (0, {MAX_SECONDS:g}], got {hop:g}")
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
                note.print(f"note: {line}", markup=False)

        live_events = LiveEvents()

        def emit(pred: Any, level: Level, start: float, end: float, events: list | None = None) -> None:
            if json_out:
                rec_json = listen_record(pred, level, device=rec.device_name, start=start, end=end, top_k=top_k)
                if events is not None:
                    rec_json["events"] = [e.to_json() for e in events]
                out.write(json.dumps(rec_json) + "\n")
                out.flush()
                return
            for e in live_events.specific(events or []):  # people get Bark, not also Dog and Animal
                console.print(event_line(e))
            if pred is None:
                console.print(f"[dim]{start:6.1f}–{end:.1f} s  (silence, {level.rms_db:.0f} dBFS)[/dim]")
            elif once:
                console.print(render_prediction(pred, title=f"{rec.device_name}: {end - start:.1f} s", top_k=top_k))
            else:
                top = " · ".join(f"{pretty(s.name)} {s.score:.2f}" for s in pred.top(top_k or 5))
                if pred.heard_personal:  # the user's own sound, when heard, comes first
                    top = " · ".join(f"[b magenta]{s.name} {s.score:.2f} ✓[/b magenta]"
                                     for s in pred.heard_personal) + " · " + top
                console.print(f"{start:6.1f}–{end:.1f} s  {top}  [dim]({pred.families[0].name})[/dim]")

        def emit_events(events: list, end: float) -> None:
            """After Ctrl-C: the events still open, closed where listening stopped (one last JSON line, if any)."""
            if json_out and events:
                out.write(json.dumps({"device": rec.device_name, "start": round(end, 3), "end": round(end, 3),
                                      "events": [e.to_json() for e in events]}) + "\n")
                out.flush()
            for e in [] if json_out else live_events.specific(events):
                console.print(event_line(e))

        if once:
            note.print(f"listening for {seconds:g} s on {rec.device_name}…")
            err.flush()
            samples = rec.capture(seconds)
            assert samples is not None
            level = Level.of(samples)
            if level.silent:
                raise SilentInputError(level, rec.device_name)
            emit(ensemble.predict(samples, rec.samplerate), level, 0.0, float(seconds))
            return 0
        return _loop(rec, ensemble, seconds, hop, live_events, emit, emit_events, note, max_windows)


def event_line(e: Any) -> str:
    """'  3.2–4.4 s  heard Bark (Animal, 1.2 s, peak 0.91)': one sound event for people."""
    return f"[b]{e.start:6.1f}–{e.end:.1f} s  heard {pretty(e.label)}[/b] ({e.family}, {e.duration:.1f} s, peak {e.score:.2f})"


def _loop(rec: Recorder, ensemble: Any, seconds: float, hop: float, events: LiveEvents, emit: Callable[..., None],
          emit_events: Callable[..., None], note, max_windows: int | None) -> int:
    """Score the newest ``seconds`` every ``hop`` seconds (:func:`guesser.live.listen`) until Ctrl-C."""
    note.print(f"listening on {rec.device_name}: the last {seconds:g} s every {hop:g} s; Ctrl-C to stop")
    end = 0.0
    try:
        for w in itertools.islice(listen(rec, ensemble, seconds, hop), max_windows):
            end = w.end
            emit(w.prediction, w.level, w.start, w.end, events.push(w))
    except KeyboardInterrupt:
        note.print("stopped")
    emit_events(events.finish(end), end)
    return 0
