"""Small modal choices: the input device, the game's target, the folder to save into, yes or no."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from guesser.errors import GuesserError
from guesser.game import Target
from guesser.recorder import AudioBackend, DeviceInfo, SoundDeviceBackend


class _Picker(ModalScreen):
    """A list to choose from: enter picks (the option's id is the index into :meth:`choices`), escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def choices(self) -> list:
        raise NotImplementedError

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices()[int(event.option.id)])

    def action_cancel(self) -> None:
        self.dismiss(None)


class DevicePicker(_Picker, ModalScreen[DeviceInfo | None]):
    """Lists input devices (index, name, channels, rate); enter picks, escape keeps the current one."""

    def __init__(self, backend: AudioBackend | None, current: str = "") -> None:
        super().__init__()
        self.backend, self.current = backend, current
        self.devices: list[DeviceInfo] = []
        self.error: str | None = None
        try:
            self.devices = (backend or SoundDeviceBackend()).input_devices()
        except GuesserError as e:
            self.error = str(e)

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box"):
            yield Static("[b]Input device[/b]  (enter picks, escape cancels)")
            if self.error or not self.devices:
                yield Static(self.error or "No input devices found: plug in a microphone.", id="picker-empty",
                             markup=False)
            yield OptionList(*[Option(("● " if d.name == self.current else "  ") + d.describe(), id=str(i))
                               for i, d in enumerate(self.devices)], id="devices")

    def choices(self) -> list[DeviceInfo]:
        return self.devices


class TargetPicker(_Picker, ModalScreen[Target | None]):
    def __init__(self, pool: list[Target]) -> None:
        super().__init__()
        self.pool = pool

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box"):
            yield Static("[b]Pick a sound to make[/b]  (enter picks, escape cancels)")
            yield OptionList(*[Option(f"{t.title}  [dim]({t.kind})[/dim]", id=str(i))
                               for i, t in enumerate(self.pool)], id="targets")

    def choices(self) -> list[Target]:
        return self.pool


class SaveScreen(ModalScreen[Path | None]):
    """Asks for the folder (prefilled with the default); the WAV and JSON names are made from the take."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box"):
            yield Static("[b]Save the recording (WAV + JSON) into[/b]")
            yield Input(str(self.folder), id="folder")
            yield Static("enter saves · escape cancels", classes="dim")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        self.dismiss(Path(value).expanduser() if value else None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question (forgetting a personal label): **y** confirms; **n** or **escape** does nothing."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box"):
            yield Static(self.question, id="confirm-question", markup=False)
            yield Static("[b]y[/b] yes  ·  [b]n[/b] / [b]escape[/b] no", classes="dim")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
