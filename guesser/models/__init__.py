"""Model registry: architecture name -> builder, task and default front-end.

Every model takes a normalised log-mel batch [B, 1, M, T] and returns logits
[B, n_outputs]; what the outputs mean (200 labels or 6 families) is the
checkpoint's ``task``. Builders import lazily so ``guesser classify`` only pays
for what it loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from guesser.features import PANNS, SEED_CNN, FeatureConfig

TASK_LABELS = "labels"  # multi-label over the 200-label vocabulary (sigmoid)
TASK_FAMILIES = "families"  # single-label over the AudioSet families (softmax)
TASKS = (TASK_LABELS, TASK_FAMILIES)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., nn.Module]
    features: FeatureConfig
    default_task: str
    summary: str


def _seed(cls_name: str):
    def build(**kw):
        from guesser.models import seed_cnns

        return getattr(seed_cnns, cls_name)(**kw)

    return build


def _cnn6(**kw):
    from guesser.models.panns import Cnn6

    return Cnn6(**kw)


REGISTRY: dict[str, ModelSpec] = {
    "cnn4": ModelSpec("cnn4", _seed("Cnn4"), SEED_CNN, TASK_LABELS, "student cnn4: 4×[conv3×3-BN-ReLU-maxpool] 32-64-128-128, head 2048-512-256"),
    "cnn3": ModelSpec("cnn3", _seed("Cnn3"), SEED_CNN, TASK_LABELS, "student cnn3: 3×[conv3×3-BN-ReLU-maxpool] 32-64-128, head 2048-576"),
    "family_cnn": ModelSpec("family_cnn", _seed("FamilyCnn"), SEED_CNN, TASK_FAMILIES, "student family CNN: 3×[conv3×3-BN-ReLU-maxpool] 32-64-128, head 2048-256"),
    "cnn6": ModelSpec("cnn6", _cnn6, PANNS, TASK_FAMILIES, "PANNs CNN6 (Kong et al. 2020): 4×[conv5×5-BN-ReLU-avgpool] 64-512, max+mean pooling"),
}


def build_model(arch: str, n_outputs: int, **hparams) -> nn.Module:
    """Instantiate ``arch`` with ``n_outputs`` logits; ``hparams`` are architecture knobs (dropout …)."""
    if arch not in REGISTRY:
        raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[arch].build(n_outputs=n_outputs, **hparams)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
