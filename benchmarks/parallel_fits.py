"""How much sooner do a chapter's fine-tuning runs finish in two processes than one after another?

Trains the same fits (the given variants x seeds, the profile's split, a short cap) twice in one run:
one after another in this process with all its torch threads (what a chapter does with
``fit_workers`` 1), then with :func:`ssinfnet.segmentation.parallel.train_jobs` in ``--workers``
processes that share those threads. Reports both wall times, their ratio, and each fit's best
validation Dice in both arms (the thread count changes the order of floating-point sums, so the two
agree to training noise, not bit for bit). The parallel arm's time includes starting the worker
processes (a few seconds each: they import torch and ssinfnet afresh).

Usage (real data; about 3 minutes on 2 cores)::

    SSINFNET_DATA=/path/to/data python benchmarks/parallel_fits.py --epochs 10 --seeds 0 1 2 3 \
        --output benchmarks/results/parallel_fits_cpu.json
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from ssinfnet.book.context import RunContext
from ssinfnet.book.stages.variants import train_val_split, variant_job
from ssinfnet.segmentation.parallel import train_jobs
from ssinfnet.training.cost import device_description


def _jobs(args, arm: str):
    ctx = RunContext.open(profile=args.profile, run_dir=f"{args.run_dir}/{arm}", device="cpu",
                          finetune_epochs=args.epochs)
    train_all = ctx.samples("train")
    tr, va, _ = train_val_split(ctx, train_all, "03_single")
    train, val = [train_all[i] for i in tr], [train_all[i] for i in va]
    return [variant_job(ctx, name, train, val, seed_index=k) for k in args.seeds for name in args.variants]


def _val_dice(job) -> float:
    return round(float(job.run("cpu", progress=False).best[1]), 4)  # a finished run: loaded, not trained


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--variants", nargs="+", default=["sinfnet"], help="variants trained from scratch")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--epochs", type=int, default=10, help="fine-tuning cap of every fit")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--run-dir", default="/tmp/ssinfnet-parallel-fits")
    ap.add_argument("--output", default=None)
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()

    serial = _jobs(args, "serial")
    start = time.perf_counter()
    for job in serial:
        job.run("cpu", progress=False)
    serial_s = round(time.perf_counter() - start, 2)

    parallel = _jobs(args, "parallel")
    start = time.perf_counter()
    train_jobs(parallel, device="cpu", workers=args.workers, progress=False)
    parallel_s = round(time.perf_counter() - start, 2)

    fits = [{"run": a.name, "val_dice_serial": _val_dice(a), "val_dice_parallel": _val_dice(b)}
            for a, b in zip(serial, parallel)]
    out = {"profile": args.profile, "variants": args.variants, "seeds": args.seeds, "epochs": args.epochs,
           "workers": args.workers, "threads": threads, "machine": device_description("cpu"),
           "serial_s": serial_s, "parallel_s": parallel_s,
           "speedup": round(serial_s / parallel_s, 3), "fits": fits}
    text = json.dumps(out, indent=1)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return out


if __name__ == "__main__":
    main()
