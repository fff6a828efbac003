"""The app's work with personal labels, run in thread workers: attach, teach, list, forget, re-embed.

Why workers: each of these reads or writes the store (safetensors + WAV
files), and teaching embeds the takes and fits a classifier against a few
thousand background sounds, which takes seconds; the event loop never waits
for them. Like :mod:`guesser.tui.workers`, they talk back only through
:mod:`guesser.tui.messages`, and every failure is one line (a bug is one line
naming the crash log), never a traceback.

After anything that changes the store the ensemble is given its personal
labels again (:func:`guesser.personal.matcher.attach`), so every later
prediction (a result, listen mode, a game round) scores the new set.
``guesser.personal`` is imported inside the functions: it brings torch, which
the app's modules never import themselves (docs/architecture.md).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from textual.message_pump import MessagePump

from guesser.errors import GuesserError
from guesser.tui import messages as m


def _one_line(e: Exception, what: str) -> GuesserError:
    """A GuesserError as it is; anything else (a bug) as one line naming the crash log."""
    if isinstance(e, GuesserError):
        return e
    from guesser.crashlog import report

    return GuesserError(f"{what} failed: {report(e)}")


def _attach(ensemble: Any) -> Any:
    from guesser.personal.matcher import attach

    return attach(ensemble)


def attach_personal(target: MessagePump, ensemble: Any) -> None:
    """Give the freshly loaded ensemble the user's personal labels; post what was found (or one line)."""
    try:
        found = _attach(ensemble)
    except Exception as e:  # noqa: BLE001 - the app works without personal labels: say why, go on
        target.post_message(m.Notice(f"personal labels not loaded: {_one_line(e, 'reading personal labels')}",
                                     "warning"))
        return
    target.post_message(m.PersonalAttached(found))


def teach_label(target: MessagePump, ensemble: Any, name: str, takes: Sequence[tuple[np.ndarray, int, str]],
                teach: Callable[..., Any] | None = None) -> None:
    """Learn ``name`` from ``takes`` (samples, rate, source), store it, re-attach; post Taught or TeachFailed.

    :func:`guesser.personal.teach.teach` checks everything before it writes,
    so a failure here leaves the store as it was. ``teach`` replaces it in tests.
    """
    try:
        from guesser.personal.teach import Example

        if teach is None:
            from guesser.personal.teach import teach
        examples = [Example(np.asarray(s, np.float32), int(rate), source) for s, rate, source in takes]
        label = teach(name, examples, ensemble, progress=lambda text: target.post_message(m.TeachProgress(text)))
        _attach(ensemble)
    except Exception as e:  # noqa: BLE001 - one line on the screen, never a traceback
        target.post_message(m.TeachFailed(_one_line(e, "teaching")))
        return
    target.post_message(m.Taught(label))


def list_labels(target: MessagePump, ensemble: Any | None) -> None:
    """Read the store; post the labels, the unreadable folders and the loaded models' stamps."""
    try:
        from guesser.personal.store import Store, stamps_of

        labels, problems = Store().read_all()
        current = frozenset(stamps_of(ensemble.models)) if ensemble is not None else None
    except Exception as e:  # noqa: BLE001
        target.post_message(m.PersonalFailed(_one_line(e, "reading personal labels")))
        return
    target.post_message(m.PersonalListed(labels, problems, current))


def forget_label(target: MessagePump, ensemble: Any | None, name: str) -> None:
    """Remove a label from the store (whole, in one step) and stop scoring it."""
    try:
        from guesser.personal.store import Store

        Store().forget(name)
        if ensemble is not None:
            _attach(ensemble)
    except Exception as e:  # noqa: BLE001
        target.post_message(m.PersonalFailed(_one_line(e, f"forgetting {name!r}")))
        return
    target.post_message(m.PersonalChanged(f"forgot {name!r}"))


def reembed_label(target: MessagePump, ensemble: Any, name: str) -> None:
    """Embed a label's stored clips with the models now loaded, refit it in place, and score it again."""
    try:
        from guesser.personal.teach import reembed

        label = reembed(name, ensemble)
        _attach(ensemble)
    except Exception as e:  # noqa: BLE001
        target.post_message(m.PersonalFailed(_one_line(e, f"re-embedding {name!r}")))
        return
    target.post_message(m.PersonalChanged(f"{name!r} embedded again from its {label.examples} stored clips: "
                                          f"{label.estimate.text()}"))
