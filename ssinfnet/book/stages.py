"""The book's stages as functions: what chapters 3-5 run, with their artifacts on disk.

Each function takes the run context (:class:`ssinfnet.book.context.RunContext`) and writes under its
run folder, so a chapter is a few calls and any chapter can be re-run alone from the artifacts of
the earlier ones. Training is resumable: a finished variant is loaded, not retrained.

Artifacts
---------
* ``finetune/<variant>/model.pt``: exported model (``ssinfnet.training.export.load_exported``).
* ``finetune/<variant>/history.csv``: the training history.
* ``cv/<variant>/...`` and ``cv/<variant>_scores.csv``: cross-validation folds and held-out scores.
* ``priors/*.npz``: probability maps keyed by slice id (:func:`save_maps` / :func:`load_maps`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..data.sample import Sample
from ..segmentation.fit import FitResult, fit, oracle_priors
from ..segmentation.crossval import cross_validate
from ..segmentation.predict import predict_samples
from ..segmentation.variants import variant_config
from ..training.export import load_exported


def save_maps(path: str | Path, samples: Sequence[Sample], maps: Sequence[np.ndarray]) -> Path:
    """Save maps keyed by slice id as a compressed .npz: probabilities as float16 (to keep it small),
    integer label maps as uint8."""
    if len(samples) != len(maps):
        raise ValueError(f"{len(samples)} samples but {len(maps)} maps")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    def pack(m):
        m = np.asarray(m)
        return m.astype(np.uint8) if m.dtype.kind in "biu" else m.astype(np.float16)

    np.savez_compressed(path, **{s.slice_id: pack(m) for s, m in zip(samples, maps)})
    return path


def load_maps(path: str | Path, samples: Sequence[Sample]) -> list[np.ndarray]:
    """Maps of :func:`save_maps` in the order of ``samples`` (float32, or uint8 label maps); KeyError
    names a missing slice,
    ValueError a map whose shape differs from its slice."""
    with np.load(path) as data:
        out = []
        for s in samples:
            if s.slice_id not in data:
                raise KeyError(f"{path}: no map for slice {s.slice_id!r}")
            m = data[s.slice_id]
            m = m if m.dtype == np.uint8 else m.astype(np.float32)
            if m.shape[-2:] != s.image.shape:
                raise ValueError(f"{path}: map of {s.slice_id} has shape {m.shape}, slice {s.image.shape}")
            out.append(m)
    return out


def require_artifact(ctx, stage: str, name: str, chapter: str) -> Path:
    """An earlier stage's artifact, or FileNotFoundError telling which chapter to run first."""
    path = ctx.artifact(stage, name)
    if path is None:
        raise FileNotFoundError(f"artifact {name!r} of stage {stage!r} not found in {ctx.run_dir}; "
                                f"run chapter {chapter} first (python -m ssinfnet run --only {chapter[:2]})")
    return path


def fit_variants(ctx, names: Sequence[str], train: Sequence[Sample], val: Sequence[Sample], *,
                 init_weights: str | Path | None = None, priors_train=None, priors_val=None,
                 progress: bool = True) -> tuple[dict[str, FitResult], pd.DataFrame]:
    """Train (or load) each named variant on ``train``, selecting on ``val``.

    Inpainting-initialised variants get ``init_weights``; multi variants get ``priors_train`` /
    ``priors_val``, except the oracle, which :func:`~ssinfnet.segmentation.fit.fit` builds from the masks. Returns the fits and a
    summary table (variant, label, best epoch, validation Dice, trainable parameters, transfer counts).
    """
    fits, rows = {}, []
    for name in names:
        cfg = variant_config(name, ctx.profile)
        if cfg.init == "inpainting":
            if init_weights is None:
                raise ValueError(f"variant {name!r} needs init_weights (pretrained inpainter)")
            cfg = variant_config(name, ctx.profile, init_weights=str(init_weights))
        oracle = cfg.task == "multi" and cfg.prior_source == "ground_truth"
        res = fit(cfg, train, val, device=ctx.device, seed=ctx.seed, run_dir=ctx.path("finetune", name),
                  priors_train=priors_train if cfg.task == "multi" and not oracle else None,
                  priors_val=priors_val if cfg.task == "multi" and not oracle else None,
                  progress=progress)
        fits[name] = res
        rows.append({"variant": name, "label": cfg.label,
                     "init": "inpainting" if cfg.init == "inpainting" else "scratch",
                     "network": cfg.network, "loss": cfg.loss, "optimizer": cfg.optimizer, "cutout": cfg.cutout,
                     "best_epoch (1-based)": None if res.best is None else res.best[0] + 1,
                     "val_dice": float("nan") if res.best is None else res.best[1],
                     "parameters_M": round(sum(p.numel() for p in res.model.parameters()) / 1e6, 2),
                     "copied_tensors": None if res.transfer is None else len(res.transfer.copied)})
    return fits, pd.DataFrame(rows)


def cross_validate_variants(ctx, names: Sequence[str], samples: Sequence[Sample], *, init_weights=None,
                            priors=None, progress: bool = True):
    """Grouped k-fold CV (``ctx.profile.cv_folds``) of each named variant present in
    ``ctx.profile.cv_variants``; returns ({name: CVResult}, per-image held-out scores with a variant column)."""
    results, tables = {}, []
    for name in names:
        if name not in ctx.profile.cv_variants:
            continue
        cfg = variant_config(name, ctx.profile, **({"init_weights": str(init_weights)} if init_weights else {}))
        oracle = cfg.task == "multi" and cfg.prior_source == "ground_truth"
        res = cross_validate(cfg, samples, ctx.profile.cv_folds, device=ctx.device, seed=ctx.seed,
                             run_dir=ctx.path("cv", name),
                             priors=priors if cfg.task == "multi" and not oracle else None,
                             val_fraction=ctx.profile.val_fraction, progress=progress)
        results[name] = res
        t = res.scores.copy()
        t.insert(0, "variant", cfg.label)
        tables.append(t)
        t.to_csv(ctx.path("cv", f"{name}_scores.csv"), index=False)
    return results, (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame())


def cv_summary(scores: pd.DataFrame, classes: Sequence[str] = ("infection",)) -> pd.DataFrame:
    """Mean per-image Dice/IoU/recall/precision of held-out images per variant and fold, and over folds."""
    keep = scores[scores["class"].isin(classes)]
    per_fold = keep.groupby(["variant", "class", "fold"])[["dice", "iou", "recall", "precision"]].mean()
    overall = keep.groupby(["variant", "class"])[["dice", "iou", "recall", "precision"]].mean()
    overall["fold"] = "all"
    return pd.concat([per_fold.reset_index(), overall.reset_index()], ignore_index=True)


def predict_with(path: str | Path, samples: Sequence[Sample], device: str, priors=None) -> list[np.ndarray]:
    """Load an exported model and predict ``samples`` (maps at each slice's own size).

    The model must be a single (infection) segmentation model, or a multi one when ``priors`` are
    given; a pretraining export (inpainter, coach) is refused with a DataError naming the file.
    """
    task = "single" if priors is None else "multi"
    return predict_samples(load_exported(path, device, expect_task=task), samples, device=device, priors=priors)


def predict_variant(ctx, stage: str, name: str, samples: Sequence[Sample], priors=None) -> tuple[str, list[np.ndarray]]:
    """Predict ``samples`` with the exported model of variant ``name`` recorded by ``stage``.

    A multi-class model trained with the oracle prior (read from the exported model itself) gets the
    ground-truth infection masks as priors, any other multi model ``priors``. Returns (label, maps).
    """
    path = require_artifact(ctx, stage, f"model:{name}", stage)
    loaded = load_exported(path, ctx.device, expect_task=("single", "multi"))
    task = loaded.task
    if task == "multi" and loaded.extra.get("prior_source") == "ground_truth":
        priors = oracle_priors(samples)
    maps = predict_samples(loaded, samples, device=ctx.device, priors=priors if task == "multi" else None)
    return loaded.extra.get("label", name), maps


def cost_models(ctx) -> dict[str, tuple[str, dict]]:
    """The networks of this profile as (registry name, constructor kwargs), for :func:`ssinfnet.training.cost.cost_table`."""
    infnet = ctx.profile.infnet_kwargs()
    base = ctx.profile.baseline_kwargs
    return {"InfNet (single)": ("infnet", infnet),
            "InfNet (multi)": ("infnet_multi", infnet),
            "U-Net (single)": ("unet", base.get("unet", {})),
            "U-Net (multi)": ("unet_multi", base.get("unet_multi", {})),
            "FCN8s (multi)": ("fcn8s", base.get("fcn8s", {}))}


def train_val_split(ctx, samples: Sequence[Sample]) -> tuple[list[int], list[int], str]:
    """The training/validation split of chapter 1 (its saved manifest), or, when that chapter has not
    run in this run folder, the same deterministic split computed and saved now. Returns
    (train indices, validation indices, where it came from)."""
    from ..data import splits

    path = ctx.artifact("01_data", "split_manifest")
    if path is not None:
        tr, va = splits.load_split(samples, path)
        return tr, va, f"read from {path.relative_to(ctx.run_dir)}"
    tr, va = splits.validation_split(samples, fraction=ctx.profile.val_fraction, seed=ctx.seed)
    assignment = {**{i: "train" for i in tr}, **{i: "val" for i in va}}
    path = splits.save_manifest(splits.split_manifest(samples, assignment), ctx.path("splits", "train_val.csv"))
    return tr, va, f"computed (chapter 1 not run here) and saved to {path.relative_to(ctx.run_dir)}"
