"""Sound events in files (guesser.sed, ``guesser classify --events``): schema, streaming, CLI, a real scene.

Random-weight models (conftest) check structure and that a streamed file gets
the events of the whole waveform; the shipped models (assets/models) check that
a real sound placed at a known time in a quiet scene is heard there.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from guesser.events import EventRules, label_families
from guesser.labels import FAMILIES_6, default_label_space
from guesser.sed import EventSettings
from test_classify import classify, guesser_command, invoke, tones, write

VOCAB = default_label_space().vocabulary.names
FAMILY_OF = dict(zip(VOCAB, label_families()))
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def check_events(events: list, duration: float) -> None:
    """The documented event schema: label, family, start, end, score; ordered by start; inside the file."""
    assert isinstance(events, list)
    for e in events:
        assert set(e) == {"label", "family", "start", "end", "score"}
        assert e["label"] in VOCAB and e["family"] == FAMILY_OF[e["label"]] and e["family"] in FAMILIES_6
        assert all(isinstance(e[k], float) for k in ("start", "end", "score"))
        assert 0.0 <= e["start"] < e["end"] <= duration + 1e-6
        assert 0.0 <= e["score"] <= 1.0
    assert [e["start"] for e in events] == sorted(e["start"] for e in events)


def scene(sr: int, parts) -> np.ndarray:
    """Quiet noise (-60 dBFS) with sounds at given times: parts = [(start s, samples)], total = last end + 1 s."""
    end = max(at + len(x) / sr for at, x in parts) + 1.0
    out = (np.random.default_rng(0).standard_normal(int(end * sr)) * 1e-3).astype(np.float32)
    for at, x in parts:
        i = int(at * sr)
        out[i : i + len(x)] += x
    return out


def test_json_events_schema_always_present_with_events_only(tmp_path, light_ensemble):
    sr = 22050
    f = write(tmp_path / "tone.wav", scene(sr, [(1.0, tones(sr, 2))]), sr)
    rc, objs, _, _ = classify([f], light_ensemble, json_out=True, top_k=3)
    assert rc == 0 and "events" not in objs[0]
    # random models score around 0.5 everywhere: loose rules give events, strict ones give []
    loose = EventSettings(rules=EventRules(on=0.05, off=0.01, min_duration=0.0, min_gap=0.0))
    rc, objs, _, _ = classify([f], light_ensemble, json_out=True, top_k=3, events=loose)
    assert rc == 0 and len(objs[0]["events"]) > 0
    check_events(objs[0]["events"], objs[0]["duration"])
    strict = EventSettings(rules=EventRules(on=1.0, off=0.999))
    rc, objs, _, _ = classify([f], light_ensemble, json_out=True, events=strict)
    assert rc == 0 and objs[0]["events"] == []
    rc, _, _, text = classify([f], light_ensemble, events=strict)
    assert rc == 0 and "nothing heard" in text
    rc, _, _, text = classify([f], light_ensemble, events=loose)
    assert rc == 0 and "events" in text and " s " in text


def test_streamed_file_gets_the_events_of_the_whole_waveform(tmp_path, light_ensemble):
    """Past the in-memory limit the sub-windows are scored block by block (bounded memory): same events."""
    from guesser.audio import load_audio, open_audio
    from guesser.stream import predict_source

    sr = 44100
    x = scene(sr, [(2.0, tones(sr, 3)), (9.0, tones(sr, 2, freqs=(300.0, 2000.0))), (14.0, tones(sr, 4))])
    p = tmp_path / "long.wav"
    sf.write(str(p), x, sr, subtype="FLOAT")
    settings = EventSettings(window=1.0, hop=0.5, rules=EventRules(on=0.3, off=0.2, min_duration=0.0, min_gap=0.3))
    a = load_audio(p)
    whole = light_ensemble.predict(a.samples, a.sample_rate, events=settings)
    with open_audio(p) as src:
        streamed = predict_source(light_ensemble, src, in_memory_seconds=12, events=settings)
    assert len(whole.events) > 2
    assert [(e.label, e.start, e.end) for e in streamed.events] == [(e.label, e.start, e.end) for e in whole.events]
    assert max(abs(a.score - b.score) for a, b in zip(whole.events, streamed.events)) < 1e-5


def cli_events(tmp_path, light_model_index) -> tuple[Path, dict]:
    sr = 22050
    f = write(tmp_path / "tone.wav", scene(sr, [(0.5, tones(sr, 2))]), sr)
    res = invoke(["classify", str(f), "--json", "--events", "--models", str(light_model_index)])
    assert res.exit_code == 0, res.output
    (obj,) = [json.loads(line) for line in res.stdout.splitlines()]
    check_events(obj["events"], obj["duration"])
    return f, obj


def test_cli_runner_events(tmp_path, light_model_index):
    cli_events(tmp_path, light_model_index)
    res = invoke(["classify", str(tmp_path / "tone.wav"), "--events", "--models", str(light_model_index)])
    assert res.exit_code == 0 and ("events" in res.stdout or "nothing heard" in res.stdout)


@pytest.mark.slow
def test_subprocess_events_equal_the_in_process_ones(tmp_path, light_model_index):
    f, obj = cli_events(tmp_path, light_model_index)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([*guesser_command(), "classify", str(f), "--events", "--json", "--models",
                          str(light_model_index)], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    (sub,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert sub["events"] == obj["events"]


def test_shipped_models_hear_a_dog_where_it_barks(tmp_path):
    """The demo bark, 2.5 s into a quiet scene and again at 10 s: Animal events starting near both onsets."""
    from guesser.audio import load_audio
    from guesser.ensemble import Ensemble

    bark = load_audio(REPO / "assets" / "demo" / "dog_bark.ogg")
    sr, x = bark.sample_rate, bark.samples.mean(axis=0)
    f = write(tmp_path / "scene.wav", scene(sr, [(2.5, x), (10.0, x)]), sr)
    rc, objs, _, _ = classify([f], Ensemble.load(), json_out=True, events=True)
    assert rc == 0
    events = objs[0]["events"]
    check_events(events, objs[0]["duration"])
    dogs = [e for e in events if e["label"] == "Dog"]
    assert dogs and all(e["family"] == "Animal" for e in dogs)
    for onset in (2.5, 10.0):  # the first bark of the clip is at its start
        assert any(abs(e["start"] - onset) <= 0.5 for e in dogs), (onset, dogs)
    # the second bark ends at 15 s: a 1 s sub-window centred up to 0.5 s later still holds its tail,
    # and an event ends at the first row below the threshold, one 0.25 s hop on
    assert all(2.0 <= e["start"] and e["end"] <= 15.0 + 0.5 + 0.25 for e in dogs)
