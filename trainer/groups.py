"""Scores per group of eval clips (a data set's sources, recording devices, speakers, …).

The corpus's own val and eval splits share its shortcuts (a source's band
limit, its level, its synthetic speech), so one overall mAP cannot show that a
model fails on one kind of recording. ``--groups FILE.csv:COLUMN`` names a group
for each clip (``fname`` column → COLUMN), e.g. fsd50k-mini's
``sources.csv:origin``; on the real FSD50K any CSV a user writes.

Per group:

* ``map``: for each label with a positive in the group, the AP of ranking the
  group's clips among *all* the split's clips that lack the label (the group's
  positives must beat every other source's negatives). Within a group alone,
  a source whose clips all carry Speech would score AP 1 whatever the model
  did; this version asks whether its speech is found among everything else;
* ``lwlrap``, ``top1`` (the top label is one of the clip's labels) and
  ``top_family`` (the top family is one of the clip's families), over the
  group's clips.

The ``real`` summary pools the groups that are real recordings (all groups but
those named synthetic).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

from guesser.errors import DataError
from trainer import metrics as M

SYNTHETIC_DEFAULT = ("gm", "speech", "mix")
"""fsd50k-mini's synthesised sources (General MIDI renders, espeak speech, mixtures of both)."""


def parse_spec(spec: str) -> tuple[Path, str]:
    """``FILE.csv:COLUMN`` -> (path, column); a bare path means the column ``origin``."""
    path, sep, column = spec.rpartition(":")
    if not sep or "/" in column or not column:
        return Path(spec), "origin"
    return Path(path), column


def load_groups(spec: str) -> dict[str, str]:
    """fname -> group name from a CSV with an ``fname`` column; one-line errors for anything else."""
    path, column = parse_spec(spec)
    if not path.is_file():
        raise DataError(f"--groups {spec}: no such CSV file {path}")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            if "fname" not in fields or column not in fields:
                raise DataError(f"{path}: needs the columns fname and {column} (has {', '.join(fields) or 'none'})")
            groups = {str(row["fname"]).strip(): str(row[column]).strip() for row in reader}
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a readable CSV ({e})") from None
    if not groups:
        raise DataError(f"{path}: no rows")
    return groups


def csv_of(spec: str) -> Path:
    """The CSV that ``FILE.csv:COLUMN`` or ``FILE.csv:COLUMN=A,B`` reads."""
    return parse_spec(spec.partition("=")[0])[0]


def clips_in_groups(spec: str, fnames) -> np.ndarray:
    """Indices of ``fnames`` whose group is named in ``FILE.csv:COLUMN=A,B`` (a recipe's ``smooth_groups``)."""
    where, sep, wanted = spec.partition("=")
    names = {w.strip() for w in wanted.split(",") if w.strip()}
    if not sep or not names:
        raise DataError(f"{spec}: expected FILE.csv:COLUMN=GROUP[,GROUP]")
    groups = load_groups(where)
    picked = np.flatnonzero([groups.get(str(f)) in names for f in fnames])
    if len(picked) == 0:
        known = sorted(set(groups.values()))
        raise DataError(f"{spec}: no train clip is in {', '.join(sorted(names))} (groups: {', '.join(known[:12])})")
    return picked


def _top_hit(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """[N] bool: the highest-scored class is a true one."""
    return truth[np.arange(len(scores)), scores.argmax(axis=1)] > 0


def group_map(y: np.ndarray, p: np.ndarray, in_group: np.ndarray) -> float:
    """Mean over labels with positives in the group of AP(group's clips + outside negatives)."""
    aps = []
    for k in np.flatnonzero(y[in_group].sum(axis=0) > 0):
        rows = in_group | (y[:, k] == 0)
        truth = y[rows, k]
        if truth.min() == truth.max():  # no negative anywhere: nothing to rank against
            continue
        aps.append(average_precision_score(truth, p[rows, k]))
    return float(np.mean(aps)) if aps else float("nan")


def group_scores(fnames: np.ndarray, groups: dict[str, str], *, labels: np.ndarray | None, label_probs: np.ndarray | None,
                 families: np.ndarray, family_probs: np.ndarray,
                 synthetic: tuple[str, ...] = SYNTHETIC_DEFAULT) -> dict:
    """{"groups": {name: metrics}, "real": metrics, "synthetic": [...], "unassigned": n}.

    ``labels``/``label_probs`` ([N, L] targets and scores) are None for a
    family-only model; ``families``/``family_probs`` are [N, F].
    """
    names = np.asarray([groups.get(str(f), "") for f in fnames.tolist()])
    fam_truth = (np.asarray(families) > 0).astype(np.uint8)

    def metrics(mask: np.ndarray) -> dict:
        out: dict = {"clips": int(mask.sum())}
        if labels is not None and label_probs is not None:
            y = (np.asarray(labels) > 0).astype(np.uint8)
            out["map"] = group_map(y, label_probs, mask)
            out["lwlrap"] = M.lwlrap(y[mask], label_probs[mask])
            out["top1"] = float(_top_hit(label_probs[mask], y[mask]).mean())
        has_family = fam_truth[mask].sum(axis=1) > 0
        out["top_family"] = float(_top_hit(family_probs[mask][has_family], fam_truth[mask][has_family]).mean()) \
            if has_family.any() else float("nan")
        return out

    result: dict = {"groups": {}, "synthetic": list(synthetic), "unassigned": int((names == "").sum())}
    for g in sorted(set(names.tolist()) - {""}):
        result["groups"][g] = metrics(names == g)
    real = (names != "") & ~np.isin(names, list(synthetic))
    if real.any():
        result["real"] = metrics(real)
    return result
