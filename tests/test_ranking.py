"""Hierarchy-aware display order: clear specific labels first, then what they have in common."""

from __future__ import annotations

import numpy as np

from guesser.labels import FAMILIES_6, default_label_space
from guesser.ranking import specific_first

NAMES = tuple(default_label_space().vocabulary.names)


def order(scores: dict[str, float], k: int = 5) -> list[str]:
    s = np.zeros(len(NAMES))
    for n, v in scores.items():
        s[NAMES.index(n)] = v
    return [NAMES[i] for i in specific_first(NAMES, s)[:k]]


def test_a_clear_leaf_leads_its_ancestors():
    got = order({"Music": 1.0, "Musical_instrument": 1.0, "Keyboard_(musical)": 0.9, "Piano": 0.85}, 4)
    assert got == ["Piano", "Keyboard_(musical)", "Musical_instrument", "Music"]


def test_sibling_leaves_come_before_their_shared_ancestor():
    got = order({"Human_voice": 1.0, "Speech": 1.0, "Speech_synthesizer": 1.0, "Male_speech_and_man_speaking": 0.75}, 4)
    assert got == ["Speech_synthesizer", "Male_speech_and_man_speaking", "Speech", "Human_voice"]


def test_an_unsure_leaf_does_not_displace_a_confident_ancestor():
    got = order({"Animal": 0.95, "Dog": 0.3, "Fowl": 0.25}, 3)
    assert got == ["Animal", "Dog", "Fowl"]


def test_unrelated_labels_stay_in_score_order():
    got = order({"Rain": 0.9, "Drill": 0.5, "Cough": 0.2}, 3)
    assert got == ["Rain", "Drill", "Cough"]


def test_every_label_appears_once():
    s = np.random.default_rng(0).random(len(NAMES))
    assert sorted(specific_first(NAMES, s).tolist()) == list(range(len(NAMES)))


def test_non_vocabulary_names_are_plain_descending():
    assert specific_first(FAMILIES_6, np.array([0.1, 0.5, 0.2, 0.9, 0.0, 0.3])).tolist() == [3, 1, 5, 2, 0, 4]
