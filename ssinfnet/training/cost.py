"""Compute cost of the networks: parameters, FLOPs, training and inference time, peak memory.

The measuring core of ``benchmarks/bench_models.py``, callable from notebooks. :func:`cost_table`
gives one row per model in the layout of the paper's Table S8 (parameters, GFLOPs per image,
training and inference ms per image, peak memory, device).

Conventions
-----------
* FLOPs come from :mod:`torch.utils.flop_counter` on one image in eval mode; one multiply-add counts
  as 2 FLOPs. The counter sees convolutions and matrix products (the bulk of the work), not batch
  norm, activations or resizing, so the numbers are slightly low, as in most published tables.
* Times are wall-clock seconds from :func:`time.perf_counter` after one untimed warm-up call, with a
  device synchronisation before each clock read on CUDA. Models run as the training loop runs them by
  default: float32, channels_last on CUDA; on CPU PyTorch's layout.
* Peak memory on CUDA is ``torch.cuda.max_memory_allocated`` (tensors only). On CPU (Linux) it is the
  process's peak resident set size during the measurement (``VmHWM``, reset through
  ``/proc/self/clear_refs``), which includes the interpreter and libraries; where that reset is not
  allowed it falls back to ``ru_maxrss``, the peak over the whole process life.
"""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..models.registry import build_model
from .device import cpu_model_name, default_amp, default_channels_last, usable_cores

__all__ = ["count_parameters", "count_flops", "time_training_step", "time_inference", "cost_table",
           "device_description", "peak_memory_mib", "reset_peak_memory", "mean_output_loss"]

#: Columns of :func:`cost_table`, in order.
COST_COLUMNS = ["model", "registry_name", "size", "batch", "params", "gflops_per_image", "train_ms_per_image",
                "infer_ms_per_image", "peak_memory_mib", "peak_memory_kind", "amp_bf16", "channels_last",
                "threads", "device_name"]

LossFn = Callable[[nn.Module, Any], torch.Tensor]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``model`` (shared tensors counted once).

    Parameters
    ----------
    model : nn.Module
    trainable_only : bool, default=False
        Count only parameters with ``requires_grad``.

    Returns
    -------
    int
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """Forward FLOPs of ``model`` on input ``x`` (multiply-add = 2 FLOPs).

    The model is put in eval mode and run once without gradients; for a per-image number pass a
    batch of one. Only operations known to :class:`torch.utils.flop_counter.FlopCounterMode`
    (convolutions, matrix products, attention) are counted.

    Parameters
    ----------
    model : nn.Module
    x : tensor, e.g. (1, C, H, W), on the model's device

    Returns
    -------
    int
        FLOPs of one forward pass over the whole of ``x``.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a tensor, got {type(x).__name__}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def mean_output_loss(model: nn.Module, batch: Any) -> torch.Tensor:
    """Synthetic loss for timing: the sum over outputs of their mean (float32).

    ``batch`` is the input tensor, or a dict whose ``"image"`` entry is the input.
    """
    x = batch["image"] if isinstance(batch, Mapping) else batch
    out = model(x)
    values = out.values() if isinstance(out, Mapping) else [out]
    return sum(v.float().mean() for v in values)


def _resolve(amp: bool | None, channels_last: bool | None, device: torch.device) -> tuple[bool, bool]:
    """The training loop's defaults (:func:`ssinfnet.training.device.default_amp` / ``default_channels_last``) for None."""
    return (default_amp(device) if amp is None else bool(amp),
            default_channels_last(device) if channels_last is None else bool(channels_last))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _move(batch: Any, device: torch.device, channels_last: bool) -> Any:
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device)
        if channels_last and batch.ndim == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, Mapping):
        return {k: _move(v, device, channels_last) for k, v in batch.items()}
    raise ValueError(f"batch must be a tensor or a dict of tensors, got {type(batch).__name__}")


def _check_repeats(repeats: int) -> None:
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")


def time_training_step(model: nn.Module, batch: Any, loss_fn: LossFn | None = None,
                       device: str | torch.device = "cpu", repeats: int = 5, amp: bool | None = None,
                       channels_last: bool | None = None,
                       make_optimizer: Callable[[list], torch.optim.Optimizer] | None = None) -> float:
    """Mean wall time of one training step (forward, loss, backward, optimiser step), in seconds.

    The model is moved to ``device`` (and to channels_last when asked) in place, put in train
    mode, and trained for ``1 + repeats`` steps on the same ``batch``; the first step is not timed
    (allocations, kernel selection). No value is read back to the host inside the timed steps.

    Parameters
    ----------
    model : nn.Module
    batch : tensor (B, C, H, W) or dict of tensors
        Moved to ``device``; 4-D float tensors follow ``channels_last``.
    loss_fn : callable ``loss_fn(model, batch) -> 0-d tensor``, optional
        Default :func:`mean_output_loss` (synthetic).
    device : str or torch.device, default="cpu"
    repeats : int >= 1, default=5
        Timed steps.
    amp : bool or None, default=None
        bf16 autocast around forward and loss; None = the loop's default (off).
    channels_last : bool or None, default=None
        Model and 4-D inputs in channels-last memory format; None = the training loop's default
        (CUDA only).
    make_optimizer : callable ``params -> Optimizer``, optional
        Default SGD (lr 1e-3, momentum 0.9).

    Returns
    -------
    float
        Seconds per step for the whole batch (divide by B for seconds per image).
    """
    _check_repeats(repeats)
    device = torch.device(device)
    amp, channels_last = _resolve(amp, channels_last, device)
    loss_fn = loss_fn or mean_output_loss
    model.to(device)
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    batch = _move(batch, device, channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    opt = make_optimizer(params) if make_optimizer else torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _autocast(device, amp):
            loss = loss_fn(model, batch)
        loss.backward()
        opt.step()

    step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    _sync(device)
    return (time.perf_counter() - t0) / repeats


def time_inference(model: nn.Module, x: torch.Tensor, device: str | torch.device = "cpu", repeats: int = 5,
                   amp: bool | None = None, channels_last: bool | None = None) -> float:
    """Mean wall time of one forward pass in eval mode without gradients, in seconds.

    Parameters
    ----------
    model : nn.Module
        Moved to ``device`` (and memory format) in place; left in eval mode.
    x : tensor (B, C, H, W)
    device, repeats, amp, channels_last : see :func:`time_training_step`

    Returns
    -------
    float
        Seconds per forward pass over the batch (divide by B for seconds per image).
    """
    _check_repeats(repeats)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a tensor, got {type(x).__name__}")
    device = torch.device(device)
    amp, channels_last = _resolve(amp, channels_last, device)
    model.to(device)
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    x = _move(x, device, channels_last)
    model.eval()
    with torch.no_grad(), _autocast(device, amp):
        model(x)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(x)
        _sync(device)
    return (time.perf_counter() - t0) / repeats


def _cpu_peak_rss_kib() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_memory(device: str | torch.device) -> bool:
    """Start a new peak-memory window on ``device``; False when only the lifetime peak is available."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # Linux >= 4.0: resets VmHWM to the current resident size
        return _cpu_peak_rss_kib() is not None
    except OSError:
        return False


def peak_memory_mib(device: str | torch.device, windowed: bool = True) -> tuple[float, str]:
    """Peak memory since :func:`reset_peak_memory`, in MiB, and what it measures.

    Returns ``(mib, kind)`` with kind ``"cuda_max_allocated"``, ``"cpu_peak_rss"`` (process resident
    set, since the reset) or ``"cpu_max_rss_lifetime"`` (``windowed=False`` or no reset possible).
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    kib = _cpu_peak_rss_kib() if windowed else None
    if kib is not None:
        return kib / 1024, "cpu_peak_rss"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_max_rss_lifetime"  # KiB on Linux


def device_description(device: str | torch.device) -> str:
    """Human-readable device: the GPU's name, or the CPU model with usable cores and torch threads."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {cpu_model_name()}, {usable_cores()} usable cores, {torch.get_num_threads()} torch threads"


def cost_table(models: Mapping[str, tuple[str, dict]], size: int, device: str | torch.device = "cpu",
               batch: int = 4, repeats: int = 5, seed: int = 0,
               loss_fns: Mapping[str, LossFn] | None = None, amp: bool | None = None,
               channels_last: bool | None = None) -> pd.DataFrame:
    """Cost of each model at one input size, one row per model (the paper's Table S8 layout).

    Parameters
    ----------
    models : dict label -> (registry_name, kwargs)
        Built with :func:`ssinfnet.models.registry.build_model`; input channels from ``in_chans``.
    size : int >= 32
        Square input side in pixels.
    device : str or torch.device, default="cpu"
        The training loop's defaults: float32, channels_last on CUDA only.
    batch : int >= 1, default=4
        Batch size of the timed training steps and forward passes.
    repeats : int >= 1, default=5
        Timed steps per measurement (after one warm-up).
    seed : int, default=0
        Seeds weight initialisation and the synthetic inputs.
    loss_fns : dict label -> ``loss_fn(model, batch)``, optional
        Loss per model; default :func:`mean_output_loss` on a synthetic image batch.
    amp, channels_last : bool or None, default=None
        bf16 autocast and channels_last memory format for the timed steps; None takes the training
        loop's defaults for ``device``. FLOPs are counted in float32 either way.

    Returns
    -------
    DataFrame with columns :data:`COST_COLUMNS`: ``params`` (count), ``gflops_per_image`` (forward,
    batch 1), ``train_ms_per_image`` and ``infer_ms_per_image`` (ms, step time / batch),
    ``peak_memory_mib`` and ``peak_memory_kind`` (see module notes), ``amp_bf16``,
    ``channels_last``, ``threads`` (torch intra-op threads) and ``device_name``.
    """
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty dict label -> (registry_name, kwargs)")
    if not isinstance(size, int) or size < 32:
        raise ValueError(f"size must be an int >= 32 (pixels), got {size!r}")
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    _check_repeats(repeats)
    device = torch.device(device)
    amp, channels_last = _resolve(amp, channels_last, device)
    rows = []
    for label, spec in models.items():
        if not (isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[1], Mapping)):
            raise ValueError(f"models[{label!r}] must be (registry_name, kwargs), got {spec!r}")
        name, kwargs = spec
        torch.manual_seed(seed)
        model = build_model(name, **kwargs).to(device)
        cin = getattr(model, "in_chans", 1)
        gen = torch.Generator().manual_seed(seed)
        params = count_parameters(model)
        flops = count_flops(model, torch.randn(1, cin, size, size, generator=gen).to(device))
        x = torch.randn(batch, cin, size, size, generator=gen)
        windowed = reset_peak_memory(device)
        loss_fn = (loss_fns or {}).get(label)
        train_s = time_training_step(model, x, loss_fn, device, repeats, amp=amp, channels_last=channels_last)
        infer_s = time_inference(model, x, device, repeats, amp=amp, channels_last=channels_last)
        peak, kind = peak_memory_mib(device, windowed)
        rows.append({"model": label, "registry_name": name, "size": size, "batch": batch, "params": params,
                     "gflops_per_image": flops / 1e9, "train_ms_per_image": 1e3 * train_s / batch,
                     "infer_ms_per_image": 1e3 * infer_s / batch, "peak_memory_mib": peak,
                     "peak_memory_kind": kind, "amp_bf16": amp, "channels_last": channels_last,
                     "threads": torch.get_num_threads(), "device_name": device_description(device)})
        del model, x
    return pd.DataFrame(rows, columns=COST_COLUMNS)
