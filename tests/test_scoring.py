"""guesser.scoring: one path from a log-mel to ranked scores, so what ``evaluate`` reports is what ``classify`` says.

The headline test runs the shipped models (``assets/models``) both ways on the
same clips: ``guesser evaluate``'s ensemble scores, computed from a cache built
from a synthetic FSD50K tree, and ``guesser classify --json`` on the clips'
audio files. They must agree to float tolerance, because both go through the
same functions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from guesser.cli import app
from guesser.features import SEED_CNN
from guesser.labels import FAMILIES_6, default_label_space
from guesser.scoring import batches, clip_means, clip_pool, family_source, fuse, head_of, model_probs, windows

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "assets" / "models"
NAMES = default_label_space().vocabulary.names


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Path:
    """A copy of the shipped models (evaluate writes its results beside them, never into assets/)."""
    out = tmp_path_factory.mktemp("shipped") / "models"
    shutil.copytree(SHIPPED, out)
    return out / "index.json"


@pytest.mark.slow
def test_evaluate_scores_equal_classify_scores_for_the_shipped_models(shipped, fsd_tree, tmp_path):
    from guesser.checkpoint import ModelsIndex
    from guesser.ensemble import load_model
    from trainer.cache_build import build_cache
    from trainer.evaluate import ModelRun, ensemble_scores, score

    index = ModelsIndex.read(shipped)
    models = []
    for path, weight in index.checkpoints(shipped.parent):
        m = load_model(path)
        m.family_weight = weight
        models.append(m)
    cache = tmp_path / "cache"
    for cfg in {m.features.key: m.features for m in models}.values():  # the eval split is all evaluate scores here
        build_cache(fsd_tree.root, cache, cfg, jobs=1, progress=False, splits=("eval",))
    runs = []
    for m in models:
        s, directory = score(m, cache, "eval", torch.device("cpu"))
        runs.append(ModelRun(m, s, None, directory))
    labels, families = ensemble_scores(runs, "split")

    clips = {c.fname: c.path for c in fsd_tree.split("eval")}
    files = [str(clips[str(f)]) for f in families.fnames]
    res = CliRunner().invoke(app, ["classify", *files, "--json", "--top-k", "0", "--models", str(shipped)])
    assert res.exit_code == 0, res.output
    said = [json.loads(line) for line in res.stdout.splitlines()]
    assert [d["file"] for d in said] == files and len(files) == len(fsd_tree.split("eval"))
    for i, doc in enumerate(said):
        lab = {d["label"]: d["score"] for d in doc["labels"]}
        fam = {d["family"]: d["score"] for d in doc["families"]}
        np.testing.assert_allclose([lab[n] for n in NAMES], labels.probs[i], atol=2e-5, rtol=0)
        np.testing.assert_allclose([fam[f] for f in FAMILIES_6], families.probs[i], atol=2e-5, rtol=0)


def test_windows_batches_and_clip_means_cover_every_window_once():
    cfg = SEED_CNN.with_stats([-40.0], [20.0])
    torch.manual_seed(0)
    short, long = torch.randn(128, 100) * 10 - 40, torch.randn(128, 1500) * 10 - 40
    clips = [windows(short, cfg), windows(long, cfg), windows(short, cfg, hop_seconds=1.0)]
    assert [len(c) for c in clips] == [1, 5, 1] and clips[1].starts[-1] == 1500 - cfg.clip_frames
    got = list(batches(clips, 3))
    assert [len(ids) for ids, _ in got] == [3, 3, 1]
    ids = np.concatenate([i for i, _ in got])
    assert ids.tolist() == [0, 1, 1, 1, 1, 1, 2]
    x = torch.cat([b for _, b in got])
    assert torch.equal(x[1:6], clips[1].inputs()) and x.shape[1:] == (1, 128, cfg.clip_frames)
    values = torch.arange(7.0)[:, None].repeat(1, 2)
    assert clip_means(values, ids, 3).tolist() == [[0.0, 0.0], [3.0, 3.0], [6.0, 6.0]]


def test_family_sources_and_fusion():
    p = torch.zeros(len(NAMES))
    p[NAMES.index("Bark")] = 0.9
    p[NAMES.index("Piano")] = 0.4
    folded = family_source(p, "labels", NAMES)
    assert folded[FAMILIES_6.index("Animal")] == pytest.approx(0.9)
    assert folded[FAMILIES_6.index("Music")] == pytest.approx(0.4)
    five = ("Human sounds", "Animal", "Music", "Natural sounds", "Sounds of things")
    placed = family_source(torch.tensor([0.1, 0.2, 0.3, 0.15, 0.25]), "families", five)
    assert placed.tolist() == pytest.approx([0.1, 0.2, 0.3, 0.15, 0.25, 0.0])
    fused = fuse([p, p / 2], [folded, placed], [1.0, 3.0])
    assert torch.allclose(fused.labels, p * 0.75)
    assert torch.allclose(fused.families, (folded + 3 * placed) / 4)
    assert fuse([], [placed], [0.0]).labels is None  # all weights 0: equal weights, never a division by 0


def test_embeddings_come_with_the_scores_at_no_extra_cost(light_ensemble):
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(22050 * 9)).astype(np.float32)  # 9 s: three 6 s windows
    plain = light_ensemble.predict(wav, 22050)
    pred = light_ensemble.predict(wav, 22050, embeddings=True)
    assert not plain.embeddings and [s.score for s in pred.labels] == [s.score for s in plain.labels]
    assert set(pred.embeddings) == {m.name for m in light_ensemble.models}
    m = light_ensemble.models[0]  # cnn3: the head reads the 128 x 4 x 4 pooled map
    emb = pred.embeddings[m.name]
    assert emb.shape == (2048,) and torch.isfinite(emb).all()
    with torch.inference_mode():  # the embedding is what the head turns into the model's logits
        from guesser.features import log_mel

        wins = windows(log_mel(wav, 22050, m.features), m.features)
        out = model_probs(m.module, batches([wins], 8), m.task, embeddings=True)
        assert out.embeddings.shape == (len(wins), 2048) and len(wins) == 3
        logits = head_of(m.module)(out.embeddings)
    torch.testing.assert_close(torch.sigmoid(logits), out.probs, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.clip_embeddings(1)[0], emb)


def test_an_ensemble_and_a_split_share_the_window_arithmetic(light_ensemble):
    """Ensemble.predict of one clip = model_probs over its windows, averaged: no second copy of the rule."""
    rng = np.random.default_rng(1)
    wav = (0.1 * rng.standard_normal(22050 * 14)).astype(np.float32)
    pred = light_ensemble.predict(wav, 22050)
    m = light_ensemble.models[0]
    from guesser.features import log_mel

    with torch.inference_mode():
        wins = windows(log_mel(wav, 22050, m.features), m.features)
        p = model_probs(m.module, batches([wins], 64), m.task).clip_probs(1)[0]
    ours = {s.name: s.score for s in pred.models[0].ranking}
    assert max(abs(ours[n] - float(p[i])) for i, n in enumerate(NAMES)) < 1e-6


def test_a_module_without_a_head_cannot_give_embeddings():
    with pytest.raises(ValueError, match="no head"):
        head_of(torch.nn.Linear(2, 2))


def test_a_timeline_window_is_fused_with_the_clips_weights(make_model_checkpoint):
    """A one-window clip's timeline says what its answer says, with label models of unequal weight."""
    from guesser.ensemble import Ensemble, load_model

    a, b = (load_model(make_model_checkpoint(name=n, seed=s)) for n, s in (("a", 1), ("b", 2)))
    a.family_weight, b.family_weight = 3.0, 1.0
    x = np.random.default_rng(0).standard_normal(3 * 22050).astype(np.float32) * 0.1
    pred = Ensemble([a, b]).predict(x, 22050, timeline=True)
    assert len(pred.windows) == 1
    whole = {s.name: s.score for s in pred.labels}
    for s in pred.windows[0].labels:
        assert s.score == pytest.approx(whole[s.name], abs=1e-5)

def test_pooling_over_windows_against_numpy():
    rng = np.random.default_rng(0)
    values = torch.from_numpy(rng.uniform(0, 1, (9, 4)).astype(np.float32))
    ids = np.array([0, 0, 0, 2, 2, 1, 2, 2, 1])
    for k in range(3):
        v = values.numpy()[ids == k].astype(np.float64)
        assert np.allclose(clip_pool(values, ids, 3, "mean")[k].numpy(), v.mean(0), atol=1e-6)
        assert np.array_equal(clip_pool(values, ids, 3, "max")[k].numpy(), v.max(0).astype(np.float32))
        assert np.allclose(clip_pool(values, ids, 3, "linsoftmax")[k].numpy(), (v * v).sum(0) / v.sum(0), atol=1e-6)
    # one loud window among quiet ones: the mean dilutes it, max keeps it, linear softmax lies between
    one = torch.tensor([[0.9], [0.05], [0.05], [0.05]])
    z = np.zeros(4, np.int64)
    mean, mx, ls = (float(clip_pool(one, z, 1, p)) for p in ("mean", "max", "linsoftmax"))
    assert mean < ls < mx == pytest.approx(0.9)
    with pytest.raises(ValueError):
        clip_pool(one, z, 1, "median")


def test_attention_pooling_is_a_softmax_of_the_window_logits_per_class():
    rng = np.random.default_rng(1)
    values = torch.from_numpy(rng.uniform(0.01, 0.99, (11, 5)).astype(np.float32))
    ids = np.array([0, 1, 1, 0, 3, 3, 3, 0, 1, 3, 0])
    for alpha in (0.5, 1.0, 3.0):
        got = clip_pool(values, ids, 4, "attention", alpha).numpy()
        for k in (0, 1, 3):
            v = values.numpy()[ids == k].astype(np.float64)
            z = alpha * np.log(v / (1 - v))
            w = np.exp(z) / np.exp(z).sum(0)  # softmax over the clip's windows, independently per class
            assert np.allclose(got[k], (w * v).sum(0), atol=1e-6)
        assert np.all(got[2] == 0)  # a clip without windows scores 0, as with the other poolings
    # α = 0 is the mean; a large α approaches the maximum; extreme scores do not overflow
    assert np.allclose(clip_pool(values, ids, 4, "attention", 0.0), clip_pool(values, ids, 4, "mean"), atol=1e-6)
    assert np.allclose(clip_pool(values, ids, 4, "attention", 200.0), clip_pool(values, ids, 4, "max"), atol=1e-4)
    edge = torch.tensor([[1.0], [0.0], [1.0 - 1e-9]])
    assert np.isfinite(clip_pool(edge, np.zeros(3, np.int64), 1, "attention", 50.0).numpy()).all()


def test_sub_windows_are_cut_short_and_filled_like_a_short_clip():
    cfg = SEED_CNN.with_stats([0.0], [1.0])
    fps = cfg.frames_per_second
    lm = torch.randn(cfg.n_mels, int(10 * fps))
    sub = windows(lm, cfg, hop_seconds=0.5, seconds=1.0)
    n = int(round(fps))
    assert sub.frames == n and sub.starts[1] - sub.starts[0] == int(round(0.5 * fps))
    assert sub.starts[-1] == lm.shape[1] - n  # the last one flush with the end
    x = sub.inputs(2, 3)[0, 0]
    piece = lm[:, sub.starts[2] : sub.starts[2] + n]
    assert x.shape == (cfg.n_mels, cfg.clip_frames)
    assert torch.equal(x[:, :n], piece) and torch.equal(x[:, n : 2 * n], piece)  # tiled, as a short clip is
    assert sub.spans()[2] == pytest.approx((sub.starts[2] / fps, sub.starts[2] / fps + n / fps))
    whole = windows(lm, cfg)
    assert whole.frames == cfg.clip_frames and torch.equal(whole.inputs(0, 1), windows(lm, cfg, seconds=60).inputs(0, 1))
