"""The student project's CNNs, reproduced exactly.

All three are stacks of [Conv3×3 → BatchNorm → ReLU → MaxPool 2×2] followed by
an adaptive average pool to a fixed 4×4 map, flattened into an MLP head. The
adaptive pool is what makes cnn4's head 128×4×4 = 2048 wide on a [B,1,128,516]
input and gives its published 1,472,776 parameters; it also lets the same
weights run on any window length.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def mlp_head(widths: list[int], dropouts: list[float]) -> nn.Sequential:
    """Linear layers ``widths[0] -> … -> widths[-1]`` with ReLU + dropout between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers += [nn.ReLU(inplace=True), nn.Dropout(dropouts[i])]
    return nn.Sequential(*layers)


class SeedCnn(nn.Module):
    """Conv blocks -> adaptive avg pool (4×4) -> flatten -> MLP head -> logits."""

    def __init__(self, channels: list[int], hidden: list[int], dropouts: float | list[float], n_outputs: int):
        super().__init__()
        # one number: the same dropout after every hidden layer (what ``guesser tune`` varies)
        dropouts = [float(dropouts)] * len(hidden) if isinstance(dropouts, (int, float)) else list(dropouts)
        if len(dropouts) != len(hidden):
            raise ValueError(f"dropout needs {len(hidden)} value(s) (one per hidden layer), got {len(dropouts)}")
        chans = [1, *channels]
        self.features = nn.Sequential(*[conv_block(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.pool = nn.AdaptiveAvgPool2d((4, 4))
        self.head = mlp_head([channels[-1] * 16, *hidden, n_outputs], dropouts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, M, T] -> [B, n_outputs] logits."""
        return self.head(self.pool(self.features(x)).flatten(1))


def widened(channels: list[int], width: int) -> list[int]:
    """The channel counts ``width`` times wider: a bigger variant that spends the inference budget
    (2x: ~4x the convolution FLOPs, the head's input 2x wider)."""
    if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= 4:
        raise ValueError(f"width must be an integer from 1 to 4, got {width!r}")
    return [c * width for c in channels]


class Cnn4(SeedCnn):
    """cnn4: 32-64-128-128 channels, head 2048→512→256→n, dropout 0.3/0.2 (1,472,776 params for 200).

    ``width=2`` is guesser's bigger variant (64-128-256-256, head 4096→512→256→n).
    """

    def __init__(self, n_outputs: int = 200, dropout: float | tuple[float, float] = (0.3, 0.2), width: int = 1):
        super().__init__(widened([32, 64, 128, 128], width), [512, 256], dropout, n_outputs)


class Cnn3(SeedCnn):
    """cnn3: 32-64-128 channels, head 2048→576→n, dropout 0.3 (1,388,744 params for 200); ``width`` as cnn4's."""

    def __init__(self, n_outputs: int = 200, dropout: float | tuple[float] = (0.3,), width: int = 1):
        super().__init__(widened([32, 64, 128], width), [576], dropout, n_outputs)


class FamilyCnn(SeedCnn):
    """family CNN: 32-64-128 channels, head 2048→256→n, dropout 0.3 (single-label families)."""

    def __init__(self, n_outputs: int = 6, dropout: float | tuple[float] = (0.3,)):
        super().__init__([32, 64, 128], [256], dropout, n_outputs)
