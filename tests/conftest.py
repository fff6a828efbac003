"""Shared fixtures: a tiny synthetic FSD50K tree and its seed-preset cache.

Every test here runs offline on a fresh machine: nothing reads ../shared or
downloads anything. Fixtures for everybody:

``fsd_tree`` / ``fsd_root`` (session, read-only)
    A 45-clip FSD50K-layout tree (5 classes x 5 train / 2 val / 2 eval; WAV,
    FLAC and OGG at 16-48 kHz, mono and stereo, 0.3-7 s) written once per
    session; ``fsd_tree`` is the :class:`fsdtree.FsdTree` describing every
    clip, ``fsd_root`` its root path. Do not modify it: use ``make_fsd_tree``.

``make_fsd_tree`` (function)
    ``make_fsd_tree(bad=False, per_class=(5, 2, 2), classes=...)`` writes a
    fresh, writable tree under the test's tmp_path (``bad=True`` adds an
    undecodable, a 0-byte, a sample-less and a missing audio file).

``fsd_cache`` (session, read-only)
    The seed-preset (``SEED_CNN``) cache of ``fsd_root``, built once:
    a :class:`trainer.cache.FeatureCache`; ``fsd_cache.directory.parent`` is
    the cache root that ``train``/``find_cache`` take.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fsdtree import FsdTree, write_fsd_tree


@pytest.fixture(scope="session")
def fsd_tree(tmp_path_factory: pytest.TempPathFactory) -> FsdTree:
    return write_fsd_tree(tmp_path_factory.mktemp("fsd50k") / "FSD50K")


@pytest.fixture(scope="session")
def fsd_root(fsd_tree: FsdTree) -> Path:
    return fsd_tree.root


@pytest.fixture
def make_fsd_tree(tmp_path: Path):
    """Factory: a fresh, writable tree per call (``root`` names the folder under tmp_path)."""

    def make(root: str = "FSD50K", **kwargs) -> FsdTree:
        return write_fsd_tree(tmp_path / root, **kwargs)

    return make


@pytest.fixture(scope="session")
def fsd_cache(fsd_root: Path, tmp_path_factory: pytest.TempPathFactory):
    from guesser.features import SEED_CNN
    from trainer.cache import find_cache
    from trainer.cache_build import build_cache

    out = tmp_path_factory.mktemp("cache")
    build_cache(fsd_root, out, SEED_CNN, jobs=1, progress=False)
    return find_cache(out, SEED_CNN)


# ---------------------------------------------------------------- random-weight models (inference tests)
#
# ``model_index`` (session, read-only)
#     A models index (``index.json``) over random-weight checkpoints of the
#     shipped ensemble's architectures: cnn4 + cnn3 (labels, seed front-end),
#     family_cnn (families, seed) and PANNs cnn6 (families, PANNs front-end),
#     written through the trainer's own model_meta/save_model. Nothing here
#     depends on models being good: tests assert behaviour, not accuracy.
# ``light_model_index`` (session, read-only)
#     The same with only cnn3 (labels) + family_cnn (families): the fast one.
# ``light_ensemble`` (session)
#     ``Ensemble.load([light_model_index])``, loaded once.
# ``make_model_checkpoint`` (function)
#     ``make_model_checkpoint(arch="cnn3", task="labels", preset="seed", **kw)``
#     -> path of a fresh random-weight checkpoint under tmp_path (``kw`` go to
#     :func:`trainer.random_models.write_random_model`: seed, val_score,
#     trained_labels, dtype).


@pytest.fixture(scope="session")
def model_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.random_models import write_random_ensemble

    return write_random_ensemble(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def light_model_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.random_models import RandomSpec, write_random_ensemble

    specs = (RandomSpec("cnn3", "labels", "seed"), RandomSpec("family_cnn", "families", "seed"))
    return write_random_ensemble(tmp_path_factory.mktemp("light_models"), specs)


@pytest.fixture(scope="session")
def light_ensemble(light_model_index: Path):
    from guesser.ensemble import Ensemble

    return Ensemble.load([light_model_index])


@pytest.fixture
def make_model_checkpoint(tmp_path: Path):
    from trainer.random_models import RandomSpec, write_random_model

    def make(arch: str = "cnn3", task: str = "labels", preset: str = "seed", name: str = "model", **kw) -> Path:
        return write_random_model(tmp_path / f"{name}.safetensors", RandomSpec(arch, task, preset), **kw)

    return make


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: on a shared 2-core machine two OpenMP threads spin against other jobs."""
    from trainkit import one_thread

    with one_thread():
        yield


@pytest.fixture(autouse=True)
def private_user_data(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own user data folder (personal labels, high scores, recordings, logs).

    A developer's own personal labels would otherwise be scored in every
    classify test; tests that need a particular folder set GUESSER_DATA_DIR
    themselves, which wins (monkeypatch applies in order).
    """
    folder = tmp_path_factory.mktemp("userdata")
    monkeypatch.setenv("GUESSER_DATA_DIR", str(folder))
    return folder
