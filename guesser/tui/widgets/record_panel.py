"""The recording block shared by the main and game screens.

Device line, level meter, live spectrogram, a status line and a progress bar;
:meth:`RecordPanel.start` runs the countdown, then the record worker, and the
panel reports back with :class:`RecordPanel.Finished` or
:class:`RecordPanel.Failed`, so a screen only decides what a take means.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from textual.app import ComposeResult
from textual.containers import Center, Vertical
from textual.timer import Timer
from textual.widgets import Button, ProgressBar, Static

from guesser.recorder import Level
from guesser.tui import messages as m
from guesser.tui import workers
from guesser.tui.widgets.level_meter import LevelMeter
from guesser.tui.widgets.spectrogram import Spectrogram

IDLE, COUNTDOWN, RECORDING, CLASSIFYING = "idle", "countdown", "recording", "classifying"


class RecordPanel(Vertical):
    class Finished(m.TakeDone):
        """The panel's take: recorded and classified."""

    class Failed(m.Failed):
        """The panel's take failed."""

    def __init__(self, *, freeze: bool = False, id: str | None = None, classes: str | None = None) -> None:
        """``freeze``: after a take, show its whole spectrogram until the next recording (the game)."""
        super().__init__(id=id, classes=classes)
        self.freeze_after = freeze
        self.state = IDLE
        self.idle_text = ""
        self.device_text = ""
        self._count = 0
        self._timer: Timer | None = None
        self._game_target: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="device-line")
        yield LevelMeter(id="meter")
        yield Spectrogram(id="live")
        yield Static("", id="record-status")
        yield ProgressBar(total=100, show_eta=False, id="record-progress")
        with Center(id="record-row"):
            # the big record action for mouse users; the keyboard's space/enter run the same screen action
            yield Button("● Record", variant="error", id="record-button", action="screen.record")

    # -- display

    def on_mount(self) -> None:
        self.set_device(self.device_text)
        self._status(self.idle_text)

    def set_device(self, text: str) -> None:
        self.device_text = text
        for w in self.query("#device-line").results(Static):  # may be called before compose has run
            w.update(text)

    def set_idle_text(self, text: str) -> None:
        self.idle_text = text
        if self.state == IDLE:
            self._status(text)

    def _status(self, text: str) -> None:
        for w in self.query("#record-status").results(Static):
            w.update(text)

    def tick(self, columns: np.ndarray, level: Level) -> None:
        """New live audio from the app's monitor."""
        for spec in self.query(Spectrogram):  # nothing yet if the panel is still being composed
            spec.push(columns)
        for meter in self.query(LevelMeter):
            meter.level = level

    def freeze(self, spectrum: np.ndarray) -> None:
        """Show a take's whole spectrogram until the next recording."""
        self.query_one(Spectrogram).show(spectrum)

    @property
    def busy(self) -> bool:
        return self.state != IDLE

    # -- recording

    def start(self, seconds: float, countdown: int, game_target: str | None = None) -> bool:
        """Count down, then record; False when already busy."""
        if self.busy:
            return False
        self._game_target = game_target
        self._busy_button(True)
        self.query_one(Spectrogram).follow()
        if countdown > 0:
            self.state, self._count = COUNTDOWN, countdown
            self.add_class("countdown")
            self._status(f"[b]Get ready… {self._count}[/b]")
            self._timer = self.set_interval(1.0, partial(self._countdown_tick, seconds))
        else:
            self._record(seconds)
        return True

    def _countdown_tick(self, seconds: float) -> None:
        self._count -= 1
        if self._count > 0:
            self._status(f"[b]Get ready… {self._count}[/b]")
            return
        if self._timer is not None:
            self._timer.stop()
        self.remove_class("countdown")
        self._record(seconds)

    def _record(self, seconds: float) -> None:
        self.state = RECORDING
        self._seconds = seconds
        self.add_class("recording")
        self._status(f"[b red]● Recording[/b red] 0.0 / {seconds:g} s")
        self.query_one(ProgressBar).update(progress=0)
        self.run_worker(partial(workers.record, self, self.app.recorder, self.app.ensemble, seconds,
                                game_target=self._game_target),
                        thread=True, group="record", exclusive=True, name="record")

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.workers.cancel_group(self, "record")
        self._done()

    def _busy_button(self, busy: bool) -> None:
        for b in self.query("#record-button").results(Button):
            b.disabled = busy

    def _done(self) -> None:
        self._busy_button(False)
        self.state = IDLE
        self.remove_class("recording", "countdown")
        self._status(self.idle_text)

    def on_record_progress(self, message: m.RecordProgress) -> None:
        message.stop()
        if self.state == RECORDING:
            self.query_one(ProgressBar).update(progress=100 * message.fraction)
            self._status(f"[b red]● Recording[/b red] {message.fraction * self._seconds:.1f} / {self._seconds:g} s")

    def on_classifying(self, message: m.Classifying) -> None:
        message.stop()
        self.state = CLASSIFYING
        self.remove_class("recording")
        self._status("[b]Thinking…[/b]")

    def on_recorded(self, message: m.Recorded) -> None:
        message.stop()
        self._done()
        if self.freeze_after:
            self.freeze(message.take.spectrum)
        self.post_message(self.Finished(message.take))

    def on_record_failed(self, message: m.RecordFailed) -> None:
        message.stop()
        self._done()
        self.post_message(self.Failed(message.error))
