"""Scoring personal labels wherever a guess is shown (classify, listen, the app, the game).

:func:`attach` reads the store once and hands the ensemble a
:class:`PersonalSet` of the labels made with exactly the models it runs; the
ensemble then asks for embeddings (they come with the forward pass, no extra
inference) and every :class:`~guesser.ensemble.Prediction` carries
``personal``: each label's score, 0.5 being its operating point. Labels made
with other models are not scored (their numbers would mean nothing) and are
named once, with the command that embeds them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from guesser.personal.probe import View, descriptor
from guesser.personal.store import PersonalLabel, Store, repair_hint, stamps_of



@dataclass
class PersonalSet:
    """The personal labels usable with one ensemble, scored together from one clip's embeddings."""

    labels: list[PersonalLabel]
    models: list[str]  # the ensemble's model names, in order (the descriptor's layout)
    stale: list[PersonalLabel] = field(default_factory=list)  # made with other models
    problems: list[str] = field(default_factory=list)  # label folders that could not be read

    def __bool__(self) -> bool:
        return bool(self.labels)

    @property
    def names(self) -> list[str]:
        return [lab.name for lab in self.labels]

    def score(self, embeddings: Mapping[str, Any], probs: Mapping[str, Any]) -> list[tuple[str, float]]:
        """(name, score) for every label, best first, from one clip's embeddings and probabilities (per model).

        Each label reads the models in its own order (the order it was taught
        with: ``label.models``), so the ensemble's order does not matter.
        """
        if not self.labels:
            return []
        views = {k: View.of(np.asarray(embeddings[k], np.float32), np.asarray(probs[k], np.float32))
                 for k in self.models}
        scored = []
        for lab in self.labels:
            x = descriptor(views, [s.name for s in lab.models])
            if x.shape[1] != lab.probe.coef.shape[0]:  # pragma: no cover - personal_set checked the widths
                continue
            scored.append((lab.name, float(lab.probe.score(x)[0])))
        return sorted(scored, key=lambda t: -t[1])

    def notices(self) -> list[str]:
        """One line per label that is not scored, saying why and what to do."""
        lines = [f"personal label {lab.name!r} was made with other models than these; "
                 f"embed its stored clips again with: guesser teach --reembed {lab.name!r}"
                 for lab in self.stale]
        return lines + [f"personal label skipped: {p}" for p in self.problems]


def personal_set(models: list[Any], store: Store | None = None) -> PersonalSet:
    """Split the store's labels into those made with ``models`` (scored) and the rest (stale).

    A label is scored when it was made with exactly these models (each one's
    name and checkpoint hash), in whatever order they are given now, and its
    views have the widths these models produce (its probabilities one per
    class); anything else is named, never scored.
    """
    labels, problems = (store or Store()).read_all()
    names = [m.name for m in models]
    if not labels:  # the common case: nothing to match, so no checkpoint is hashed at start-up
        return PersonalSet([], names, [], problems)
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        return PersonalSet([], names, [], problems + [f"two of these models are named {twice[0]!r}: personal labels "
                                                      "are scored only with models of distinct names"])
    current = set(stamps_of(models))
    classes = {m.name: len(m.classes) for m in models}
    usable, stale = [], []
    for lab in labels:
        if set(lab.models) != current:
            stale.append(lab)
        elif any(lab.views[s.name].probs.shape[1] != classes[s.name] for s in lab.models):
            problems.append(f"{lab.name!r}: its stored views do not fit these models' outputs; "
                            f"{repair_hint(lab.folder) if lab.folder else 'teach it again'}")
        else:
            usable.append(lab)
    return PersonalSet(usable, names, stale, problems)


def attach(ensemble: Any, store: Store | None = None) -> PersonalSet:
    """Give ``ensemble`` the personal labels it can score; returns them (with what is stale, for a notice)."""
    found = personal_set(ensemble.models, store)
    ensemble.personal = found if found else None
    return found
