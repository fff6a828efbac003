"""Fuzzing the loaders with Hypothesis: only the documented errors may escape.

Every loader a user's file reaches is fed random bytes and random mutations
(bytes replaced, a cut, bytes inserted, a slice removed or repeated) of a valid
file of its kind: WAV and OGG through :func:`guesser.audio.load_audio` (both
decoders: libsndfile, then FFmpeg), a checkpoint through
:func:`guesser.ensemble.load_model`, a models index through
:func:`guesser.ensemble.resolve_models` (also random JSON documents), and the
ground-truth CSVs through :meth:`trainer.fsd50k.Fsd50k.open`, plus random
feature settings through :meth:`guesser.features.FeatureConfig.from_dict`.

The property: the call returns a usable result, or raises a
:class:`~guesser.errors.GuesserError` (``ValueError`` for ``from_dict``) whose
message is one line. Anything else (a ``KeyError``, an ``OverflowError``, a
hang) is a bug that the CLI would have shown as "internal error".

Bounded for CI: ``GUESSER_FUZZ_EXAMPLES`` examples per loader (default 300, about
a minute in all on two cores); derandomized, so a run is reproducible. Set the
variable higher (``GUESSER_FUZZ_EXAMPLES=2000``) for a longer hunt.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guesser.errors import GuesserError

EXAMPLES = int(os.environ.get("GUESSER_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- strategies


@st.composite
def mutated(draw, blob: bytes, max_ops: int = 4) -> bytes:
    """``blob`` with 1..max_ops random edits: bytes replaced, a cut, an insertion, a deletion, a repeat."""
    data = bytearray(blob)
    for _ in range(draw(st.integers(1, max_ops))):
        n = len(data)
        op = draw(st.sampled_from(["replace", "cut", "insert", "delete", "repeat"] if n else ["insert"]))
        if op == "replace":
            for _ in range(draw(st.integers(1, 8))):
                data[draw(st.integers(0, n - 1))] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[draw(st.integers(0, n)):]
        elif op == "insert":
            at = draw(st.integers(0, n))
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            a = draw(st.integers(0, n - 1))
            del data[a : a + draw(st.integers(1, 256))]
        else:
            a = draw(st.integers(0, n - 1))
            piece = data[a : a + draw(st.integers(1, 256))]
            data[a:a] = piece * draw(st.integers(1, 4))
    return bytes(data)


def header_mutations(blob: bytes) -> st.SearchStrategy[bytes]:
    """Edits that land in the first 4 KB (where formats keep their headers) or anywhere."""
    head, rest = blob[:4096], blob[4096:]
    return st.one_of(mutated(blob), mutated(head, 3).map(lambda h: h + rest))


def json_values(max_leaves: int = 12) -> st.SearchStrategy:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                        max_leaves=max_leaves)


def one_line(error: BaseException) -> None:
    assert "\n" not in str(error).strip(), f"a multi-line error: {error!r}"


# ---------------------------------------------------------------- valid originals


def _tone(seconds: float = 0.5, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


class Originals(dict):
    """The valid files (a short repr: Hypothesis prints a failing example's arguments, fixtures included)."""

    def __repr__(self) -> str:
        return f"<originals: {', '.join(self)}>"


@pytest.fixture(scope="module")
def originals(tmp_path_factory, light_model_index) -> Originals:
    d = tmp_path_factory.mktemp("fuzz-originals")
    sf.write(str(d / "a.wav"), _tone(), 16000, subtype="PCM_16")
    sf.write(str(d / "a.ogg"), _tone(), 16000, format="OGG", subtype="VORBIS")
    index = json.loads(light_model_index.read_text())
    cnn3 = light_model_index.parent / next(e["path"] for e in index["models"] if e["path"].startswith("cnn3"))
    return Originals(wav=(d / "a.wav").read_bytes(), ogg=(d / "a.ogg").read_bytes(), ckpt=cnn3.read_bytes(),
                     index=light_model_index.read_bytes(), index_dir=light_model_index.parent)


class Scratch:
    """One temporary folder per test, reused by every example (Hypothesis and function fixtures do not mix)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="guesser-fuzz-"))

    def write(self, name: str, data: bytes) -> Path:
        p = self.dir / name
        p.write_bytes(data)
        return p

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def scratch():
    s = Scratch()
    yield s
    s.close()


# ---------------------------------------------------------------- audio


def check_audio(path: Path) -> None:
    from guesser.audio import load_audio

    try:
        audio = load_audio(path)
    except GuesserError as e:
        one_line(e)
        return
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 2 and audio.samples.shape[1] > 0
    assert np.isfinite(audio.samples).all() and audio.sample_rate > 0


@FUZZ
@given(data=st.data())
def test_fuzz_wav(originals, scratch, data):
    check_audio(scratch.write("x.wav", data.draw(header_mutations(originals["wav"]))))


@FUZZ
@given(data=st.data())
def test_fuzz_ogg(originals, scratch, data):
    check_audio(scratch.write("x.ogg", data.draw(header_mutations(originals["ogg"]))))


@FUZZ
@given(blob=st.binary(max_size=4096), name=st.sampled_from(["x.wav", "x.ogg", "x.m4a", "x.mp4", "x"]))
def test_fuzz_audio_random_bytes(scratch, blob, name):
    check_audio(scratch.write(name, blob))


# ---------------------------------------------------------------- checkpoints and indexes


def check_model(path: Path) -> None:
    from guesser.ensemble import load_model

    try:
        load_model(path)
    except GuesserError as e:
        one_line(e)


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint(originals, scratch, data):
    check_model(scratch.write("m.safetensors", data.draw(header_mutations(originals["ckpt"]))))


@FUZZ
@given(blob=st.binary(max_size=2048))
def test_fuzz_checkpoint_random_bytes(scratch, blob):
    check_model(scratch.write("m.safetensors", blob))


def check_index(path: Path) -> None:
    from guesser.ensemble import resolve_models

    try:
        resolve_models([path])
    except GuesserError as e:
        one_line(e)


@FUZZ
@given(data=st.data())
def test_fuzz_index_bytes(originals, data):
    blob = data.draw(mutated(originals["index"]))
    path = Path(originals["index_dir"]) / "fuzz-index.json"  # beside the models, so relative paths resolve
    path.write_bytes(blob)
    try:
        check_index(path)
    finally:
        path.unlink(missing_ok=True)


@FUZZ
@given(doc=st.one_of(json_values(), st.fixed_dictionaries({"version": json_values(3), "models": st.lists(
    st.one_of(json_values(4), st.fixed_dictionaries({"path": json_values(2), "family_weight": json_values(2)})),
    max_size=3)})))
def test_fuzz_index_documents(scratch, doc):
    check_index(scratch.write("index.json", json.dumps(doc).encode()))


# ---------------------------------------------------------------- feature settings


@FUZZ
@given(change=st.dictionaries(st.sampled_from(["sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "f_min",
                                               "f_max", "amin", "clip_seconds", "short", "norm", "mean", "std",
                                               "unknown"]), json_values(3), max_size=4))
def test_fuzz_feature_settings(change):
    from guesser.features import SEED_CNN, FeatureConfig

    try:
        cfg = FeatureConfig.from_dict({**SEED_CNN.to_dict(), **change})
    except ValueError as e:
        one_line(e)
        return
    assert cfg.clip_frames >= 1 and cfg.hop_length >= 1 and cfg.n_mels >= 16  # usable by the front-end


# ---------------------------------------------------------------- CSVs


@pytest.fixture(scope="module")
def csv_tree(tmp_path_factory):
    from fsdtree import write_fsd_tree

    return write_fsd_tree(tmp_path_factory.mktemp("fuzz-csv") / "FSD50K", per_class=(1, 1, 1), classes=("rain", "bark"))


@FUZZ
@given(data=st.data(), name=st.sampled_from(["dev.csv", "eval.csv", "vocabulary.csv"]))
def test_fuzz_csv(csv_tree, data, name):
    from trainer.fsd50k import Fsd50k

    path = csv_tree.root / "FSD50K.ground_truth" / name
    original = path.read_bytes()
    path.write_bytes(data.draw(mutated(original)))
    try:
        Fsd50k.open(csv_tree.root)
    except GuesserError as e:
        one_line(e)
    finally:
        path.write_bytes(original)
