"""Does a longer fine-tuning cap or a larger input raise the single-class test meanDic? (issue 14)

In the published cpu run 7 of the 8 single-class variants stopped at the 60-epoch cap, not on
patience, and the best model reached Inf-Net meanDic 0.591 on the 48 test slices (bar 0.60). This
trains the given variants with each cap (same split, seed, profile and, for inpainting-initialised
variants, the run's pretrained inpainter) and scores each on the test slices in the Inf-Net protocol.
Prints one JSON line per model and the whole result, written to ``--output``. With ``--flip`` each
model is also scored with test-time flip averaging (``predict_probabilities(..., flip=True)``: the
logits of each slice and of its left-right mirror averaged), an inference-only change: the trained
models are the same; the validation slices' meanDic is then given plain and flipped too. ``fit`` says
whether each model was trained or reloaded from ``--run-dir`` (then ``fit_s`` is the reload time).
With ``--ensemble`` (and several seeds) the mean probability map of each variant's seeds is scored too,
on validation and test (plain and, with ``--flip``, flipped), under ``ensembles``. ``--amp`` trains
under bf16 autocast and ``--channels-last`` in that memory format (each in its own run folder); the
test maps are predicted in float32 either way.

Usage (real data; about 2.5 minutes per 60 epochs of InfNet on 2 cores)::

    SSINFNET_DATA=/path/to/data python benchmarks/finetune_cap.py --caps 60 100 \
        --variants ssinfnet sinfnet --inpainter runs/cpu/pretrain/single/inpainter.pt \
        --output benchmarks/results/finetune_cap_cpu.json
    SSINFNET_DATA=/path/to/data python benchmarks/finetune_cap.py --caps 60 --image-sizes 160 192 \
        --seeds 0 1 --variants sinfnet ssinfnet --inpainter runs/cpu/pretrain/single/inpainter.pt \
        --output benchmarks/results/finetune_size_cpu.json
    SSINFNET_DATA=/path/to/data python benchmarks/finetune_cap.py --caps 60 --seeds 0 1 2 --flip \
        --variants sinfnet ssinfnet --inpainter runs/cpu/pretrain/single/inpainter.pt \
        --output benchmarks/results/finetune_flip_cpu.json
    SSINFNET_DATA=/path/to/data python benchmarks/finetune_cap.py --caps 60 --seeds 0 1 2 --flip --amp \
        --channels-last --variants sinfnet unet --output benchmarks/results/finetune_bf16_cpu.json
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
from ssinfnet.segmentation.variants import pretrained_variant_config
from ssinfnet.training import provenance
from ssinfnet.training.cost import device_description

DIGITS = 5  # enough to tell 0.59996 from 0.60004 against a bar of 0.60


def _flip_scores(maps: dict, test_gts, val_gts) -> dict:
    """Inf-Net meanDic / maxDic with flip averaging on the test slices, and meanDic plain and flipped
    on the validation slices (the split a chapter would have to decide the flip on); ``maps`` holds
    one model's probability maps by (split, flip)."""
    flipped = infnet_protocol(maps["test", True], test_gts)
    out = {"test_meanDic_flip": round(float(flipped["meanDic"]), DIGITS),
           "test_maxDic_flip": round(float(flipped["maxDic"]), DIGITS)}
    for key, flip in (("val_meanDic", False), ("val_meanDic_flip", True)):
        out[key] = round(float(infnet_protocol(maps["val", flip], val_gts)["meanDic"]), DIGITS)
    return out


def _ensemble_scores(per_seed: list[dict], test_gts, val_gts, flip: bool) -> dict:
    """Scores of the seeds' mean probability maps (one model's maps per entry of ``per_seed``, by
    (split, flip)): validation meanDic and test meanDic / maxDic, plain and, with ``flip``, flipped."""
    out = {}
    for flipped in (False, True) if flip else (False,):
        tag = "_flip" if flipped else ""
        for split, gts in (("val", val_gts), ("test", test_gts)):
            mean = [np.mean(maps, axis=0) for maps in zip(*(m[split, flipped] for m in per_seed))]
            scores = infnet_protocol(mean, gts)
            out[f"{split}_meanDic{tag}"] = round(float(scores["meanDic"]), DIGITS)
            if split == "test":
                out[f"test_maxDic{tag}"] = round(float(scores["maxDic"]), DIGITS)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--variants", nargs="+", default=["ssinfnet"])
    ap.add_argument("--caps", type=int, nargs="+", default=[60, 100])
    ap.add_argument("--image-sizes", type=int, nargs="+", default=None,
                    help="input sides in pixels (default: the profile's)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="training seed offsets (k: the run's seed-k models, as chapter 3 trains them)")
    ap.add_argument("--flip", action="store_true",
                    help="also score each model with test-time left-right flip averaging")
    ap.add_argument("--ensemble", action="store_true",
                    help="also score the mean probability map of each variant's seeds (validation and test)")
    ap.add_argument("--inpainter", default=None, help="pretrained inpainter for inpainting-initialised variants")
    ap.add_argument("--amp", action="store_true", help="train under bf16 autocast (default: float32)")
    ap.add_argument("--channels-last", action="store_true", help="train in channels_last memory format")
    ap.add_argument("--run-dir", default="/tmp/ssinfnet-finetune-cap")
    ap.add_argument("--output", default=None)
    args = ap.parse_args(argv)
    # set only when asked, so float32 runs keep the default settings ("auto": float32, contiguous on CPU)
    precision = {"amp": True} if args.amp else {}
    precision.update({"channels_last": True} if args.channels_last else {})
    results, ensembles, start = [], [], time.perf_counter()
    for size in args.image_sizes or [None]:
        for cap in args.caps:
            overrides = {"finetune_epochs": cap} if size is None else {"finetune_epochs": cap, "image_size": size}
            setting = "-bf16" * args.amp + "-cl" * args.channels_last
            ctx = RunContext.open(profile=args.profile, device="cpu", **overrides,
                                  run_dir=f"{args.run_dir}/cap{cap}-size{size or 'profile'}{setting}")
            train_all, test = ctx.samples("train"), ctx.samples("test")
            tr, va, _ = train_val_split(ctx, train_all, "03_single")
            train, val = [train_all[i] for i in tr], [train_all[i] for i in va]
            gts = [np.asarray(s.infection, bool) for s in test]
            val_gts = [np.asarray(s.infection, bool) for s in val]
            seed_maps = {name: [] for name in args.variants}
            # the (split, flip) maps each model is scored on: test always, validation for the flip or the ensemble
            wanted = [("test", False)] + [("val", False)] * (args.flip or args.ensemble) + \
                [("test", True), ("val", True)] * args.flip
            for seed in args.seeds:
                for name in args.variants:
                    cfg = pretrained_variant_config(name, ctx.profile, args.inpainter, **precision)
                    if cfg.init != "scratch" and cfg.init_weights is None:
                        raise SystemExit(f"variant {name!r} needs --inpainter")
                    t0 = time.perf_counter()
                    run_dir = ctx.path("finetune", name, f"seed{seed}")
                    res = fit(cfg, train, val, device="cpu", seed=ctx.seed + seed, run_dir=run_dir, progress=False)
                    splits = {"test": test, "val": val}
                    maps = {(split, flip): predict_probabilities(res.model, [s.image for s in splits[split]],
                                                                 cfg.image_size, flip=flip)
                            for split, flip in wanted}
                    metrics = infnet_protocol(maps["test", False], gts)
                    results.append({"variant": name, "cap": cap, "image_size": cfg.image_size, "seed": seed,
                                    "epochs_run": res.record["epochs_run"],
                                    "stop": res.record.get("stop"), "status": res.health.status,
                                    "best_epoch": None if res.best is None else res.best[0] + 1,
                                    "val_dice": None if res.best is None else round(float(res.best[1]), 4),
                                    "test_meanDic": round(float(metrics["meanDic"]), DIGITS),
                                    "test_maxDic": round(float(metrics["maxDic"]), DIGITS),
                                    "fit_s": round(time.perf_counter() - t0, 1)})
                    results[-1]["fit"] = [r["action"] for r in provenance.take_runs(run_dir).values()]
                    if args.flip:
                        results[-1].update(_flip_scores(maps, gts, val_gts))
                    print(json.dumps(results[-1]), flush=True)
                    seed_maps[name].append(maps)
            if args.ensemble and len(args.seeds) > 1:
                for name, per_seed in seed_maps.items():
                    ensembles.append({"variant": name, "cap": cap, "image_size": ctx.profile.image_size,
                                      "seeds": args.seeds, **_ensemble_scores(per_seed, gts, val_gts, args.flip)})
                    print(json.dumps(ensembles[-1]), flush=True)
    out = {"profile": args.profile, "seeds": args.seeds, "inpainter": args.inpainter, "flip": args.flip,
           "amp_bf16": args.amp, "channels_last": args.channels_last,
           "machine": device_description("cpu"),
           "wall_s": round(time.perf_counter() - start, 1), "runs": results}
    if args.ensemble:
        out["ensembles"] = ensembles
    text = json.dumps(out, indent=1, default=float)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return out


if __name__ == "__main__":
    main()
