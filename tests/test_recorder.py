"""guesser.recorder: ring buffer, levels, device choice, capture through a fake stream, error mapping."""

from __future__ import annotations

import numpy as np
import pytest

from guesser.errors import DeviceError, GuesserError
from guesser.recorder import (ArrayBackend, DeviceLostError, Level, NoInputDeviceError, PermissionDeniedError,
                              Recorder, RingBuffer, SilentInputError, check_not_silent, map_portaudio_error,
                              resolve_device)

SR = 8000


def test_ring_buffer_keeps_the_newest_samples_by_absolute_position():
    ring = RingBuffer(10)
    ring.write(np.arange(7, dtype=np.float32))
    ring.write(np.arange(7, 13, dtype=np.float32))  # wraps around
    assert ring.total == 13
    assert ring.read(5, 13).tolist() == list(range(5, 13))
    assert ring.read(0, 13).tolist() == list(range(3, 13))  # the overwritten part is clipped away
    assert ring.last(4).tolist() == [9, 10, 11, 12]
    ring.write(np.arange(100, 125, dtype=np.float32))  # longer than the buffer
    assert ring.read(0, ring.total).tolist() == list(range(115, 125))


def test_level_in_dbfs():
    assert Level.of(np.ones(100)).rms_db == pytest.approx(0.0)
    sine = 0.5 * np.sin(np.linspace(0, 200 * np.pi, 8000))
    lv = Level.of(sine)
    assert lv.peak_db == pytest.approx(-6.02, abs=0.05) and lv.rms_db == pytest.approx(-9.03, abs=0.05)
    assert Level.of(np.zeros(10)).rms_db == -120.0 and Level.of(np.zeros(10)).silent
    assert Level.of(np.full(10, 10 ** (-61 / 20))).silent and not Level.of(np.full(10, 10 ** (-59 / 20))).silent
    with pytest.raises(SilentInputError, match="heard nothing"):
        check_not_silent(np.full(100, 1e-4))


def test_resolve_device_by_default_index_or_name():
    backend = ArrayBackend(devices=("Built-in Microphone", "USB Audio CODEC", "USB Headset"))
    assert resolve_device(backend, None).name == "Built-in Microphone"
    assert resolve_device(backend, "1").name == "USB Audio CODEC"
    assert resolve_device(backend, 2).name == "USB Headset"
    assert resolve_device(backend, "built-in").name == "Built-in Microphone"
    assert resolve_device(backend, "usb headset").name == "USB Headset"
    with pytest.raises(DeviceError, match="ambiguous"):
        resolve_device(backend, "usb")
    with pytest.raises(NoInputDeviceError, match="no input device matches 'webcam'"):
        resolve_device(backend, "webcam")
    with pytest.raises(NoInputDeviceError, match="index 7"):
        resolve_device(backend, "7")
    with pytest.raises(NoInputDeviceError, match="no input device found"):
        resolve_device(ArrayBackend(devices=()), None)


def test_capture_returns_exactly_the_clip_from_its_first_sample():
    clip = np.linspace(-0.5, 0.5, SR, dtype=np.float32)  # 1 s ramp: any offset would show
    with Recorder(ArrayBackend(clip, SR, speed=50, idle=0.01), samplerate=SR) as rec:
        first = rec.capture(1.0)
        second = rec.capture(0.5)  # each capture cues the clip again
    assert np.array_equal(first, clip)
    assert np.array_equal(second, clip[: SR // 2])


def test_capture_reports_progress_and_can_be_cancelled():
    seen: list[float] = []
    with Recorder(ArrayBackend(np.ones(SR, np.float32) * 0.1, SR, speed=50), samplerate=SR) as rec:
        rec.capture(0.5, seen.append)
        assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) >= 5
        assert rec.capture(0.5, cancelled=lambda: True) is None


def test_capture_resamples_a_clip_to_the_device_rate():
    clip = np.sin(np.arange(SR) * 2 * np.pi * 440 / SR).astype(np.float32)
    with Recorder(ArrayBackend(clip, SR, speed=50), samplerate=16000) as rec:
        out = rec.capture(1.0)
    assert out.shape == (16000,) and Level.of(out).rms_db == pytest.approx(Level.of(clip).rms_db, abs=0.2)


def test_device_lost_mid_recording():
    with Recorder(ArrayBackend(np.ones(SR, np.float32), SR, speed=50, lose_after=0.2), samplerate=SR) as rec:
        with pytest.raises(DeviceLostError, match="stopped delivering audio"):
            rec.capture(1.0)
        with pytest.raises(DeviceLostError):
            rec.check()


def test_a_stalled_device_counts_as_lost():
    class Stalling(ArrayBackend):  # opens fine, then never delivers a block
        def open_input(self, device, samplerate, block, on_block, on_lost):
            class Quiet:
                def start(self): ...
                def stop(self): ...
                def close(self): ...
                def cue(self, position): return position()
            return Quiet()

    with Recorder(Stalling(), samplerate=SR, stall_seconds=0.2) as rec:
        with pytest.raises(DeviceLostError):
            rec.capture(1.0)


def test_open_errors_and_bad_lengths_are_one_line_errors():
    with pytest.raises(PermissionDeniedError):
        Recorder(ArrayBackend(open_error=PermissionDeniedError("permission denied for mic"))).open()
    with Recorder(ArrayBackend(np.ones(10, np.float32), SR, speed=50), samplerate=SR, buffer_seconds=2) as rec:
        with pytest.raises(GuesserError, match="positive"):
            rec.capture(0)
        with pytest.raises(GuesserError, match="at once"):
            rec.capture(5)


def test_looping_source_feeds_sliding_windows():
    clip = (np.arange(100, dtype=np.float32) + 1) / 1000
    with Recorder(ArrayBackend(clip, SR, speed=50, loop=True), samplerate=SR) as rec:
        rec.wait_until(rec.total + SR)
        window = rec.last(0.05)
    assert window.size == 400 and set(np.round(window * 1000).astype(int)) == set(range(1, 101))


@pytest.mark.parametrize("message, kind", [
    ("Error opening InputStream: Device unavailable [PaErrorCode -9985]", PermissionDeniedError),
    ("Error opening InputStream: Unanticipated host error [PaErrorCode -9999]: 'Permission denied' [ALSA error -13]",
     PermissionDeniedError),
    ("Error querying device -1", DeviceError),
    ("Error opening InputStream: Invalid device [PaErrorCode -9996]", NoInputDeviceError),
    ("PortAudio library not found", NoInputDeviceError),
])
def test_portaudio_errors_map_to_actionable_kinds(message, kind):
    err = map_portaudio_error(RuntimeError(message), "USB mic")
    assert type(err) is kind and "\n" not in str(err)
    assert isinstance(map_portaudio_error(RuntimeError("Stream is stopped"), "USB mic", opening=False), DeviceLostError)
    assert isinstance(map_portaudio_error(PermissionError(13, "denied")), PermissionDeniedError)


def test_sounddevice_backend_lists_devices_or_fails_with_one_line():
    """The real backend, where PortAudio is installed: listing devices never raises anything but DeviceError."""
    from guesser.recorder import SoundDeviceBackend

    try:
        devices = SoundDeviceBackend().input_devices()
    except DeviceError as e:
        assert "\n" not in str(e)
        return
    assert all(d.input_channels > 0 and d.name for d in devices)
