"""``guesser play``: the Textual app, and :func:`run_app` that the CLI calls.

The app owns what every screen shares: the session (settings, history), the
recorder with its monitor worker (level meter + live spectrogram), the
ensemble (loaded once, in a worker, behind a loading indicator), playback and
saving. Screens ask it to record or show a problem; workers post messages
back (:mod:`guesser.tui.messages`). Failures become a failure screen
(:mod:`guesser.tui.problems`), never a traceback.
"""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path
from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.markup import escape
from textual.screen import Screen

from guesser.errors import GuesserError
from guesser.recorder import DeviceInfo, NullPlayer, Player, Recorder, default_player
from guesser.tui import messages as m
from guesser.tui import workers
from guesser.tui.personal import attach_personal
from guesser.tui.problems import LOST, NO_DEVICE, NO_MODELS, PERMISSION, problem_for
from guesser.tui.screens.error import DEVICES, RETRY, ErrorScreen
from guesser.tui.screens.main import MainScreen
from guesser.tui.session import Session, Settings, Take
from guesser.tui.widgets.record_panel import RecordPanel

MAX_FILE_SECONDS = 55.0  # a file is streamed through the recorder's 60 s buffer


class GuesserApp(App[None]):
    CSS_PATH = "guesser.tcss"
    TITLE = "guesser"
    SUB_TITLE = "what did I just hear?"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("f1", "help", "Help", show=False),
    ]

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.session = Session(self.settings, rng=random.Random(self.settings.seed))
        self.recorder: Recorder | None = None
        self.audio_ok = False
        self.device_text = "opening the input device…"
        self.ensemble: Any = None
        self.models_error: GuesserError | None = None
        self._player: Player | None = self.settings.player
        self.main: MainScreen | None = None
        self.crash: BaseException | None = None  # an unhandled exception that ended the app (see run_app)

    def _handle_exception(self, error: Exception) -> None:
        """An unhandled exception ends the app as Textual ends it, but without its traceback on the terminal.

        :func:`run_app` turns :attr:`crash` into one line naming a log file
        and a non-zero exit (Textual itself would print a traceback and the
        process would exit 0).
        """
        if self.crash is None:
            self.crash = error
        super()._handle_exception(error)
        self._exit_renderables.clear()  # the traceback goes to the crash log, not the terminal

    # -- shared state

    @property
    def player(self) -> Player:
        if self._player is None:
            self._player = default_player() if self.settings.backend is None or self.settings.file_mode else NullPlayer()
        return self._player

    @property
    def highscores_path(self) -> Path:
        from guesser.userdata import highscores_path

        return self.settings.highscores or highscores_path()

    @property
    def save_dir(self) -> Path:
        from guesser.userdata import recordings_dir

        return self.settings.save_dir or recordings_dir()

    @property
    def player_name(self) -> str | None:
        return self.settings.player_name

    def get_default_screen(self) -> Screen:
        self.main = MainScreen()
        return self.main

    def on_mount(self) -> None:
        self.start_audio()
        self.start_models()

    # -- audio

    def start_audio(self, device: str | int | None = None) -> None:
        """(Re)open the input device in the monitor worker; the previous one is closed by its worker."""
        if device is not None:
            self.settings.device = device
        self.audio_ok = False
        self.workers.cancel_group(self, "audio")
        previous, self.recorder = self.recorder, Recorder(self.settings.backend, self.settings.device)
        self.run_worker(partial(workers.monitor, self, self.recorder, previous), thread=True, group="audio",
                        exclusive=True, name="monitor")

    def on_audio_started(self, message: m.AudioStarted) -> None:
        self.audio_ok = True
        src = "file" if self.settings.file_mode else "mic"
        self.device_text = f"{src}: [b]{escape(message.device)}[/b] · {message.samplerate / 1000:g} kHz"
        self._refresh_main()

    def on_audio_tick(self, message: m.AudioTick) -> None:
        if not self.screen_stack:  # shutting down
            return
        for panel in self.screen.query(RecordPanel):
            panel.tick(message.columns, message.level)

    def on_audio_failed(self, message: m.AudioFailed) -> None:
        self.audio_ok = False
        self.device_text = "[b red]no input device[/b red] (press d to pick one)"
        self._refresh_main()
        self.show_problem(message.error, retry=self.start_audio)

    def action_devices(self) -> None:
        from guesser.tui.screens.pickers import DevicePicker

        def picked(device: DeviceInfo | None) -> None:
            if device is not None:
                self.start_audio(device.index)

        current = self.recorder.device_name if self.recorder and self.audio_ok else ""
        self.push_screen(DevicePicker(self.settings.backend, current), picked)

    # -- models

    def start_models(self) -> None:
        load = self.settings.load_ensemble
        if load is None:
            from guesser.ensemble import Ensemble

            load = Ensemble.load
        self.run_worker(partial(workers.load_models, self, load, self.settings.models), thread=True,
                        group="models", name="load models")

    def on_models_loaded(self, message: m.ModelsLoaded) -> None:
        self.ensemble = message.ensemble
        self._refresh_main()
        self.run_worker(partial(attach_personal, self, self.ensemble), thread=True, group="personal",
                        name="attach personal labels")

    def on_personal_attached(self, message: m.PersonalAttached) -> None:
        """Say which personal labels are not scored (made with other models, unreadable) and what to do."""
        notices = message.found.notices()
        if message.found.stale:
            notices.append("In the app: press p for your labels, then e re-embeds the highlighted one.")
        if notices:
            self.notify("\n".join(notices), severity="warning", timeout=12, markup=False)

    def on_models_failed(self, message: m.ModelsFailed) -> None:
        self.models_error = message.error
        self._refresh_main()
        self.show_problem(message.error)

    # -- what screens ask for

    def can_record(self, screen: Screen) -> bool:
        """True when a recording can start; otherwise tells the user why not."""
        if self.models_error is not None:
            self.show_problem(self.models_error)
            return False
        if self.ensemble is None:
            self.notify("The models are still loading…", timeout=3)
            return False
        if not self.audio_ok or self.recorder is None:
            self.notify("No input device: press d to pick one", severity="warning", timeout=4)
            return False
        return True

    def add_take(self, take: Take) -> Take:
        self.session.add(take)
        if self.main is not None:
            self.main.add_take(take)
        return take

    def replay(self, take: Take) -> None:
        if not self.player.available:
            self.notify("No output device to replay on", severity="warning")
            return
        self.run_worker(partial(workers.replay, self, self.player, take), thread=True, group="replay",
                        exclusive=True, name="replay")

    def save(self, take: Take, folder: Path | None = None) -> None:
        self.run_worker(partial(workers.save, self, take, folder or self.save_dir), thread=True, group="save",
                        name="save")

    def save_as(self, take: Take) -> None:
        from guesser.tui.screens.pickers import SaveScreen

        def chosen(folder: Path | None) -> None:
            if folder is not None:
                self.settings.save_dir = folder
                self.save(take, folder)

        self.push_screen(SaveScreen(self.save_dir), chosen)

    def on_saved(self, message: m.Saved) -> None:
        self.notify(f"saved {message.wav.name} + {message.json_path.name} in {message.wav.parent}", timeout=6,
                    markup=False)
        for screen in self.screen_stack:
            if getattr(screen, "take", None) is message.take and hasattr(screen, "show_saved"):
                screen.show_saved()
        if self.main is not None:
            self.main.refresh_bindings()

    def on_notice(self, message: m.Notice) -> None:
        self.notify(message.text, severity=message.severity, markup=False)

    def show_problem(self, error: GuesserError, retry=None) -> None:
        """The failure screen for ``error`` (one at a time: a second failure while one shows is dropped)."""
        if not self.screen_stack or isinstance(self.screen, ErrorScreen):
            return
        problem = problem_for(error)
        if retry is None and problem.kind in (NO_DEVICE, PERMISSION, LOST):
            retry = self.start_audio  # whoever noticed first, the device can be reopened

        def after(choice: str | None) -> None:
            if choice == RETRY and retry is not None:
                retry()
            elif choice == DEVICES:
                self.action_devices()

        self.push_screen(ErrorScreen(problem, can_retry=retry is not None and problem.kind != NO_MODELS), after)

    def action_help(self) -> None:
        from guesser.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def _refresh_main(self) -> None:
        if self.main is not None and self.main.is_mounted:
            self.main.refresh_state()
        if not self.screen_stack:
            return
        for panel in self.screen.query(RecordPanel):
            panel.set_device(self.device_text)


def file_settings(file: Path, seconds: float) -> tuple[Any, float]:
    """``--file``: an :class:`ArrayBackend` that plays the file (at most ``seconds`` of wall time) and its length.

    Only the first :data:`MAX_FILE_SECONDS` are decoded (a two-hour file costs no more than a minute's);
    a silent file is refused here, as a silent recording would be.
    """
    from guesser.audio import load_audio
    from guesser.recorder import ArrayBackend

    audio = load_audio(file, allow_silent=False, max_seconds=MAX_FILE_SECONDS)
    duration = min(audio.duration, MAX_FILE_SECONDS)
    backend = ArrayBackend(audio.mono, audio.sample_rate, devices=(Path(file).name,),
                           speed=max(1.0, duration / seconds))
    return backend, duration


def run_app(file: Path | None = None, device: str | None = None, seconds: float = 6.0,
            models: list[Path] | None = None) -> None:
    """Start the app (the CLI turns a :class:`GuesserError` raised here into one line)."""
    if not 0 < seconds <= 30:
        raise GuesserError(f"--seconds must be in (0, 30], got {seconds:g}")
    settings = Settings(seconds=seconds, device=device, models=list(models) if models else None)
    if models:
        check_models(list(models))  # a wrong --models is one line before the app starts, not a screen
    if file is not None:
        settings.backend, settings.seconds = file_settings(file, seconds)
        settings.file = Path(file)
        settings.countdown = 0
    app = GuesserApp(settings)
    app.run()
    if app.crash is not None:  # Textual ended the app on an unhandled exception: say so, exit non-zero
        from guesser.crashlog import report
        from guesser.errors import InternalError

        raise InternalError(report(app.crash, where="guesser play"))
    if app.return_code:
        raise GuesserError(f"the app ended with exit code {app.return_code}")


def check_models(models: list[Path]) -> None:
    """The headers of ``--models`` (no weights read): a missing file or a non-model is a GuesserError."""
    from guesser.checkpoint import read_meta
    from guesser.ensemble import resolve_models
    from guesser.errors import CheckpointError

    for path, _ in resolve_models(models):
        meta = read_meta(path)
        if meta.get("kind") != "model":
            raise CheckpointError(f"{path}: a {meta.get('kind', 'unknown')} checkpoint, not a model")
