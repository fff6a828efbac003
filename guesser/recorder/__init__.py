"""The microphone behind one small interface, shared by ``guesser play`` and ``guesser listen``.

Why a layer over sounddevice: PortAudio delivers blocks on its own thread and
fails in many platform-specific ways. Everything above this package sees only:

* :class:`Recorder` (:mod:`.recorder`): opens an input device, keeps the last
  minute in a :class:`RingBuffer` (:mod:`.ring`), so a level meter, a live
  spectrogram and the sliding "listen" windows (:meth:`Recorder.windows`) all
  read the same stream; :meth:`Recorder.capture` records N seconds from *now*;
* :class:`Level` (:mod:`.level`): RMS and peak in dBFS of a block, and whether
  it is silence (:class:`SilentInputError`);
* :class:`DeviceError` subclasses with one-line messages that say what to do
  (:mod:`.errors`): :class:`NoInputDeviceError`, :class:`PermissionDeniedError`,
  :class:`DeviceLostError` (a device that stops delivering mid-recording);
* backends (:mod:`.backends`): :class:`SoundDeviceBackend`, the real one, and
  :class:`ArrayBackend`, a numpy array heard as if by a microphone (``guesser
  play --file``, and the tests);
* playback (:mod:`.playback`), the app's "replay": :class:`SoundDevicePlayer`,
  or :class:`NullPlayer` where there is no output device.
"""

from guesser.errors import DeviceError
from guesser.recorder.backends import (ArrayBackend, AudioBackend, BlockCallback, DeviceInfo, InputStream,
                                       LostCallback, SoundDeviceBackend, resolve_device)
from guesser.recorder.errors import (NO_INPUT_HINT, DeviceLostError, NoInputDeviceError, PermissionDeniedError,
                                     lost_message, map_portaudio_error)
from guesser.recorder.level import DB_FLOOR, SILENCE_DBFS, Level, SilentInputError, check_not_silent, dbfs
from guesser.recorder.playback import NullPlayer, Player, SoundDevicePlayer, default_player
from guesser.recorder.recorder import (BLOCK_SECONDS, BUFFER_SECONDS, LIVE_HOP_SECONDS, LIVE_WINDOW_SECONDS,
                                       STALL_SECONDS, Heard, Recorder)
from guesser.recorder.ring import RingBuffer

__all__ = [
    "ArrayBackend", "AudioBackend", "BLOCK_SECONDS", "BUFFER_SECONDS", "BlockCallback", "DB_FLOOR", "DeviceError",
    "DeviceInfo", "DeviceLostError", "Heard", "InputStream", "LIVE_HOP_SECONDS", "LIVE_WINDOW_SECONDS", "Level",
    "LostCallback", "NO_INPUT_HINT",
    "NoInputDeviceError", "NullPlayer", "PermissionDeniedError", "Player", "Recorder", "RingBuffer",
    "SILENCE_DBFS", "STALL_SECONDS", "SilentInputError", "SoundDeviceBackend", "SoundDevicePlayer",
    "check_not_silent", "dbfs", "default_player", "lost_message", "map_portaudio_error", "resolve_device",
]
