"""The blocking work of the app, run in Textual thread workers.

Each function here runs on a worker thread, talks to the UI only through
:mod:`guesser.tui.messages`, and stops when its worker is cancelled. Screens
start them with ``run_worker(partial(fn, …), thread=True)``, so the event
loop never waits for a device, a model or a file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from textual.message_pump import MessagePump
from textual.worker import get_current_worker

from guesser.errors import DeviceError, GuesserError
from guesser.recorder import Level, Player, Recorder, check_not_silent
from guesser.sed import EventSettings
from guesser.tui import messages as m
from guesser.tui.session import Take
from guesser.tui.spectrum import SpectrumTracker, spectrogram

TICK_SECONDS = 0.05


def _cancelled() -> Callable[[], bool]:
    worker = get_current_worker()
    return lambda: worker.is_cancelled


def load_models(target: MessagePump, load: Callable[[Any], Any], models: Any) -> None:
    """Load the ensemble once; the UI shows a loading indicator meanwhile."""
    try:
        ensemble = load(models)
    except GuesserError as e:
        target.post_message(m.ModelsFailed(e))
        return
    except Exception as e:  # noqa: BLE001 - a bug or a file no check foresaw: the failure screen, and a log
        from guesser.crashlog import report

        target.post_message(m.ModelsFailed(GuesserError(f"the models could not be loaded: {report(e)}")))
        return
    target.post_message(m.ModelsLoaded(ensemble))


def monitor(target: MessagePump, recorder: Recorder, previous: Recorder | None = None) -> None:
    """Open the device, then post level + spectrogram columns every tick until cancelled or the device fails.

    ``previous`` (the recorder being replaced) is closed first: many devices
    cannot be opened twice, and its own worker may not have noticed yet.
    """
    cancelled = _cancelled()
    if previous is not None:
        previous.close()
    try:
        recorder.open()
    except GuesserError as e:
        target.post_message(m.AudioFailed(e))
        return
    try:
        target.post_message(m.AudioStarted(recorder.device_name, recorder.samplerate))
        tracker = SpectrumTracker(recorder.samplerate, recorder.total)
        while not cancelled():
            time.sleep(TICK_SECONDS)
            try:
                recorder.check()
            except DeviceError as e:
                if not cancelled():  # a replaced monitor sees its recorder closed by its successor: not a failure
                    target.post_message(m.AudioFailed(e))
                return
            target.post_message(m.AudioTick(tracker.columns(recorder.read, recorder.total), recorder.level))
    finally:
        recorder.close()


def record(target: MessagePump, recorder: Recorder, ensemble: Any, seconds: float, *,
           game_target: str | None = None) -> None:
    """Capture ``seconds``, refuse silence, classify; post :class:`Recorded` or :class:`RecordFailed`."""
    cancelled = _cancelled()
    try:
        samples = recorder.capture(seconds, lambda f: target.post_message(m.RecordProgress(f)), cancelled)
        if samples is None:
            return
        level = check_not_silent(samples, recorder.device_name)
        target.post_message(m.Classifying())
        prediction = ensemble.predict(samples, recorder.samplerate, events=EventSettings())  # + the events timeline
        take = Take(samples, recorder.samplerate, recorder.device_name, level, prediction,
                    spectrogram(samples, recorder.samplerate), target=game_target)
    except GuesserError as e:
        target.post_message(m.RecordFailed(e))
        return
    if not cancelled():
        target.post_message(m.Recorded(take))


def listen(target: MessagePump, recorder: Recorder, ensemble: Any, seconds: float, hop: float) -> None:
    """Score the newest ``seconds`` every ``hop`` seconds until cancelled (the app's listen mode, :mod:`guesser.live`).

    The first answer comes after one hop, on what has been heard so far. Each
    update carries the sound events that ended by then, and the wall clock of
    its window's end, so the screen can say when a sound was heard.
    """
    from guesser.live import LiveEvents, listen as live

    cancelled = _cancelled()
    events = LiveEvents()
    try:
        for w in live(recorder, ensemble, seconds, hop, cancelled):
            ended = events.specific(events.push(w))
            if cancelled():
                return
            target.post_message(m.ListenUpdate(w.prediction, w.level, w.end, ended, time.time()))
    except GuesserError as e:
        target.post_message(m.RecordFailed(e))


def replay(target: MessagePump, player: Player, take: Take) -> None:
    try:
        player.play(take.samples, take.samplerate)
    except GuesserError as e:
        target.post_message(m.Notice(f"replay failed: {e}", "error"))


def save(target: MessagePump, take: Take, folder: Path) -> None:
    from guesser.recordings import save_recording

    try:
        wav, js = save_recording(folder, take.samples, take.samplerate, take.prediction, source=take.source,
                                 target=take.target)
    except GuesserError as e:
        target.post_message(m.Notice(str(e), "error"))
        return
    take.saved_to = wav
    target.post_message(m.Saved(take, wav, js))
