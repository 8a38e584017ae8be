"""Does the inpainter learn at the paper's starting rate? (issue 14)

Trains the profile's inpainter alone with random block masks (the first phase of the pretraining
schedule, then the coach's phase so the run is a real prefix of the schedule) once per starting SGD rate,
on the same pool, seed and masks, and scores each on the test slices (images only: no label is read)
with :func:`ssinfnet.pretraining.evidence.reconstruction_errors`: the mean absolute error inside the
erased blocks, in grey levels (0..255), against mean-fill and blur baselines that learn nothing. Also
records the share of output pixels past the loss's clipping ceiling, whose gradient is zero.

Prints one JSON and writes it to ``--output``: per rate, the epoch losses, the last step's
past-ceiling share, and the mean erased-region error of the inpainter and of each baseline with a
bootstrap interval over the slices.

Usage (real data; about 1.5 minutes per rate and epoch pair on 2 idle cores)::

    SSINFNET_DATA=/path/to/data python benchmarks/pretrain_lr.py --profile cpu --rates 0.1 0.01 \
        --epochs 2 --output benchmarks/results/pretrain_lr_cpu.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time

import torch

from ssinfnet.book.profiles import get_profile
from ssinfnet.data.catalog import load_samples
from ssinfnet.data.inputs import batch_input
from ssinfnet.data.sources import resolve_data_root
from ssinfnet.models.coach import random_masks
from ssinfnet.pretraining import evidence as ev
from ssinfnet.pretraining import inpainting as pt
from ssinfnet.training.cost import device_description


def one_rate(rate: float, profile, samples, x, mask, epochs: int, seed: int) -> dict:
    """Pretrain with starting rate ``rate`` (``epochs`` inpainter epochs, one coach epoch, no
    alternation) and score the inpainter on ``x`` under ``mask``."""
    cfg = dataclasses.replace(pt.config_from_profile(profile), inpainter_lr=rate, inpainter_epochs=epochs,
                              coach_epochs=1, alternations=0)
    loader = pt.pool_loader(samples, cfg, seed=seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        models, result = pt.pretrain(cfg, loader, device="cpu", seed=seed, run_dir=folder, progress=False)
    seconds = time.perf_counter() - start
    history = result.history
    steps = history[(history.kind == "step") & (history.phase == "inpainter")]
    epochs_ = history[history.kind == "epoch"]
    table = ev.reconstruction_errors(models["inpainter"], x, mask)
    errors = {}
    for column in table.columns.drop("slice"):
        mean, lo, hi = ev.mean_ci(table[column], seed=seed)
        errors[column] = {"mean": round(mean, 1), "ci": [round(lo, 1), round(hi, 1)]}
    return {"rate": rate, "seconds": round(seconds, 1),
            "epoch_losses": {f"{r.phase}/{int(r.epoch)}": round(float(r.loss), 4) for r in epochs_.itertuples()},
            "past_ceiling_first_steps": round(float(steps.past_ceiling.head(10).mean()), 3),
            "past_ceiling_last_step": round(float(steps.past_ceiling.iloc[-1]), 3),
            "erased_mae_grey_levels": errors}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.01])
    parser.add_argument("--epochs", type=int, default=2, help="inpainter epochs per rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = get_profile(args.profile)
    root = resolve_data_root(os.environ.get("SSINFNET_DATA"))
    samples, _ = pt.pretraining_pool(root, profile, seed=args.seed)
    test = pt.strip_labels(load_samples(root, "test"))
    x = batch_input([s.image for s in test], profile.image_size)
    cfg = pt.config_from_profile(profile)
    mask = (random_masks(x.shape, cfg.keep, cfg.patch, generator=torch.Generator().manual_seed(args.seed)) > 0.5).float()
    out = {"profile": profile.name, "data": root.describe(), "test_slices": len(test), "epochs": args.epochs,
           "machine": device_description("cpu"),
           "runs": [one_rate(r, profile, samples, x, mask, args.epochs, args.seed) for r in args.rates]}
    text = json.dumps(out, indent=1, ensure_ascii=False)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return out


if __name__ == "__main__":
    main()
