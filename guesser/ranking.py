"""The order in which labels are shown: the most specific label that is clearly there comes first.

FSD50K's labels form a hierarchy (Piano < Keyboard (musical) < Musical
instrument < Music), and a model trained on its ancestor-propagated targets
gives an ancestor at least the probability of its likeliest descendant. Sorted
by probability alone, a piano clip shows "Music, Musical instrument, Keyboard"
and the word a person wants, *Piano*, comes fourth at best: the top three are
spent on what it implies.

So labels are shown in hierarchy-aware order. A descendant D of label L is
*strong* when its probability is at least ``RELATIVE`` (half) of L's and at
least ``ABSOLUTE``. L is then ranked right after the weakest of its strong
descendants (deeper labels first among equal keys): the specific readings the
model clearly hears come first, then what they have in common, so a piano
reads "Piano, Keyboard (musical), Musical instrument, Music" and espeak's voice
"Speech synthesizer, Male speech, Speech, Human voice". When no descendant is
strong (Animal 0.95 with Dog 0.3 and Fowl 0.25) the ancestor keeps its own
place: the confident general answer still leads the unsure specific ones.
Scores are never changed, only the order; metrics (mAP, lwlrap) do not depend
on it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

RELATIVE = 0.5
ABSOLUTE = 0.1


@lru_cache(maxsize=4)
def _hierarchy(names: tuple[str, ...]) -> tuple[tuple[tuple[int, ...], ...], np.ndarray]:
    """(descendants of each label, depth of each label) within ``names``, from the shipped ontology."""
    from guesser.labels import default_label_space

    space = default_label_space()
    if tuple(space.vocabulary.names) != names:
        return tuple(() for _ in names), np.zeros(len(names), np.int64)
    ancestors = space.ancestors
    desc: list[list[int]] = [[] for _ in names]
    for i, anc in enumerate(ancestors):
        for a in anc:
            desc[a].append(i)
    return tuple(tuple(d) for d in desc), np.array([len(a) for a in ancestors], np.int64)


def specific_first(names: tuple[str, ...], scores: np.ndarray) -> np.ndarray:
    """Indices of ``scores`` ([L] probabilities over ``names``) in display order (see the module doc).

    Names that are not guesser's 200-label vocabulary (families, a model's
    own classes) have no hierarchy here: plain descending order.
    """
    s = np.asarray(scores, dtype=np.float64)
    desc, depth = _hierarchy(tuple(names))
    key = s.copy()
    for i, ds in enumerate(desc):
        if ds:
            d = np.asarray(ds)
            strong = s[d][(s[d] >= RELATIVE * s[i]) & (s[d] >= ABSOLUTE)]
            if strong.size:
                key[i] = min(s[i], float(strong.min()))  # after the last of its clear specific readings
    # key (desc), then deeper first, then own score (desc), then vocabulary order
    return np.lexsort((np.arange(len(s)), -s, -depth, -key))
