"""``guesser select``: choose the ensemble's members and weights on val (Caruana et al. 2004).

Greedy forward selection with replacement: start from nothing; at each step
add the candidate run (any trained run, any member, old or new) whose addition
gives the best validation objective; stop when no addition improves it by more
than ``tol``. A run's weight is how often it was picked. Each member is one
run: the ensemble is every member's best model (``guesser export`` writes one
file per member), so once a member has a run, its other runs are no longer
candidates; picking that run again still raises its weight. A run that never
improves val is left out, however much it cost to train: every model in the
shipped ensemble has earned its place, and the ones that did not cost nothing
at inference.

The objective is the mean of the label mAP and the family mAP on val, computed
with the same fusion the app uses (each model's weight scales its labels in
the label mean and its families in the family mean), so what is chosen here
is exactly what ``guesser classify`` then runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from guesser.errors import GuesserError
from guesser.labels import default_label_space
from guesser.models import TASK_LABELS
from trainer import metrics as M
from trainer.records import Selection, SelectionStep


def objective(runs, weights: dict[str, float]) -> tuple[float, float, float]:
    """(objective, label mAP, family mAP) of the weighted ensemble of ``runs`` on val."""
    from trainer.evaluate import ensemble_scores, family_map, label_space

    chosen = [r for r in runs if weights.get(r.model.name, 0) > 0]
    labels, families = ensemble_scores(chosen, "val", weights)
    space = label_space(default_label_space().vocabulary.names)
    fam = family_map(families, space)
    lab = M.mean_average_precision((labels.targets > 0).astype(np.uint8), labels.probs) if labels is not None else 0.0
    return 0.5 * (lab + fam), lab, fam


def forward_select(runs, max_steps: int = 12, tol: float = 1e-4) -> Selection:
    """Caruana's greedy forward selection with replacement over ``runs`` (each with val scores)."""
    if not runs:
        raise GuesserError("no candidate runs to select from")
    if not any(r.model.task == TASK_LABELS for r in runs):
        raise GuesserError("the ensemble needs at least one labels model among the candidates")
    counts: dict[str, int] = {}
    best = -np.inf
    sel = Selection({}, best)
    for step in range(max_steps):
        trials = []
        for r in runs:
            if _member_taken(runs, counts, r):
                continue
            w = dict(counts)
            w[r.model.name] = w.get(r.model.name, 0) + 1
            if not any(n for n, c in w.items() if c and _task(runs, n) == TASK_LABELS):
                continue  # a family model alone gives no labels: not a candidate ensemble yet
            trials.append((objective(runs, w), r.model.name, w))
        (score, lab, fam), name, w = max(trials, key=lambda t: t[0][0])
        if score <= best + tol:
            break
        counts, best = w, score
        sel.history.append(SelectionStep(step + 1, name, score, lab, fam))
    sel.weights, sel.objective = counts, best
    return sel


def _member_taken(runs, counts: dict[str, int], r) -> bool:
    """Whether another run of ``r``'s member is already in the ensemble."""
    return any(c and n != r.model.name and _member(runs, n) == r.model.member for n, c in counts.items())


def _member(runs, name: str) -> str:
    return next(r.model.member for r in runs if r.model.name == name)


def _task(runs, name: str) -> str:
    return next(r.model.task for r in runs if r.model.name == name)


def calibrate_confidence(runs, sel: Selection):
    """The "not sure" rule (:mod:`guesser.confidence`) for the selected ensemble, from its val scores."""
    from guesser.confidence import calibrate
    from guesser.ranking import specific_first
    from trainer.evaluate import ensemble_scores

    chosen = [r for r in runs if sel.weights.get(r.model.name, 0) > 0]
    labels, _ = ensemble_scores(chosen, "val", {k: float(v) for k, v in sel.weights.items()})
    names = tuple(default_label_space().vocabulary.names)
    top = np.array([specific_first(names, p)[0] for p in labels.probs])  # the label the app names first
    rows = np.arange(len(top))
    return calibrate(labels.probs[rows, top], labels.targets[rows, top] > 0)


def write_selected_index(out: Path, runs, sel: Selection) -> Path:
    """A models index (the one writer, :class:`guesser.checkpoint.ModelsIndex`) with the chosen runs, their
    weights, the selection's steps and the calibrated "not sure" rule; paths relative to the index if possible."""
    from guesser.checkpoint import IndexEntry, ModelsIndex, score_name

    out = Path(out)
    entries = []
    for r in runs:
        w = sel.weights.get(r.model.name, 0)
        if not w:
            continue
        path = r.model.path.resolve()
        try:
            rel = str(path.relative_to(out.parent.resolve()))
        except ValueError:
            rel = str(path)
        entries.append(IndexEntry(path=rel, member=r.model.member, name=r.model.name, task=r.model.task,
                                  score_name=score_name(r.model.task), weight=float(w)))
    rule = calibrate_confidence(runs, sel)
    index = ModelsIndex(tuple(entries), confidence=rule.to_dict(),
                        selection=sel.to_json())
    return index.write(out)


def run_select(runs: list[Path], cache: Path, out: Path, *, max_steps: int = 12, console=None) -> Selection:
    """Score every run on val, select, write ``out`` (a models index) and print what was chosen and why."""
    from rich.console import Console
    from rich.table import Table

    from guesser.ensemble import load_model
    from trainer.evaluate import ModelRun, checkpoint_of, score
    from trainer.device import pick_device

    console = console or Console(stderr=True)
    dev = pick_device("cpu")
    candidates = []
    seen: set[str] = set()
    for r in runs:
        ckpt = checkpoint_of(Path(r))
        model = load_model(ckpt, optimize=True)
        if model.name in seen:
            raise GuesserError(f"{ckpt}: two candidates are named {model.name!r}; rename one run")
        seen.add(model.name)
        with console.status(f"scoring {model.name} on val …"):
            val, cache_dir = score(model, Path(cache), "val", dev)
        candidates.append(ModelRun(model, val, val, cache_dir))
    sel = forward_select(candidates, max_steps=max_steps)
    write_selected_index(out, candidates, sel)
    table = Table(title=f"forward selection on val → {out}")
    for col in ("step", "added", "objective", "val mAP", "val family mAP"):
        table.add_column(col)
    for h in sel.history:
        table.add_row(str(h.step), h.added, f"{h.objective:.4f}", f"{h.val_map:.4f}", f"{h.val_family_map:.4f}")
    console.print(table)
    chosen = {c.model.member for c in candidates if c.model.name in sel.weights}
    left_out = [c.model.name for c in candidates if c.model.name not in sel.weights and c.model.member not in chosen]
    second = [c.model.name for c in candidates if c.model.name not in sel.weights and c.model.member in chosen]
    console.print("weights: " + ", ".join(f"{n} {w}" for n, w in sel.weights.items())
                  + (f"; left out (never improved val): {', '.join(left_out)}" if left_out else "")
                  + (f"; other runs of the chosen members (one run each): {', '.join(second)}" if second else ""))
    return sel
