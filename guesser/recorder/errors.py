"""What can go wrong with an audio device, as one-line errors that say what to do."""

from __future__ import annotations

from guesser.errors import DeviceError

NO_INPUT_HINT = "plug in a microphone or enable it in the system's sound settings (or choose one with --device)"


class NoInputDeviceError(DeviceError):
    """No microphone at all, or the one asked for does not exist."""


class PermissionDeniedError(DeviceError):
    """The device exists but may not be opened (OS privacy settings, group rights, in use)."""


class DeviceLostError(DeviceError):
    """The device stopped delivering audio while open (unplugged, suspended)."""


def lost_message(device: str) -> str:
    """What a user reads when ``device`` stops delivering audio (one wording for every way it is noticed)."""
    return f"{device} stopped delivering audio (unplugged?): reconnect it and try again"


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
        return DeviceLostError(lost_message(device))
    if "-9996" in low or "invalid device" in low or "no default input" in low or "-9998" in low:
        return NoInputDeviceError(f"{device}: no such input device; {NO_INPUT_HINT}")
    if "portaudio library not found" in low:
        return NoInputDeviceError("no audio system: the PortAudio library is missing (install libportaudio2)")
    return DeviceError(f"cannot open {device}: {text}")
