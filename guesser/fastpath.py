"""Inference-only rewrites of a loaded model: the same logits, less time.

Why: a prediction is mostly convolutions. In eval mode BatchNorm is a
per-channel affine map, so it folds into the convolution before it
(``fuse_conv_bn_eval``); the ReLU runs inside the convolution as a oneDNN
post-op; what is left per block is one convolution and one pooling, with
activations channels-last (oneDNN's native layout) from block to block, and
the one-channel first layer as im2col + matmul (see :class:`FusedConvBlock`).
Measured (docs/benchmarks.md): in float32 this alone gains only a few percent
(the convolutions are compute-bound); what it makes possible is running the
whole conv stack in bfloat16, 1.6-1.8x faster end to end.

Only the conv blocks of the known architectures are rewritten (the seed CNNs'
``Sequential(Conv2d, BatchNorm2d, ReLU, MaxPool2d)`` and PANNs'
``ConvBlock5x5``); anything else in a model runs as written, so a new
architecture is still correct, just not faster. The model's own ``forward``
is kept: only its blocks are replaced.

Precision: ``fp32`` keeps float32 everywhere. ``bf16`` feeds the convolutions
bfloat16 activations and weights (oneDNN accumulates in float32) where the CPU
has native bfloat16 dot products (AVX512-BF16, AMX): about twice the
convolution throughput, a relative error near 1e-3 on the logits, and the same
arithmetic the trainer's autocast uses on such CPUs. Everything after the
last convolution (pooling to vectors, the MLP head, sigmoid/softmax) stays
float32. ``auto`` picks bf16 where it is native, fp32 elsewhere;
``$GUESSER_PRECISION`` overrides it.
"""

from __future__ import annotations

import copy
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

PRECISIONS = ("auto", "fp32", "bf16")


def bf16_native(device_type: str = "cpu") -> bool:
    """Whether ``device_type`` does bfloat16 arithmetic natively: oneDNN on an AVX512-BF16/AMX CPU, an Ampere+ GPU.

    The one test of it, for the app's fast path and the trainer's autocast alike.
    """
    try:
        if device_type == "cuda":
            return bool(torch.cuda.is_bf16_supported())
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str | None = None) -> torch.dtype:
    """'auto' | 'fp32' | 'bf16' (or $GUESSER_PRECISION when None) -> the convolutions' dtype."""
    p = (precision or os.environ.get("GUESSER_PRECISION") or "auto").lower()
    if p not in PRECISIONS:
        from guesser.errors import GuesserError

        raise GuesserError(f"precision (GUESSER_PRECISION) must be one of {', '.join(PRECISIONS)}, got {p!r}")
    if p == "auto":
        p = "bf16" if bf16_native() else "fp32"
    return torch.bfloat16 if p == "bf16" else torch.float32


def _onednn_post_ops() -> bool:
    """Whether this build has oneDNN's convolution with a fused post-op (x86 and most ARM builds do)."""
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    except (AttributeError, RuntimeError):
        return False


class FusedConvBlock(nn.Module):
    """conv (BatchNorm folded in) → ReLU → 2×2 pooling, in ``dtype``; channels-last output.

    How the convolution runs depends on its input channels. Every model's
    first layer has one input channel, and a one-channel tensor has no
    unambiguous channels-last layout: oneDNN returns its output NCHW, and the
    pooling and the next layer pay for the layout. As im2col + one matmul that
    writes channels-last, cnn4 took 15.2 ms instead of 28.4 ms in bfloat16
    (one thread, whole network).

    * ``im2col``: one input channel, "same" padding -> unfold the k×k patches
      and do one batched matmul that writes channels-last directly (K = k²);
    * ``onednn``: more channels -> oneDNN convolution with the ReLU post-op;
    * ``conv``: anything else (or no oneDNN post-ops in this build) -> conv2d,
      then ReLU in place.
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, pool: str, dtype: torch.dtype, out_float: bool):
        super().__init__()
        fused = fuse_conv_bn_eval(conv.eval(), bn.eval())
        self.weight = nn.Parameter(fused.weight.detach().to(dtype).contiguous(memory_format=torch.channels_last),
                                   requires_grad=False)
        self.bias = nn.Parameter(fused.bias.detach().to(dtype), requires_grad=False)
        self.kernel = tuple(fused.kernel_size)
        self.padding = list(fused.padding)
        self.stride = list(fused.stride)
        self.dilation = list(fused.dilation)
        self.groups = fused.groups
        self.pool = pool  # "max" | "avg"
        self.out_float = out_float
        same = (self.stride == [1, 1] and self.dilation == [1, 1] and self.groups == 1
                and all(k % 2 == 1 and p == k // 2 for k, p in zip(self.kernel, self.padding)))
        if fused.in_channels == 1 and same:
            self.mode = "im2col"
            self.register_buffer("wt", self.weight.detach().reshape(fused.out_channels, -1).t().contiguous(),
                                 persistent=False)  # [k·k, C_out]
        elif fused.in_channels > 1 and _onednn_post_ops():
            self.mode = "onednn"
        else:
            self.mode = "conv"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.weight.dtype)
        if self.mode == "im2col":
            b, _, h, w = x.shape
            cols = F.unfold(x, self.kernel, padding=self.padding)  # [B, k·k, H·W]
            y = torch.baddbmm(self.bias, cols.transpose(1, 2), self.wt.expand(b, -1, -1))  # [B, H·W, C]
            y = y.view(b, h, w, -1).permute(0, 3, 1, 2).relu_()  # a channels-last view, no copy
        elif self.mode == "conv":
            x = x.contiguous(memory_format=torch.channels_last)
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups).relu_()
        else:
            x = x.contiguous(memory_format=torch.channels_last)
            try:
                y = torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, self.padding, self.stride,
                                                            self.dilation, self.groups, "relu", [], "")
            except RuntimeError:  # this CPU/dtype has no such kernel after all: plain ops from now on
                self.mode = "conv"
                return self.forward(x)
        y = F.max_pool2d(y, 2) if self.pool == "max" else F.avg_pool2d(y, 2)
        return y.float() if self.out_float else y


def _seed_block(m: nn.Module) -> bool:
    return (isinstance(m, nn.Sequential) and len(m) == 4 and isinstance(m[0], nn.Conv2d)
            and isinstance(m[1], nn.BatchNorm2d) and isinstance(m[2], nn.ReLU)
            and isinstance(m[3], nn.MaxPool2d) and m[3].kernel_size in (2, (2, 2)) and m[3].stride in (2, (2, 2), None))


def _panns_block(m: nn.Module) -> bool:
    from guesser.models.panns import ConvBlock5x5

    return type(m) is ConvBlock5x5


def optimize_for_inference(module: nn.Module, precision: str | None = None, *, inplace: bool = False) -> nn.Module:
    """An eval-only ``module`` with its conv blocks fused (see the module doc): same logits, less time.

    A copy unless ``inplace`` (the ensemble rewrites the module it just built).
    """
    dtype = resolve_precision(precision)
    model = (module if inplace else copy.deepcopy(module)).eval()
    found: list[tuple[nn.Module, str, nn.Module, str]] = []  # (parent, attribute, block, pool)
    for parent in model.modules():
        for name, child in parent.named_children():
            if _seed_block(child):
                found.append((parent, name, child, "max"))
            elif _panns_block(child):
                found.append((parent, name, child, "avg"))
    if dtype != torch.float32:
        rewritten = {id(m) for _, _, b, _ in found for m in b.modules()}
        if any(isinstance(m, nn.Conv2d) and id(m) not in rewritten for m in model.modules()):
            dtype = torch.float32  # a convolution we do not rewrite would receive bfloat16: stay exact
    for i, (parent, name, block, pool) in enumerate(found):
        conv, bn = (block[0], block[1]) if pool == "max" else (block.conv1, block.bn1)
        # Only the last block hands float32 to the rest of the model (pooling to vectors, the head).
        setattr(parent, name, FusedConvBlock(conv, bn, pool, dtype, out_float=i == len(found) - 1))
    for p in model.parameters():
        p.requires_grad_(False)
    return model
