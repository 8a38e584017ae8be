"""Do the shift augmentations cost clean accuracy? (issue 16)

Trains one single-class variant with the shift augmentations off (SegConfig's defaults) and on
(:data:`ssinfnet.segmentation.variants.ROBUST_AUGMENTATION`), for several seeds, on the same
training/validation split, then scores every model on the test slices: clean, and under each shift of
the benchmark (:mod:`ssinfnet.evaluation.shifts`, three severities each). Prints one JSON and writes it to
``--output``:

* ``clean``: the paired bootstrap of per-image Dice (on - off) pooled over seeds
  (:func:`ssinfnet.evaluation.comparison.paired_bootstrap`) with its verdict;
* ``shifted``: the same for the mean over all shifted conditions;
* ``runs``: per arm and seed, the epochs run, the validation Dice, clean and mean shifted Dice.

Usage (real data, the cpu recipe; about 3 minutes per model on 2 cores)::

    SSINFNET_DATA=/path/to/data python benchmarks/robust_augmentation.py --profile cpu --seeds 0 1 2 \
        --output benchmarks/results/robust_augmentation_cpu.json
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ssinfnet.book.context import RunContext
from ssinfnet.book.stages.variants import train_val_split
from ssinfnet.evaluation import shifts as sh
from ssinfnet.evaluation.comparison import paired_bootstrap
from ssinfnet.segmentation.fit import fit
from ssinfnet.segmentation.predict import predict_probabilities
from ssinfnet.segmentation.variants import ROBUST_AUGMENTATION, SegConfig, variant_config
from ssinfnet.training.cost import device_description


def score(model, size: int, test, seed: int) -> dict:
    """Per-image Dice of ``model`` on the clean test slices and on every shifted condition."""
    images, masks = [s.image for s in test], [np.asarray(s.infection, bool) for s in test]
    out = {"clean": sh.per_image_dice(predict_probabilities(model, images, size), masks)}
    for shift, level, sev in sh.conditions():
        imgs, ms = sh.shifted_set(images, masks, shift, sev, seed=seed)
        out[f"{shift}{level}"] = sh.per_image_dice(predict_probabilities(model, imgs, size), ms)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--variant", default="sinfnet")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="fine-tuning cap (default: the profile's)")
    ap.add_argument("--run-dir", default="/tmp/ssinfnet-robust-augmentation")
    ap.add_argument("--output", default=None)
    args = ap.parse_args(argv)
    overrides = {} if args.epochs is None else {"finetune_epochs": args.epochs}
    ctx = RunContext.open(profile=args.profile, run_dir=args.run_dir, device="cpu", **overrides)
    train_all, test = ctx.samples("train"), ctx.samples("test")
    tr, va, _ = train_val_split(ctx, train_all, "03_single")
    train, val = [train_all[i] for i in tr], [train_all[i] for i in va]
    off = {k: getattr(SegConfig(), k) for k in ROBUST_AUGMENTATION}  # SegConfig's defaults: all off
    arms = {"off": off, "on": ROBUST_AUGMENTATION}
    runs, dice = [], {arm: [] for arm in arms}
    start = time.perf_counter()
    for arm, aug in arms.items():
        for seed in args.seeds:
            cfg = variant_config(args.variant, ctx.profile, **aug)
            res = fit(cfg, train, val, device="cpu", seed=seed, run_dir=ctx.path("robust", f"{arm}-seed{seed}"),
                      progress=False)
            scores = score(res.model, cfg.image_size, test, seed=ctx.seed)
            dice[arm].append(scores)
            shifted = np.nanmean([np.nanmean(v) for k, v in scores.items() if k != "clean"])
            runs.append({"arm": arm, "seed": seed, "epochs_run": res.record["epochs_run"],
                         "status": res.health.status, "val_dice": None if res.best is None else res.best[1],
                         "clean_dice": float(np.nanmean(scores["clean"])), "mean_shifted_dice": float(shifted)})
            print(json.dumps(runs[-1]), flush=True)

    def stack(arm, key):
        return np.stack([d[key] for d in dice[arm]])

    def mean_shifted(arm):
        keys = [k for k in dice[arm][0] if k != "clean"]
        return np.nanmean(np.stack([stack(arm, k) for k in keys]), axis=0)  # (seeds, images)

    clean = paired_bootstrap(stack("off", "clean"), stack("on", "clean"), n_boot=max(ctx.profile.n_boot, 1000), seed=ctx.seed)
    shifted = paired_bootstrap(mean_shifted("off"), mean_shifted("on"), n_boot=max(ctx.profile.n_boot, 1000), seed=ctx.seed)
    result = {"profile": ctx.profile.name, "data": "synthetic" if ctx.synthetic else "real",
              "variant": args.variant, "seeds": args.seeds, "augmentation": ROBUST_AUGMENTATION,
              "machine": device_description("cpu"),
              "wall_s": round(time.perf_counter() - start, 1),
              "clean": {**clean.to_dict(), "describe": clean.describe("off", "on")},
              "shifted": {**shifted.to_dict(), "describe": shifted.describe("off", "on")},
              "runs": runs}
    text = json.dumps(result, indent=1, default=float)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
