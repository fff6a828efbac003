"""Vocabulary, ontology ancestors and families, checked against independent references.

References: an independent top-down walk of the ontology's ``child_ids``
(the code under test walks parents bottom-up), the label lists FSD50K-style
propagation gives (as documented for fsd50k-mini), and the family decisions in
the ``guesser.labels`` docstring.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from guesser.errors import DataError
from guesser.labels import (
    AMBIGUOUS,
    FAMILIES_5,
    FAMILIES_6,
    Ontology,
    Vocabulary,
    default_label_space,
)

DATA = Path(__file__).resolve().parents[1] / "guesser" / "data"


@pytest.fixture(scope="module")
def space():
    return default_label_space()


@pytest.fixture(scope="module")
def raw_ontology() -> list[dict]:
    return json.loads((DATA / "ontology.json").read_text())


def descendants(nodes: list[dict]) -> dict[str, set[str]]:
    """Top-down: every class below each class, from child_ids only."""
    kids = {n["id"]: n.get("child_ids", []) for n in nodes}
    memo: dict[str, set[str]] = {}

    def walk(m: str) -> set[str]:
        if m not in memo:
            out: set[str] = set()
            for k in kids.get(m, []):
                out |= {k} | walk(k)
            memo[m] = out
        return memo[m]

    return {m: walk(m) for m in kids}


# ---------------------------------------------------------------- vocabulary


def test_vocabulary_is_fsd50k_200_rows(space):
    v = space.vocabulary
    with (DATA / "vocabulary.csv").open() as f:
        rows = list(csv.reader(f))
    assert len(v) == 200 == len(rows)
    assert [v.index[r[1]] for r in rows] == [int(r[0]) for r in rows]
    assert all(v.mids[int(r[0])] == r[2] for r in rows)
    assert v.mid_index["/m/05tny_"] == v.index["Bark"]
    assert v.names[0] == "Accelerating_and_revving_and_vroom" and v.names[-1] == "Zipper_(clothing)"


def test_vocabulary_sorts_rows_by_index(tmp_path):
    p = tmp_path / "v.csv"
    p.write_text("1,B,/m/b\n0,A,/m/a\n\n2,C,/m/c\n")
    v = Vocabulary.from_csv(p)
    assert v.names == ("A", "B", "C") and v.mids == ("/m/a", "/m/b", "/m/c")


@pytest.mark.parametrize(
    "text, message",
    [
        ("0,A,/m/a\n1,B\n", ":2: expected 'idx,label,mid'"),
        ("0,A,/m/a\nx,B,/m/b\n", ":2: expected 'idx,label,mid'"),
        ("0,A,/m/a\n2,B,/m/b\n", "indices must run 0..1"),
        ("0,A,/m/a\n1,A,/m/b\n", "duplicate label names"),
        ("\n\n", "vocabulary is empty"),
        ('0,"A,/m/a\n', "expected 'idx,label,mid'"),
    ],
)
def test_vocabulary_errors_name_file_and_row(tmp_path, text, message):
    p = tmp_path / "vocabulary.csv"
    p.write_text(text)
    with pytest.raises(DataError) as e:
        Vocabulary.from_csv(p)
    assert str(p) in str(e.value) and message in str(e.value)
    assert "\n" not in str(e.value)


def test_vocabulary_missing_file(tmp_path):
    with pytest.raises(DataError, match="vocabulary file not found"):
        Vocabulary.from_csv(tmp_path / "nope.csv")


@pytest.mark.parametrize("text", ["not json", '{"id": 1}', '[{"name": "x"}]'])
def test_ontology_errors(tmp_path, text):
    p = tmp_path / "ontology.json"
    p.write_text(text)
    with pytest.raises(DataError, match="not an AudioSet ontology"):
        Ontology.from_json(p)
    with pytest.raises(DataError, match="ontology file not found"):
        Ontology.from_json(tmp_path / "missing.json")


# ---------------------------------------------------------------- ancestors


def test_ancestors_match_a_top_down_walk(space, raw_ontology):
    below = descendants(raw_ontology)
    vocab = space.vocabulary
    for i, mid in enumerate(vocab.mids):
        expected = sorted(vocab.mid_index[a] for a in vocab.mids if mid in below[a])
        assert list(space.ancestors[i]) == expected, vocab.names[i]


@pytest.mark.parametrize(
    "label, ancestors",
    [  # FSD50K-style propagation, as listed for fsd50k-mini's source classes
        ("Bark", {"Dog", "Domestic_animals_and_pets", "Animal"}),
        ("Vehicle_horn_and_car_horn_and_honking", {"Car", "Alarm", "Motor_vehicle_(road)", "Vehicle"}),
        ("Church_bell", {"Bell", "Musical_instrument", "Music"}),
        ("Clapping", {"Hands", "Human_group_actions"}),  # two parents
        ("Chirp_and_tweet", {"Bird_vocalization_and_bird_call_and_bird_song", "Bird", "Wild_animals", "Animal"}),
        ("Drum_kit", {"Percussion", "Musical_instrument", "Music"}),  # not Drum: a kit is not under Drum
        ("Tick-tock", {"Clock", "Mechanisms"}),
        ("Music", set()),
        ("Animal", set()),
    ],
)
def test_known_ancestors(space, label, ancestors):
    v = space.vocabulary
    assert {v.names[a] for a in space.ancestors[v.index[label]]} == ancestors


# ---------------------------------------------------------------- families


def test_top_level_categories_are_the_seven_audioset_roots(space):
    o = space.ontology
    roots = {o.names[m] for m in o.names if not o.parents.get(m)}
    assert roots == set(FAMILIES_6) | {"Channel, environment and background"}


def test_channel_environment_background_holds_no_vocabulary_label(space, raw_ontology):
    below = descendants(raw_ontology)
    root = next(n["id"] for n in raw_ontology if n["name"] == "Channel, environment and background")
    assert not below[root] & set(space.vocabulary.mids)


@pytest.mark.parametrize(
    "label, families",
    [
        ("Bark", {"Animal"}),
        ("Piano", {"Music"}),
        ("Female_speech_and_woman_speaking", {"Human sounds"}),
        ("Rain", {"Natural sounds"}),
        ("Engine", {"Sounds of things"}),
        ("Bell", {"Music", "Sounds of things"}),  # a DAG: both, on purpose
        ("Cowbell", {"Animal", "Music", "Sounds of things"}),
        ("Knock", {"Sounds of things"}),  # ambiguous dropped: the source is known
        ("Crackle", {"Natural sounds"}),
        ("Hiss", {"Animal", "Natural sounds"}),
        ("Tearing", {AMBIGUOUS}),  # only ambiguous: kept in the 6-family set
    ],
)
def test_label_families(space, label, families):
    i = space.vocabulary.index[label]
    assert {FAMILIES_6[f] for f in space.label_families(FAMILIES_6)[i]} == families
    assert {FAMILIES_5[f] for f in space.label_families(FAMILIES_5)[i]} == families - {AMBIGUOUS}


def test_family_rules_over_the_whole_vocabulary(space, raw_ontology):
    """Recompute every label's families from the roots above it (top-down) and apply the documented rules."""
    below = descendants(raw_ontology)
    roots = {n["id"]: n["name"] for n in raw_ontology if n["name"] in FAMILIES_6}
    fam6 = space.label_families(FAMILIES_6)
    fam5 = space.label_families(FAMILIES_5)
    only_ambiguous = []
    for i, mid in enumerate(space.vocabulary.mids):
        above = {name for r, name in roots.items() if mid in below[r] or mid == r}
        if len(above) > 1:
            above.discard(AMBIGUOUS)
        assert {FAMILIES_6[f] for f in fam6[i]} == above
        assert fam6[i], "every label has a family in the 6-family set"
        if above == {AMBIGUOUS}:
            only_ambiguous.append(space.vocabulary.names[i])
            assert fam5[i] == ()
    assert sorted(only_ambiguous) == ["Crumpling_and_crinkling", "Crushing", "Screech", "Tearing"]


def test_family_matrix_matches_label_families(space):
    for fams in (FAMILIES_6, FAMILIES_5):
        m = space.family_matrix(fams)
        assert m.shape == (200, len(fams)) and m.dtype == np.float32
        for i, fs in enumerate(space.label_families(fams)):
            assert set(np.flatnonzero(m[i])) == set(fs)
