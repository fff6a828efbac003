"""The background sample that personal labels are fitted against (``guesser export --background CACHE``).

A few thousand clips of the cache's train split, drawn at random (seeded),
embedded by the very models of a models index (what the app will run: the
exported fp16 files), each model's view of them (:class:`guesser.personal.probe.View`:
pooled embedding and probabilities) stored as float16 beside the
index with each clip's labels (:class:`guesser.personal.background.BackgroundSample`).
Only the train split is used: val chooses models and eval scores them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from guesser.ensemble import Ensemble
from guesser.errors import DataError
from guesser.personal.background import BACKGROUND_NAME, BackgroundSample
from guesser.personal.probe import View
from guesser.personal.store import stamps_of
from guesser.scoring import batches, model_probs
from trainer.cache import find_cache
from trainer.inference import split_windows

BACKGROUND_CLIPS = 2500  # 2,500 × ((3 × 128 pooled + 2 × 200 + 6 probabilities) × 2 bytes + 200 label bytes) ≈ 4.5 MB


def build_background(models: Path, cache: Path, *, clips: int = BACKGROUND_CLIPS, seed: int = 0,
                     out: Path | None = None) -> Path:
    """Embed ``clips`` train clips with the models of index ``models``; write the sample beside the index."""
    ensemble = Ensemble.load([models])  # as the app loads them: embeddings to the same rounding
    splits = {}
    for m in ensemble.models:
        splits[m.name] = find_cache(cache, m.features).split("train")
    first = next(iter(splits.values()))
    for name, s in splits.items():
        if not np.array_equal(s.fnames, first.fnames):
            raise DataError(f"{cache}: the caches of the models' front-ends hold different train clips; "
                            "rebuild them from one data set")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(first), size=min(clips, len(first)), replace=False))
    views = {}
    with torch.inference_mode():
        for m in ensemble.models:
            wp = model_probs(m.module, batches(split_windows(splits[m.name], m.features, rows), 64), m.task,
                             embeddings=True)
            views[m.name] = View.of(wp.clip_embeddings(len(rows)).numpy(), wp.clip_probs(len(rows)).numpy())
    sample = BackgroundSample(stamps_of(ensemble.models), views, np.asarray(first.fnames[rows]).astype(str),
                              np.asarray(first.targets[rows], np.uint8), tuple(first.vocabulary))
    path = out or (Path(models).parent if Path(models).suffix == ".json" else Path(models)) / BACKGROUND_NAME
    return sample.write(path)
