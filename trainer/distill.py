"""Knowledge distillation: a teacher ensemble's clip-level probabilities, computed once per cache.

Why: the shipped ensemble (or any better one at hand) knows more than a clip's
prompt-derived labels say — a cough file that also holds a breath, a street
clip with a dog barking far away. A student that learns from the hard labels
plus the teacher's soft ones (EfficientAT, CED) learns that too, at no cost
at inference time.

The teacher scores every clip of a split as ``guesser classify`` would (its
windows, its fusion: :func:`trainer.evaluate.ensemble_scores`), once; the
result is stored beside the cache under a key made of the split's clip index
and each teacher model's file hash and weight, so a changed cache or teacher
never reuses stale targets, and a second run (or a resumed one) reads them back.

Labels the teacher never learned (``trained_labels`` in its checkpoints: the
kitchen labels for ensembles trained before the corpus had them) carry no
soft target: the student learns them from the hard labels alone (``known``).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from guesser.errors import GuesserError
from guesser.fileio import atomic_write_bytes

SHIPPED = "shipped"
FORMAT = 1


@dataclass(frozen=True)
class SoftTargets:
    """A teacher's probabilities for the clips of one split, in the split's order."""

    probs: np.ndarray  # [N, K] float32: label probabilities (labels task) or family scores (families task)
    known: np.ndarray  # [K] bool: classes the teacher learned; the others get no distillation term
    key: str  # what they were computed from (cache split + teacher models), for the run's record


def teacher_sources(teacher: str) -> list[str]:
    """``shipped`` -> the shipped models index; anything else is a models index, folder or checkpoint."""
    if teacher == SHIPPED:
        from guesser.checkpoint import default_models_index

        return [str(default_models_index())]
    return [teacher]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def teacher_key(split_index: Path, models: list[tuple[Path, float]]) -> str:
    """sha256 over the split's clip index and each teacher model's bytes and weight (order kept)."""
    parts = {"format": FORMAT, "split": file_sha256(split_index),
             "models": [[file_sha256(p), float(w)] for p, w in models]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def soft_targets(teacher: str, cache_root: Path, cache_dir: Path, split: str, task: str,
                 classes: tuple[str, ...], device: torch.device | str = "cpu", log=print) -> SoftTargets:
    """The teacher's probabilities for ``split`` of the cache at ``cache_dir``: read back, or computed and stored.

    ``classes`` are the student's: the 200 labels (``labels`` task) or a family
    set (``families`` task); family scores are the teacher's fused families,
    renormalised over the student's set (the 5-family set leaves one out).
    """
    from guesser.ensemble import resolve_models

    models = resolve_models(teacher_sources(teacher))
    index_file = cache_dir / f"{split}.index.npz"
    if not index_file.is_file():
        raise GuesserError(f"{cache_dir}: no {split} split to distil on ({index_file.name} missing)")
    key = teacher_key(index_file, models)
    store = cache_dir / "teachers" / f"{key}.{split}.{task}.npz"
    if store.is_file():
        with np.load(store, allow_pickle=False) as z:
            probs, known, names = z["probs"], z["known"], tuple(str(n) for n in z["classes"])
        if names == tuple(classes):
            return SoftTargets(probs, known, key)
    log(json.dumps({"teacher": teacher, "split": split, "computing": str(store)}))
    with np.load(index_file, allow_pickle=False) as z:
        fnames = z["fnames"].astype(str)
    probs, known = _compute(models, cache_root, fnames, split, task, classes, device)
    buf = io.BytesIO()
    np.savez(buf, probs=probs, known=known, classes=np.asarray(classes))
    atomic_write_bytes(store, buf.getvalue())
    return SoftTargets(probs, known, key)


def _compute(models, cache_root, fnames, split, task, classes, device):
    from guesser.ensemble import load_model
    from trainer.evaluate import ModelRun, ensemble_scores, score

    runs = []
    for path, weight in models:
        m = load_model(path, optimize=torch.device(device).type == "cpu")
        m.family_weight = weight
        if task == "labels" and m.task != "labels":
            continue  # fused label probabilities come from the label models alone (guesser.scoring.fuse)
        s, used = score(m, Path(cache_root), split, device)
        runs.append(ModelRun(m, s, None, used))
    labels, families = ensemble_scores(runs, "split")
    if task == "labels":
        if labels is None:
            raise GuesserError(f"teacher {models[0][0].parent}: has no label model to distil labels from")
        trained = set()
        for r in runs:
            if r.model.task == "labels":
                trained |= set(r.model.meta.trained_labels or r.model.classes)
        known = np.array([c in trained for c in classes])
        return _aligned(labels, fnames, len(classes)), known
    from guesser.labels import FAMILIES_6

    fam = _aligned(families, fnames, len(FAMILIES_6))[:, [FAMILIES_6.index(c) for c in classes]]
    fam = fam / np.clip(fam.sum(axis=1, keepdims=True), 1e-6, None)
    return fam.astype(np.float32), np.ones(len(classes), bool)


def _aligned(scores, fnames: np.ndarray, k: int) -> np.ndarray:
    """The teacher's rows in the split's order (a clip the teacher's cache skipped gets NaN: no soft target)."""
    out = np.full((len(fnames), k), np.nan, np.float32)
    pos = {f: i for i, f in enumerate(scores.fnames.tolist())}
    rows = [(i, pos[f]) for i, f in enumerate(fnames.tolist()) if f in pos]
    if rows:
        mine, theirs = map(list, zip(*rows))
        out[mine] = scores.probs[theirs]
    return out


def distillation_loss(logits: torch.Tensor, soft: torch.Tensor, known: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """The student's loss against the teacher's probabilities, over the classes the teacher learned.

    Multi-label: binary cross-entropy per label against the teacher's sigmoid
    outputs (as EfficientAT's label-wise KD); families: cross-entropy against the
    teacher's family distribution. Rows without a soft target (NaN) are left out.
    """
    logits = logits.float()
    rows = ~torch.isnan(soft).any(dim=1)
    if not bool(rows.any()):
        return logits.sum() * 0.0
    logits, soft = logits[rows], soft[rows]
    if multilabel:
        per = F.binary_cross_entropy_with_logits(logits, soft, reduction="none")
        return per[:, known].mean() if bool(known.any()) else logits.sum() * 0.0
    return F.cross_entropy(logits, soft)
