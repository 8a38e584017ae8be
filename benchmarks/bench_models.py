"""Benchmark the networks: parameters, FLOPs, training throughput, inference latency, peak memory.

Usage::

    python benchmarks/bench_models.py --output runs/bench/models.json            # 224 and 352 px
    python benchmarks/bench_models.py --quick --output /tmp/bench.json            # 64 px, 2 repeats
    python benchmarks/bench_models.py --models infnet_light unet --sizes 352 --device cuda

Per model and size: parameters; forward FLOPs per image (``torch.utils.flop_counter``, batch 1,
multiply-add = 2 FLOPs); training images/s (forward + backward + SGD step on synthetic tensors,
batch ``--batch``); inference ms/image (eval, no grad); peak memory. On CUDA the models run
channels_last under bf16 autocast and peak memory is ``torch.cuda.max_memory_allocated``; on CPU
it is the process's maximum resident set size (``resource.getrusage``, cumulative over the run,
so later rows include earlier ones). Inputs are synthetic: timings, not accuracy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ssinfnet.models.registry import build_model

MODELS = {
    "infnet_res2net50": ("infnet", {}),
    "infnet_light": ("infnet", {"backbone": "resnet18"}),
    "unet": ("unet", {}),
    "multi": ("infnet_multi", {}),
}
QUICK_MODELS = {
    "infnet_res2net50": ("infnet", {}),
    "infnet_light": ("infnet", {"backbone": "resnet18", "channels": 16, "ra_widths": (64, 32, 32)}),
    "unet": ("unet", {"base_width": 16}),
    "multi": ("infnet_multi", {"backbone": "resnet18", "channels": 16, "ra_widths": (64, 32, 32)}),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _loss(out) -> torch.Tensor:
    values = out.values() if isinstance(out, dict) else [out]
    return sum(v.float().mean() for v in values)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Forward FLOPs of ``model`` on ``x`` (eval mode, no grad)."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def bench_one(name: str, kwargs: dict, size: int, batch: int, repeats: int,
              device: torch.device) -> dict:
    """Measure one model at one size; returns a JSON-ready dict."""
    torch.manual_seed(0)
    model = build_model(name, **kwargs).to(device)
    cin = model.in_chans
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    params = sum(p.numel() for p in model.parameters())
    flops = count_flops(model, torch.randn(1, cin, size, size, device=device))

    x = torch.randn(batch, cin, size, size, device=device).contiguous(memory_format=fmt)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model.train()

    def train_step():
        opt.zero_grad(set_to_none=True)
        with _autocast(device):
            loss = _loss(model(x))
        loss.backward()
        opt.step()

    train_step()  # warm-up (allocations, cudnn autotuning)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        train_step()
    _sync(device)
    train_s = (time.perf_counter() - t0) / repeats

    model.eval()
    with torch.no_grad(), _autocast(device):
        model(x)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(x)
        _sync(device)
    infer_s = (time.perf_counter() - t0) / repeats

    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        peak_kind = "cuda_max_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        peak_kind = "cpu_max_rss_process"
    return {"params": params, "gflops_per_image": flops / 1e9,
            "train_images_per_s": batch / train_s, "infer_ms_per_image": 1e3 * infer_s / batch,
            "peak_memory_mib": peak, "peak_memory_kind": peak_kind}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, help="JSON file to write")
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 352], help="square input sizes (px)")
    p.add_argument("--models", nargs="+", default=None, help=f"subset of {sorted(MODELS)}")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per measurement")
    p.add_argument("--batch", type=int, default=4, help="batch size for timing")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true",
                   help="64 px, 2 repeats, narrow light models (checks the script runs)")
    args = p.parse_args(argv)
    table = QUICK_MODELS if args.quick else MODELS
    args.models = args.models or list(table)
    unknown = [m for m in args.models if m not in table]
    if unknown:
        p.error(f"--models: unknown {unknown}; choose from {sorted(table)}")
    if args.quick:
        args.sizes, args.repeats = [64], 2
    if args.repeats < 1 or args.batch < 1 or min(args.sizes) < 32:
        p.error("--repeats and --batch must be >= 1 and --sizes >= 32")
    args.table = table
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    rows = []
    for label in args.models:
        name, kwargs = args.table[label]
        for size in args.sizes:
            row = {"model": label, "registry_name": name, "kwargs": kwargs, "size": size,
                   **bench_one(name, kwargs, size, args.batch, args.repeats, device)}
            rows.append(row)
            print(f"{label:18s} {size:4d}px  params {row['params'] / 1e6:7.2f}M  "
                  f"{row['gflops_per_image']:8.2f} GFLOP  train {row['train_images_per_s']:8.1f} img/s  "
                  f"infer {row['infer_ms_per_image']:8.2f} ms/img  peak {row['peak_memory_mib']:8.0f} MiB",
                  flush=True)
    meta = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "batch": args.batch, "repeats": args.repeats, "threads": torch.get_num_threads(),
            "cuda_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "channels_last_bf16": device.type == "cuda", "quick": args.quick}
    with open(args.output, "w") as fh:
        json.dump({"meta": meta, "results": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
