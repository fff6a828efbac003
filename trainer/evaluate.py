"""``guesser evaluate``: score trained models on a cached split the way the app scores files.

Each model is run over the split of the cache that matches its own
FeatureConfig with :func:`trainer.inference.predict_split` (sliding windows,
averaged: what ``guesser classify`` does), and every metric of
:mod:`trainer.metrics` is computed from those per-clip probabilities:

* label models: mAP, d', lwlrap, per-label AP/AUC, precision/recall/F1 at
  per-label thresholds tuned on the *validation* split, and the family scores
  their labels fold into (family mAP, top-family accuracy, confusion matrix);
* family models: family mAP, accuracy, macro F1, confusion matrix;
* the ensemble of the evaluated models, combined by :func:`guesser.scoring.fuse`,
  the function the app's ensemble calls (mean label probabilities; families =
  weighted mean of the folded label scores and the family models' softmax, the
  family models' weight chosen on val), when more than one model is evaluated.

Results go next to each checkpoint (``<run>/eval.json``; ``eval_val.json`` for
``--split val``) and ``ensemble_eval.json`` beside the models index: everything
``guesser report`` shows (summary, per-class scores, downsampled ROC curves,
confusion matrix, class names), so a report never needs the cache or a model.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from guesser.checkpoint import INDEX_NAME, ModelsIndex
from guesser.ensemble import LoadedModel, load_model, resolve_models
from guesser.errors import CheckpointError, DataError, GuesserError
from guesser.labels import FAMILIES_6, FAMILY_SETS, LabelSpace, Vocabulary, default_label_space
from guesser.models import TASK_FAMILIES, TASK_LABELS
from guesser.scoring import family_source, fuse
from trainer import metrics as M
from trainer.fsd50k import family_targets
from trainer.records import RECORD_VERSION, EvalResult

SPLITS = ("eval", "val")


@dataclass
class Scores:
    """One model's per-clip probabilities on one split, with the split's clip names and targets."""

    fnames: np.ndarray  # [N] str
    probs: np.ndarray  # [N, K] float32 (sigmoid for labels, softmax for families)
    targets: np.ndarray  # [N, 200] uint8 label targets

    def take(self, fnames: np.ndarray) -> "Scores":
        """The rows of ``fnames``, in that order (to align models whose caches skipped different clips)."""
        pos = {f: i for i, f in enumerate(self.fnames.tolist())}
        idx = np.asarray([pos[f] for f in fnames.tolist()], dtype=int)
        return Scores(self.fnames[idx], self.probs[idx], self.targets[idx])


@dataclass
class ModelRun:
    """A loaded model with its scores on the evaluated split (and on val, for thresholds)."""

    model: LoadedModel
    split: Scores
    val: Scores | None
    cache: Path


# ---------------------------------------------------------------- what to evaluate

def checkpoint_of(path: Path) -> Path:
    """A run folder or a checkpoint -> the model checkpoint to evaluate."""
    if not path.exists():
        raise CheckpointError(f"{path}: no such run folder or checkpoint")
    if path.is_dir():
        if (path / "best.safetensors").is_file():
            return path / "best.safetensors"
        if (path / INDEX_NAME).is_file():
            raise GuesserError(f"{path}: a folder of runs; pass its runs, or --index {path / INDEX_NAME}")
        raise CheckpointError(f"{path}: no best.safetensors (not a run folder, or the run never validated)")
    return path


def resolve_targets(runs: list[Path], index: Path) -> tuple[list[tuple[Path, float]], Path]:
    """((checkpoint, family weight) pairs, folder for the ensemble's results) from the runs, else the index."""
    if runs:
        ckpts: list[tuple[Path, float]] = []
        for r in runs:
            r = Path(r)
            ckpts += resolve_models([r]) if r.suffix == ".json" else [(checkpoint_of(r), 1.0)]
        # runs/a/best.safetensors + runs/b/best.safetensors -> the ensemble's results go to runs/
        return ckpts, Path(os.path.commonpath([str(c.resolve().parent) for c, _ in ckpts]))
    if not Path(index).exists():
        raise GuesserError(f"{index}: no models index; pass run folders (guesser evaluate runs/NAME) "
                           "or train with 'guesser train multi'")
    return resolve_models([index]), Path(index).resolve().parent


def chosen_by_selection(runs: list[Path], index: Path) -> bool:
    """True when the models come from an index that ``guesser select`` wrote (its weights are final)."""
    from guesser.checkpoint import ModelsIndex

    sources = [Path(r) for r in runs if Path(r).suffix == ".json"] if runs else [Path(index)]
    try:
        return any(ModelsIndex.read(p).selection is not None for p in sources)
    except GuesserError:
        return False


def result_path(checkpoint: Path, split: str) -> Path:
    """``best.safetensors`` -> ``eval.json`` beside it; any other checkpoint -> ``<stem>.eval.json``."""
    name = "eval" if split == "eval" else f"eval_{split}"
    if checkpoint.stem == "best":
        return checkpoint.parent / f"{name}.json"
    return checkpoint.parent / f"{checkpoint.stem}.{name}.json"


def ensemble_path(folder: Path, split: str) -> Path:
    return folder / ("ensemble_eval.json" if split == "eval" else f"ensemble_eval_{split}.json")


OUTSIDE_PACKAGE = Path("evaluations")
"""Where results for models that sit inside the installed package go (relative to the working folder)."""


def package_folders() -> list[Path]:
    """guesser's own folders: the package (with ``_assets`` in a wheel) and, in a source checkout, ``assets/``."""
    import guesser

    root = Path(guesser.__file__).resolve().parent
    return [root, root.parent / "assets"]


def outside_package(path: Path, checkpoint: Path | None = None) -> Path:
    """``path``, unless it lies inside the installed package: then ``evaluations/`` (never write there).

    A run's ``eval.json`` is named after its run folder there (``<run>.eval.json``), so several runs'
    results do not overwrite each other.
    """
    resolved = Path(path).resolve()
    if any(resolved.is_relative_to(p) for p in package_folders()):
        name = resolved.name
        if checkpoint is not None and Path(checkpoint).stem == "best":
            name = f"{Path(checkpoint).resolve().parent.name}.{name}"
        return OUTSIDE_PACKAGE / name
    return path


# ---------------------------------------------------------------- scoring

def open_cache(cache: Path, model: LoadedModel):
    from trainer.cache import find_cache
    from trainer.preprocess import build_hint, recorded_data_root

    try:
        return find_cache(cache, model.features)
    except DataError:
        raise GuesserError(
            f"no finished cache for {model.name}'s features ({model.features.key}) in {cache}; run "
            f"'{build_hint(cache, model.features, recorded_data_root(cache))}'") from None


def score(model: LoadedModel, cache: Path, split: str, device) -> tuple[Scores, Path]:
    """Per-clip probabilities of ``model`` on ``split`` of its cache (what ``guesser classify`` computes)."""
    from trainer.inference import predict_split

    fc = open_cache(cache, model)
    s = fc.split(split)
    if model.task == TASK_LABELS and tuple(s.vocabulary) != model.classes:
        raise GuesserError(f"{model.path}: its labels differ from the cache's vocabulary ({fc.directory})")
    if len(s) == 0:
        raise DataError(f"{fc.directory}: split {split!r} holds no clips")
    probs = predict_split(model.module.to(device), s, model.features, model.task, device=device)
    return Scores(np.asarray(s.fnames).astype(str), probs, np.asarray(s.targets)), fc.directory


def label_space(vocabulary: tuple[str, ...]) -> LabelSpace:
    """The cache's vocabulary with the shipped ontology (as the trainer builds it)."""
    base = default_label_space()
    return LabelSpace(Vocabulary(tuple(vocabulary), base.vocabulary.mids), base.ontology)


# ---------------------------------------------------------------- metrics -> JSON-ready dicts

def family_section(soft: np.ndarray, scores: np.ndarray, names: tuple[str, ...]) -> dict:
    """Family mAP, top-family accuracy/F1, confusion matrix and ROC of [N, F] family scores."""
    truth = (soft > 0).astype(np.uint8)
    single = M.single_label_scores(soft, scores)
    ap = M.per_label_ap(truth, scores)
    return {
        "summary": {"family_map": M.macro_of(ap), "family_accuracy": single.accuracy,
                    "family_f1_macro": single.f1_macro},
        "families": {"names": list(names), "ap": ap,
                     "positives": truth.sum(axis=0), "support": single.support},
        "confusion": {"classes": list(names), "matrix": single.confusion},
        "roc_families": {"micro": M.micro_roc(truth, scores), "per_class": M.per_class_roc(truth, scores, names)},
    }


def label_section(split: Scores, val: Scores, space: LabelSpace) -> dict:
    """Every label metric of [N, 200] label probabilities; thresholds tuned on ``val``."""
    y, p = split.targets, split.probs
    thresholds = M.tune_thresholds(val.targets, val.probs)
    ts = M.threshold_scores(y, p, thresholds)
    names = space.vocabulary.names
    ap, auc = M.per_label_ap(y, p), M.per_label_auc(y, p)  # once each: mAP, the macro AUC and d' are means
    macro_auc = M.macro_of(auc)
    return {
        "summary": {"map": M.macro_of(ap), "d_prime": M.d_prime_from_auc(macro_auc), "auc": macro_auc,
                    "lwlrap": M.lwlrap(y, p), "f1_micro": ts.f1_micro, "f1_macro": ts.f1_macro,
                    "precision_micro": ts.precision_micro, "recall_micro": ts.recall_micro,
                    "precision_macro": ts.precision_macro, "recall_macro": ts.recall_macro,
                    "subset_accuracy": ts.subset_accuracy, "label_accuracy": ts.label_accuracy},
        "labels": {"names": list(names), "ap": ap, "auc": auc,
                   "f1": ts.per_label_f1, "accuracy": ts.per_label_accuracy, "threshold": thresholds,
                   "positives": y.sum(axis=0)},
        "roc_labels": {"micro": M.micro_roc(y, p)},
    }


def merge(*sections: dict) -> dict:
    out: dict = {"summary": {}}
    for s in sections:
        for k, v in s.items():
            if k == "summary":
                out["summary"].update(v)
            else:
                out[k] = v
    return out


def families_of(run: ModelRun, which: str = "split") -> np.ndarray:
    """[N, 6] family scores of one model on a split, as the app's ensemble computes them."""
    probs = torch.from_numpy(np.ascontiguousarray(getattr(run, which).probs, np.float32))
    return family_source(probs, run.model.task, run.model.classes).numpy()


def evaluate_labels_model(run: ModelRun) -> dict:
    space = label_space(run.model.classes)
    soft = family_targets(run.split.targets, space, "6")
    return merge(label_section(run.split, run.val, space), family_section(soft, families_of(run), FAMILIES_6))


def evaluate_families_model(run: ModelRun) -> dict:
    classes = run.model.classes
    fam_set = run.model.meta.families_set or ("6" if len(classes) == 6 else "5")
    if FAMILY_SETS.get(fam_set) != classes:
        raise CheckpointError(f"{run.model.path}: families {list(classes)} are not guesser's {fam_set}-family set")
    soft = family_targets(run.split.targets, label_space(default_label_space().vocabulary.names), fam_set)
    keep = soft.sum(axis=1) > 0  # the 5-family set has no family for source-ambiguous-only clips
    return family_section(soft[keep], run.split.probs[keep], classes)


def ensemble_scores(runs: list[ModelRun], which: str,
                    family_weights: dict[str, float] | None = None) -> tuple[Scores | None, Scores]:
    """(label probabilities or None, family scores [N, 6]) over the clips every model scored.

    Fused by :func:`guesser.scoring.fuse`, as the app fuses: each model counts
    with its weight (``family_weights[name]`` when given, else its index
    weight) in the label mean and the family mean alike.
    """
    used = [r for r in runs if getattr(r, which) is not None]
    common = getattr(used[0], which).fnames
    for r in used[1:]:
        common = common[np.isin(common, getattr(r, which).fnames)]
    aligned = [ModelRun(r.model, getattr(r, which).take(common), None, r.cache) for r in used]
    labels = [torch.from_numpy(np.ascontiguousarray(a.split.probs, np.float32))
              for a in aligned if a.model.task == TASK_LABELS]
    weights = [a.model.family_weight if family_weights is None else family_weights.get(a.model.name, a.model.family_weight)
               for a in aligned]
    label_weights = [w for a, w in zip(aligned, weights) if a.model.task == TASK_LABELS]
    fused = fuse(labels, [torch.from_numpy(families_of(a)) for a in aligned], weights, label_weights)
    targets = aligned[0].split.targets
    lab = Scores(common, fused.labels.numpy(), targets) if fused.labels is not None else None
    return lab, Scores(common, fused.families.numpy(), targets)


def family_map(families: Scores, space: LabelSpace) -> float:
    """Family mAP of [N, 6] family scores (a clip counts as positive for each family it has)."""
    return M.mean_average_precision((family_targets(families.targets, space, "6") > 0).astype(np.uint8), families.probs)


FAMILY_WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def fit_family_weights(runs: list[ModelRun]) -> dict | None:
    """Each family model's weight (label models count 1) for the best family mAP on the validation split.

    Like the label thresholds: chosen on val, only then applied to eval. Every
    combination of :data:`FAMILY_WEIGHT_GRID` values is tried (7 per family
    model; beyond three family models, one weight shared by all); ties go to
    the combination nearest equal weights. None when there
    is nothing to choose (no family model, no label model, or a model without
    validation scores).
    """
    tasks = {r.model.task for r in runs}
    if tasks != {TASK_LABELS, TASK_FAMILIES} or any(r.val is None for r in runs):
        return None
    names = [r.model.name for r in runs if r.model.task == TASK_FAMILIES]
    space = label_space(default_label_space().vocabulary.names)
    on_val = {}
    combos = (itertools.product(FAMILY_WEIGHT_GRID, repeat=len(names)) if len(names) <= 3
              else [(w,) * len(names) for w in FAMILY_WEIGHT_GRID])  # 7^k grows fast: one shared weight
    for combo in combos:
        on_val[combo] = family_map(ensemble_scores(runs, "val", dict(zip(names, combo)))[1], space)
    best = max(on_val.values())
    chosen = min((c for c, v in on_val.items() if v >= best - 1e-9), key=lambda c: sum(abs(w - 1.0) for w in c))
    return {"chosen": dict(zip(names, chosen)), "val_family_map": best,
            "val_family_map_equal_weights": on_val[(1.0,) * len(names)], "combinations_tried": len(on_val)}


def evaluate_ensemble(runs: list[ModelRun], refit: bool = True) -> dict:
    """The ensemble's metrics; family models weighted as chosen on val (see :func:`fit_family_weights`).

    ``refit=False`` keeps the index's weights as they are: an index written by
    ``guesser select`` was already weighed on val, and what is reported must be
    what ``guesser classify`` runs with it.
    """
    fit = fit_family_weights(runs) if refit else None
    space = label_space(default_label_space().vocabulary.names)
    extra: dict = {}
    if fit is not None:
        equal = ensemble_scores(runs, "split", {n: 1.0 for n in fit["chosen"]})[1]
        fit["eval_family_map_equal_weights"] = family_map(equal, space)
        extra["family_weights"] = fit
    labels, families = ensemble_scores(runs, "split", None if fit is None else fit["chosen"])
    soft = family_targets(families.targets, space, "6")
    sections = [family_section(soft, families.probs, FAMILIES_6)]
    if labels is not None:
        val_labels, _ = ensemble_scores([r for r in runs if r.model.task == TASK_LABELS], "val")
        sections.insert(0, label_section(labels, val_labels, space))
    return merge(*sections) | {"clips": len(families.fnames)} | extra


def record_family_weights(index: Path, runs: list[ModelRun], weights: dict[str, float]) -> None:
    """Write the chosen weights into the family models' entries of the models index (the app reads them)."""
    chosen = {r.model.path.resolve(): weights[r.model.name] for r in runs if r.model.name in weights}
    ModelsIndex.read(index).with_weights(index.parent, chosen).write(index)


# ---------------------------------------------------------------- JSON

def jsonable(x):
    """numpy -> lists, NaN -> None, floats to 6 significant digits (tiny thresholds keep their precision)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return None if not np.isfinite(v) else float(f"{v:.6g}")
    return x


def model_header(run: ModelRun, split: str) -> dict:
    m = run.model
    return {"version": RECORD_VERSION, "kind": m.task, "name": m.name, "member": m.member, "arch": m.meta.arch,
            "task": m.task, "checkpoint": str(m.path), "run": str(m.path.parent), "split": split,
            "cache": str(run.cache), "clips": int(len(run.split.fnames)), "params": m.meta.params,
            "thresholds_from": "val" if m.task == TASK_LABELS else None,
            "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


# ---------------------------------------------------------------- the command

def grouped(run_scores: Scores, label_probs: np.ndarray | None, family_probs: np.ndarray,
            groups: dict[str, str], synthetic: tuple[str, ...]) -> dict:
    """Per-group metrics (:mod:`trainer.groups`) of one model's or the ensemble's scores ([N, 6] families)."""
    from trainer.groups import group_scores

    fams = family_targets(run_scores.targets, label_space(default_label_space().vocabulary.names), "6")
    return group_scores(run_scores.fnames, groups, labels=run_scores.targets if label_probs is not None else None,
                        label_probs=label_probs, families=fams, family_probs=family_probs, synthetic=synthetic)


def model_groups(run: ModelRun, groups: dict[str, str], synthetic: tuple[str, ...]) -> dict:
    label_probs = run.split.probs if run.model.task == TASK_LABELS else None
    return grouped(run.split, label_probs, families_of(run), groups, synthetic)


def run_evaluate(runs: list[Path], cache: Path, split: str = "eval", index: Path = Path("runs/index.json"),
                 ensemble: bool = True, *, write_index: bool = False, device: str = "auto", console=None,
                 groups: str | None = None, synthetic: tuple[str, ...] | None = None) -> list[dict]:
    """Evaluate ``runs`` (default: the models in ``index``); write and print the results; return them.

    Results go beside each checkpoint, except for models inside the installed
    package (the shipped ones): theirs go to ``evaluations/`` in the working
    folder. The family weights chosen on val are written into ``index`` only
    with ``write_index`` (``--write-index``). ``groups`` (``FILE.csv:COLUMN``)
    adds per-group scores to every result (:mod:`trainer.groups`).
    """
    from rich.console import Console

    from trainer.groups import SYNTHETIC_DEFAULT, load_groups

    group_of = load_groups(groups) if groups else None
    synthetic = tuple(synthetic) if synthetic is not None else SYNTHETIC_DEFAULT
    from trainer.device import pick_device

    if split not in SPLITS:
        raise GuesserError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    console = console or Console()
    status = Console(stderr=True)
    ckpts, ens_dir = resolve_targets([Path(r) for r in runs], Path(index))
    dev = pick_device(device)
    results: list[tuple[EvalResult, Path]] = []
    evaluated: list[ModelRun] = []
    for ckpt, weight in ckpts:
        # the app's fused inference path is a CPU (oneDNN) path; on a GPU the module as trained gives the same logits
        model = load_model(ckpt, optimize=dev.type == "cpu")
        model.family_weight = weight
        with status.status(f"scoring {model.name} on {split} …"):
            t0 = time.perf_counter()
            s, cache_path = score(model, Path(cache), split, dev)
            val = None
            if model.task == TASK_LABELS or (ensemble and len(ckpts) > 1):  # thresholds; the family weights
                val = s if split == "val" else score(model, Path(cache), "val", dev)[0]
            seconds = time.perf_counter() - t0
        run = ModelRun(model, s, val, cache_path)
        evaluated.append(run)
        body = evaluate_labels_model(run) if model.task == TASK_LABELS else evaluate_families_model(run)
        if group_of is not None:
            body["groups"] = model_groups(run, group_of, synthetic)
        out = outside_package(result_path(Path(ckpt), split), Path(ckpt))
        results.append(written(model_header(run, split) | {"seconds": round(seconds, 1)} | body, out))
    if ensemble and len(evaluated) > 1:
        body = evaluate_ensemble(evaluated, refit=not chosen_by_selection(runs, index))
        if group_of is not None:
            fit = body.get("family_weights")
            lab, fam = ensemble_scores(evaluated, "split", None if fit is None else fit["chosen"])
            body["groups"] = grouped(fam, None if lab is None else lab.probs, fam.probs, group_of, synthetic)
        header = {"version": RECORD_VERSION, "kind": "ensemble", "name": "ensemble", "member": "ensemble",
                  "task": "ensemble", "split": split, "models": [r.model.name for r in evaluated],
                  "checkpoints": [str(r.model.path) for r in evaluated],
                  "params": sum(r.model.meta.params or 0 for r in evaluated),
                  "thresholds_from": "val", "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if "family_weights" in body:
            chosen = body["family_weights"]["chosen"]
            if write_index and not runs:
                record_family_weights(Path(index), evaluated, chosen)
                where = f"; written to {index}"
            else:
                where = f"; to use them, rerun with --index {index} --write-index" if not runs else ""
            status.print("family models' weights in the ensemble (best family mAP on val; label models 1): "
                         + ", ".join(f"{n} {w:g}" for n, w in chosen.items()) + where, markup=False)
        results.append(written(header | body, outside_package(ensemble_path(ens_dir, split))))
    print_summary(results, split, console)
    return [r.to_json() | {"path": str(path)} for r, path in results]


def written(doc: dict, out: Path) -> tuple[EvalResult, Path]:
    """``doc`` as an :class:`EvalResult` (numbers made JSON-ready), written to ``out``."""
    result = EvalResult.from_json(jsonable(doc), str(out))
    result.write(out)
    return result, out


def fmt(v, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def print_summary(results: list[tuple[EvalResult, Path]], split: str, console) -> None:
    """One row per model (and the ensemble); narrow enough for an 80-column terminal."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"evaluation on the {split} split", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("model", overflow="fold", min_width=16, ratio=1)
    for col in ("mAP", "d'", "lwlrap", "F1 µ/M", "fam mAP", "fam acc"):
        table.add_column(col, justify="right", no_wrap=True)
    for r, _ in results:
        s = r.summary
        f1 = f"{fmt(s.f1_micro)}/{fmt(s.f1_macro)}" if s.has_labels else fmt(s.family_f1_macro)
        name = Text(r.name)
        name.append(f"\n{r.task} · {r.clips} clips", style="dim")
        table.add_row(name, fmt(s.map), fmt(s.d_prime), fmt(s.lwlrap), f1, fmt(s.family_map), fmt(s.family_accuracy))
    console.print(table)
    for r, _ in results:
        if r.groups:
            console.print(group_table(r))
    for r, path in results:
        console.print(f"[dim]{escape(str(r.name))}: results → {escape(str(path))}[/]")


def group_table(result: EvalResult):
    """Per-group rows of one result (mAP, lwlrap, top-1, top-family), then the real-recordings summary."""
    from rich import box
    from rich.table import Table

    g = result.groups
    table = Table(title=f"{result.name} by group ({result.split})", box=box.SIMPLE_HEAD, pad_edge=False)
    for col, justify in (("group", "left"), ("clips", "right"), ("mAP", "right"), ("lwlrap", "right"),
                         ("top-1", "right"), ("top family", "right")):
        table.add_column(col, justify=justify, no_wrap=True)
    rows = sorted(g["groups"].items())
    if "real" in g:
        rows.append(("real recordings", g["real"]))
    for name, m in rows:
        label = f"{name} (synthetic)" if name in g.get("synthetic", ()) else name
        table.add_row(label, str(m["clips"]), fmt(m.get("map")), fmt(m.get("lwlrap")), fmt(m.get("top1")),
                      fmt(m.get("top_family")), style="bold" if name == "real recordings" else None)
    return table
