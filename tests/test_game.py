"""guesser.game: targets, points by rank, streaks, rounds, and the high-score table's survival."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import pytest

from guesser.game import (DESK_FAMILIES, FAMILY, HEARD, HEARD_POINTS, LABEL, MAX_ENTRIES, PERSONAL, Game, HighScore,
                          HighScores, Target, draw_target, personal_score, points_for, rank_of, target_pool)


@dataclass
class S:
    name: str


@dataclass
class P:
    labels: list
    families: list


def pred(labels, families=("Human sounds", "Sounds of things", "Music")) -> P:
    return P([S(n) for n in labels], [S(f) for f in families])


CLAP = Target(LABEL, "Clapping")
HUMAN = Target(FAMILY, "Human sounds")


def test_pool_is_desk_labels_the_models_know_then_families():
    pool = target_pool(["Dog", "Knock", "Clapping", "Piano"])
    assert pool[:2] == [Target(LABEL, "Clapping"), Target(LABEL, "Knock")]  # desk order, unknown ones dropped
    assert [t.name for t in pool[2:]] == list(DESK_FAMILIES)
    assert target_pool(["Dog"]) == [Target(FAMILY, f) for f in DESK_FAMILIES]  # nothing makeable: families


def test_draw_avoids_repeating_the_last_target():
    pool = [CLAP, HUMAN]
    rng = random.Random(0)
    assert all(draw_target(pool, rng, avoid=CLAP) == HUMAN for _ in range(20))
    assert draw_target([CLAP], rng, avoid=CLAP) == CLAP
    with pytest.raises(ValueError):
        draw_target([], rng)


@pytest.mark.parametrize("rank, points", [(1, 100), (2, 60), (3, 40), (4, 10), (10, 10), (11, 0), (None, 0)])
def test_label_points_by_rank(rank, points):
    assert points_for(CLAP, rank) == points


@pytest.mark.parametrize("rank, points", [(1, 50), (2, 20), (3, 0), (6, 0)])
def test_family_points_by_rank(rank, points):
    assert points_for(HUMAN, rank) == points


def test_rank_of_reads_labels_or_families():
    p = pred(["Speech", "Cough", "Clapping"], ["Music", "Human sounds"])
    assert rank_of(CLAP, p) == 3
    assert rank_of(HUMAN, p) == 2
    assert rank_of(Target(LABEL, "Dog"), p) is None


def test_streaks_add_bonus_and_reset_on_a_miss():
    g = Game(rounds=5)
    r1 = g.play(CLAP, pred(["Clapping"]))
    r2 = g.play(CLAP, pred(["Speech", "Clapping"]))
    r3 = g.play(HUMAN, pred(["Speech"], ["Human sounds"]))
    assert (r1.total, r2.total, r3.total) == (100, 60 + 10, 50 + 20)
    assert g.streak == 3 and g.best_streak == 3
    r4 = g.play(CLAP, pred(["Speech", "Cough", "Knock", "Clapping"]))  # rank 4: points, but not a hit
    assert (r4.points, r4.bonus, r4.streak, g.streak, g.best_streak) == (10, 0, 0, 0, 3)
    r5 = g.play(CLAP, pred(["Clapping"]))
    assert r5.bonus == 0 and g.finished and g.score == 100 + 70 + 70 + 10 + 100
    with pytest.raises(ValueError):
        g.play(CLAP, pred(["Clapping"]))


def test_streak_bonus_is_capped():
    g = Game(rounds=10)
    results = [g.play(CLAP, pred(["Clapping"])) for _ in range(10)]
    assert [r.bonus for r in results] == [0, 10, 20, 30, 40, 50, 50, 50, 50, 50]


def test_high_scores_keep_the_best_and_round_trip(tmp_path):
    path = tmp_path / "hs.json"
    table = HighScores.load(path)
    assert table.entries == [] and table.notice is None and not table.qualifies(0)
    for i in range(MAX_ENTRIES):
        assert table.add(HighScore(f"p{i}", 100 + i, 5, 1, "2026-01-01")) == 1
    assert not table.qualifies(100)  # the table is full and 100 is its lowest
    assert table.add(HighScore("late", 100, 5, 1, "2026-01-02")) is None
    assert table.add(HighScore("tie", 105, 5, 1, "2026-01-02")) == 6  # ties go below older entries
    table.save()
    again = HighScores.load(path)
    assert [e.score for e in again.entries] == [109, 108, 107, 106, 105, 105, 104, 103, 102, 101]
    assert again.entries[5].name == "tie"


@pytest.mark.parametrize("content", ["{ not json", json.dumps({"scores": [{"name": "x"}]}), json.dumps([1, 2]),
                                     b"\xff\xfe\x00garbage"])
def test_corrupt_high_scores_are_moved_aside(tmp_path, content):
    path = tmp_path / "hs.json"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    table = HighScores.load(path)
    assert table.entries == [] and "starting a fresh table" in table.notice
    assert not path.exists() and (tmp_path / "hs.json.corrupt").exists()
    table.add(HighScore("me", 40, 5, 0, "2026-01-01"))
    table.save()
    assert [e.name for e in HighScores.load(path).entries] == ["me"]
    path.write_text("broken again")
    assert HighScores.load(path).notice and (tmp_path / "hs.json.corrupt.1").exists()  # older backup kept


# ---------------------------------------------------------------- personal labels as targets


@dataclass
class Sc:
    name: str
    score: float


KETTLE = Target(PERSONAL, "kettle")


def with_personal(scores: dict[str, float], labels=("Speech",)) -> P:
    p = pred(list(labels))
    p.personal = sorted((Sc(n, s) for n, s in scores.items()), key=lambda s: -s.score)
    return p


def test_the_pool_puts_the_players_own_sounds_first():
    pool = target_pool(["Knock"], personal=["kettle", "doorbell"])
    assert pool[:3] == [KETTLE, Target(PERSONAL, "doorbell"), Target(LABEL, "Knock")]
    assert target_pool(["Knock"]) == target_pool(["Knock"], personal=())  # none taught: the pool is unchanged
    assert KETTLE.title == "your kettle"


@pytest.mark.parametrize("score, rank, points, hit", [(0.91, 1, HEARD_POINTS, True), (HEARD, 1, 100, True),
                                                      (0.49, None, 0, False)])
def test_a_personal_target_is_heard_at_its_operating_point_or_not_at_all(score, rank, points, hit):
    p = with_personal({"kettle": score, "doorbell": 0.02})
    assert personal_score(KETTLE, p) == score
    assert rank_of(KETTLE, p) == rank and points_for(KETTLE, rank) == points
    result = Game().play(KETTLE, p)
    assert (result.points, result.hit) == (points, hit)


def test_a_personal_target_is_not_ranked_among_the_other_personal_labels():
    # the best of two personal labels, but not heard: no points (rank 1 of 2 would reward a sound nobody heard)
    p = with_personal({"kettle": 0.3, "doorbell": 0.1})
    assert rank_of(KETTLE, p) is None and points_for(KETTLE, rank_of(KETTLE, p)) == 0


def test_a_personal_target_missing_from_the_answer_scores_nothing():
    assert personal_score(KETTLE, pred(["Speech"])) is None  # a prediction without personal labels at all
    assert rank_of(KETTLE, with_personal({"doorbell": 0.9})) is None  # forgotten meanwhile


def test_heard_personal_targets_keep_a_streak_going():
    g = Game(rounds=3)
    g.play(CLAP, pred(["Clapping"]))
    r2 = g.play(KETTLE, with_personal({"kettle": 0.8}))
    assert (r2.points, r2.bonus, r2.streak) == (100, 10, 2)
    r3 = g.play(KETTLE, with_personal({"kettle": 0.2}))
    assert (r3.total, r3.streak, g.best_streak) == (0, 0, 2)
