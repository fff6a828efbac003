"""Making a personal label: examples -> embeddings -> a checked classifier -> the store.

The examples are decoded, refused when unusable (silent, empty, not audio:
each one line), embedded by the ensemble's one scoring path
(:meth:`guesser.ensemble.Ensemble.predict` with ``embeddings=True``) and
fitted against the background sample of the same models (:mod:`.probe`). The
label is written only once everything worked, so a failure never leaves half
a label behind (:class:`.store.Store`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from guesser.errors import AudioError, GuesserError
from guesser.fileio import shown
from guesser.personal.background import BackgroundSample, find_background
from guesser.personal.probe import MIN_EXAMPLES, View, descriptor, fit_probe
from guesser.personal.store import PersonalLabel, Store, check_name, stamps_of

MAX_EXAMPLES = 20
MAX_EXAMPLE_SECONDS = 30.0  # an example is one sound: longer files are cut (the first 30 s)


@dataclass
class Example:
    samples: np.ndarray  # mono float32
    sample_rate: int
    source: str  # a file name, or "microphone take 3"


def load_examples(files: Sequence[Path]) -> tuple[list[Example], list[str]]:
    """(usable examples, one line per file that is not): silent, empty or undecodable files are refused."""
    from guesser.audio import load_audio

    usable, problems = [], []
    for f in files:
        try:
            audio = load_audio(f, allow_silent=False, max_seconds=MAX_EXAMPLE_SECONDS)
        except AudioError as e:
            problems.append(str(e))
            continue
        usable.append(Example(np.asarray(audio.mono, np.float32), int(audio.sample_rate), shown(f)))
    return usable, problems


def check_count(usable: int, problems: Sequence[str]) -> None:
    if usable < MIN_EXAMPLES:
        why = f" ({'; '.join(problems)})" if problems else ""
        raise GuesserError(f"need at least {MIN_EXAMPLES} usable examples to learn a sound, got {usable}{why}")
    if usable > MAX_EXAMPLES:
        raise GuesserError(f"at most {MAX_EXAMPLES} examples, got {usable}: a handful of clear takes works best")


def embed(ensemble: Any, examples: Sequence[Example]) -> dict[str, View]:
    """Each model's view of the examples (pooled embeddings and probabilities): model name -> View [k]."""
    rows: dict[str, list[View]] = {m.name: [] for m in ensemble.models}
    for ex in examples:
        pred = ensemble.predict(ex.samples, ex.sample_rate, embeddings=True)
        for name in rows:
            rows[name].append(View.of(pred.embeddings[name].numpy(), pred.clip_probs[name].numpy()))
    return {k: View.stack(v) for k, v in rows.items()}


def fit_label(name: str, ensemble: Any, views: dict[str, View], sources: Sequence[str],
              background: BackgroundSample | None = None) -> PersonalLabel:
    """The classifier for ``name`` from the examples' views, with its cross-validated estimate."""
    background = background or find_background(ensemble.models)
    names = [m.name for m in ensemble.models]
    if len(set(names)) != len(names):
        raise GuesserError("two of these models share a name: a personal label needs models of distinct names")
    fitted = fit_probe(descriptor(views, names), descriptor(background.views, names))
    return PersonalLabel(name, stamps_of(ensemble.models), views, fitted.probe, fitted.estimate, tuple(sources),
                         {m.name: m.features.to_dict() for m in ensemble.models})


def teach(name: str, examples: Sequence[Example], ensemble: Any, store: Store | None = None, *,
          problems: Sequence[str] = (), replace: bool = False,
          progress: Callable[[str], None] | None = None) -> PersonalLabel:
    """Learn ``name`` from ``examples`` and store it (its clips too); every check comes before any write."""
    store = store or Store()
    name = check_name(name)
    store.check_free(name, replace=replace)
    check_count(len(examples), problems)
    background = find_background(ensemble.models)  # before the work: these models must have one
    say = progress or (lambda _text: None)
    say(f"embedding {len(examples)} examples with {len(ensemble.models)} models")
    views = embed(ensemble, examples)
    say("fitting against {:,} background sounds".format(len(background)))
    label = fit_label(name, ensemble, views, [e.source for e in examples], background)
    store.write(label, [(e.samples, e.sample_rate) for e in examples], replace=replace)
    return label


def reembed(name: str, ensemble: Any, store: Store | None = None) -> PersonalLabel:
    """Embed a label's stored clips again with the models now installed, and refit it in place.

    The clips are written back as they were decoded (mono, at most
    :data:`MAX_EXAMPLE_SECONDS`): a clip that is a symbolic link is read, never
    copied whole.
    """
    store = store or Store()
    old = store.get(name)
    clips = old.clip_paths()
    if len(clips) != old.examples:
        raise GuesserError(f"{name!r}: its folder {shown(old.folder / 'clips')} holds {len(clips)} clips for "
                           f"{old.examples} examples; teach it again from new takes")
    examples, problems = load_examples(clips)
    if problems:
        raise GuesserError(f"{name!r}: a stored clip is damaged ({problems[0]}); teach it again from new takes")
    for ex, src in zip(examples, old.sources):
        ex.source = src
    label = fit_label(old.name, ensemble, embed(ensemble, examples), old.sources)
    label.created = old.created
    store.write(label, [(e.samples, e.sample_rate) for e in examples], replace=True)
    return label
