"""Sound events by hysteresis (guesser.events) on synthetic score sequences."""

from __future__ import annotations

import numpy as np
import pytest

from guesser.events import Event, EventRules, EventTracker, detect_events, label_families
from guesser.labels import FAMILIES_6, default_label_space

NAMES = ("Bark", "Clapping")
FAMS = ("Animal", "Human sounds")


def reference(times, scores, rules, t_end):
    """An independent offline reading of the rules: runs of >= off containing >= on, gaps bridged, short ones dropped."""
    times = list(times) + [t_end]
    out = []
    for k in range(scores.shape[1]):
        s = scores[:, k]
        runs, i = [], 0
        while i < len(s):
            if s[i] >= rules.off:
                j = i
                while j < len(s) and s[j] >= rules.off:
                    j += 1
                if s[i:j].max() >= rules.on:
                    runs.append([times[i], times[j], s[i:j].max()])
                i = j
            else:
                i += 1
        merged = []
        for r in runs:
            if merged and r[0] - merged[-1][1] < rules.min_gap:
                merged[-1][1], merged[-1][2] = r[1], max(merged[-1][2], r[2])
            else:
                merged.append(r)
        out += [(NAMES[k], a, b, p) for a, b, p in merged if b - a >= rules.min_duration]
    return sorted(out, key=lambda e: (e[1], e[0]))


def as_tuples(events):
    return [(e.label, e.start, e.end, e.score) for e in events]


def test_hysteresis_worked_example():
    # hop 0.1 s; Bark rises over `off` at 0.2, over `on` at 0.4, dips to 0.35 (still an event) and falls under `off` at 0.8
    times = np.arange(12) * 0.1
    bark = [0.0, 0.1, 0.35, 0.45, 0.9, 0.35, 0.6, 0.32, 0.1, 0.0, 0.0, 0.0]
    clap = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.45, 0.49, 0.2, 0.0]  # over `off`, never `on`: nothing
    rules = EventRules(on=0.5, off=0.3, min_duration=0.0, min_gap=0.0)
    events = detect_events(times, np.array([bark, clap]).T, NAMES, FAMS, rules)
    assert len(events) == 1
    e = events[0]
    assert (e.label, e.family, e.score) == ("Bark", "Animal", 0.9)
    assert e.start == pytest.approx(0.2) and e.end == pytest.approx(0.8)
    assert e.to_json() == {"label": "Bark", "family": "Animal", "start": 0.2, "end": 0.8, "score": 0.9}


def test_min_duration_drops_a_single_hop_and_keeps_a_long_one():
    times = np.arange(20) * 0.1
    s = np.zeros((20, 2))
    s[3, 0] = 0.9  # 0.1 s
    s[10:14, 0] = 0.8  # 0.4 s
    rules = EventRules(min_duration=0.25, min_gap=0.0)
    events = detect_events(times, s, NAMES, FAMS, rules)
    assert [(e.start, e.end) for e in events] == [(pytest.approx(1.0), pytest.approx(1.4))]


def test_gap_bridging_joins_close_events_only():
    times = np.arange(40) * 0.1
    s = np.zeros((40, 2))
    s[2:5, 0] = 0.9   # 0.2-0.5
    s[7:10, 0] = 0.7  # 0.7-1.0: gap 0.2 < 0.5 -> bridged
    s[20:23, 0] = 0.8  # 2.0-2.3: gap 1.0 -> separate
    events = detect_events(times, s, NAMES, FAMS, EventRules(min_duration=0.0, min_gap=0.5))
    assert as_tuples(events) == [("Bark", pytest.approx(0.2), pytest.approx(1.0), 0.9),
                                 ("Bark", pytest.approx(2.0), pytest.approx(2.3), 0.8)]
    # a bridged pair counts as one event for min_duration: 0.2 + 0.2 s apart are short alone, long together
    s2 = np.zeros((40, 2))
    s2[2:4, 1], s2[5:7, 1] = 0.9, 0.9
    kept = detect_events(times, s2, NAMES, FAMS, EventRules(min_duration=0.4, min_gap=0.2))
    assert as_tuples(kept) == [("Clapping", pytest.approx(0.2), pytest.approx(0.7), 0.9)]
    assert detect_events(times, s2, NAMES, FAMS, EventRules(min_duration=0.4, min_gap=0.05)) == []


def test_an_unconfirmed_region_in_the_gap_does_not_bridge():
    times = np.arange(30) * 0.1
    s = np.zeros((30, 2))
    s[2:5, 0] = 0.9
    s[6:8, 0] = 0.4  # over `off` only: not an event, and it does not join the first one to anything
    s[9:12, 0] = 0.9  # starts 0.4 s after the first ended: bridged (gap < 0.5), through the weak region
    events = detect_events(times, s, NAMES, FAMS, EventRules(min_duration=0.0, min_gap=0.5))
    assert as_tuples(events) == [("Bark", pytest.approx(0.2), pytest.approx(1.2), 0.9)]


def test_event_open_at_the_end_is_closed_by_finish():
    tracker = EventTracker(NAMES, FAMS, EventRules(min_duration=0.0, min_gap=0.0))
    assert tracker.push(0.0, [0.0, 0.0]) == []
    assert tracker.push(0.5, [0.0, 0.7]) == []
    assert tracker.push(1.0, [0.0, 0.6]) == []
    assert tracker.finish(1.3) == [Event("Clapping", "Human sounds", 0.5, 1.3, 0.7)]
    assert tracker.finish(2.0) == []


def test_push_returns_an_event_once_the_gap_has_passed():
    tracker = EventTracker(NAMES, FAMS, EventRules(min_duration=0.0, min_gap=0.3))
    got = [tracker.push(t, [v, 0.0]) for t, v in [(0.0, 0.9), (0.1, 0.0), (0.2, 0.0), (0.3, 0.0), (0.4, 0.0)]]
    assert [len(g) for g in got] == [0, 0, 0, 0, 1]  # ended at 0.1, certain at 0.1 + 0.3
    assert got[-1][0].start == 0.0 and got[-1][0].end == pytest.approx(0.1)


@pytest.mark.parametrize("seed", range(6))
def test_batch_equals_streamed_equals_reference(seed):
    rng = np.random.default_rng(seed)
    n = 300
    times = np.cumsum(rng.uniform(0.05, 0.3, n))
    # smooth random scores so that regions of every length occur
    raw = rng.uniform(0, 1, (n + 6, 2))
    scores = np.stack([np.convolve(raw[:, k], np.ones(7) / 7, "valid") for k in range(2)], 1) ** 2 * 2.2
    scores = np.clip(scores, 0, 1)
    rules = EventRules(on=0.6, off=0.35, min_duration=float(rng.uniform(0, 0.6)), min_gap=float(rng.uniform(0, 0.8)))
    t_end = float(times[-1] + 0.2)
    batch = detect_events(times, scores, NAMES, FAMS, rules, t_end=t_end)
    tracker = EventTracker(NAMES, FAMS, rules)
    streamed = []
    for t, row in zip(times, scores):
        streamed += tracker.push(float(t), row)
    streamed += tracker.finish(t_end)
    streamed.sort(key=lambda e: (e.start, e.label))
    assert streamed == batch
    want = reference(times, scores, rules, t_end)
    assert len(want) > 3
    assert [(e.label, e.start, e.end) for e in batch] == [(a, pytest.approx(b), pytest.approx(c)) for a, b, c, _ in want]
    assert [e.score for e in batch] == pytest.approx([p for *_, p in want])


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        EventRules(on=0.3, off=0.5)
    tracker = EventTracker(NAMES, FAMS)
    with pytest.raises(ValueError):
        tracker.push(0.0, [0.1, 0.2, 0.3])
    tracker.push(1.0, [0.0, 0.0])
    with pytest.raises(ValueError):
        tracker.push(1.0, [0.0, 0.0])


def test_label_families_follow_the_ontology():
    names = default_label_space().vocabulary.names
    fams = label_families()
    assert len(fams) == len(names) and set(fams) <= set(FAMILIES_6)
    assert fams[names.index("Bark")] == "Animal"
    assert fams[names.index("Clapping")] == "Human sounds"
    assert label_families(("Bark", "Guitar")) == ("Animal", "Music")
