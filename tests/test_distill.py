"""Knowledge distillation on the session's tiny synthetic cache.

A tiny run is the teacher. Its soft targets must equal what the teacher's own
scoring gives (computed independently here), be stored once beside the cache
and read back, be keyed so that another teacher never reuses them, leave out
the labels the teacher never learned, and a distilled run stopped by a real
``kill -9`` must resume to the same weights as an unbroken one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import trainer.distill as distill
from guesser.checkpoint import read_meta
from guesser.ensemble import load_model
from trainer.inference import predict_split
from trainer.train import train
from trainkit import cache_root, one_torch_thread  # noqa: F401 (fixtures: the cache folder, one torch thread)
from trainkit import kill_9_mid_run, same_tensors, tiny_recipe, without_time

pytestmark = pytest.mark.slow  # real training runs

@pytest.fixture(scope="module")
def teacher(cache_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "run"
    train(tiny_recipe("teacher", epochs=1), cache_root, out, device="cpu", progress=False, log=lambda s: None)
    return out / "best.safetensors"


@pytest.fixture(scope="module")
def distilled(cache_root, teacher, tmp_path_factory):
    """An unbroken distilled run (the yardstick for resume) and the lines it logged."""
    out = tmp_path_factory.mktemp("student") / "run"
    lines: list[str] = []
    result = train(tiny_recipe(distill=str(teacher), distill_weight=0.7), cache_root, out, device="cpu",
                   progress=False, log=lines.append)
    return result, out, lines


def test_soft_targets_are_the_teachers_own_scores_stored_once(cache_root, fsd_cache, teacher, monkeypatch):
    soft = distill.soft_targets(str(teacher), cache_root, fsd_cache.directory, "train", "labels",
                                tuple(fsd_cache.split("train").vocabulary))
    model = load_model(teacher)
    expected = predict_split(model.module, fsd_cache.split("train"), model.features, "labels")
    np.testing.assert_allclose(soft.probs, expected, rtol=0, atol=1e-6)
    stored = list((fsd_cache.directory / "teachers").glob(f"{soft.key}.train.labels.npz"))
    assert len(stored) == 1
    trained = set(read_meta(teacher)["trained_labels"])
    vocab = fsd_cache.split("train").vocabulary
    assert soft.known.tolist() == [name in trained for name in vocab]
    assert 0 < soft.known.sum() < len(vocab)  # the tiny tree leaves labels out: those get no soft target

    def no_second_computation(*a, **k):
        raise AssertionError("the stored soft targets were computed again")

    monkeypatch.setattr(distill, "_compute", no_second_computation)
    again = distill.soft_targets(str(teacher), cache_root, fsd_cache.directory, "train", "labels", tuple(vocab))
    assert again.key == soft.key
    np.testing.assert_array_equal(again.probs, soft.probs)


def test_another_teacher_or_weight_gets_another_key(fsd_cache, teacher, tmp_path):
    index = fsd_cache.directory / "train.index.npz"
    other = tmp_path / "other.safetensors"
    other.write_bytes(teacher.read_bytes() + b"")  # same bytes: same key
    assert distill.teacher_key(index, [(teacher, 1.0)]) == distill.teacher_key(index, [(other, 1.0)])
    assert distill.teacher_key(index, [(teacher, 1.0)]) != distill.teacher_key(index, [(teacher, 2.0)])
    other.write_bytes(teacher.read_bytes()[:-1] + b"\x00")
    assert distill.teacher_key(index, [(teacher, 1.0)]) != distill.teacher_key(index, [(other, 1.0)])


def test_distillation_loss_is_bce_against_the_teacher_on_known_labels_only():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g)
    soft = torch.rand(5, 4, generator=g)
    soft[2] = float("nan")  # a clip the teacher did not score
    known = torch.tensor([True, False, True, True])
    got = distill.distillation_loss(logits, soft, known, multilabel=True)
    rows = [0, 1, 3, 4]
    p = torch.sigmoid(logits[rows][:, [0, 2, 3]])
    t = soft[rows][:, [0, 2, 3]]
    by_hand = -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()
    assert float(got) == pytest.approx(float(by_hand), rel=1e-5)
    fam = torch.softmax(torch.randn(3, 6, generator=g), 1)
    ce = distill.distillation_loss(logits[:3, :4].repeat(1, 2)[:, :6], fam, torch.ones(6, dtype=torch.bool), False)
    assert float(ce) == pytest.approx(float(-(fam * torch.log_softmax(logits[:3, :4].repeat(1, 2)[:, :6], 1)).sum(1).mean()),
                                      rel=1e-5)


def test_a_distilled_run_learns_otherwise_and_says_from_what(distilled, cache_root, tmp_path):
    result, out, lines = distilled
    assert result.finished
    assert any('"teacher"' in s and '"key"' in s for s in lines)
    plain = train(tiny_recipe(), cache_root, tmp_path / "plain", device="cpu", progress=False, log=lambda s: None)
    assert [r.train_loss for r in plain.history] != [r.train_loss for r in result.history]
    assert read_meta(out / "best.safetensors")["recipe"]["train"]["distill_weight"] == 0.7


def test_kill_9_then_resume_of_a_distilled_run_is_bit_identical(distilled, cache_root, teacher, tmp_path):
    _, ref_out, _ = distilled
    recipe = tiny_recipe(distill=str(teacher), distill_weight=0.7)
    out = kill_9_mid_run(recipe, cache_root, tmp_path)
    result = train(recipe, cache_root, out, device="cpu", progress=False, resume=True, log=lambda s: None)
    assert result.finished
    assert same_tensors(ref_out / "last.safetensors", out / "last.safetensors") == []
    assert without_time(result.history) == without_time(distilled[0].history)


def test_a_teacher_that_is_not_there_is_one_line(cache_root, tmp_path):
    from guesser.errors import GuesserError

    with pytest.raises(GuesserError, match="no models found"):
        train(tiny_recipe(distill=str(tmp_path / "nothing")), cache_root, tmp_path / "run", device="cpu",
              progress=False, log=lambda s: None)
