"""Audio systems behind one small interface: the real sound card, and a numpy array that plays like one.

:class:`SoundDeviceBackend` is the real one (sounddevice, imported lazily, so a
machine without PortAudio gets an error message, not an ``OSError`` at
import). :class:`ArrayBackend` plays a numpy array as if a microphone heard
it, in real time or faster: ``guesser play --file`` runs the microphone flow
on a file with it, and tests use it instead of a sound card.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from guesser.errors import DeviceError
from guesser.recorder.errors import NO_INPUT_HINT, NoInputDeviceError, lost_message, map_portaudio_error

MIN_WAKE_SECONDS = 0.01
"""An :class:`ArrayBackend` faster than real time wakes at most every 10 ms (GIL-friendly in tests)."""

BlockCallback = Callable[[np.ndarray], None]
LostCallback = Callable[[str], None]


@dataclass(frozen=True)
class DeviceInfo:
    """One audio device as the user picks it: by index or by (part of) its name."""

    index: int
    name: str
    input_channels: int
    output_channels: int = 0
    default_samplerate: float = 44100.0
    is_default: bool = False

    def describe(self) -> str:
        star = " (default)" if self.is_default else ""
        return f"{self.index}: {self.name}{star} · {self.input_channels} in · {self.default_samplerate / 1000:g} kHz"


class InputStream(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...

    def cue(self, position: Callable[[], int]) -> int:
        """Mark where a capture starts: return ``position()`` with no block delivered in between.

        A microphone has nothing to cue (the capture starts with the next block);
        an :class:`ArrayBackend` starts its clip there, so a capture begins at the
        clip's first sample.
        """
        ...


class AudioBackend(Protocol):
    """What :class:`Recorder` needs from an audio system."""

    def input_devices(self) -> list[DeviceInfo]: ...
    def default_input(self) -> DeviceInfo | None: ...
    def open_input(self, device: DeviceInfo, samplerate: int, block: int,
                   on_block: BlockCallback, on_lost: LostCallback) -> InputStream: ...


def resolve_device(backend: AudioBackend, spec: str | int | None) -> DeviceInfo:
    """``None`` (the default input), an index, or a unique case-insensitive (sub)string of a name."""
    devices = backend.input_devices()
    if not devices:
        raise NoInputDeviceError(f"no input device found: {NO_INPUT_HINT}")
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        dev = backend.default_input()
        return dev if dev is not None else devices[0]
    names = ", ".join(f"{d.index}: {d.name}" for d in devices)
    if isinstance(spec, int) or spec.strip().isdigit():
        idx = int(spec)
        for d in devices:
            if d.index == idx:
                return d
        raise NoInputDeviceError(f"no input device with index {idx} (inputs: {names})")
    want = spec.strip().lower()
    exact = [d for d in devices if d.name.lower() == want]
    if exact:
        return exact[0]
    partial = [d for d in devices if want in d.name.lower()]
    if len(partial) == 1:
        return partial[0]
    if len(partial) > 1:
        raise DeviceError(f"input device {spec!r} is ambiguous: {', '.join(d.name for d in partial)}; use an index")
    raise NoInputDeviceError(f"no input device matches {spec!r} (inputs: {names})")


def import_sounddevice():
    """Import sounddevice, turning a missing PortAudio into a one-line DeviceError."""
    try:
        import sounddevice as sd
    except OSError as e:
        raise map_portaudio_error(e) from None
    return sd


class SoundDeviceBackend:
    """The real audio system through sounddevice (PortAudio)."""

    def __init__(self) -> None:
        self.sd = import_sounddevice()

    def _all(self) -> list[dict]:
        try:
            return list(self.sd.query_devices())
        except self.sd.PortAudioError as e:
            raise map_portaudio_error(e) from None

    def _default_index(self, kind: int) -> int:
        try:
            return int(self.sd.default.device[kind])
        except (TypeError, ValueError, IndexError):
            return -1

    def input_devices(self) -> list[DeviceInfo]:
        default = self._default_index(0)
        return [DeviceInfo(d["index"], d["name"], d["max_input_channels"], d["max_output_channels"],
                           float(d["default_samplerate"]), d["index"] == default)
                for d in self._all() if d["max_input_channels"] > 0]

    def default_input(self) -> DeviceInfo | None:
        default = self._default_index(0)
        return next((d for d in self.input_devices() if d.index == default), None)

    def open_input(self, device: DeviceInfo, samplerate: int, block: int,
                   on_block: BlockCallback, on_lost: LostCallback) -> InputStream:
        sd = self.sd
        stopping = threading.Event()

        def callback(indata, frames, time_info, status):  # PortAudio's thread: no allocation-heavy work
            on_block(indata[:, 0] if indata.shape[1] == 1 else indata.mean(axis=1))

        def finished():
            if not stopping.is_set():
                on_lost(lost_message(device.name))

        last: Exception | None = None
        for channels in (1, min(2, device.input_channels)):
            try:
                stream = sd.InputStream(device=device.index, channels=channels, samplerate=samplerate,
                                        blocksize=block, dtype="float32", callback=callback,
                                        finished_callback=finished)
                break
            except sd.PortAudioError as e:  # some hardware refuses mono: try stereo, then give up
                last = e
        else:
            raise map_portaudio_error(last or RuntimeError("unknown"), device.name) from None
        return _StoppableStream(stream, stopping, device.name, sd.PortAudioError)


class _StoppableStream:
    """A sounddevice stream whose deliberate stop is not mistaken for a lost device."""

    def __init__(self, stream, stopping: threading.Event, name: str, error_type: type[Exception]):
        self._stream, self._stopping, self._name, self._error = stream, stopping, name, error_type

    def start(self) -> None:
        try:
            self._stream.start()
        except self._error as e:
            raise map_portaudio_error(e, self._name) from None

    def cue(self, position: Callable[[], int]) -> int:
        return position()

    def stop(self) -> None:
        self._ending(self._stream.stop)

    def close(self) -> None:
        self._ending(self._stream.close)

    def _ending(self, action: Callable[[], None]) -> None:
        """Stop or close on purpose: not a lost device, and a device already gone is no error."""
        self._stopping.set()
        try:
            action()
        except self._error:
            pass


class ArrayBackend:
    """A microphone that hears a numpy array: for tests, and for ``guesser play --file``.

    The clip starts playing when a capture starts (:meth:`Recorder.capture`
    calls the stream's ``cue`` atomically with its start position, so the
    captured samples begin exactly at the clip's first sample); before and
    after, the stream delivers ``idle`` (zeros by default: a silent room).
    ``loop=True`` instead plays the clip over and over from the moment the
    stream opens (a steady sound for "listen" mode).

    ``speed`` is real time × speed (blocks are paced by a thread, like a sound
    card); ``lose_after`` seconds of stream time after the cue, the device
    "disappears" (no more blocks, ``on_lost`` called); ``open_error`` is raised
    by :meth:`open_input` (e.g. a :class:`PermissionDeniedError`).
    """

    def __init__(self, clip: np.ndarray | None = None, samplerate: int = 22050, *,
                 devices: Sequence[str] = ("Test microphone",), speed: float = 1.0, loop: bool = False,
                 idle: np.ndarray | float = 0.0, lose_after: float | None = None,
                 open_error: Exception | None = None, output: bool = False):
        self.clip = np.zeros(0, np.float32) if clip is None else np.asarray(clip, np.float32).reshape(-1)
        self.samplerate = int(samplerate)
        self.devices = [DeviceInfo(i, n, 1, 1 if output else 0, float(samplerate), i == 0) for i, n in enumerate(devices)]
        self.speed, self.loop, self.idle = float(speed), loop, idle
        self.lose_after, self.open_error = lose_after, open_error
        self.opened: list[DeviceInfo] = []

    def input_devices(self) -> list[DeviceInfo]:
        return list(self.devices)

    def default_input(self) -> DeviceInfo | None:
        return self.devices[0] if self.devices else None

    def open_input(self, device: DeviceInfo, samplerate: int, block: int,
                   on_block: BlockCallback, on_lost: LostCallback) -> InputStream:
        if self.open_error is not None:
            raise self.open_error
        self.opened.append(device)
        return _ArrayStream(self, device, samplerate, block, on_block, on_lost)


class _ArrayStream:
    def __init__(self, owner: ArrayBackend, device: DeviceInfo, samplerate: int, block: int,
                 on_block: BlockCallback, on_lost: LostCallback):
        self.o, self.device, self.block = owner, device, block
        self.on_block, self.on_lost = on_block, on_lost
        self.clip = owner.clip
        if samplerate != owner.samplerate and self.clip.size:
            from guesser.features import resample
            import torch

            self.clip = resample(torch.from_numpy(self.clip), owner.samplerate, samplerate).numpy()
        self.samplerate = samplerate
        self.pos: int | None = 0 if owner.loop else None  # None: idle, not playing the clip
        self.since_cue: int | None = None
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.rng = np.random.default_rng(0)

    def cue(self, position: Callable[[], int]) -> int:
        """Start the clip at the next block and return ``position()``, with no block in between."""
        with self.lock:
            if not self.o.loop:
                self.pos = 0
            self.since_cue = 0
            return position()

    def _idle(self, n: int) -> np.ndarray:
        idle = self.o.idle
        if isinstance(idle, np.ndarray):
            return np.resize(idle.astype(np.float32), n)
        return (self.rng.standard_normal(n) * float(idle)).astype(np.float32) if idle else np.zeros(n, np.float32)

    def _next(self) -> np.ndarray | None:
        n = self.block
        if self.since_cue is not None and self.o.lose_after is not None:
            if self.since_cue >= self.o.lose_after * self.samplerate:
                return None
            self.since_cue += n
        if self.pos is None or not self.clip.size:
            return self._idle(n)
        if self.o.loop:
            out = np.take(self.clip, np.arange(self.pos, self.pos + n), mode="wrap")
            self.pos = (self.pos + n) % self.clip.size
            return out
        out = self.clip[self.pos : self.pos + n]
        self.pos += n
        if out.size < n:
            self.pos = None
            out = np.concatenate([out, self._idle(n - out.size)])
        return out

    def _run(self) -> None:
        period = self.block / self.samplerate / max(self.speed, 1e-6)
        burst = max(1, math.ceil(MIN_WAKE_SECONDS / period))  # faster than real time: several blocks per wake-up
        due = time.perf_counter()
        while not self.stop_event.is_set():
            for _ in range(burst):
                with self.lock:
                    block = self._next()
                    if block is None:
                        self.on_lost(lost_message(self.device.name))
                        return
                    self.on_block(block)
            due += period * burst
            delay = due - time.perf_counter()
            if delay > 0:
                self.stop_event.wait(delay)
            else:
                due = time.perf_counter()  # fell behind (slow machine): do not burst to catch up
                time.sleep(0)

    @property
    def speed(self) -> float:
        return self.o.speed

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="guesser-array-stream", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=2)

    def close(self) -> None:
        self.stop()
