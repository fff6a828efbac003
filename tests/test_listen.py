"""guesser listen: one window or a sliding loop from the shared recorder; one-line errors, never a traceback."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from guesser.cli import app as cli
from guesser.recorder import ArrayBackend, NoInputDeviceError, SilentInputError
from guesser.listen import run_listen
from tuikit import FakeEnsemble, chirp_clip

SR = 22050


def test_once_json_is_one_object_for_the_recorded_window():
    out, err = io.StringIO(), io.StringIO()
    ens = FakeEnsemble(top=("Knock", "Tap"))
    clip = chirp_clip(1.5)
    code = run_listen(once=True, json_out=True, seconds=1.5, top_k=3, ensemble=ens,
                      backend=ArrayBackend(clip, SR, speed=20), out=out, err=err)
    assert code == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["device"] == "Test microphone" and (doc["start"], doc["end"]) == (0.0, 1.5)
    assert [d["label"] for d in doc["labels"]] == ["Knock", "Tap", "Accelerating_and_revving_and_vroom"]
    assert doc["families"][0]["family"] == "Human sounds" and doc["rms_dbfs"] > -30
    assert np.array_equal(ens.calls[0][0], clip)
    assert "listening for 1.5 s on Test microphone" in err.getvalue()


def test_once_table_for_people():
    out = io.StringIO()
    run_listen(once=True, seconds=1.0, top_k=2, ensemble=FakeEnsemble(), backend=ArrayBackend(chirp_clip(), SR, speed=20),
               out=out, err=io.StringIO())
    text = out.getvalue()
    assert "Clapping" in text and "Speech" in text and "Knock" not in text
    # the same table as guesser classify's (guesser.present.render_prediction)
    assert "families  Human sounds" in text and "cnn4: Clapping" in text and "agreement" in text


def test_once_on_silence_is_an_error_with_its_own_exit_code():
    with pytest.raises(SilentInputError) as info:
        run_listen(once=True, seconds=0.5, ensemble=FakeEnsemble(), backend=ArrayBackend(None, SR, speed=20),
                   out=io.StringIO(), err=io.StringIO())
    assert info.value.exit_code == 3


@pytest.mark.slow
def test_loop_classifies_sliding_windows_and_reports_silence():
    out = io.StringIO()
    clip = np.concatenate([chirp_clip(1.0), np.zeros(3 * SR, np.float32)])  # 1 s of sound in every 4 s
    code = run_listen(json_out=True, seconds=1.0, hop=1.0, ensemble=FakeEnsemble(), max_windows=4,
                      backend=ArrayBackend(clip, SR, speed=2, loop=True), out=out, err=io.StringIO())
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert code == 0 and len(docs) == 4
    assert all(d["end"] - d["start"] == 1.0 for d in docs)
    assert [d["start"] for d in docs] == sorted(d["start"] for d in docs)
    # 4 windows over 4 s of a 4 s cycle: the 1 s sound touches at most two of them
    assert sum("silent" in d for d in docs) >= 2 and sum("labels" in d for d in docs) >= 1


def test_bad_arguments_and_no_device_raise_one_line_errors():
    with pytest.raises(Exception, match="--seconds"):
        run_listen(once=True, seconds=0, ensemble=FakeEnsemble(), backend=ArrayBackend(chirp_clip(), SR))
    with pytest.raises(NoInputDeviceError):
        run_listen(once=True, seconds=1, ensemble=FakeEnsemble(), backend=ArrayBackend(devices=()))


def test_cli_without_input_device_prints_one_line_and_fails(monkeypatch):
    import guesser.recorder.backends as backends

    monkeypatch.setattr(backends, "SoundDeviceBackend", lambda: ArrayBackend(devices=()))
    result = CliRunner().invoke(cli, ["listen", "--once", "--json"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no input device found")
    assert "Traceback" not in result.output


def test_cli_with_real_random_weight_models(monkeypatch, light_model_index):
    import guesser.recorder.backends as backends

    monkeypatch.setattr(backends, "SoundDeviceBackend", lambda: ArrayBackend(chirp_clip(), SR, speed=20))
    result = CliRunner().invoke(cli, ["listen", "--once", "--json", "--seconds", "1", "-k", "3",
                                      "--models", str(light_model_index)])
    assert result.exit_code == 0, result.output
    doc = json.loads([line for line in result.output.splitlines() if line.startswith("{")][0])
    assert len(doc["labels"]) == 3 and doc["duration"] == 1.0
    assert [m["name"] for m in doc["models"]] == ["cnn3_random", "family_cnn_random"]
