"""PANNs CNN6 (Kong et al., "PANNs: Large-Scale Pretrained Audio Neural Networks", 2020).

The layer names follow the official ``audioset_tagging_cnn`` ``Cnn6`` so that an
official checkpoint maps onto this module key for key: ``bn0``,
``conv_block{1..4}.{conv1,bn1}``, ``fc1``. Their ``fc_audioset`` (527 AudioSet
classes) is replaced by ``head`` sized for guesser's task; their
``spectrogram_extractor``/``logmel_extractor`` are not needed because
:data:`guesser.features.PANNS` computes the same log-mel outside the model.

Input here is guesser's [B, 1, M, T]; PANNs works in [B, 1, T, M], so the
forward pass transposes first (the 5×5 kernels are not symmetric in time and
frequency, so this matters for pretrained weights).

Checked against ``Cnn6`` in ``pytorch/models.py`` of qiuqiangkong/audioset_tagging_cnn:
``bn0`` normalises over the 64 mel bins (transpose to put mels on the channel
axis), four [conv 5×5 (no bias) → BN → ReLU → avg-pool 2×2] blocks each followed
by dropout 0.2, mean over frequency, max + mean over time, dropout 0.5, ``fc1``
+ ReLU, dropout 0.5 (their ``embedding``), classifier; weights initialised as
theirs (Xavier-uniform convolutions and linears, zero biases, unit BN). One
deliberate difference: their AudioSet classifier reads ``fc1``'s output before
that last dropout, while their transfer-learning template (``finetune_template.py``)
puts the new head on the dropped-out ``embedding``; ``head`` is such a new head,
so it follows the template. Their in-model SpecAugment and mixup are the
trainer's job here (:mod:`trainer.augment`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from guesser.errors import CheckpointError


class ConvBlock5x5(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        nn.init.xavier_uniform_(self.conv1.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.relu(self.bn1(self.conv1(x))), kernel_size=2)


class Cnn6(nn.Module):
    """CNN6 as published, with a replaceable head; ``n_mels`` must be 64 for official weights."""

    def __init__(self, n_outputs: int = 6, n_mels: int = 64, dropout: float = 0.2, head_dropout: float = 0.5):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(n_mels)
        self.conv_block1 = ConvBlock5x5(1, 64)
        self.conv_block2 = ConvBlock5x5(64, 128)
        self.conv_block3 = ConvBlock5x5(128, 256)
        self.conv_block4 = ConvBlock5x5(256, 512)
        self.fc1 = nn.Linear(512, 512)
        self.head = nn.Linear(512, n_outputs)
        self.dropout = dropout
        self.head_dropout = head_dropout
        for fc in (self.fc1, self.head):  # PANNs' init_layer (BatchNorm's default init is already theirs)
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, M, T] log-mel (not normalised: bn0 does it per mel bin) -> [B, n_outputs] logits."""
        x = x.transpose(2, 3)  # [B, 1, T, M] as PANNs
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # batch-norm over mel bins
        for block in (self.conv_block1, self.conv_block2, self.conv_block3, self.conv_block4):
            x = F.dropout(block(x), p=self.dropout, training=self.training)
        x = x.mean(dim=3)  # over frequency -> [B, C, T]
        x = x.amax(dim=2) + x.mean(dim=2)
        x = F.dropout(x, p=self.head_dropout, training=self.training)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, p=self.head_dropout, training=self.training)
        return self.head(x)


PANNS_SKIPPED_PREFIXES = ("spectrogram_extractor.", "logmel_extractor.", "fc_audioset.")


def load_panns_weights(model: Cnn6, path: str | Path) -> list[str]:
    """Copy an official PANNs Cnn6 checkpoint (``{'model': state_dict}`` or a bare state dict) into ``model``.

    Loaded with ``torch.load(weights_only=True)``: plain tensors, no code runs.
    Returns the names of the loaded tensors; raises :class:`CheckpointError` when
    the file is not a Cnn6 checkpoint (missing or mis-shaped layers).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such PANNs checkpoint")
    try:
        with warnings.catch_warnings():  # odd pickle protocols warn; refusing code is all that matters here
            warnings.simplefilter("ignore")
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{p}: not a PANNs checkpoint readable without pickle ({str(e).splitlines()[0]})") from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{p}: expected a dict of tensors (optionally under 'model')")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    wanted = {k for k in own if not k.startswith("head.")}
    missing = sorted(k for k in wanted if k not in state)
    if missing:
        raise CheckpointError(f"{p}: not a PANNs Cnn6 checkpoint (missing {missing[0]} and {len(missing) - 1} more)")
    bad = [k for k in wanted if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        raise CheckpointError(
            f"{p}: shape mismatch for {bad[0]}: file {tuple(state[bad[0]].shape)} vs model {tuple(own[bad[0]].shape)}"
        )
    model.load_state_dict({**own, **{k: state[k] for k in wanted}})
    return sorted(wanted)
