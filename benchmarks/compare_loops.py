"""The training loop of another commit against this checkout's, on the CPU, in one process, alternating.

Usage::

    python benchmarks/compare_loops.py --old-ref main --output benchmarks/results/loop_cpu_old_vs_new.json
    python benchmarks/compare_loops.py --quick --output /tmp/cmp.json       # checks it runs

The package at ``--old-ref`` (``git archive``) is imported beside this checkout's under another name, and
the same real loop (:func:`ssinfnet.training.loop.train`, one phase with InfNet's own loss and Adam,
fed by ``make_loader`` over a SliceDataset of phantoms with the training augmentation, as
``bench_train_loop.py``'s ``real`` loop) runs with each, in rounds that alternate which goes first
(old-new, new-old, ...), so both see the same machine load. A third arm runs this checkout's loop on
device-held data (:class:`ssinfnet.data.held.DeviceLoader`, off by default on the CPU). Rates come from
the loops' own per-step ``wall_s`` stamps (first step excluded). ``*_overhead_ms_per_step``: each loop
around a one-convolution network (:func:`loop_overhead`), the loop's own cost per step, which machine
load disturbs far less than a real network's second-long steps. ``new_over_old`` per round and their
median are the figures to quote, with ``meta.device_name`` and the load averages.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def import_old(ref: str, where: Path):
    """The ``ssinfnet`` package of git ``ref``, imported as ``ssinfnet_old``."""
    archive = where / "old.tar"
    subprocess.run(["git", "archive", "-o", str(archive), ref, "ssinfnet"], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(where / "x", filter="data")
    (where / "x" / "ssinfnet").rename(where / "ssinfnet_old")
    sys.path.insert(0, str(where))
    return importlib.import_module("ssinfnet_old")


def real_loop(pkg: str, kwargs: dict, size: int, batch: int, steps: int, seed: int, phantom_size: int,
              held: bool = False) -> float:
    """Images/s of ``pkg``'s training loop (``steps + 1`` steps, the first untimed)."""
    m = lambda name: importlib.import_module(f"{pkg}.{name}")  # noqa: E731
    samples = m("data.phantoms").synthetic_subset("train", n=batch * (steps + 1), size=phantom_size, seed=seed)
    transform = m("data.transforms").train_transform(size)
    dataset = m("data.dataset").SliceDataset(samples, size, transform, require=("infection",))
    if held:
        loader = m("data.held").DeviceLoader(dataset, batch, seed)
    else:
        loader = m("training.loader").make_loader(dataset, batch, shuffle=True, seed=seed, drop_last=True)
    infnet_loss = m("training.losses").infnet_loss

    def loss_fn(models, b, ctx):
        return infnet_loss(models["net"](b["image"]), b["infection"], b["edge"]), {}

    torch.manual_seed(seed)
    net = m("models.registry").build_model("infnet", **kwargs)
    phase = m("training.phases").Phase("bench", epochs=1, trainable=["net"], loss_fn=loss_fn,
                                       make_optimizer=m("training.optimisers").adam(1e-4), max_steps_per_epoch=steps + 1)
    with tempfile.TemporaryDirectory() as run_dir:
        result = m("training.loop").train([phase], {"net": net}, loader, device="cpu", seed=seed, run_dir=run_dir,
                                          resume=False, progress=False)
    wall = result.history.query("kind == 'step'")["wall_s"].to_numpy()
    return batch * (len(wall) - 1) / float(wall[-1] - wall[0])


def loop_overhead(pkg: str, steps: int = 400, seed: int = 0) -> float:
    """ms per step of ``pkg``'s loop around a one-convolution network on 8 x 8 tensors: the loop's own
    cost (loader, step bookkeeping, host read-back, history), which the network's time hides."""
    from torch import nn
    from torch.utils.data import TensorDataset

    m = lambda name: importlib.import_module(f"{pkg}.{name}")  # noqa: E731
    x = torch.rand(4 * steps, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    loader = m("training.loader").make_loader(TensorDataset(x, x), 4, shuffle=True, seed=seed)
    torch.manual_seed(seed)
    net = nn.Conv2d(1, 1, 3, padding=1)

    def loss_fn(models, b, ctx):
        loss = ((models["net"](b[0]) - b[1]) ** 2).mean()
        return loss, {"mse": loss.detach()}

    phase = m("training.phases").Phase("p", 1, ["net"], loss_fn, make_optimizer=m("training.optimisers").sgd(0.01))
    with tempfile.TemporaryDirectory() as run_dir:
        result = m("training.loop").train([phase], {"net": net}, loader, device="cpu", seed=seed, run_dir=run_dir,
                                          resume=False, progress=False)
    wall = result.history.query("kind == 'step'")["wall_s"].to_numpy()
    return 1e3 * float(wall[-1] - wall[0]) / (len(wall) - 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-ref", default="main")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--phantom-size", type=int, default=256)
    ap.add_argument("--quick", action="store_true", help="smoke network, 2 rounds of 3 steps")
    ap.add_argument("--output", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    from ssinfnet.book.profiles import get_profile
    from ssinfnet.training.cost import device_description

    prof = get_profile("smoke" if args.quick else args.profile)
    if args.quick:
        args.rounds, args.steps, args.phantom_size = 2, 3, 96
    kwargs, size, batch = prof.infnet_kwargs(), prof.image_size, prof.batch_size
    out = {"meta": {"device_name": device_description("cpu"), "torch": torch.__version__,
                    "python": platform.python_version(), "old_ref": args.old_ref,
                    "new_commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                                 text=True).stdout.strip(),
                    "profile": prof.name, "size": size, "batch": batch, "steps": args.steps,
                    "torch_threads": torch.get_num_threads(), "load_average_before": os.getloadavg()},
           "rounds": []}
    with tempfile.TemporaryDirectory() as tmp:
        old_pkg = import_old(args.old_ref, Path(tmp)).__name__
        for r in range(args.rounds):
            order = [("old", old_pkg, False), ("new", "ssinfnet", False)]
            order = order if r % 2 == 0 else order[::-1]
            row = {"order": [name for name, _, _ in order]}
            for name, pkg, held in order + [("new_device_data", "ssinfnet", True)]:
                row[name] = real_loop(pkg, kwargs, size, batch, args.steps, args.seed, args.phantom_size, held)
            for name, pkg, _ in order:
                row[f"{name}_overhead_ms_per_step"] = loop_overhead(pkg, 100 if args.quick else 400)
            row["new_over_old"] = row["new"] / row["old"]
            row["device_data_over_old"] = row["new_device_data"] / row["old"]
            out["rounds"].append(row)
            print(json.dumps(row), flush=True)
    ratios = [r["new_over_old"] for r in out["rounds"]]
    out["new_over_old_median"] = statistics.median(ratios)
    out["device_data_over_old_median"] = statistics.median(r["device_data_over_old"] for r in out["rounds"])
    out["overhead_ms_per_step_median"] = {k: statistics.median(r[f"{k}_overhead_ms_per_step"] for r in out["rounds"])
                                          for k in ("old", "new")}
    out["meta"]["load_average_after"] = os.getloadavg()
    out["meta"]["wall_s"] = time.perf_counter() - t0
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    print(f"new / old images/s: median {out['new_over_old_median']:.3f} over {len(ratios)} rounds "
          f"({', '.join(f'{x:.3f}' for x in ratios)}); device-held / old {out['device_data_over_old_median']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
