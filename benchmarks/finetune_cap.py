"""Does a longer fine-tuning cap raise the single-class test meanDic? (issue 14)

In the published cpu run 7 of the 8 single-class variants stopped at the 60-epoch cap, not on
patience, and the best model reached Inf-Net meanDic 0.591 on the 48 test slices (bar 0.60). This
trains the given variants with each cap (same split, seed, profile and, for inpainting-initialised
variants, the run's pretrained inpainter) and scores each on the test slices in the Inf-Net protocol.
Prints one JSON line per model and the whole result, written to ``--output``.

Usage (real data; about 2.5 minutes per 60 epochs of InfNet on 2 cores)::

    SSINFNET_DATA=/path/to/data python benchmarks/finetune_cap.py --caps 60 100 \
        --variants ssinfnet sinfnet --inpainter runs/cpu/pretrain/single/inpainter.pt \
        --output benchmarks/results/finetune_cap_cpu.json
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ssinfnet.book.context import RunContext
from ssinfnet.book.stages.variants import train_val_split
from ssinfnet.evaluation.tables import infnet_protocol
from ssinfnet.segmentation.fit import fit
from ssinfnet.segmentation.predict import predict_probabilities
from ssinfnet.segmentation.variants import variant_config
from ssinfnet.training.cost import device_description


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--variants", nargs="+", default=["ssinfnet"])
    ap.add_argument("--caps", type=int, nargs="+", default=[60, 100])
    ap.add_argument("--seed", type=int, default=0, help="training seed offset (0: the run's seed-0 models)")
    ap.add_argument("--inpainter", default=None, help="pretrained inpainter for inpainting-initialised variants")
    ap.add_argument("--run-dir", default="/tmp/ssinfnet-finetune-cap")
    ap.add_argument("--output", default=None)
    args = ap.parse_args(argv)
    results, start = [], time.perf_counter()
    for cap in args.caps:
        ctx = RunContext.open(profile=args.profile, run_dir=f"{args.run_dir}/cap{cap}", device="cpu",
                              finetune_epochs=cap)
        train_all, test = ctx.samples("train"), ctx.samples("test")
        tr, va, _ = train_val_split(ctx, train_all, "03_single")
        train, val = [train_all[i] for i in tr], [train_all[i] for i in va]
        for name in args.variants:
            cfg = variant_config(name, ctx.profile)
            if cfg.init != "scratch":
                if not args.inpainter:
                    raise SystemExit(f"variant {name!r} needs --inpainter")
                cfg = variant_config(name, ctx.profile, init_weights=str(args.inpainter))
            t0 = time.perf_counter()
            res = fit(cfg, train, val, device="cpu", seed=ctx.seed + args.seed,
                      run_dir=ctx.path("finetune", name), progress=False)
            maps = predict_probabilities(res.model, [s.image for s in test], cfg.image_size)
            metrics = infnet_protocol(maps, [np.asarray(s.infection, bool) for s in test])
            results.append({"variant": name, "cap": cap, "epochs_run": res.record["epochs_run"],
                            "stop": res.record.get("stop"), "status": res.health.status,
                            "best_epoch": None if res.best is None else res.best[0] + 1,
                            "val_dice": None if res.best is None else round(float(res.best[1]), 4),
                            "test_meanDic": round(float(metrics["meanDic"]), 4),
                            "fit_s": round(time.perf_counter() - t0, 1)})
            print(json.dumps(results[-1]), flush=True)
    out = {"profile": args.profile, "seed": args.seed, "inpainter": args.inpainter,
           "machine": device_description("cpu"),
           "wall_s": round(time.perf_counter() - start, 1), "runs": results}
    text = json.dumps(out, indent=1, default=float)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return out


if __name__ == "__main__":
    main()
