"""Benchmark the networks: parameters, FLOPs, training and inference time, peak memory.

Usage::

    python benchmarks/bench_models.py --output runs/bench/models.json            # 224 and 352 px
    python benchmarks/bench_models.py --quick --output /tmp/bench.json            # 64 px, 2 repeats
    python benchmarks/bench_models.py --models infnet_light unet --sizes 352 --device cuda
    python benchmarks/bench_models.py --models infnet_light unet_w32 --sizes 160 --batch 8 \
        --settings fp32 fp32-cl bf16 bf16-cl --output runs/bench/settings.json   # the cpu profile's nets

A thin command line over :func:`ssinfnet.training.cost.cost_table` (see that module for what each number
means): per model and size, parameters, forward GFLOPs per image (batch 1, multiply-add = 2 FLOPs),
training ms/image and images/s (forward + backward + SGD step on synthetic tensors, batch
``--batch``), inference ms/image (eval, no grad) and peak memory, with the training loop's defaults
(float32; channels_last on CUDA only) or, with ``--settings``, each named setting in turn, so that
their ratios come from one run. Inputs are synthetic: timings, not accuracy. The JSON names the
device in ``meta``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from ssinfnet.training.cost import cost_table, device_description
from ssinfnet.training.device import default_amp, default_channels_last

MODELS = {
    "infnet_res2net50": ("infnet", {}),
    "infnet_light": ("infnet", {"backbone": "resnet18"}),
    "unet": ("unet", {}),
    "unet_w32": ("unet", {"base_width": 32}),  # the cpu profile's U-Net
    "multi": ("infnet_multi", {}),
}
QUICK_MODELS = {
    "infnet_res2net50": ("infnet", {}),
    "infnet_light": ("infnet", {"backbone": "resnet18", "channels": 16, "ra_widths": (64, 32, 32)}),
    "unet": ("unet", {"base_width": 16}),
    "unet_w32": ("unet", {"base_width": 8}),
    "multi": ("infnet_multi", {"backbone": "resnet18", "channels": 16, "ra_widths": (64, 32, 32)}),
}
#: ``--settings``: name -> (bf16 autocast, channels_last); "default" is the training loop's choice for the device.
SETTINGS = {"default": (None, None), "fp32": (False, False), "fp32-cl": (False, True),
            "bf16": (True, False), "bf16-cl": (True, True)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, help="JSON file to write")
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 352], help="square input sizes (px)")
    p.add_argument("--models", nargs="+", default=None, help=f"subset of {sorted(MODELS)}")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per measurement")
    p.add_argument("--batch", type=int, default=4, help="batch size for timing")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--settings", nargs="+", default=["default"], choices=list(SETTINGS),
                   help="precision and memory format of the timed steps, each in turn (default: the loop's)")
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
            for setting in args.settings:
                amp, channels_last = SETTINGS[setting]
                row = cost_table({label: (name, kwargs)}, size, device, args.batch, args.repeats,
                                 amp=amp, channels_last=channels_last).iloc[0].to_dict()
                row = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
                row["kwargs"], row["setting"] = kwargs, setting
                row["train_images_per_s"] = 1e3 / row["train_ms_per_image"]
                rows.append(row)
                print(f"{label:18s} {size:4d}px {setting:8s} params {row['params'] / 1e6:7.2f}M  "
                      f"{row['gflops_per_image']:8.2f} GFLOP  train {row['train_ms_per_image']:8.1f} ms/img  "
                      f"infer {row['infer_ms_per_image']:8.2f} ms/img  peak {row['peak_memory_mib']:8.0f} MiB",
                      flush=True)
    meta = {"device": str(device), "device_name": device_description(device), "torch": torch.__version__,
            "python": platform.python_version(), "batch": args.batch, "repeats": args.repeats,
            "threads": torch.get_num_threads(), "amp_bf16": default_amp(device),
            "channels_last": default_channels_last(device), "settings": args.settings,
            "quick": args.quick}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as fh:
        json.dump({"meta": meta, "results": rows}, fh, indent=2)
    print(f"written {out} ({meta['device_name']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
