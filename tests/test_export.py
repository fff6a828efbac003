"""``guesser export``: a models index -> fp16 copies that predict what the originals predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from guesser.checkpoint import load_checkpoint
from guesser.cli import app
from guesser.ensemble import Ensemble


@pytest.mark.slow
def test_export_halves_weights_keeps_metadata_and_predictions(light_model_index, tmp_path):
    from typer.testing import CliRunner

    out = tmp_path / "shipped"
    res = CliRunner().invoke(app, ["export", str(light_model_index), "--out", str(out)])
    assert res.exit_code == 0, res.output
    index = json.loads((out / "index.json").read_text())
    src = json.loads(light_model_index.read_text())
    assert [e["member"] for e in index["models"]] == [e["member"] for e in src["models"]]
    for entry, old in zip(index["models"], src["models"]):
        new_t, new_m = load_checkpoint(out / entry["path"])
        old_t, old_m = load_checkpoint(light_model_index.parent / old["path"])
        assert new_t.keys() == old_t.keys()
        for k, v in new_t.items():
            assert v.dtype == (torch.float16 if old_t[k].is_floating_point() else old_t[k].dtype)
            assert torch.allclose(v.float(), old_t[k].float(), rtol=1e-3, atol=1e-4)
        assert new_m["features"] == old_m["features"] and new_m["classes"] == old_m["classes"]
        assert new_m["weights_dtype"] == "float16"
        assert (out / entry["path"]).stat().st_size < 0.6 * (light_model_index.parent / old["path"]).stat().st_size

    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(22050 * 3)).astype(np.float32)
    a = Ensemble.load([light_model_index], precision="fp32").predict(wav, 22050)
    b = Ensemble.load([out / "index.json"], precision="fp32").predict(wav, 22050)
    pa = {s.name: s.score for s in a.labels}
    pb = {s.name: s.score for s in b.labels}
    assert max(abs(pa[k] - pb[k]) for k in pa) < 5e-3
    assert [s.name for s in a.families] == [s.name for s in b.families]


def test_export_removes_the_members_the_new_ensemble_dropped_and_nothing_else(light_model_index, tmp_path):
    from typer.testing import CliRunner

    out = tmp_path / "shipped"
    assert CliRunner().invoke(app, ["export", str(light_model_index), "--out", str(out)]).exit_code == 0
    (out / "notes.txt").write_text("mine")
    (out / "background.safetensors").write_bytes(b"kept")
    both = json.loads(light_model_index.read_text())
    dropped = [e for e in both["models"] if e["member"] == "cnn3"]
    assert dropped and (out / "cnn3.safetensors").is_file()
    one = dict(both, models=[dict(e, path=str(light_model_index.parent / e["path"]))
                             for e in both["models"] if e["member"] != "cnn3"])
    smaller = tmp_path / "smaller.json"  # beside nothing: the shared fixture's folder stays as it was
    smaller.write_text(json.dumps(one))
    res = CliRunner().invoke(app, ["export", str(smaller), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert [e["path"] for e in json.loads((out / "index.json").read_text())["models"]] == ["family_cnn.safetensors"]
    assert not (out / "cnn3.safetensors").exists() and (out / "family_cnn.safetensors").is_file()
    assert (out / "notes.txt").read_text() == "mine" and (out / "background.safetensors").read_bytes() == b"kept"
    Ensemble.load([out / "index.json"])  # what is left loads


def test_export_of_a_missing_index_is_one_line(tmp_path):
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, ["export", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "error:" in res.output and "Traceback" not in res.output
