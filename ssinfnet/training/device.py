"""Device policy shared by training and inference: device choice, mixed precision, channels-last, batch moves."""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Mapping
from typing import Any

import torch


def device_name(device: str = "auto") -> str:
    """Resolve "auto" to "cuda" when a GPU is visible, else "cpu"; other values pass through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def describe_device(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(0)})"
    return f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


def resolve_device(device: str) -> str:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``, checked now.

    Raises
    ------
    ValueError
        An unknown name, or CUDA asked for where none is available (or no device N); the
        message names ``--device``.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    found = re.fullmatch(r"cuda(?::(\d+))?", device)
    if found is None:
        raise ValueError(f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available here (torch {torch.__version__}); "
                         f"use --device cpu")
    count = torch.cuda.device_count()
    if found.group(1) is not None and int(found.group(1)) >= count:
        raise ValueError(f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return device


def default_amp(device: str | torch.device) -> bool:
    """bf16 autocast by default on CUDA only (on CPU it changes the numbers for a small gain)."""
    return torch.device(device).type == "cuda"


def default_channels_last(device: str | torch.device) -> bool:
    """channels_last memory format by default on CUDA only; pass ``channels_last=True`` for CPU.

    On the 2-core CPU channels_last was faster in most settings (one training step, same process:
    at the ``cpu`` profile's 160 px, batch 8, with a synthetic loss, InfNet x1.36, multi InfNet
    x1.14, U-Net x1.21, FCN8s x1.11, inpainter x1.11, coach x1.23; InfNet with its own loss and
    Adam x1.04-1.09; the paper's Res2Net-50 InfNet at 352 px, batch 4, x1.32; about neutral at
    224 px, batch 4). It is not the CPU default because it changes the order of floating-point
    sums, and the ``cpu`` profile's coach-adversarial pretraining (SGD at lr 0.1) is chaotic
    enough that this sent it down another path: its inpainter diverged until every output was
    past the loss's clipping ceiling (no gradient left), where the contiguous run converged. The
    published run must be reproducible with the default, so the CPU keeps PyTorch's layout.
    """
    return torch.device(device).type == "cuda"


def resolve_flag(value: bool | str, arg: str, device: torch.device) -> bool:
    if value == "auto":
        return default_amp(device) if arg == "amp" else default_channels_last(device)
    if isinstance(value, bool):
        return value
    raise ValueError(f"{arg} must be True, False or 'auto', got {value!r}")


def to_device(batch: Any, device: torch.device, channels_last: bool) -> Any:
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.ndim == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, channels_last) for v in batch)
    return batch
