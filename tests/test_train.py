"""The training loop on the session's tiny synthetic cache: learning, checkpoints, exact resume, stopping rules.

One uninterrupted run (``reference``) is the yardstick: runs that were stopped
(Ctrl-C, ``max_steps``, a real ``kill -9``) and resumed must end bit-identical
to it, weights, optimiser state and metrics alike.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

import trainer.state as state_mod
import trainer.train as train_mod
from guesser.checkpoint import load_checkpoint, read_meta
from guesser.errors import GuesserError
from guesser.labels import FAMILIES_6, default_label_space
from trainer.train import TrainingInterrupted, train
from trainkit import cache_root, one_torch_thread  # noqa: F401 (fixtures: the cache folder, one torch thread)
from trainkit import kill_9_mid_run, one_thread, same_tensors, tiny_recipe, without_time

pytestmark = pytest.mark.slow  # real training runs

@pytest.fixture(scope="module")
def reference(cache_root, tmp_path_factory):
    """An uninterrupted 2-epoch run of ``tiny_recipe()`` and the lines it printed."""
    out = tmp_path_factory.mktemp("reference") / "run"
    lines: list[str] = []
    result = train(tiny_recipe(), cache_root, out, device="cpu", progress=False, log=lines.append)
    return result, out, lines


def test_two_epochs_lower_the_loss_and_write_a_loadable_model(reference):
    from guesser.ensemble import load_model

    result, out, lines = reference
    assert result.finished and result.epochs_run == 2
    losses = [row.train_loss for row in result.history]
    assert losses[1] < losses[0]
    assert all(0.0 <= row.val_map <= 1.0 and np.isfinite(row.val_loss) for row in result.history)

    # one JSON line per epoch, printed and in metrics.jsonl
    printed = [json.loads(s) for s in lines]
    assert [r["epoch"] for r in printed] == [1, 2]
    assert [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()] == [r.to_json() for r in result.history]

    model = load_model(out / "best.safetensors")
    assert model.task == "labels" and model.classes == default_label_space().vocabulary.names
    assert model.features.clip_seconds == 0.5 and model.features.has_stats
    meta = read_meta(out / "best.safetensors")
    assert meta["best_epoch"] == result.best_epoch and meta["metrics"]["val_map"] == round(result.best_score, 6)
    assert set(meta["trained_labels"]) >= {"Piano", "Rain", "Bark", "Engine"}
    with torch.no_grad():
        assert model.module(torch.zeros(1, 1, 128, model.features.clip_frames)).shape == (1, 200)

    # best.safetensors holds the weights of the best epoch: here the last one, whose state ends the run
    if result.best_epoch == 2:
        state, _ = state_mod.load_state(out / "last.safetensors")
        best, _ = load_checkpoint(out / "best.safetensors")
        assert best.keys() == state["model"].keys()
        assert all(torch.equal(v, state["model"][k]) for k, v in best.items())

    summary = json.loads((out / "run.json").read_text())
    assert summary["best_epoch"] == result.best_epoch and summary["epochs_run"] == 2 and not summary["early_stopped"]


def test_resume_after_ctrl_c_and_a_mid_epoch_stop_is_bit_identical(reference, cache_root, tmp_path, monkeypatch):
    _, ref_out, _ = reference
    out = tmp_path / "run"
    real_make_batch = train_mod.make_batch
    calls = {"n": 0}

    def make_batch_then_ctrl_c(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            signal.raise_signal(signal.SIGINT)  # as a user's Ctrl-C during the third step
        return real_make_batch(*args, **kwargs)

    monkeypatch.setattr(train_mod, "make_batch", make_batch_then_ctrl_c)
    with pytest.raises(TrainingInterrupted, match="--resume") as e:
        train(tiny_recipe(), cache_root, out, device="cpu", progress=False, log=lambda s: None)
    assert e.value.exit_code == 130
    assert read_meta(out / "last.safetensors")["counters"]["step"] == 3  # the step in flight was finished
    monkeypatch.setattr(train_mod, "make_batch", real_make_batch)

    part = train(tiny_recipe(), cache_root, out, device="cpu", progress=False, resume=True, max_steps=5,
                 log=lambda s: None)  # steps 3-5 of epoch 1, then 2 steps into epoch 2
    assert not part.finished
    counters = read_meta(out / "last.safetensors")["counters"]
    assert (counters["epoch"], counters["step"]) == (1, 2)

    done = train(tiny_recipe(), cache_root, out, device="cpu", progress=False, resume=True, log=lambda s: None)
    assert done.finished
    assert same_tensors(ref_out / "last.safetensors", out / "last.safetensors") == []
    assert same_tensors(ref_out / "best.safetensors", out / "best.safetensors") == []
    assert without_time(done.history) == without_time(reference[0].history)
    ref_rows = [json.loads(s) for s in (ref_out / "metrics.jsonl").read_text().splitlines()]
    rows = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert without_time(rows) == without_time(ref_rows)


def test_kill_9_mid_run_then_resume_is_bit_identical(reference, cache_root, tmp_path):
    _, ref_out, _ = reference
    out = kill_9_mid_run(tiny_recipe(), cache_root, tmp_path)
    (out / ".last.safetensors.x1y2.tmp").write_bytes(b"half a checkpoint")  # as if killed mid-write
    # the checkpoint is whole (atomic writes) and the run continues from it
    result = train(tiny_recipe(), cache_root, out, device="cpu", progress=False, resume=True, log=lambda s: None)
    assert result.finished
    assert same_tensors(ref_out / "last.safetensors", out / "last.safetensors") == []
    assert without_time(result.history) == without_time(reference[0].history)
    assert not list(out.glob(".*.tmp"))


def test_an_existing_run_needs_resume_and_the_same_recipe(reference, cache_root):
    _, ref_out, _ = reference
    with pytest.raises(GuesserError, match="already holds a run; pass --resume"):
        train(tiny_recipe(), cache_root, ref_out, device="cpu", progress=False)
    with pytest.raises(GuesserError, match=r"different recipe \(train\.lr \(0\.001 vs 0\.002\)\)"):
        train(tiny_recipe(lr=0.002), cache_root, ref_out, device="cpu", progress=False, resume=True)
    # a finished run resumed trains nothing more
    again = train(tiny_recipe(), cache_root, ref_out, device="cpu", progress=False, resume=True, log=lambda s: None)
    assert without_time(again.history) == without_time(reference[0].history)


def _scripted_validation(monkeypatch, scores: list[float]) -> list[int]:
    """Replace the (slow) validation pass by fixed scores; returns the list of epochs validated."""
    validated: list[int] = []

    def fake_predict(model, split, cfg, task, **kw):
        return np.full((len(split), 200 if task == "labels" else 6), 0.5, np.float32)

    def fake_score(probs, targets):
        validated.append(len(validated) + 1)
        return scores[len(validated) - 1]

    monkeypatch.setattr(train_mod, "predict_split", fake_predict)
    monkeypatch.setattr(train_mod, "validation_score", fake_score)
    return validated


def test_early_stopping_and_plateau_schedule(cache_root, tmp_path, monkeypatch):
    validated = _scripted_validation(monkeypatch, [0.5, 0.6, 0.55, 0.54, 0.9, 0.9, 0.9, 0.9])
    recipe = tiny_recipe(epochs=8, batch_size=8, scheduler="plateau", plateau_patience=0, plateau_factor=0.5,
                         warmup_epochs=0, early_stop=2, oversample=False, augment={})
    result = train(recipe, cache_root, tmp_path / "run", device="cpu", progress=False, log=lambda s: None)
    # best at epoch 2; epochs 3 and 4 do not beat it; 2 epochs without improvement: stop after epoch 4
    assert result.epochs_run == 4 and result.best_epoch == 2 and result.best_score == 0.6
    assert [row.lr for row in result.history] == [1e-3, 1e-3, 1e-3, 5e-4]  # halved after epoch 3's setback
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["early_stopped"] and summary["best_epoch"] == 2
    assert read_meta(tmp_path / "run" / "best.safetensors")["best_epoch"] == 2
    # the stop is part of the saved state: resuming does not train on
    again = train(recipe, cache_root, tmp_path / "run", device="cpu", progress=False, resume=True, log=lambda s: None)
    assert again.epochs_run == 4 and validated == [1, 2, 3, 4]


def test_val_every_still_logs_every_epoch_and_validates_the_last(cache_root, tmp_path, monkeypatch):
    validated = _scripted_validation(monkeypatch, [0.3, 0.4])
    recipe = tiny_recipe(epochs=3, batch_size=8, val_every=2, scheduler="none", warmup_epochs=0, augment={})
    result = train(recipe, cache_root, tmp_path / "run", device="cpu", progress=False, log=lambda s: None)
    assert [r.epoch for r in result.history] == [1, 2, 3]
    assert [r.val_map is not None for r in result.history] == [False, True, True]
    assert validated == [1, 2]
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3


def test_warmup_then_cosine_learning_rate():
    from trainer.optim import scheduled_lr

    t = tiny_recipe(epochs=4, warmup_epochs=1, lr=1e-3, min_lr=1e-5).train
    lrs = [scheduled_lr(t, it, 10) for it in range(40)]
    assert lrs[:10] == pytest.approx([1e-3 * (i + 1) / 10 for i in range(10)])
    assert lrs[10] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # decays monotonically …
    assert lrs[-1] == pytest.approx(1e-5 + 0.5 * (1 + np.cos(np.pi * 29 / 30)) * (1e-3 - 1e-5))  # … towards min_lr
    plateau = tiny_recipe(scheduler="plateau", warmup_epochs=0).train
    assert scheduled_lr(plateau, 5, 10) is None  # ReduceLROnPlateau owns the rate


def test_families_task_with_cross_entropy(cache_root, tmp_path):
    from guesser.ensemble import load_model

    recipe = tiny_recipe("fam", arch="family_cnn", task="families", epochs=1, batch_size=8)
    result = train(recipe, cache_root, tmp_path / "run", device="cpu", progress=False, log=lambda s: None)
    assert result.history[0].val_family_map is not None and 0 < result.best_score <= 1
    model = load_model(tmp_path / "run" / "best.safetensors")
    assert model.task == "families" and model.classes == FAMILIES_6


def test_prior_bias_starts_the_head_at_the_label_prior(cache_root, fsd_cache, tmp_path):
    recipe = tiny_recipe(loss="focal", prior_bias=True, focal_alpha=0.25, focal_gamma=2.0, augment={},
                         oversample=False, warmup_epochs=0, scheduler="none")
    train(recipe, cache_root, tmp_path / "run", device="cpu", progress=False, max_steps=1, log=lambda s: None)
    model = state_mod.load_state(tmp_path / "run" / "last.safetensors")[0]["model"]
    bias = model[[k for k in model if k.startswith("head.") and k.endswith(".bias")][-1]]
    pi = np.clip(fsd_cache.split("train").targets.mean(axis=0), 1e-3, 1 - 1e-3)
    prior = torch.tensor(np.log(pi / (1 - pi)), dtype=torch.float32)
    assert bias.shape == (200,) and prior.min() < -6  # labels absent from train start near log(1e-3)
    # one Adam step moves each bias by about lr (1e-3) at most
    torch.testing.assert_close(bias, prior, atol=5e-3, rtol=0)


def test_precision_choice(monkeypatch):
    from trainer.device import autocast_dtype

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype("auto", cuda) == torch.bfloat16 and autocast_dtype("fp32", cuda) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # pre-Ampere: fp16 + GradScaler
    assert autocast_dtype("auto", cuda) == torch.float16 and autocast_dtype("bf16", cuda) == torch.bfloat16
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert autocast_dtype("auto", cpu) == torch.bfloat16 and autocast_dtype("fp32", cpu) is None


def test_ema_weights_are_validated_kept_and_resumed_exactly(cache_root, tmp_path):
    """With ema_decay the best checkpoint holds the moving average (not the raw weights), and a
    run stopped mid-epoch and resumed ends with the same average as one that never stopped."""
    from trainer.state import load_state

    recipe = tiny_recipe("ema", ema_decay=0.9)
    with one_thread():
        train(recipe, cache_root, tmp_path / "ref", device="cpu", progress=False, log=lambda s: None)
        part = train(recipe, cache_root, tmp_path / "cut", device="cpu", progress=False, max_steps=4,
                     log=lambda s: None)
        assert not part.finished
        train(recipe, cache_root, tmp_path / "cut", device="cpu", progress=False, resume=True, log=lambda s: None)
        one = train(tiny_recipe("ema1", ema_decay=0.9, epochs=1), cache_root, tmp_path / "one", device="cpu",
                    progress=False, log=lambda s: None)
    assert same_tensors(tmp_path / "ref" / "last.safetensors", tmp_path / "cut" / "last.safetensors") == []
    assert one.best_epoch == 1
    state, _ = load_state(tmp_path / "one" / "last.safetensors")
    best, _ = load_checkpoint(tmp_path / "one" / "best.safetensors")
    convs = [k for k in best if k.endswith("weight") and best[k].ndim == 4]
    for k in convs:
        assert torch.equal(best[k], state["ema"]["module." + k])  # the kept model is the average …
    assert any(not torch.equal(best[k], state["model"][k]) for k in convs)  # … not the raw weights


def test_ema_warmup_follows_the_weights_early_and_settles_later():
    """The ramped decay (1+n)/(10+n) capped at ``decay``, checked against that formula step by step."""
    from trainer.optim import ema_with_warmup

    update = ema_with_warmup(0.99)
    ema, expected = [torch.zeros(3)], torch.zeros(3)
    for n in range(200):
        w = torch.full((3,), float(n + 1))
        d = min(0.99, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * w
        update(ema, [w], torch.tensor(n))
        assert torch.allclose(ema[0], expected)
    counts = [torch.tensor([5])]
    update(counts, [torch.tensor([7])], torch.tensor(3))
    assert counts[0].item() == 7  # integer buffers follow the model


def test_a_recipe_saved_before_a_new_option_existed_still_resumes():
    """Options added later with a default (e.g. ``ema_warmup``) are not a difference; a changed value is."""
    current = tiny_recipe().to_dict()
    older = json.loads(json.dumps(current))
    del older["train"]["ema_warmup"]
    assert state_mod.recipe_difference(state_mod._with_defaults(older), current) is None
    older["train"]["lr"] = 0.5
    assert state_mod.recipe_difference(state_mod._with_defaults(older), current) == "train.lr (0.5 vs 0.001)"
