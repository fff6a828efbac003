"""``guesser teach``: learn, list, forget and re-embed personal labels from the command line.

Examples come from files (``guesser teach kettle a.wav b.wav c.wav``) or from
the microphone (``--record 5``: a countdown, then each take; a silent take is
said and taken again, up to twice). Nothing is written until the label has
been fitted; the leave-one-out estimate is printed when it is made.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

from guesser.errors import GuesserError
from guesser.fileio import printable, shown
from guesser.personal.store import Store, check_name
from guesser.personal.teach import MAX_EXAMPLES, Example, load_examples, reembed, teach

RETRIES_PER_TAKE = 2


def run_teach(name: str | None, files: Sequence[Path] = (), *, record: int = 0, seconds: float = 3.0,
              device: str | None = None, countdown: int = 3, list_labels: bool = False,
              forget: str | None = None, reembed_name: str | None = None, replace: bool = False,
              models: Sequence[Path] | None = None, backend: Any = None, ensemble: Any = None,
              store: Store | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """One ``guesser teach`` invocation; returns the exit code (errors are GuesserError: one line)."""
    out, err = out or sys.stdout, err or sys.stderr
    store = store or Store()
    chosen = [bool(list_labels), forget is not None, reembed_name is not None, name is not None]
    if sum(chosen) != 1:
        raise GuesserError("say what to do: guesser teach NAME FILE… | NAME --record N | --list | --forget NAME "
                           "| --reembed NAME")
    if list_labels:
        return _list(store, models, ensemble, out)
    if forget is not None:
        store.forget(forget)
        out.write(f"forgot {forget!r}\n")
        return 0
    ensemble = ensemble or _load(models)
    if reembed_name is not None:
        label = reembed(reembed_name, ensemble, store)
        out.write(f"{label.name!r} embedded again with {len(ensemble.models)} models from its "
                  f"{label.examples} stored clips\n{label.estimate.text()}\n")
        return 0
    assert name is not None
    name = check_name(name)  # before any recording: a clash is said before the user makes noise
    store.check_free(name, replace=replace)
    if record and files:
        raise GuesserError("give example files or --record N, not both")
    if len(files) > MAX_EXAMPLES:  # counted before anything is decoded
        raise GuesserError(f"at most {MAX_EXAMPLES} examples, got {len(files)}: a handful of clear takes works best")
    from guesser.personal.background import find_background

    find_background(ensemble.models)  # these models must have one: said before any take is recorded
    if record:
        if not 3 <= record <= 20:
            raise GuesserError(f"--record takes 3 to 20 takes, got {record}")
        examples, problems = _record(record, seconds, device, countdown, backend, err)
    elif files:
        examples, problems = load_examples(list(files))
        for p in problems:
            err.write(f"skipped: {p}\n")
    else:
        raise GuesserError(f"give {name!r} some examples: 3–20 files, or --record 5")
    # skipped files were named above, one line each; silent takes were said as they happened
    label = teach(name, examples, ensemble, store, problems=[] if files else problems, replace=replace,
                  progress=lambda text: err.write(text + "…\n"))
    out.write(f"learned {label.name!r} from {label.examples} examples ({shown(store.folder(label.name))})\n")
    out.write(label.estimate.text() + "\n")
    if label.estimate.recognised < label.estimate.examples:
        out.write("tip: takes that differ a lot from each other, or from what you will play later, "
                  "teach less; a few more clear takes help\n")
    return 0


def _load(models: Sequence[Path] | None) -> Any:
    from guesser.ensemble import Ensemble

    return Ensemble.load(list(models) if models else None)


def _list(store: Store, models: Sequence[Path] | None, ensemble: Any, out: TextIO) -> int:
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    labels, problems = store.read_all()
    console = Console(file=out, highlight=False)
    root = escape(shown(store.root))  # untrusted text: never markup, never a terminal escape
    if not labels and not problems:
        console.print(f"no personal labels yet (teach one: guesser teach NAME --record 5); they live in {root}")
        return 0
    current = None
    try:
        from guesser.personal.store import stamps_of

        current = set(stamps_of((ensemble or _load(models)).models))
    except GuesserError:
        pass
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title=f"personal labels ({root})",
                  title_justify="left")
    for col in ("name", "examples", "leave-one-out", "false alarms", "made", "models"):
        table.add_column(col)
    for lab in labels:
        e = lab.estimate
        ok = current is None or set(lab.models) == current
        table.add_row(escape(printable(lab.name)), str(lab.examples), f"{e.recognised}/{e.examples}",
                      f"{e.false_alarms:.1%}", escape(printable(lab.created[:10])),
                      "current" if ok else "[yellow]other: guesser teach --reembed[/yellow]")
    console.print(table)
    for p in problems:
        console.print(f"[red]unreadable:[/red] {escape(printable(p))}")
    return 0


def _record(n: int, seconds: float, device: str | None, countdown: int, backend: Any,
            err: TextIO) -> tuple[list[Example], list[str]]:
    """N takes from the microphone, each after a countdown; a silent take is retried (at most twice)."""
    from guesser.recorder import Recorder, check_not_silent

    if not 0.5 <= seconds <= 10:
        raise GuesserError(f"--seconds must be in [0.5, 10] for a take, got {seconds:g}")
    examples: list[Example] = []
    problems: list[str] = []
    with Recorder(backend, device) as rec:
        take = 1
        retries = 0
        while take <= n:
            for i in range(countdown, 0, -1):
                err.write(f"take {take}/{n} in {i}…\n")
                err.flush()
                time.sleep(1.0 if backend is None else 0.0)
            err.write(f"take {take}/{n}: recording {seconds:g} s — make the sound now\n")
            err.flush()
            samples = rec.capture(seconds)
            assert samples is not None
            try:
                check_not_silent(samples, rec.device_name)
            except GuesserError as e:
                problems.append(f"take {take}: {e}")
                retries += 1
                if retries > RETRIES_PER_TAKE:
                    break
                err.write(f"take {take} was silent: again\n")
                continue
            retries = 0
            examples.append(Example(samples, rec.samplerate, f"microphone take {take}"))
            take += 1
    return examples, problems
