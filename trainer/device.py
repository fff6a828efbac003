"""Where the trainer's computations run: the device and the autocast precision.

Shared by training, ``guesser evaluate`` and ``guesser select``, which need the
device choice but not the training loop.
"""

from __future__ import annotations

import torch

from guesser.errors import GuesserError


def pick_device(name: str) -> torch.device:
    """``auto`` (a CUDA GPU when one is visible, else the CPU) or a torch device name, checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GuesserError("--device cuda asked for, but no CUDA GPU is visible")
    try:
        return torch.device(name)
    except RuntimeError:
        raise GuesserError(f"--device {name!r}: not a device (auto, cpu, cuda, cuda:1 …)") from None


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision``, or None for plain fp32.

    ``auto``: bf16 where the hardware does it natively (Ampere+ GPUs, AVX512-BF16/AMX
    CPUs), fp16 on older GPUs (with a GradScaler), else fp32. ``bf16`` forces bf16.
    """
    from guesser.fastpath import bf16_native

    if precision == "fp32":
        return None
    if precision == "bf16" or bf16_native(device.type):
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else None
