"""Checkpoints: atomic writes, no pickle, clear errors, and the optimizer-state round trip."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import pytest
import torch

from guesser.checkpoint import (FORMAT, FORMAT_VERSION, atomic_write_text, flatten, load_checkpoint, read_meta, save_checkpoint,
                                unflatten)
from guesser.ensemble import load_model
from guesser.errors import CheckpointError


def header(path: Path) -> dict:
    """The safetensors JSON header, read by hand: 8-byte little-endian length, then JSON."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n])


def test_save_then_load_round_trip_and_format(tmp_path):
    path = tmp_path / "ck.safetensors"
    tensors = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int64)}
    save_checkpoint(path, tensors, {"kind": "model", "note": "ünïcode"})
    got, meta = load_checkpoint(path)
    assert set(got) == {"a", "b"} and torch.equal(got["a"], tensors["a"]) and torch.equal(got["b"], tensors["b"])
    assert meta["format"] == FORMAT and meta["format_version"] == FORMAT_VERSION and meta["note"] == "ünïcode"
    h = header(path)  # a plain safetensors file: JSON header with our metadata as one string
    assert json.loads(h["__metadata__"]["guesser"])["kind"] == "model"
    half, _ = load_checkpoint(path, dtype=torch.float16)
    assert half["a"].dtype == torch.float16 and half["b"].dtype == torch.int64  # integers are never cast


def test_a_failing_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "best.safetensors"
    save_checkpoint(path, {"w": torch.ones(3)}, {"kind": "model", "version": "old"})
    before = path.read_bytes()

    import safetensors.torch

    def torn_write(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")  # the disk fills up halfway through
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", torn_write)
    from guesser.errors import DiskFullError

    with pytest.raises(DiskFullError, match=r"disk full while writing .*best\.safetensors.*previous version"):
        save_checkpoint(path, {"w": torch.zeros(3)}, {"kind": "model", "version": "new"})
    assert path.read_bytes() == before
    assert read_meta(path)["version"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors"]  # no temp file left behind


def test_loading_never_unpickles(tmp_path, monkeypatch, make_model_checkpoint):
    ck = make_model_checkpoint("cnn3")

    def forbidden(*a, **k):
        raise AssertionError("pickle used while loading a checkpoint")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    model = load_model(ck)
    assert model.task == "labels" and len(model.classes) == 200
    assert b"\x80\x04\x95" not in ck.read_bytes()[:64]  # not a pickle protocol-4 stream


@pytest.mark.parametrize("case", ["random_bytes", "text", "empty", "plain_safetensors", "other_format", "newer",
                                  "bad_json", "folder"])
def test_not_a_checkpoint_is_one_clear_line(tmp_path, case):
    from safetensors.torch import save_file

    path = tmp_path / "x.safetensors"
    expect = "not a guesser checkpoint"
    if case == "random_bytes":
        path.write_bytes(os.urandom(256))
    elif case == "text":
        path.write_text("hello, I am a text file\n")
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "plain_safetensors":
        save_file({"w": torch.zeros(2)}, str(path))
    elif case == "other_format":
        save_file({"w": torch.zeros(2)}, str(path), metadata={"guesser": json.dumps({"format": "something-else"})})
    elif case == "newer":
        save_file({"w": torch.zeros(2)}, str(path),
                  metadata={"guesser": json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION + 1})})
        expect = "newer guesser"
    elif case == "bad_json":
        save_file({"w": torch.zeros(2)}, str(path), metadata={"guesser": "{not json"})
        expect = "corrupt guesser metadata"
    else:
        path = tmp_path / "a_folder"
        path.mkdir()
        expect = "no such checkpoint"
    for load in (read_meta, load_checkpoint, load_model):
        with pytest.raises(CheckpointError) as e:
            load(path)
        msg = str(e.value)
        assert expect in msg and str(path) in msg and "\n" not in msg


def test_metadata_that_disagrees_with_the_weights(tmp_path, make_model_checkpoint):
    ck = make_model_checkpoint("cnn4")
    tensors, meta = load_checkpoint(ck)

    def variant(name: str, **changes) -> Path:
        p = tmp_path / f"{name}.safetensors"
        m = {k: v for k, v in {**meta, **changes}.items() if v is not None}
        save_checkpoint(p, tensors, {k: v for k, v in m.items() if k not in ("format", "format_version")})
        return p

    cases = {
        "weights do not match": variant("arch", arch="cnn3"),  # cnn4 weights, cnn3 header
        "weights do not match ": variant("classes", classes=meta["classes"][:150]),  # 200 outputs, 150 names
        "not a model": variant("state", kind="train-state"),
        "lacks normalisation statistics": variant("nostats", features={**meta["features"], "mean": None, "std": None}),
        "unknown feature settings": variant("features", features={**meta["features"], "warp": 2}),
        "does not describe a guesser model": variant("arch_unknown", arch="resnet9000"),
        "unknown task": variant("task", task="regression"),
    }
    for expect, path in cases.items():
        with pytest.raises(CheckpointError) as e:
            load_model(path)
        assert expect.strip() in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)
    assert load_model(ck).classes == tuple(meta["classes"])  # the untouched original loads


def test_ensemble_rejects_label_models_with_another_vocabulary(tmp_path, make_model_checkpoint):
    from guesser.ensemble import Ensemble

    ck = make_model_checkpoint("cnn3")
    tensors, meta = load_checkpoint(ck)
    shuffled = tmp_path / "shuffled.safetensors"
    classes = list(reversed(meta["classes"]))  # same names, other order: every output would be mislabelled
    save_checkpoint(shuffled, tensors, {**{k: v for k, v in meta.items() if not k.startswith("format")},
                                        "classes": classes})
    with pytest.raises(CheckpointError, match="vocabulary"):
        Ensemble.load([shuffled])


def test_flatten_unflatten_round_trips_an_optimizer_state(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.01)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 4)).square().mean().backward()
        opt.step()
    state = opt.state_dict()
    skeleton, tensors = flatten({"optimizer": state, "extra": [1, 2.5, None, "x", (True, False)]})
    json.dumps(skeleton)  # the skeleton is plain JSON
    path = tmp_path / "state.safetensors"
    save_checkpoint(path, tensors, {"kind": "train-state", "skeleton": skeleton})
    loaded, meta = load_checkpoint(path)
    back = unflatten(meta["skeleton"], loaded)
    assert back["extra"] == [1, 2.5, None, "x", (True, False)]
    restored = back["optimizer"]
    assert restored["param_groups"] == state["param_groups"]
    assert isinstance(restored["param_groups"][0]["betas"], tuple)  # tuples stay tuples
    assert set(restored["state"]) == set(state["state"])  # integer keys survive
    for k, s in state["state"].items():
        for name, v in s.items():
            r = restored["state"][k][name]
            assert torch.equal(r, v) if torch.is_tensor(v) else r == v
    # and the restored state drives a fresh optimizer exactly like the original
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(restored)
    assert opt2.state_dict()["param_groups"] == state["param_groups"]


def test_flatten_refuses_what_json_cannot_hold():
    with pytest.raises(TypeError, match="set"):
        flatten({"a": {1, 2}})



def test_written_files_get_the_modes_of_the_umask_not_mkstemps_0600(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.json", "{}")
        assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


# ---------------------------------------------------------------- typed contracts: checked on read, one line


def _header_file(path: Path, header) -> Path:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(path), metadata={"guesser": json.dumps(header)})
    return path


@pytest.mark.parametrize("change, expect", [
    (lambda m: ["a", "list"], "not a guesser checkpoint"),
    (lambda m: {**m, "format_version": "abc"}, "format_version 'abc'"),
    (lambda m: {**m, "format_version": True}, "format_version True"),
    (lambda m: {**m, "member": {}}, "member must be a non-empty string, got dict"),
    (lambda m: {**m, "name": 7}, "name must be a non-empty string, got 7"),
    (lambda m: {**m, "classes": "Bark"}, "classes must be a list of strings"),
    (lambda m: {**m, "classes": [1, 2]}, "classes must be a list of strings"),
    (lambda m: {**m, "features": [1]}, "features must be a JSON object, got list"),
    (lambda m: {**m, "params": 1.5}, "params must be an integer, got 1.5"),
    (lambda m: {**m, "trained_seconds": float("inf")}, "trained_seconds must be a finite number, got inf"),
    (lambda m: {**m, "metrics": {"val_map": "high"}}, "metrics.val_map must be a finite number"),
    (lambda m: {**m, "families_set": "7"}, "families_set must be one of 6, 5"),
    (lambda m: {k: v for k, v in m.items() if k != "arch"}, "arch is missing"),
])
def test_a_bad_header_field_is_one_line_naming_it(tmp_path, make_model_checkpoint, change, expect):
    from guesser.checkpoint import read_model_meta

    meta = read_meta(make_model_checkpoint("cnn3"))
    path = _header_file(tmp_path / "bad.safetensors", change(meta))
    for read in (read_model_meta, load_model):
        with pytest.raises(CheckpointError) as e:
            read(path)
        msg = str(e.value)
        assert expect in msg and str(path) in msg and "\n" not in msg


def test_model_meta_round_trips_and_keeps_unknown_fields(tmp_path, make_model_checkpoint):
    from dataclasses import replace

    from guesser.checkpoint import ModelMeta, load_model_checkpoint, read_model_meta, save_model_checkpoint

    tensors, meta = load_model_checkpoint(make_model_checkpoint("family_cnn", "families"))
    assert isinstance(meta, ModelMeta) and meta.task == "families" and meta.families_set == "6"
    assert meta.score_name == "val_family_map" and meta.val_score == 0.0 and meta.random_weights
    later = replace(meta, extra={"added_by_a_later_guesser": [1, 2]})
    save_model_checkpoint(tmp_path / "m.safetensors", tensors, later)
    again = read_model_meta(tmp_path / "m.safetensors")
    assert again == later and read_meta(tmp_path / "m.safetensors")["added_by_a_later_guesser"] == [1, 2]


@pytest.mark.parametrize("text, expect", [
    ("[" * 200_000, "not a guesser models index (not JSON)"),
    ('{"models": {"path": "a"}}', "no list of models"),
    ("[]", "no list of models"),
    ('{"version": "1", "models": []}', "version must be an integer"),
    ('{"version": 9, "models": []}', "newer guesser"),
    ('{"models": [["a.safetensors"]]}', "model 1: a models index entry must be a JSON object, got list"),
    ('{"models": [{"path": 3}]}', "model 1: path must be a non-empty string, got 3"),
    ('{"models": [{"name": "x"}]}', "model 1: path is missing"),
    ('{"models": [{"path": "a", "family_weight": NaN}]}', "family_weight must be a finite number, got nan"),
    ('{"models": [{"path": "a", "family_weight": Infinity}]}', "family_weight must be a finite number, got inf"),
    ('{"models": [{"path": "a", "family_weight": -1}]}', "family_weight must be a finite number >= 0"),
    ('{"models": [{"path": "a", "family_weight": "1"}]}', "family_weight must be a finite number"),
    ('{"models": [{"path": "a", "task": "regression"}]}', "task must be one of labels, families"),
    ('{"models": [{"path": "a", "val_score": [0.5]}]}', "val_score must be a finite number, got list"),
])
def test_a_bad_models_index_is_one_line(tmp_path, text, expect):
    from guesser.checkpoint import ModelsIndex

    path = tmp_path / "index.json"
    path.write_text(text)
    with pytest.raises(CheckpointError) as e:
        ModelsIndex.read(path)
    msg = str(e.value)
    assert expect in msg and str(path) in msg and "\n" not in msg


def test_a_deeply_nested_checkpoint_header_is_one_line(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "deep.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"guesser": "[" * 200_000})
    with pytest.raises(CheckpointError, match="corrupt guesser metadata"):
        read_meta(path)


def test_the_models_index_round_trips(tmp_path):
    from guesser.checkpoint import IndexEntry, ModelsIndex

    index = ModelsIndex((IndexEntry("a/best.safetensors", "cnn4", "a", "labels", "val_map", 0.5),
                         IndexEntry("b.safetensors", family_weight=0.25, eval={"split": "eval", "map": 0.4})))
    path = index.write(tmp_path / "index.json")
    assert ModelsIndex.read(path) == index
    assert index.checkpoints(tmp_path) == [((tmp_path / "a/best.safetensors").resolve(), 1.0),
                                           ((tmp_path / "b.safetensors").resolve(), 0.25)]
    moved = index.with_weights(tmp_path, {(tmp_path / "a/best.safetensors").resolve(): 2.0})
    assert [e.family_weight for e in moved.models] == [2.0, 0.25]
