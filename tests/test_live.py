"""Live scoring (guesser.live): the rolling log-mel, the newest window every hop, late windows skipped, events."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
import torch

from guesser.features import FeatureConfig, log_mel
from guesser.listen import run_listen
from guesser.live import LiveEvents, LiveScorer, LiveWindow, listen, loud_span
from guesser.recorder import ArrayBackend, Level, Recorder
from guesser.stream import StreamLogMel
from tuikit import FakeEnsemble, chirp_clip

SR = 22050


def _noise(seconds: float, sr: int, db: float = -20.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * sr)) * 10 ** (db / 20)).astype(np.float32)


def test_rolling_log_mel_equals_the_batch_log_mel_of_the_same_samples():
    cfg = FeatureConfig()
    x = torch.from_numpy(_noise(3.3, cfg.sample_rate) * np.linspace(0.01, 1, int(3.3 * cfg.sample_rate),
                                                                    dtype=np.float32))
    batch = log_mel(x, cfg.sample_rate, cfg)
    lm, got, pos = StreamLogMel(cfg), [], 0
    for size in [700, 1, 441, 5000, 13, 20000] * 20:  # blocks that do not line up with the hop
        if pos >= x.numel():
            break
        frames = lm.push(x[pos: pos + size])
        pos += size
        if frames is not None:
            got.append(frames)
            n = sum(f.shape[1] for f in got)  # new samples gave only new frames: the batch's first n
            torch.testing.assert_close(torch.cat(got, dim=1), batch[:, :n], rtol=2e-3, atol=1e-3)
    got.append(lm.finish())
    torch.testing.assert_close(torch.cat(got, dim=1), batch, rtol=2e-3, atol=1e-3)


def test_live_scorer_keeps_the_newest_frames_of_the_batch_log_mel(light_ensemble):
    mic = 44100  # resampled to the models' 22 050 Hz on the way
    x = _noise(8.0, mic, seed=1)
    scorer = LiveScorer(light_ensemble, mic, seconds=2.0)
    step = mic // 4
    for end in range(step, len(x) + 1, step):  # what Recorder.windows hands over: the newest 2 s
        scorer.feed(x[max(0, end - 2 * mic): end], end)
    cfg = light_ensemble.models[0].features
    live = scorer.frames[cfg.key]
    assert live.shape[1] == 2 * int(cfg.frames_per_second) + 1
    done = scorer.logmels[cfg.key].frames  # frames emitted so far; the newest wait for n_fft/2 samples more
    batch = log_mel(torch.from_numpy(x), mic, cfg)
    assert batch.shape[1] - 3 <= done < batch.shape[1]
    torch.testing.assert_close(live, batch[:, done - live.shape[1]: done], rtol=2e-3, atol=1e-3)


def test_live_answer_is_the_files_answer_for_a_steady_sound(light_ensemble):
    x = _noise(10.0, SR, seed=2)
    scorer = LiveScorer(light_ensemble, SR, seconds=6.0)
    step = SR // 4
    for end in range(step, len(x) + 1, step):
        scorer.feed(x[max(0, end - 6 * SR): end], end)
    live = scorer.predict()
    whole = light_ensemble.predict(x[-6 * SR:], SR)
    got = {s.name: s.score for s in live.labels}
    for s in whole.labels[:10]:
        assert got[s.name] == pytest.approx(s.score, abs=0.03)
    assert [f.name for f in live.families][:1] == [f.name for f in whole.families][:1]


def test_a_gap_longer_than_the_window_restarts_the_front_end(light_ensemble):
    scorer = LiveScorer(light_ensemble, SR, seconds=1.0)
    x = _noise(1.0, SR, seed=3)
    scorer.feed(x, SR)
    scorer.feed(x, 10 * SR)  # 9 s later: nothing in between was heard
    key = light_ensemble.models[0].features.key
    assert scorer.heard == SR and scorer.frames[key].shape[1] <= int(light_ensemble.models[0].features.frames_per_second) + 1


def test_quiet_room_before_and_after_a_sound_is_cut_from_the_window():
    cfg = FeatureConfig()
    room, sound = _noise(3.0, SR, db=-75, seed=4), chirp_clip(0.5)
    lm = log_mel(torch.from_numpy(np.concatenate([room, sound, room[:SR]])), SR, cfg)
    first, stop = loud_span(lm)
    fps = cfg.frames_per_second
    assert abs(first / fps - 3.0) <= 0.05 and abs(stop / fps - 3.5) <= 0.05
    steady = log_mel(torch.from_numpy(room), SR, cfg)
    assert loud_span(steady) == (0, steady.shape[1])  # a steady room alone is all kept


class SlowEnsemble(FakeEnsemble):
    """A model that needs ``delay`` seconds per answer: far slower than the hop."""

    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    def predict(self, waveform, sample_rate, **kw):
        time.sleep(self.delay)
        return super().predict(waveform, sample_rate, **kw)


def test_a_window_that_would_start_late_is_skipped_never_queued():
    hop, delay = 0.05, 0.3
    ens = SlowEnsemble(delay)
    with Recorder(ArrayBackend(chirp_clip(1.0), SR, loop=True)) as rec:
        step = int(hop * SR)
        ends, behind = [], []
        for w in listen(rec, ens, seconds=0.5, hop=hop):
            ends.append(round(w.end * SR))
            behind.append(rec.total)  # what had arrived when this answer was ready
            if len(ends) == 6:
                break
    gaps = np.diff(ends)
    assert (gaps > step).all(), f"windows were not skipped: {gaps / SR} s apart"  # the model is 6 hops slow
    # never queued: how far an answer is behind the audio does not grow (queued, it would grow by
    # delay - hop = 0.25 s a window); ends count from where listening began, totals from the stream's start
    lag = np.asarray(behind) - np.asarray(ends)
    assert (lag - lag[0] < 2 * delay * SR).all(), f"answers fall behind: {(lag - lag[0]) / SR} s"
    assert len(ens.calls) == 6


def test_events_end_with_their_sound():
    events = LiveEvents()
    pred = FakeEnsemble(top=("Bark", "Dog", "Animal")).predict(np.zeros(SR, np.float32), SR)
    loud, quiet = Level.of(np.ones(10, np.float32)), Level.of(np.zeros(10, np.float32))
    got = []
    for i in range(30):
        t = 0.25 * (i + 1)
        w = LiveWindow(max(0, t - 6), t, np.zeros(1, np.float32), loud if i < 12 else quiet,
                       pred if i < 12 else None, sounding=4 <= i < 8)
        got += events.specific(events.push(w))
    assert [e.label for e in got] == ["Bark"]  # Dog and Animal are what Bark implies
    assert got[0].start == pytest.approx(1.25) and got[0].end == pytest.approx(2.25)


def test_listen_json_lines_carry_events(monkeypatch):
    out = io.StringIO()
    clip = np.concatenate([chirp_clip(1.0), np.zeros(3 * SR, np.float32)])
    code = run_listen(json_out=True, seconds=0.5, hop=0.1, ensemble=FakeEnsemble(), max_windows=40,
                      backend=ArrayBackend(clip, SR, speed=4, loop=True), out=out, err=io.StringIO())
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert code == 0 and len(docs) in (40, 41)  # 40 windows, then a line closing what is still open, if any
    assert all(isinstance(d["events"], list) for d in docs)
    assert all(("labels" in d) ^ d.get("silent", False) for d in docs[:40])
    if len(docs) == 41:
        assert set(docs[-1]) == {"device", "start", "end", "events"} and docs[-1]["events"]
    events = [e for d in docs for e in d["events"]]
    assert events and {"Clapping", "Speech"} <= {e["label"] for e in events}
    for e in events:
        assert set(e) == {"label", "family", "start", "end", "score"} and e["end"] > e["start"]


def test_cli_refuses_a_bad_hop_in_one_line():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "guesser", "listen", "--hop", "0"], capture_output=True, text=True,
                          timeout=120)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 1 and lines == ["error: --hop must be in (0, 30], got 0"]
