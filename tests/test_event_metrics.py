"""DCASE event-based metrics (trainer.event_metrics) on examples worked out by hand."""

from __future__ import annotations

import pytest

from trainer.event_metrics import EventBasedMetrics, Span, merge_spans

REF = [Span("dog", 1.0, 3.0), Span("dog", 5.0, 6.0), Span("cat", 2.0, 4.0)]
EST = [Span("dog", 1.2, 2.5),   # onset 0.2 s off: a hit for dog 1
       Span("dog", 4.8, 7.0),   # onset 0.2 s off dog 2, but its offset is 1.0 s off (allowed: max(0.25, 0.5 × 1 s))
       Span("dog", 5.1, 5.5),   # onset 0.1 s off dog 2, offset 0.5 s off: a hit, but dog 2 counts once
       Span("cat", 2.3, 4.0)]   # onset 0.3 s off: outside the 0.25 s collar


def test_onset_only_worked_example():
    m = EventBasedMetrics(t_collar=0.25)
    assert m.evaluate(REF, EST) == 2
    assert (m.overall.ref, m.overall.sys, m.overall.tp) == (3, 4, 2)
    assert m.overall.precision == pytest.approx(0.5)
    assert m.overall.recall == pytest.approx(2 / 3)
    assert m.overall.f1 == pytest.approx(4 / 7)  # 2·2 / (3 + 4)
    assert m.per_class["dog"].f1 == pytest.approx(0.8) and m.per_class["cat"].f1 == 0.0
    assert m.class_wise_f1() == pytest.approx(0.4)


def test_offset_condition_worked_example():
    m = EventBasedMetrics(t_collar=0.25, offset=True)
    assert m.evaluate(REF, EST) == 2  # dog 1 by its first estimate; dog 2 only by the third (offset 0.5 ≤ 0.5)
    only_long = EventBasedMetrics(t_collar=0.25, offset=True)
    assert only_long.evaluate(REF, [EST[1]]) == 0  # offset 1.0 s from a 1 s event: more than half its length


def test_matching_is_optimal_not_greedy():
    ref = [Span("dog", 1.0, 2.0), Span("dog", 1.3, 2.0)]
    est = [Span("dog", 1.2, 2.0), Span("dog", 0.9, 2.0)]  # greedy pairs ref 1 with est 1 and leaves ref 2 alone
    m = EventBasedMetrics(t_collar=0.25)
    assert m.evaluate(ref, est) == 2 and m.overall.f1 == 1.0


def test_files_add_up_and_empty_files_count():
    m = EventBasedMetrics()
    m.evaluate([Span("a", 0.0, 1.0)], [Span("a", 0.1, 1.0)])
    m.evaluate([Span("a", 3.0, 4.0)], [])  # a miss
    m.evaluate([], [Span("b", 0.0, 1.0)])  # a false alarm
    assert (m.overall.ref, m.overall.sys, m.overall.tp) == (2, 2, 1)
    assert m.overall.f1 == pytest.approx(0.5)
    assert m.class_wise_f1() == pytest.approx(2 / 3)  # only "a" has references: 2·1 / (2 + 1)


def test_merge_spans_joins_overlapping_events_of_a_label():
    spans = [Span("Animal", 1.0, 2.0), Span("Animal", 1.5, 3.0), Span("Animal", 3.2, 4.0), Span("Music", 1.0, 2.0)]
    assert merge_spans(spans) == [Span("Animal", 1.0, 3.0), Span("Music", 1.0, 2.0), Span("Animal", 3.2, 4.0)]
    assert merge_spans(spans, gap=0.5)[0] == Span("Animal", 1.0, 4.0)
