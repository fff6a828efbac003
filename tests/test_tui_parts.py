"""The app's pure parts: live spectrogram columns, the colour picture, score bars, problems, saving."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import soundfile as sf

from guesser.errors import CheckpointError, GuesserError
from guesser.recorder import DeviceLostError, Level, NoInputDeviceError, PermissionDeniedError, SilentInputError
from guesser.recordings import save_recording
from guesser.tui.problems import LOST, NO_DEVICE, NO_MODELS, OTHER, PERMISSION, SILENT, problem_for
from guesser.tui.spectrum import DISPLAY_MELS, SpectrumTracker, display_config, spectrogram
from guesser.tui.widgets.ranking import score_bar
from guesser.tui.widgets.spectrogram import LEVELS, colormap, quantise
from tuikit import FakeEnsemble, chirp_clip


def test_live_columns_equal_the_whole_recordings_spectrogram():
    """Fed in uneven chunks, the tracker yields the same frames as log-mel of the whole stream."""
    sr = 22050
    x = chirp_clip(3.0, sr)
    whole = spectrogram(x, sr)
    tracker = SpectrumTracker(sr, 0)
    parts = [tracker.columns(lambda a, b: x[a:b], total) for total in range(0, x.size + 1, 997)]
    live = np.concatenate(parts, axis=1)
    first = tracker.context
    assert live.shape[0] == DISPLAY_MELS and live.shape[1] >= whole.shape[1] - 2 * first - 1
    assert np.abs(whole[:, first : first + live.shape[1]] - live).max() < 0.05  # float16 rounding only


def test_display_config_follows_the_device_rate():
    assert display_config(48000).sample_rate == 48000 and display_config(48000).n_fft == 2048
    assert display_config(16000).f_max == 8000 and display_config(16000).hop_length == 800


def test_quantised_picture_puts_low_frequencies_at_the_bottom():
    cols = np.full((DISPLAY_MELS, 5), -100.0, np.float32)
    cols[0, :] = 0.0  # energy in the lowest band only
    img = quantise(cols, height_px=8, width=10, fit=False)
    assert img.shape == (8, 10)
    assert (img[-1, 5:] == LEVELS - 1).all() and (img[:-1] == 0).all()
    assert (img[:, :5] == 0).all()  # not yet heard = silence, right-aligned live view
    fitted = quantise(cols, height_px=8, width=10, fit=True)
    assert (fitted[-1] == LEVELS - 1).all()  # stretched over the whole width
    assert len(colormap()) == LEVELS and colormap()[0].triplet < colormap()[-1].triplet


def test_score_bar_is_proportional_with_eighth_cells():
    assert score_bar(1.0, 10) == "█" * 10
    assert score_bar(0.0, 10) == " " * 10
    assert score_bar(0.55, 10) == "█████▌    "  # 44 eighths: 5 cells + 4/8
    assert score_bar(2.0, 4) == "████" and len(score_bar(0.33, 7)) == 7


def test_problems_name_the_failure_and_what_to_do():
    cases = {
        NoInputDeviceError("no input device found"): (NO_DEVICE, "--file"),
        PermissionDeniedError("permission denied"): (PERMISSION, "Privacy"),
        DeviceLostError("gone"): (LOST, "Reconnect"),
        SilentInputError(Level(-80.0, -70.0)): (SILENT, "Unmute"),
        CheckpointError("assets/models/index.json: no models found there"): (NO_MODELS, "guesser train multi"),
        GuesserError("odd"): (OTHER, "escape"),
    }
    for error, (kind, advice) in cases.items():
        p = problem_for(error)
        assert p.kind == kind and advice in p.advice and p.message == str(error)


def test_saved_recording_is_a_wav_with_its_predictions(tmp_path):
    x = chirp_clip(1.0)
    pred = FakeEnsemble().predict(x, 22050)
    when = datetime(2026, 1, 2, 3, 4, 5)
    wav, js = save_recording(tmp_path / "new", x, 22050, pred, target="Clapping", when=when)
    assert wav.name == "20260102-030405-clapping.wav" and js == wav.with_suffix(".json")
    data, sr = sf.read(wav, dtype="float32")
    assert sr == 22050 and np.abs(data - x).max() < 1e-4
    doc = json.loads(js.read_text())
    assert doc["file"] == wav.name and doc["target"] == "Clapping" and doc["recorded_at"] == "2026-01-02T03:04:05"
    assert len(doc["labels"]) == 200 and doc["labels"][0] == {"label": "Clapping", "score": 0.9}
    again, _ = save_recording(tmp_path / "new", x, 22050, pred, target="Clapping", when=when)
    assert again.name == "20260102-030405-clapping-1.wav"  # never overwrites


def test_saving_into_an_unwritable_place_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    try:
        save_recording(blocker / "sub", chirp_clip(0.1), 22050, None)
    except GuesserError as e:
        assert "cannot save into" in str(e) and "\n" not in str(e)
    else:
        raise AssertionError("saving under a file should fail")
