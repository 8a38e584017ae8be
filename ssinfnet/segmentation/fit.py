"""Segmentation training: single-class (stage 1) and multi-class (stage 2), the paper's variants, CV.

Stage 1 (*single*) learns the overall infection from the CT slice; stage 2 (*multi*) learns
background / GGO / consolidation from the slice plus a *prior*, the stage-1 infection probability,
given to the network as a second input channel scaled like the image (both go through the one
normalisation of :mod:`ssinfnet.data.transforms`, and get the same crop and flips).

Every variant of the paper is a :class:`SegConfig`, named in :data:`VARIANTS`; each ablation changes one setting
of ``multi_ssinfnet``. :func:`fit` trains one config with ONE call of :func:`ssinfnet.training.loop.train` (a
single phase), selects the best epoch on a validation split carved from the training data (never on the test
split; the authors' code selected on the test fold), reloads those weights and exports the model
(:func:`ssinfnet.training.export.export_model`).

Validation score (``val_dice`` in the history): paper protocol, per image at threshold 0.5 with
:func:`ssinfnet.evaluation.paper_metrics.paper_scores`, maps predicted at each slice's own size; images whose ground
truth of a class is empty are left out of that class's mean (``ignore_empty``). Single: mean Dice of the infection
class over images. Multi: mean over images of the GGO Dice and of the consolidation Dice, then the mean of those
two (background excluded). Dice is per image, not pooled per batch as in the authors' code.

Losses (``SegConfig.loss``):

* single ``"infnet"``: InfNet's structure loss (weighted IoU + weighted BCE) on every region output
  plus the edge BCE (:func:`ssinfnet.training.losses.infnet_loss`); on the one output of U-Net-like models.
* single ``"bce"``: plain BCE on every region output (plus the edge BCE when the model has one).
* multi ``"focal"``: weighted IoU on softmax probabilities + softmax focal loss (alpha 1, gamma 2)
  on every output, plus the edge BCE (:func:`ssinfnet.training.losses.multi_infnet_loss`).
* multi ``"bce"``: the same weighted IoU, the focal term replaced by a per-class binary cross-entropy of the raw
  logits against the one-hot labels (the focal ablation changes only that term); predictions stay softmax.

Priors (``SegConfig.prior_source``, multi only): ``"predicted"`` takes the maps the caller passes
(stage-1 predictions; for training use the out-of-fold maps of :func:`cross_validate`, so the
network never trains on priors better than those it meets at test time); ``"ground_truth"`` is the
*oracle* prior, the infection mask itself (what the authors' cross-validation used); results with
it are an upper bound and are labelled ``(oracle prior)``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from ..data.classes import CLASS_NAMES, CONSOLIDATION, GGO
from ..data.dataset import SliceDataset
from ..data.sample import Sample
from ..data.inputs import network_input
from ..data.signature import reference_record
from ..evaluation.paper_metrics import paper_scores
from ..models.registry import build_model
from ..models.transfer import TransferReport, transfer_weights
from ..training.checkpoint import load_checkpoint
from ..training.distributed import on_main
from ..training.export import EXPORT_FORMAT, export_model
from ..training.loop import train
from ..training.losses import (SEG_KEYS, edge_loss, focal_loss, infnet_loss, multi_infnet_loss,
                               multiclass_structure_loss, structure_loss)
from ..training.optimisers import adam, make_lookahead_sgd, sgd
from ..training.phases import Phase
from ..training.provenance import (check_key, code_fingerprint, config_fingerprint, note_stale, read_record,
                                   samples_fingerprint, stamp)
from .health import TrainingHealth, judge_fit
from .held import HeldValidation, training_loader, use_device_data
from .predict import predict_probabilities
from .variants import MODEL_KEY, PHASE_NAME, SegConfig, TASKS


# ------------------------------------------------------------------------------------------ models

def load_init_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The inpainter's state dict from a pretraining checkpoint, an exported model or a state dict.

    Accepts ``train``/``pretrain`` checkpoints (``state["models"]["inpainter"]``, or the only model),
    :func:`ssinfnet.training.export.export_model` files and plain ``{name: tensor}`` dicts, all loaded with
    ``weights_only=True``. Raises ValueError naming the file when none of these fits.
    """
    state = load_checkpoint(path, map_location="cpu")
    if isinstance(state.get("models"), Mapping):
        models = state["models"]
        if "inpainter" in models:
            return dict(models["inpainter"])
        if len(models) == 1:
            return dict(next(iter(models.values())))
        raise ValueError(f"init_weights {path}: checkpoint holds models {sorted(models)}, none named 'inpainter'")
    if state.get("format") == EXPORT_FORMAT:
        return dict(state["state_dict"])
    if isinstance(state.get("state_dict"), Mapping):
        return dict(state["state_dict"])
    if state and all(isinstance(v, torch.Tensor) for v in state.values()):
        return dict(state)
    raise ValueError(f"init_weights {path}: not a pretraining checkpoint, exported model or state dict")


def build_segmenter(cfg: SegConfig) -> tuple[torch.nn.Module, TransferReport | None]:
    """Build the segmentation model of ``cfg`` (current torch RNG) and apply its initialisation.

    Returns the model (CPU, ``head="seg"``) and, for ``init="inpainting"``, the
    :class:`~ssinfnet.models.transfer.TransferReport` of the trunk copy (heads re-initialised).
    Raises ValueError when ``init_weights`` is missing or shares no tensor with the model; warns
    when some trunk tensors could not be copied (shape mismatch or absent in the source).
    """
    model = build_model(cfg.network, **cfg.network_kwargs())
    if cfg.init == "scratch":
        return model, None
    if cfg.init_weights is None:
        raise ValueError(f"init_weights must name a pretraining checkpoint when init='inpainting' ({cfg.name})")
    only = None
    if cfg.transfer == "encoder":
        only = getattr(model, "encoder_names", None)
        if not only:
            raise ValueError(f"transfer='encoder' needs a network with encoder_names; {cfg.network} has none")
    report = transfer_weights(load_init_state(cfg.init_weights), model, only=only)
    if not report.copied:
        raise ValueError(f"init_weights {cfg.init_weights}: no tensor matches {cfg.network} "
                         f"{cfg.network_kwargs()} by name and shape\n{report}")
    if report.skipped_shape or report.missing:
        warnings.warn(f"inpainting init of {cfg.name}: part of the trunk was not copied\n{report}", stacklevel=2)
    return model, report


def oracle_priors(samples: Sequence[Sample]) -> list[np.ndarray]:
    """The oracle prior of each sample: its infection mask as float32 (H, W) in {0, 1}.

    Samples without an infection mask use ``classes > 0``; ValueError if a sample has neither.
    """
    out = []
    for s in samples:
        if s.infection is not None:
            mask = s.infection
        elif s.classes is not None:
            mask = s.classes > 0
        else:
            raise ValueError(f"{s.slice_id}: no infection or classes mask for an oracle prior")
        out.append(np.asarray(mask, dtype=bool).astype(np.float32))
    return out


def priors_for(cfg: SegConfig, samples: Sequence[Sample], priors, arg: str) -> list[np.ndarray] | None:
    """Priors fed with ``samples`` (None for single), checked against the config."""
    if cfg.task == "single":
        if priors is not None:
            raise ValueError(f"{arg} must be None for task 'single'")
        return None
    if cfg.prior_source == "ground_truth":
        if priors is not None:
            raise ValueError(f"{arg} must be None with prior_source='ground_truth' (the oracle is built "
                             f"from the masks)")
        return oracle_priors(samples)
    if priors is None:
        raise ValueError(f"{arg} is required for task 'multi' with prior_source='predicted' "
                         f"(stage-1 probability maps, e.g. cross_validate(...).predictions)")
    priors = [np.asarray(p, dtype=np.float32) for p in priors]
    if len(priors) != len(samples):
        raise ValueError(f"{arg} has {len(priors)} maps for {len(samples)} samples")
    for s, p in zip(samples, priors):
        if p.shape != s.image.shape:
            raise ValueError(f"{arg}: prior of {s.slice_id} has shape {p.shape}, image {s.image.shape}")
        if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
            raise ValueError(f"{arg}: prior of {s.slice_id} must be finite probabilities in [0, 1]")
    return priors


# ------------------------------------------------------------------------------------------ loss

def _region_outputs(outputs: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    keys = [k for k in SEG_KEYS if k in outputs]
    return [outputs[k] for k in keys] if keys else [outputs["out"]]


def segmentation_loss(cfg: SegConfig, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
                      ) -> torch.Tensor:
    """The training loss of ``cfg`` for one batch (0-d float32 tensor).

    Parameters
    ----------
    outputs : dict
        Model output: InfNet keys (``global``, ``lateral5..3``, ``edge``) or ``{"out": ...}``.
    batch : dict
        :class:`~ssinfnet.data.dataset.SliceDataset` batch: ``infection`` and ``edge`` (B, 1, S, S)
        for single; ``classes`` (B, S, S) int64 (and ``edge`` when present) for multi.
    """
    edge = batch.get("edge")
    use_edge = "edge" in outputs and edge is not None
    if cfg.task == "single":
        mask = batch["infection"]
        if cfg.loss == "infnet" and all(k in outputs for k in SEG_KEYS) and use_edge:
            return infnet_loss(outputs, mask, edge)
        if cfg.loss == "infnet":
            loss = sum(structure_loss(o, mask) for o in _region_outputs(outputs))
        else:
            loss = sum(F.binary_cross_entropy_with_logits(o.float(), mask.float()) for o in _region_outputs(outputs))
    else:
        labels = batch["classes"]
        if cfg.loss == "focal" and all(k in outputs for k in SEG_KEYS):
            return multi_infnet_loss(outputs, labels, edge if use_edge else None)
        if cfg.loss == "focal":
            loss = sum(multiclass_structure_loss(o, labels) for o in _region_outputs(outputs))
        else:
            loss = 0.0
            for o in _region_outputs(outputs):
                onehot = F.one_hot(labels.long(), o.shape[1]).permute(0, 3, 1, 2).float()
                wiou = multiclass_structure_loss(o, labels, focal_weight=0.0)
                loss = loss + wiou + focal_loss(o, onehot, alpha=1.0, gamma=0.0)  # gamma 0 = BCE
    if use_edge:
        loss = loss + edge_loss(outputs["edge"], edge)
    return loss


def _optimizer_factory(cfg: SegConfig):
    lr = cfg.learning_rate
    if cfg.optimizer == "adam":
        return adam(lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return sgd(lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return partial(make_lookahead_sgd, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, k=5, alpha=0.5)


# ------------------------------------------------------------------------------------------ scores

def _ground_truths(task: str, samples: Sequence[Sample]) -> list[np.ndarray]:
    key = "infection" if task == "single" else "classes"
    missing = [s.slice_id for s in samples if getattr(s, key) is None]
    if missing:
        raise ValueError(f"{len(missing)} samples have no {key} mask (first: {missing[0]})")
    return [getattr(s, key) for s in samples]


def scores_table(task: str, probs: Sequence[np.ndarray], samples: Sequence[Sample]) -> pd.DataFrame:
    return paper_scores(probs, _ground_truths(task, samples), image_ids=[s.slice_id for s in samples],
                        threshold=0.5, ignore_empty=True)


def _class_mean(table: pd.DataFrame, cls: str) -> float:
    v = table.loc[table["class"] == cls, "dice"].to_numpy(dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def validation_scores(task: str, probs: Sequence[np.ndarray], samples: Sequence[Sample]) -> dict[str, float]:
    """Mean per-image Dice (paper protocol, threshold 0.5) of predictions against the samples' masks.

    Parameters
    ----------
    task : {"single", "multi"}
    probs : list of float arrays, (H, W) infection (single) or (3, H, W) class probabilities (multi),
        at each sample's own size
    samples : the matching samples (``infection`` or ``classes`` masks)

    Returns
    -------
    dict
        ``dice``: single, the mean infection Dice over images; multi, the mean of the GGO and
        consolidation means (``dice_ggo``, ``dice_consolidation`` also returned). Images with an empty
        ground truth of a class are left out of that class; NaN when no image counts.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    table = scores_table(task, probs, samples)
    if task == "single":
        return {"dice": _class_mean(table, "infection")}
    ggo, cons = _class_mean(table, CLASS_NAMES[GGO]), _class_mean(table, CLASS_NAMES[CONSOLIDATION])
    finite = [v for v in (ggo, cons) if math.isfinite(v)]
    return {"dice": float(np.mean(finite)) if finite else float("nan"), "dice_ggo": ggo, "dice_consolidation": cons}


# ------------------------------------------------------------------------------------------ fit

@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    ``model`` holds the best-validation weights (eval mode, on the training device); ``history``
    is :func:`ssinfnet.training.loop.train`'s table (step and epoch rows, ``val_dice`` per epoch);
    ``best`` is ``(epoch, val_dice)`` (0-based epoch) or None when no validation score was finite
    (then the last weights were exported); ``export_path`` is ``run_dir/model.pt``; ``transfer`` the
    inpainting-init report (None from scratch); ``health`` whether training failed
    (:func:`ssinfnet.segmentation.health.fit_health`); ``record`` what the exported model says of it:
    ``status``, ``failed``, ``reasons``, ``floors``, ``epochs_run``, ``stop``, ``late_gain``, ``plateau``.
    """

    config: SegConfig
    model: torch.nn.Module
    history: pd.DataFrame
    best: tuple[int, float] | None
    export_path: Path
    transfer: TransferReport | None
    run_dir: Path
    health: TrainingHealth | None = None
    record: dict | None = None


def _check_run_dir(run_dir: Path, cfg: SegConfig, seed: int, train_samples: Sequence[Sample] = (),
                   val_samples: Sequence[Sample] = (), priors_train=None, priors_val=None) -> dict[str, str | None]:
    """Refuse to reuse a run made from other settings, data or code; record the key of a new one.

    ``run_dir/config.json`` holds the settings, the seed and the provenance record
    (:func:`ssinfnet.training.provenance.stamp`): the data key (the training and validation samples with
    their priors, :func:`ssinfnet.training.provenance.samples_fingerprint`), the code fingerprint, and the
    commit, dirty flag and time of the session that trained it. When the folder holds a checkpoint,
    a difference in any of them raises :class:`ssinfnet.training.provenance.StaleRunError` naming the
    folder, the differing settings and hashes, and what to do (``SSINFNET_ALLOW_STALE=1``: warn,
    reuse, and note it in ``config.json`` and the manifest). A folder without a checkpoint holds
    nothing to reuse: its record is rewritten.

    The initial weights are recorded by file name and content hash, not by path, so a run folder
    moved or cloned elsewhere still resumes. A setting added to :class:`SegConfig` after the folder
    was written counts as equal when it holds its default (the behaviour the old run had).

    Returns the key that :func:`ssinfnet.training.loop.train` is to find in the folder's checkpoint (the
    folder's own key when a stale folder is reused knowingly).
    """
    config = cfg.to_dict()
    if config.get("init_weights"):
        from ..data.sources import sha256_of

        w = Path(config["init_weights"])
        config["init_weights"] = {"file": w.name, "sha256": sha256_of(w) if w.is_file() else None}
    data = config_fingerprint({"train": samples_fingerprint(train_samples, priors_train),
                               "val": samples_fingerprint(val_samples, priors_val)})
    key = {"data": data, "code": code_fingerprint()}
    record = {"config": config, "seed": seed}
    path = run_dir / "config.json"
    if path.is_file() and (run_dir / "checkpoints" / "last.pt").is_file():
        old = json.loads(path.read_text())
        defaults = {f.name: f.default for f in fields(SegConfig) if f.default is not MISSING}
        added_at_default = {k for k in set(config) - set(old.get("config", {}))
                            if k in defaults and config[k] == defaults[k]}
        record["config"] = {k: v for k, v in config.items() if k not in added_at_default}
        changed = [f"config {k} {_show(old.get('config', {}).get(k))} -> {_show(record['config'].get(k))}"
                   for k in sorted(set(record["config"]) | set(old.get("config", {})))
                   if old.get("config", {}).get(k) != record["config"].get(k)]
        if old.get("seed") != seed:
            changed.append(f"config seed {old.get('seed')} -> {seed}")
        provenance = old.get("provenance") or {}
        note = check_key(run_dir, provenance.get("key") or {}, key, extra=changed)
        if note is None:
            return key
        old["provenance"] = {**provenance, "stale_reuse": [*provenance.get("stale_reuse", []), note]}
        on_main(path.write_text, json.dumps(old, indent=2))
        note_stale(run_dir, note)
        return dict(provenance.get("key") or {})
    run_dir.mkdir(parents=True, exist_ok=True)
    record["provenance"] = stamp(key)
    on_main(path.write_text, json.dumps(record, indent=2))  # under torchrun process 0 writes, the others wait
    return key


def _show(value) -> str:
    """A setting for a one-line message (long values cut)."""
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def fit(cfg: SegConfig, train_samples: Sequence[Sample], val_samples: Sequence[Sample], *,
        device: str | torch.device, seed: int, run_dir: str | Path,
        priors_train: Sequence[np.ndarray] | None = None, priors_val: Sequence[np.ndarray] | None = None,
        progress: bool = True) -> FitResult:
    """Train ``cfg`` on ``train_samples``, select the epoch on ``val_samples``, export the model.

    Parameters
    ----------
    cfg : SegConfig
    train_samples, val_samples : sequences of Sample
        Disjoint labelled slices (``infection`` for single, ``classes`` for multi); the validation
        split comes from the training data (e.g. :func:`ssinfnet.data.splits.validation_split`).
    device : str or torch.device
    seed : int
        Seeds model initialisation, shuffling and augmentation.
    run_dir : str or Path
        Gets ``config.json``, ``history.csv``, ``checkpoints/`` and ``model.pt``; a rerun resumes
        (a finished run returns at once). A run_dir of other settings is refused.
    priors_train, priors_val : sequences of float arrays (H, W) in [0, 1], optional
        Stage-1 maps aligned with the samples (multi, ``prior_source="predicted"`` only).
    progress : bool

    Returns
    -------
    FitResult
    """
    if len(train_samples) == 0 or len(val_samples) == 0:
        raise ValueError("train_samples and val_samples must both be non-empty")
    train_ids = {s.slice_id for s in train_samples}
    shared = [s.slice_id for s in val_samples if s.slice_id in train_ids]
    if shared:
        raise ValueError(f"val_samples overlap train_samples ({len(shared)} slices, first: {shared[0]})")
    run_dir = Path(run_dir)
    device = torch.device(device)
    p_train = priors_for(cfg, train_samples, priors_train, "priors_train")
    p_val = priors_for(cfg, val_samples, priors_val, "priors_val")
    _ground_truths(cfg.task, val_samples)  # fail now, not after the first epoch
    key = _check_run_dir(run_dir, cfg, seed, train_samples, val_samples, p_train, p_val)

    torch.manual_seed(seed)  # model initialisation is part of the seeded run
    model, report = build_segmenter(cfg)
    require = ("infection",) if cfg.task == "single" else ("classes",)
    augment = cfg.augmentation()
    dataset = SliceDataset(train_samples, cfg.image_size, augment, require=require, priors=p_train)
    loader = training_loader(cfg, dataset, device, seed)  # device-held or per-slice
    held = HeldValidation(cfg.task, val_samples, cfg.image_size, p_val) if use_device_data(cfg, device) else None

    def loss_fn(models, batch, ctx):
        outputs = models[MODEL_KEY](network_input(batch, cfg.task == "multi"))
        return segmentation_loss(cfg, outputs, batch), {}

    def val_fn(models, _loader, ctx):
        if held is not None:
            return held(models[MODEL_KEY], ctx.device, cfg.batch_size)
        probs = predict_probabilities(models[MODEL_KEY], [s.image for s in val_samples], cfg.image_size,
                                      ctx.device, cfg.batch_size, p_val)
        return validation_scores(cfg.task, probs, val_samples)

    phase = Phase(PHASE_NAME, cfg.epochs, [MODEL_KEY], loss_fn, make_optimizer=_optimizer_factory(cfg),
                  lr_factors=cfg.lr_factors, val_fn=val_fn, monitor="dice", mode="max",
                  max_steps_per_epoch=cfg.max_steps_per_epoch, grad_clip=cfg.grad_clip, patience=cfg.patience)
    result = train([phase], {MODEL_KEY: model}, loader, device=device, seed=seed, run_dir=run_dir,
                   progress=progress, provenance=key, compile=cfg.compile, amp=cfg.amp,
                   channels_last=cfg.channels_last)

    best = None
    if PHASE_NAME in result.best:
        entry = result.best[PHASE_NAME]
        state = load_checkpoint(entry["path"], map_location=device)
        model.load_state_dict(state["models"][MODEL_KEY])
        best = (int(entry["epoch"]), float(entry["value"]))
    else:
        warnings.warn(f"{cfg.name}: no finite validation Dice; exporting the last weights", stacklevel=2)
    health, record = judge_fit(cfg.task, result.history, val_samples, phase=PHASE_NAME)
    model.eval()
    kwargs = {k: v for k, v in cfg.network_kwargs().items() if k != "pretrained_path"}  # weights are saved
    extra = {"task": cfg.task, "variant": cfg.name, "label": cfg.label, "prior_source": cfg.prior_source,
             "best_epoch": None if best is None else best[0], "val_dice": None if best is None else best[1],
             "seed": seed, "config": cfg.to_dict(), "health": record,
             "input_reference": reference_record(train_samples),
             "transfer": None if report is None else {"copied": len(report.copied),
                                                      "skipped_head": list(report.skipped_head),
                                                      "skipped_shape": [n for n, _, _ in report.skipped_shape],
                                                      "missing": list(report.missing)}}
    extra["provenance"] = read_record(run_dir)  # the commit, code and data that trained these weights
    path = run_dir / "model.pt"
    on_main(export_model, path, model, cfg.network, kwargs, cfg.image_size, extra, task=cfg.task)
    return FitResult(cfg, model, result.history, best, path, report, run_dir, health, record)
