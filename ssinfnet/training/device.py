"""Device policy shared by training and inference: device choice, mixed precision, channels-last, batch moves."""

from __future__ import annotations

import math
import os
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


def device_name(device: str = "auto") -> str:
    """Resolve "auto" to "cuda" when a GPU is visible, else "cpu"; other values pass through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_model_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (e.g. "AMD EPYC"), else the platform's processor name."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: Where a container's CPU quota is read (cgroup v2 ``cpu.max``, or v1 ``cpu/cpu.cfs_quota_us``).
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: Which cgroups this process is in: a v2 line reads "0::/path", a v1 line "N:cpu,cpuacct:/path".
PROC_CGROUP = Path("/proc/self/cgroup")


def _own_cgroups() -> dict[str, str]:
    """{"v2": path, "v1": path of the cpu controller} from :data:`PROC_CGROUP` (absent keys: not listed)."""
    own = {}
    try:
        lines = PROC_CGROUP.read_text().splitlines()
    except OSError:
        return own
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            own["v2"] = parts[2].strip()
        elif "cpu" in parts[1].split(","):
            own["v1"] = parts[2].strip()
    return own


def _up_to(base: Path, path: str) -> list[Path]:
    """``base / path`` and each of its parents up to ``base`` (the folders whose quota binds the process);
    just ``base`` when the folder is not visible, as in a container with its own cgroup namespace."""
    folder = base / path.lstrip("/")
    if not folder.is_dir() or base.resolve() not in (folder.resolve(), *folder.resolve().parents):
        return [base]
    chain = [folder]
    while chain[-1].resolve() != base.resolve():
        chain.append(chain[-1].parent)
    return chain


def _v2_quota(folder: Path) -> float | None:
    quota, period = (folder / "cpu.max").read_text().split()[:2]
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(folder: Path) -> float | None:
    quota = int((folder / "cpu.cfs_quota_us").read_text())
    return None if quota <= 0 else quota / int((folder / "cpu.cfs_period_us").read_text())


def cpu_quota(root: Path | None = None) -> float | None:
    """The CPUs a container's CFS quota allows this process (quota / period, e.g. 2.0), or None when there is
    no quota or it cannot be read. ``root``: the cgroup file system (default :data:`CGROUP_ROOT`).

    The tightest quota of this process's own cgroup (:data:`PROC_CGROUP`) and of every folder above it up
    to ``root`` (a parent's quota binds its children): cgroup v2 ``cpu.max`` ("<quota|max> <period>"),
    else v1 ``cpu/cpu.cfs_quota_us`` (-1 when unlimited) over ``cpu/cpu.cfs_period_us``."""
    root = CGROUP_ROOT if root is None else Path(root)
    own = _own_cgroups()
    v2 = [f for f in _up_to(root, own.get("v2", "/")) if (f / "cpu.max").is_file()]
    v1 = [f for f in _up_to(root / "cpu", own.get("v1", "/")) if (f / "cpu.cfs_quota_us").is_file()]
    try:
        quotas = [_v2_quota(f) for f in v2] if v2 else [_v1_quota(f) for f in v1]
    except (OSError, ValueError, ZeroDivisionError, IndexError):
        return None
    quotas = [q for q in quotas if q is not None]
    return min(quotas) if quotas else None


def usable_cores(root: Path | None = None) -> int:
    """CPU cores this process may run on: its affinity mask where the platform has one, capped by a
    container's CPU quota (:func:`cpu_quota`, rounded up): a container limited to 2 CPUs on a 16-core
    host has 2, whatever the host shows."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota(root)
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def match_threads_to_cores() -> int:
    """Lower torch's intra-op threads to :func:`usable_cores` when it is higher (torch counts the host's
    cores, not a container's quota, and more threads than CPUs is slower); returns the threads in use."""
    cores = usable_cores()
    if torch.get_num_threads() > cores:
        torch.set_num_threads(cores)
    return torch.get_num_threads()


def describe_device(device: str) -> str:
    """The device a run used, in words, for its manifest: the GPU's name, or the CPU model with its usable
    cores and the vector instruction set PyTorch's CPU kernels use (e.g. "cpu (AMD EPYC, 2 cores, AVX2
    kernels)"): the same model name can mean machines 2-3x apart in speed, and the kernels change the
    last digits of every trained number."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({cpu_model_name()}, {usable_cores()} cores, {torch.backends.cpu.get_cpu_capability()} kernels)"


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
    """bf16 autocast is off by default everywhere; pass ``amp=True`` to try it.

    Measured on one NVIDIA H200 (../shared/measurements, 2026-11-30; the paper's Res2Net-50 InfNet at
    352 px, batch 16, fused Adam, cudnn.benchmark, eager mode): ms per training image fp32 contiguous
    4.73, fp32 channels_last 4.00, bf16 contiguous 4.99, bf16 channels_last 5.43. The step is bound by
    memory traffic and kernel launches of many small element-wise kernels, not by convolution math, so
    bf16 buys nothing in eager mode and fp32 + channels_last is the fastest setting measured. On CPUs
    bf16 autocast runs 9-10x slower than fp32 where there is no native bf16 (2-core AMD EPYC, AVX2),
    and faster where there is (2-core AMD EPYC with ``avx512_bf16``, the ``cpu`` profile's networks at
    160 px, batch 8: InfNet x1.57, U-Net x2.13, x2.60 with channels_last;
    ``benchmarks/results/settings_cpu.json``). Off stays the default so that one profile trains the
    same arithmetic, at a bearable speed, on every x86-64 CPU.
    ``benchmarks/gpu_check.sh`` measures both settings, also under ``torch.compile``, in one run.
    """
    return False


def default_channels_last(device: str | torch.device) -> bool:
    """channels_last memory format by default on CUDA only (fastest measured eager setting there, see
    :func:`default_amp`); pass ``channels_last=True`` for CPU.

    On the 2-core CPU channels_last was faster in most settings (one training step, same process:
    at the ``cpu`` profile's 160 px, batch 8, with a synthetic loss, InfNet x1.36, multi InfNet
    x1.14, U-Net x1.21, FCN8s x1.11, inpainter x1.11, coach x1.23; InfNet with its own loss and
    Adam x1.04-1.09; the paper's Res2Net-50 InfNet at 352 px, batch 4, x1.32; about neutral at
    224 px, batch 4). It is not the CPU default because it changes the order of floating-point
    sums, and the ``cpu`` profile's coach-adversarial pretraining (SGD at lr 0.1) is chaotic
    enough that this sent it down another path: its inpainter diverged until every output was
    past the loss's clipping ceiling (no gradient left), where the contiguous run converged (the
    pretraining's divergence guard now stops such a run, :mod:`ssinfnet.training.guard`). The
    published run must be reproducible with the default, so the CPU keeps PyTorch's layout.
    """
    return torch.device(device).type == "cuda"


def default_device_data(device: str | torch.device) -> bool:
    """Whether the training set is held on the device and augmented there by default
    (:class:`~ssinfnet.data.held.DeviceLoader`): on CUDA only.

    On a GPU the per-slice path makes each step wait for CPU workers to decode, augment, collate and
    copy the batch, and the network's step is short enough (about 4 ms per image at 352 px on an
    H200) for that to dominate. On the CPU the DataLoader's batches are already in the memory the
    network reads, the batched augmentation saves no copy, and the per-slice path is the reference the
    published CPU runs were made with (its crops are resampled from the original slice, not from the
    slice resized to the training side), so the CPU keeps it; pass ``device_data=True`` to use the
    device-held path there (the tests do).
    """
    return torch.device(device).type == "cuda"


def check_flag(value: bool | str, arg: str) -> None:
    """ValueError naming ``arg`` unless ``value`` is True, False or "auto" (``amp``, ``channels_last``)."""
    if not (isinstance(value, bool) or (isinstance(value, str) and value == "auto")):
        raise ValueError(f"{arg} must be True, False or 'auto', got {value!r}")


def resolve_flag(value: bool | str, arg: str, device: torch.device) -> bool:
    """``value`` (True, False or "auto": the device's default) as a bool; ValueError for anything else."""
    check_flag(value, arg)
    if value == "auto":
        return default_amp(device) if arg == "amp" else default_channels_last(device)
    return value


def tune_backend(device: str | torch.device) -> None:
    """On CUDA, let cuDNN pick the fastest convolution algorithms for the (fixed) input shapes.

    The search costs 20-35 s at the first steps of the paper network (H200), repaid by any schedule
    longer than a few epochs; results then vary with the chosen kernels (CUDA nondeterminism). No-op on CPU.
    """
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True


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
