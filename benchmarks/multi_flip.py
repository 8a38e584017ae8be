"""Would validation choose test-time flip averaging for the multi-class (GGO / consolidation) models?

The ``cpu`` and ``gpu`` profiles flip-average every map they score (``Profile.test_time_flip``), a
choice made on the single-class models' validation slices (``finetune_cap.py --flip``). This asks the
same question of the two-stage multi-class pipeline, as chapters 3-5 build it: a stage-1 (infection)
model is cross-validated on the labelled training slices to give out-of-fold priors, trained once on
the training split, and the multi model trains on image + out-of-fold prior. Each multi model is then
scored the way chapter 5 scores the test slices, on the validation slices (where the choice belongs)
and the test slices: the stage-1 model predicts the prior, the multi model the class maps, both plain
or both flip-averaged; Inf-Net-protocol meanDic of GGO and of consolidation.

A reduced chain by default: the stage-1 variant is ``sinfnet`` (from scratch) and the multi variant
``multi_sinfnet``, so no pretraining is needed. Give ``--stage1 ssinfnet --inpainter PATH`` (and a
multi variant with ``--multi-inpainter``) for the book's own chain.

Usage (real data; about an hour on a 2-core AVX2 EPYC: 7 fits)::

    SSINFNET_DATA=/path/to/data python benchmarks/multi_flip.py --seeds 0 1 2 \
        --output benchmarks/results/multi_flip_cpu.json
"""
from __future__ import annotations

import argparse
import json
import time

from ssinfnet.book.context import RunContext
from ssinfnet.book.profiles import get_profile
from ssinfnet.book.stages.variants import train_val_split
from ssinfnet.evaluation.tables import MULTI_COLUMNS, multi_infnet_table
from ssinfnet.segmentation.crossval import cross_validate
from ssinfnet.segmentation.fit import fit
from ssinfnet.segmentation.predict import predict_samples
from ssinfnet.segmentation.variants import variant_config
from ssinfnet.training.device import describe_device
from ssinfnet.training.export import load_exported

DIGITS = 5
SHORT = {MULTI_COLUMNS[0]: "ggo", MULTI_COLUMNS[1]: "consolidation"}


def _config(name: str, profile, weights: str | None):
    """Variant ``name``'s configuration, initialised from ``weights`` when it is not trained from scratch."""
    cfg = variant_config(name, profile)
    if cfg.init == "scratch":
        return cfg
    if not weights:
        raise SystemExit(f"variant {name!r} starts from a pretrained inpainter: give its path")
    return variant_config(name, profile, init_weights=str(weights))


def two_stage_scores(stage1, multi, samples, flip: bool) -> dict:
    """Inf-Net meanDic of GGO and consolidation of ``samples`` (Sample list with ``classes``) predicted
    by the exported ``stage1`` (prior) and ``multi`` models, both plain or both flip-averaged;
    ``{"ggo": float, "consolidation": float}``."""
    priors = predict_samples(stage1, samples, flip=flip)
    maps = predict_samples(multi, samples, priors=priors, flip=flip)
    row = multi_infnet_table({"model": maps}, [s.classes for s in samples]).iloc[0]
    return {SHORT[c]: round(float(row[c]), DIGITS) for c in MULTI_COLUMNS}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--stage1", default="sinfnet", help="single-class variant that gives the priors")
    ap.add_argument("--inpainter", default=None, help="pretrained inpainter, for an inpainting-initialised --stage1")
    ap.add_argument("--variant", default="multi_sinfnet", help="multi-class variant scored")
    ap.add_argument("--multi-inpainter", default=None, help="two-channel inpainter, for an inpainting-initialised "
                                                            "--variant")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="training seed offsets of the multi model (the stage-1 model and priors: seed 0)")
    ap.add_argument("--run-dir", default="/tmp/ssinfnet-multi-flip")
    ap.add_argument("--output", default=None)
    args = ap.parse_args(argv)
    cfg = variant_config(args.variant, get_profile(args.profile))
    if cfg.task != "multi" or cfg.prior_source != "predicted":
        raise SystemExit(f"--variant {args.variant!r}: a multi-class variant trained on stage-1 priors is needed "
                         "(the oracle-prior variant has no stage-1 prior to flip)")
    start = time.perf_counter()
    ctx = RunContext.open(profile=args.profile, run_dir=args.run_dir, device="cpu")
    train_all, test = ctx.samples("train"), ctx.samples("test")
    tr, va, _ = train_val_split(ctx, train_all, "04_multi")
    train, val = [train_all[i] for i in tr], [train_all[i] for i in va]

    s1cfg = _config(args.stage1, ctx.profile, args.inpainter)
    oof = cross_validate(s1cfg, train_all, ctx.profile.cv_folds, device="cpu", seed=ctx.seed,
                         run_dir=ctx.path("cv", args.stage1), val_fraction=ctx.profile.val_fraction,
                         progress=False).predictions
    s1 = fit(s1cfg, train, val, device="cpu", seed=ctx.seed, run_dir=ctx.path("finetune", args.stage1),
             progress=False)
    stage1 = load_exported(s1.export_path, "cpu", expect_task="single")
    stage1_record = {"variant": args.stage1, "status": s1.health.status,
                     "val_dice": None if s1.best is None else round(float(s1.best[1]), 4)}
    print(json.dumps(stage1_record), flush=True)

    cfg = _config(args.variant, ctx.profile, args.multi_inpainter)
    runs = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        res = fit(cfg, train, val, device="cpu", seed=ctx.seed + seed, run_dir=ctx.path("finetune", args.variant,
                                                                                          f"seed{seed}"),
                  priors_train=[oof[i] for i in tr], priors_val=[oof[i] for i in va], progress=False)
        multi = load_exported(res.export_path, "cpu", expect_task="multi")
        row = {"variant": args.variant, "seed": seed, "epochs_run": res.record["epochs_run"],
               "status": res.health.status, "val_dice": None if res.best is None else round(float(res.best[1]), 4),
               "fit_s": round(time.perf_counter() - t0, 1)}
        for split, samples in (("val", val), ("test", test)):
            for flip in (False, True):
                scores = two_stage_scores(stage1, multi, samples, flip)
                row.update({f"{split}_{cls}_meanDic{'_flip' if flip else ''}": v for cls, v in scores.items()})
        runs.append(row)
        print(json.dumps(row), flush=True)
    out = {"profile": args.profile, "stage1": args.stage1, "variant": args.variant, "seeds": args.seeds,
           "stage1_fit": stage1_record, "validation_slices": len(val), "test_slices": len(test),
           "machine": describe_device("cpu"),
           "wall_s": round(time.perf_counter() - start, 1), "runs": runs}
    text = json.dumps(out, indent=1, default=float)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return out


if __name__ == "__main__":
    main()
