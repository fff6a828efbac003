"""The microphone behind one small interface, shared by ``guesser play`` and ``guesser listen``.

Why a layer over sounddevice: PortAudio delivers blocks on its own thread and
fails in many platform-specific ways. Everything above this module sees only:

* :class:`Recorder`: opens an input device, keeps the last minute in a
  :class:`RingBuffer` (so a level meter, a live spectrogram and a sliding
  "listen" window can all read the same stream), and :meth:`Recorder.capture`
  records N seconds from *now*;
* :class:`Level`: RMS and peak in dBFS of a block, and whether it is silence;
* :class:`DeviceError` subclasses with one-line messages that say what to do:
  :class:`NoInputDeviceError`, :class:`PermissionDeniedError`,
  :class:`DeviceLostError` (a device that stops delivering mid-recording).

Backends: :class:`SoundDeviceBackend` is the real one (imported lazily, so a
machine without PortAudio gets an error message, not an ``OSError`` at import);
:class:`ArrayBackend` plays a numpy array as if a microphone heard it, in real
time or faster. Tests use it instead of a sound card, and ``guesser play
--file`` uses it to run the microphone flow on a file.

Playback (the app's "replay") is :class:`SoundDevicePlayer`; :class:`NullPlayer`
stands in where there is no output device, :class:`FakePlayer` in tests.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from guesser.errors import DeviceError, GuesserError

SILENCE_DBFS = -60.0
"""RMS below which a recording counts as "heard nothing": quieter than a quiet room through any microphone."""

DB_FLOOR = -120.0
"""dBFS reported for digital silence (log of zero)."""

BUFFER_SECONDS = 60.0
BLOCK_SECONDS = 0.02
STALL_SECONDS = 2.5
"""No samples for this long while recording = the device is gone (unplugged, suspended, taken away)."""

MIN_WAKE_SECONDS = 0.01
"""An :class:`ArrayBackend` faster than real time wakes at most every 10 ms (GIL-friendly in tests)."""

BlockCallback = Callable[[np.ndarray], None]
LostCallback = Callable[[str], None]


# ---------------------------------------------------------------- errors


class NoInputDeviceError(DeviceError):
    """No microphone at all, or the one asked for does not exist."""


class PermissionDeniedError(DeviceError):
    """The device exists but may not be opened (OS privacy settings, group rights, in use)."""


class DeviceLostError(DeviceError):
    """The device stopped delivering audio while open (unplugged, suspended)."""


class SilentInputError(GuesserError):
    """A recording with nothing in it; carries its :class:`Level` for the message."""

    exit_code = 3

    def __init__(self, level: "Level", name: str = "the microphone"):
        self.level = level
        super().__init__(
            f"heard nothing from {name} (RMS {level.rms_db:.0f} dBFS, below {SILENCE_DBFS:.0f}): "
            "check it is unmuted, its input volume, the right --device, and that guesser may use it"
        )


NO_INPUT_HINT = "plug in a microphone or enable it in the system's sound settings (or choose one with --device)"


def map_portaudio_error(err: Exception, device: str = "the input device", *, opening: bool = True) -> DeviceError:
    """A PortAudio/sounddevice exception -> the :class:`DeviceError` subclass a user can act on.

    PortAudio error codes (``[PaErrorCode -99xx]`` in the message) are stable
    across platforms; the OS's own wording (``Permission denied``) shows up in
    host errors. Unknown failures keep their first line.
    """
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    low = text.lower()
    if isinstance(err, PermissionError) or "permission" in low or "not permitted" in low or "eacces" in low:
        return PermissionDeniedError(
            f"permission denied for {device}: allow microphone access for this terminal "
            "(system privacy settings, or add your user to the 'audio' group)"
        )
    if "-9985" in low or "device unavailable" in low or "busy" in low:
        return PermissionDeniedError(
            f"{device} is unavailable: another program may hold it, or this user may not open it "
            "(close other recorders, check microphone permissions)"
        )
    if not opening:
        return DeviceLostError(f"{device} stopped delivering audio (unplugged?): reconnect it and try again")
    if "-9996" in low or "invalid device" in low or "no default input" in low or "-9998" in low:
        return NoInputDeviceError(f"{device}: no such input device; {NO_INPUT_HINT}")
    if "portaudio library not found" in low:
        return NoInputDeviceError("no audio system: the PortAudio library is missing (install libportaudio2)")
    return DeviceError(f"cannot open {device}: {text}")


# ---------------------------------------------------------------- levels


def dbfs(value: float) -> float:
    """Amplitude (1.0 = full scale) -> dBFS, floored at :data:`DB_FLOOR` for zero."""
    return max(DB_FLOOR, 20.0 * math.log10(value)) if value > 0 else DB_FLOOR


@dataclass(frozen=True)
class Level:
    """How loud a block is: RMS and peak, in dBFS (0 = full scale)."""

    rms_db: float = DB_FLOOR
    peak_db: float = DB_FLOOR

    @classmethod
    def of(cls, samples: np.ndarray) -> "Level":
        x = np.asarray(samples, dtype=np.float32)
        if x.size == 0:
            return cls()
        return cls(dbfs(float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))), dbfs(float(np.abs(x).max())))

    @property
    def silent(self) -> bool:
        return self.rms_db < SILENCE_DBFS


def check_not_silent(samples: np.ndarray, name: str = "the microphone") -> Level:
    """The recording's :class:`Level`; :class:`SilentInputError` when it is below :data:`SILENCE_DBFS`."""
    level = Level.of(samples)
    if level.silent:
        raise SilentInputError(level, name)
    return level


# ---------------------------------------------------------------- ring buffer


class RingBuffer:
    """The last ``capacity`` mono samples, addressed by absolute position since the stream began.

    Written by the audio thread, read by any other; one lock, no allocation on
    write. Absolute positions let a reader ask for "samples since I last
    looked" without coordinating with the writer.
    """

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self._buf = np.zeros(capacity, dtype=np.float32)
        self._total = 0
        self._lock = threading.Lock()
        self.capacity = capacity

    @property
    def total(self) -> int:
        """Samples written since the start (the position one past the newest sample)."""
        return self._total

    def write(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        if block.size > self.capacity:
            block = block[-self.capacity :]
        with self._lock:
            i = self._total % self.capacity
            first = min(block.size, self.capacity - i)
            self._buf[i : i + first] = block[:first]
            self._buf[: block.size - first] = block[first:]
            self._total += block.size

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples at absolute positions [start, stop); the part already overwritten is clipped away."""
        with self._lock:
            stop = min(stop, self._total)
            start = max(start, self._total - self.capacity, 0)
            if stop <= start:
                return np.zeros(0, dtype=np.float32)
            idx = np.arange(start, stop) % self.capacity
            return self._buf[idx].copy()

    def last(self, n: int) -> np.ndarray:
        return self.read(self._total - n, self._total)


# ---------------------------------------------------------------- backends


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


def _sounddevice():
    """Import sounddevice, turning a missing PortAudio into a one-line DeviceError."""
    try:
        import sounddevice as sd
    except OSError as e:
        raise map_portaudio_error(e) from None
    return sd


class SoundDeviceBackend:
    """The real audio system through sounddevice (PortAudio)."""

    def __init__(self) -> None:
        self.sd = _sounddevice()

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
                on_lost(f"{device.name} stopped delivering audio (unplugged?): reconnect it and try again")

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

    def stop(self) -> None:
        self._stopping.set()
        try:
            self._stream.stop()
        except self._error:
            pass

    def close(self) -> None:
        self._stopping.set()
        try:
            self._stream.close()
        except self._error:
            pass


class ArrayBackend:
    """A microphone that hears a numpy array: for tests, and for ``guesser play --file``.

    The clip starts playing when a capture starts (:meth:`Recorder.capture`
    calls :meth:`_ArrayStream.cue` atomically with its start position, so the
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

    def cue(self, fn: Callable[[], int]) -> int:
        """Start the clip at the next block and return ``fn()``, with no block in between."""
        with self.lock:
            if not self.o.loop:
                self.pos = 0
            self.since_cue = 0
            return fn()

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
                        self.on_lost(f"{self.device.name} stopped delivering audio (unplugged?): reconnect it and try again")
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


# ---------------------------------------------------------------- recorder


class Recorder:
    """An open input device feeding a ring buffer; capture, level and sliding windows read from it.

    Use as a context manager, or :meth:`open` / :meth:`close`. Thread-safe for
    one writer (the audio thread) and any number of readers.
    """

    def __init__(self, backend: AudioBackend | None = None, device: str | int | None = None, *,
                 samplerate: int | None = None, buffer_seconds: float = BUFFER_SECONDS,
                 block_seconds: float = BLOCK_SECONDS, stall_seconds: float = STALL_SECONDS):
        self.backend = backend
        self.device_spec = device
        self.requested_samplerate = samplerate
        self.buffer_seconds, self.block_seconds, self.stall_seconds = buffer_seconds, block_seconds, stall_seconds
        self.device: DeviceInfo | None = None
        self.samplerate = 0
        self.ring: RingBuffer | None = None
        self._stream: InputStream | None = None
        self._lost: str | None = None
        self._last_block = np.zeros(0, np.float32)
        self._cond = threading.Condition()
        self._close_lock = threading.Lock()

    # -- lifecycle

    def open(self) -> "Recorder":
        if self._stream is not None:
            return self
        if self.backend is None:
            self.backend = SoundDeviceBackend()
        self.device = resolve_device(self.backend, self.device_spec)
        self.samplerate = int(self.requested_samplerate or self.device.default_samplerate or 44100)
        self.ring = RingBuffer(int(self.buffer_seconds * self.samplerate))
        self._lost = None
        block = max(64, int(self.block_seconds * self.samplerate))
        stream = self.backend.open_input(self.device, self.samplerate, block, self._on_block, self._on_lost)
        try:
            stream.start()
        except Exception:
            stream.close()
            raise
        self._stream = stream
        return self

    def close(self) -> None:
        """Stop and release the device (idempotent; safe from any thread)."""
        with self._close_lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> "Recorder":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    @property
    def device_name(self) -> str:
        return self.device.name if self.device else "no device"

    # -- audio thread

    def _on_block(self, block: np.ndarray) -> None:
        assert self.ring is not None
        self.ring.write(block)
        self._last_block = np.array(block, dtype=np.float32, copy=True)
        with self._cond:
            self._cond.notify_all()

    def _on_lost(self, reason: str) -> None:
        self._lost = reason
        with self._cond:
            self._cond.notify_all()

    # -- readers

    def check(self) -> None:
        """Raise :class:`DeviceLostError` if the device went away."""
        if self._lost is not None:
            raise DeviceLostError(self._lost)
        if self._stream is None:
            raise DeviceError("the recorder is not open")

    @property
    def total(self) -> int:
        return self.ring.total if self.ring else 0

    @property
    def level(self) -> Level:
        """The level of the newest block (about 20 ms): what a level meter shows."""
        return Level.of(self._last_block)

    def read(self, start: int, stop: int) -> np.ndarray:
        assert self.ring is not None, "open() the recorder first"
        return self.ring.read(start, stop)

    def last(self, seconds: float) -> np.ndarray:
        assert self.ring is not None, "open() the recorder first"
        return self.ring.last(int(seconds * self.samplerate))

    def wait_until(self, position: int, cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Block until ``position`` samples have arrived; False if cancelled. Raises if the device is lost/stalls."""
        last_total, last_change = self.total, time.monotonic()
        while self.total < position:
            self.check()
            if cancelled():
                return False
            with self._cond:
                self._cond.wait(timeout=0.05)
            if self.total != last_total:
                last_total, last_change = self.total, time.monotonic()
            elif time.monotonic() - last_change > self.stall_seconds:
                self._lost = f"{self.device_name} stopped delivering audio (unplugged?): reconnect it and try again"
                raise DeviceLostError(self._lost)
        return True

    def capture(self, seconds: float, on_progress: Callable[[float], None] | None = None,
                cancelled: Callable[[], bool] = lambda: False) -> np.ndarray | None:
        """Record ``seconds`` from now -> mono float32 [samples] at :attr:`samplerate`; None if cancelled."""
        if seconds <= 0:
            raise GuesserError(f"recording length must be positive, got {seconds:g} s")
        self.check()
        assert self.ring is not None
        n = int(round(seconds * self.samplerate))
        if n > self.ring.capacity:
            raise GuesserError(f"cannot record more than {self.buffer_seconds:g} s at once")
        cue = getattr(self._stream, "cue", None)
        start = cue(lambda: self.total) if cue else self.total
        step = max(1, self.samplerate // 10)
        pos = start
        while pos < start + n:
            pos = min(pos + step, start + n)
            if not self.wait_until(pos, cancelled):
                return None
            if on_progress is not None:
                on_progress((pos - start) / n)
        return self.read(start, start + n)


# ---------------------------------------------------------------- playback


class Player(Protocol):
    available: bool

    def play(self, samples: np.ndarray, samplerate: int) -> None: ...
    def stop(self) -> None: ...


class NullPlayer:
    """No output device: replay is offered only when :attr:`available`."""

    available = False

    def play(self, samples: np.ndarray, samplerate: int) -> None:
        raise DeviceError("no output device to replay on")

    def stop(self) -> None:
        pass


class FakePlayer:
    """Remembers what it was asked to play (tests)."""

    available = True

    def __init__(self) -> None:
        self.played: list[tuple[np.ndarray, int]] = []

    def play(self, samples: np.ndarray, samplerate: int) -> None:
        self.played.append((np.asarray(samples), samplerate))

    def stop(self) -> None:
        pass


class SoundDevicePlayer:
    """Blocking playback on the default output device (call it from a worker thread)."""

    def __init__(self) -> None:
        self.sd = _sounddevice()
        try:
            out = self.sd.query_devices(kind="output")
            self.available = bool(out and out["max_output_channels"] > 0)
        except (self.sd.PortAudioError, ValueError):
            self.available = False

    def play(self, samples: np.ndarray, samplerate: int) -> None:
        try:
            self.sd.play(np.asarray(samples, np.float32), samplerate)
            self.sd.wait()
        except self.sd.PortAudioError as e:
            raise map_portaudio_error(e, "the output device") from None

    def stop(self) -> None:
        try:
            self.sd.stop()
        except self.sd.PortAudioError:
            pass


def default_player() -> Player:
    """The real output device if there is one, else a :class:`NullPlayer`."""
    try:
        player = SoundDevicePlayer()
    except DeviceError:
        return NullPlayer()
    return player if player.available else NullPlayer()
