"""Segmentation training: single-class (stage 1) and multi-class (stage 2), the paper's variants, CV.

Stage 1 (*single*) learns the overall infection from the CT slice; stage 2 (*multi*) learns
background / GGO / consolidation from the slice plus a *prior*, the stage-1 infection probability,
given to the network as a second input channel scaled like the image (both go through the one
normalisation of :mod:`ssinfnet.data.transforms`, and get the same crop and flips).

Every variant of the paper is a :class:`SegConfig`, named in :data:`VARIANTS`; each ablation changes
one setting of ``multi_ssinfnet``. :func:`fit` trains one config with ONE call of
:func:`ssinfnet.train.train` (a single phase), selects the best epoch on a validation split carved
from the training data (never on the test split; the authors' code selected on the test fold),
reloads those weights and exports the model (:func:`ssinfnet.predict.export_model`).

Validation score (``val_dice`` in the history): paper protocol, per image at threshold 0.5 with
:func:`ssinfnet.metrics.paper_scores`, maps predicted at each slice's own size; images whose ground
truth of a class is empty are left out of that class's mean (``ignore_empty``). Single: mean Dice
of the infection class over images. Multi: mean over images of the GGO Dice and of the
consolidation Dice, then the mean of those two (background excluded). Dice is per image, not
pooled per batch as in the authors' code.

Losses (``SegConfig.loss``):

* single ``"infnet"``: InfNet's structure loss (weighted IoU + weighted BCE) on every region output
  plus the edge BCE (:func:`ssinfnet.losses.infnet_loss`); on the one output of U-Net-like models.
* single ``"bce"``: plain BCE on every region output (plus the edge BCE when the model has one).
* multi ``"focal"``: weighted IoU on softmax probabilities + softmax focal loss (alpha 1, gamma 2)
  on every output, plus the edge BCE (:func:`ssinfnet.losses.multi_infnet_loss`).
* multi ``"bce"``: the same weighted IoU with the focal term replaced by a per-class binary
  cross-entropy of the raw (softmax-free) logits against the one-hot labels; so the focal
  ablation changes only that term. Predictions are softmax probabilities either way.

Priors (``SegConfig.prior_source``, multi only): ``"predicted"`` takes the maps the caller passes
(stage-1 predictions; for training use the out-of-fold maps of :func:`cross_validate`, so the
network never trains on priors better than those it meets at test time); ``"ground_truth"`` is the
*oracle* prior, the infection mask itself (what the authors' cross-validation used); results with
it are an upper bound and are labelled ``(oracle prior)``.
"""

from __future__ import annotations

import difflib
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from tqdm import tqdm

from .checkpoint import load_checkpoint
from .data.dataset import SliceDataset
from .data.sample import Sample
from .data.splits import grouped_kfold, validation_split
from .data.transforms import train_transform
from .losses import (SEG_KEYS, edge_loss, focal_loss, infnet_loss, multi_infnet_loss,
                     multiclass_structure_loss, structure_loss)
from .metrics import paper_scores
from .models.modes import eval_mode
from .models.registry import build_model
from .models.transfer import TransferReport, transfer_weights
from .optim import make_lookahead_sgd
from .predict import EXPORT_FORMAT, LoadedModel, export_model, predict_probabilities
from .pretrain import network_input
from .provenance import (check_key, code_fingerprint, config_fingerprint, note_stale, samples_fingerprint,
                         stamp)
from .train import Phase, adam, make_loader, sgd, train

__all__ = ["SegConfig", "VARIANTS", "variant_config", "list_variants", "FitResult", "CVResult",
           "build_segmenter", "load_init_state", "oracle_priors", "segmentation_loss",
           "validation_scores", "fit", "predict_samples", "cross_validate"]

TASKS = ("single", "multi")
NETWORKS = {"single": ("infnet", "unet"), "multi": ("infnet_multi", "unet_multi", "fcn8s")}
LOSSES = {"single": ("infnet", "bce"), "multi": ("focal", "bce")}
OPTIMIZERS = ("adam", "sgd", "lookahead_sgd")
DEFAULT_LR = {"adam": 1e-4, "sgd": 0.01, "lookahead_sgd": 0.01}
INITS = ("scratch", "inpainting")
TRANSFERS = ("all", "encoder")
PRIOR_SOURCES = ("predicted", "ground_truth")
PHASE_NAME = "seg"
MODEL_KEY = "net"
PAPER_BACKBONE = "res2net50_26w_4s"


@dataclass
class SegConfig:
    """Settings of one segmentation training run (sizes in pixels).

    Parameters
    ----------
    task : {"single", "multi"}
        Stage 1 (infection, 1 output) or stage 2 (image + prior -> background/GGO/consolidation).
    network : str
        Registry name: ``infnet``/``unet`` (single), ``infnet_multi``/``unet_multi``/``fcn8s`` (multi).
    model_kwargs : dict
        Constructor arguments (``backbone``, ``backbone_kwargs``, widths, ...); ``in_chans`` defaults
        to 1 (single) or 2 (multi).
    init : {"scratch", "inpainting"}
        Random initialisation, or the trunk of a pretrained inpainter (``init_weights``).
    transfer : {"all", "encoder"}
        With ``init="inpainting"``: copy the whole trunk (the paper: everything but the heads), or
        the encoder alone (``encoder_names`` of the network; the decoder starts fresh).
    init_weights : str, optional
        Pretraining checkpoint (``checkpoints/last.pt`` of :func:`ssinfnet.pretrain.pretrain`), an
        exported model or a plain state dict; needed when ``init="inpainting"``.
    loss : {"infnet", "bce"} (single) or {"focal", "bce"} (multi)
        See the module docstring.
    optimizer : {"adam", "sgd", "lookahead_sgd"}
        Adam (paper single: lr 1e-4), SGD (paper multi: lr 0.01, momentum 0.7) or Lookahead(k=5,
        alpha=0.5) around that SGD.
    lr : float, optional
        Learning rate; default 1e-4 for Adam, 0.01 for the SGDs.
    momentum, weight_decay : float
        SGD momentum (0.7) and weight decay (0) of the SGD optimisers; Adam uses ``weight_decay`` too.
    lr_factors : dict
        Epoch milestone -> lr multiplier (:class:`ssinfnet.train.MilestoneFactor`); default constant.
    epochs, batch_size, image_size : int
        Passes over the training data, slices per batch, training side (pixels).
    cutout : float in [0, 1)
        Side of the grey cutout square as a fraction of the image side (paper: 0, 0.4, 0.5).
    prior_source : {"predicted", "ground_truth"}
        Multi only (ignored for single): caller's stage-1 maps, or the oracle infection mask.
    max_steps_per_epoch : int, optional
        Cap on batches per epoch (smoke runs).
    grad_clip : float, optional
        Clip of the global gradient L2 norm.
    num_workers : int
        DataLoader workers.
    name : str
        Variant name, for labels and the exported model.
    """

    task: str = "single"
    network: str = "infnet"
    model_kwargs: dict = field(default_factory=dict)
    init: str = "scratch"
    transfer: str = "all"
    init_weights: str | None = None
    loss: str = "infnet"
    optimizer: str = "adam"
    lr: float | None = None
    momentum: float = 0.7
    weight_decay: float = 0.0
    lr_factors: dict = field(default_factory=dict)
    epochs: int = 100
    batch_size: int = 16
    image_size: int = 352
    cutout: float = 0.0
    prior_source: str = "predicted"
    max_steps_per_epoch: int | None = None
    grad_clip: float | None = None
    num_workers: int = 0
    name: str = "custom"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.network not in NETWORKS[self.task]:
            raise ValueError(f"network must be one of {NETWORKS[self.task]} for task {self.task!r}, "
                             f"got {self.network!r}")
        if not isinstance(self.model_kwargs, Mapping):
            raise ValueError(f"model_kwargs must be a dict, got {type(self.model_kwargs).__name__}")
        self.model_kwargs = dict(self.model_kwargs)
        if "head" in self.model_kwargs:
            raise ValueError("model_kwargs must not set 'head' (segmentation models use head='seg')")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.transfer not in TRANSFERS:
            raise ValueError(f"transfer must be one of {TRANSFERS}, got {self.transfer!r}")
        if self.loss not in LOSSES[self.task]:
            raise ValueError(f"loss must be one of {LOSSES[self.task]} for task {self.task!r}, got {self.loss!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0 or None, got {self.lr}")
        for name in ("epochs", "batch_size", "image_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32 pixels (stride-32 encoders), got {self.image_size}")
        if not 0.0 <= self.cutout < 1.0:
            raise ValueError(f"cutout must be in [0, 1), got {self.cutout}")
        if self.prior_source not in PRIOR_SOURCES:
            raise ValueError(f"prior_source must be one of {PRIOR_SOURCES}, got {self.prior_source!r}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"max_steps_per_epoch must be >= 1 or None, got {self.max_steps_per_epoch}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {self.num_workers!r}")

    @property
    def in_chans(self) -> int:
        """Input channels: image (1), or image and prior (2) for multi."""
        return 2 if self.task == "multi" else 1

    @property
    def learning_rate(self) -> float:
        """``lr``, or the paper's default of the optimiser."""
        return DEFAULT_LR[self.optimizer] if self.lr is None else float(self.lr)

    @property
    def label(self) -> str:
        """Name for tables and captions; oracle-prior runs say so."""
        oracle = self.task == "multi" and self.prior_source == "ground_truth"
        return f"{self.name} (oracle prior)" if oracle else self.name

    def network_kwargs(self) -> dict:
        """Constructor arguments of the segmentation model (``in_chans`` filled in)."""
        kwargs = dict(self.model_kwargs)
        kwargs.setdefault("in_chans", self.in_chans)
        if kwargs["in_chans"] != self.in_chans:
            raise ValueError(f"model_kwargs in_chans={kwargs['in_chans']} but task {self.task!r} "
                             f"feeds {self.in_chans} channels")
        return kwargs

    def to_dict(self) -> dict:
        """Plain JSON-able settings."""
        return json.loads(json.dumps(asdict(self)))


# ------------------------------------------------------------------------------------------ variants

_INFNET = {"backbone": PAPER_BACKBONE}
_SINGLE = dict(task="single", network="infnet", model_kwargs=_INFNET, loss="infnet", optimizer="adam")
_MULTI = dict(task="multi", network="infnet_multi", model_kwargs=_INFNET, init="inpainting", loss="focal",
              optimizer="lookahead_sgd")

_VARIANT_SETTINGS: dict[str, dict] = {
    # stage 1: SInfNet = InfNet from scratch; SSInfNet = InfNet initialised from the inpainter
    "sinfnet": dict(_SINGLE),
    "ssinfnet": dict(_SINGLE, init="inpainting"),
    "sinfnet_cutout40": dict(_SINGLE, cutout=0.4),
    "sinfnet_cutout50": dict(_SINGLE, cutout=0.5),
    "ssinfnet_cutout40": dict(_SINGLE, init="inpainting", cutout=0.4),
    "ssinfnet_cutout50": dict(_SINGLE, init="inpainting", cutout=0.5),
    # ours: only the inpainter's encoder is transferred; the decoder starts from scratch
    "ssinfnet_encoder": dict(_SINGLE, init="inpainting", transfer="encoder"),
    "unet": dict(_SINGLE, network="unet", model_kwargs={}),
    # stage 2: the full recipe, the scratch/BCE/SGD baseline and one-change ablations
    "multi_ssinfnet": dict(_MULTI),
    "multi_sinfnet": dict(_MULTI, init="scratch", loss="bce", optimizer="sgd"),
    "multi_ssinfnet_no_inpainting": dict(_MULTI, init="scratch"),
    "multi_ssinfnet_no_focal": dict(_MULTI, loss="bce"),
    "multi_ssinfnet_no_lookahead": dict(_MULTI, optimizer="sgd"),
    "multi_ssinfnet_gt_prior": dict(_MULTI, prior_source="ground_truth"),
    "multi_ssinfnet_encoder": dict(_MULTI, transfer="encoder"),
    # baselines: other networks with the stage-2 recipe, from scratch, same prior
    "multi_unet": dict(_MULTI, network="unet_multi", model_kwargs={}, init="scratch"),
    "multi_fcn8s": dict(_MULTI, network="fcn8s", model_kwargs={}, init="scratch"),
}

#: Variant name -> factory returning its :class:`SegConfig` (keyword arguments override fields).
VARIANTS: dict[str, Callable[..., SegConfig]] = {
    name: partial(SegConfig, name=name, **settings) for name, settings in _VARIANT_SETTINGS.items()
}


def list_variants(task: str | None = None) -> list[str]:
    """Variant names (of one ``task``, or all), in the paper's order."""
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS} or None, got {task!r}")
    return [n for n, s in _VARIANT_SETTINGS.items() if task is None or s["task"] == task]


def variant_config(name: str, profile: Any = None, **overrides) -> SegConfig:
    """The :class:`SegConfig` of a named variant, sized by a profile and with field overrides.

    Parameters
    ----------
    name : str
        A key of :data:`VARIANTS`.
    profile : ssinfnet.profiles.Profile, optional
        Takes ``image_size``, ``batch_size``, ``finetune_epochs`` (single) or ``multi_epochs``
        (multi), ``max_steps_per_epoch``, ``num_workers`` and the network's constructor arguments
        (``infnet_kwargs()`` for InfNet networks, ``baseline_kwargs[network]`` for the baselines).
    **overrides
        Any :class:`SegConfig` field (applied after the profile). ``model_kwargs`` is merged into
        the variant's (when ``network`` is overridden too, the variant's model kwargs are dropped).

    Raises
    ------
    ValueError
        Unknown ``name`` (the message lists the variants) or an unknown field.
    """
    if name not in VARIANTS:
        close = difflib.get_close_matches(str(name), list(VARIANTS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"name {name!r} is not a variant; variants: {', '.join(VARIANTS)}{hint}")
    valid = {f.name for f in fields(SegConfig)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown SegConfig fields {unknown}; valid: {sorted(valid)}")
    settings = dict(_VARIANT_SETTINGS[name], name=name)
    kwargs = {} if "network" in overrides else dict(settings["model_kwargs"])
    if profile is not None:
        multi = settings["task"] == "multi"
        settings.update(image_size=profile.image_size, batch_size=profile.batch_size,
                        epochs=profile.multi_epochs if multi else profile.finetune_epochs,
                        max_steps_per_epoch=profile.max_steps_per_epoch, num_workers=profile.num_workers)
        network = overrides.get("network", settings["network"])
        if network.startswith("infnet"):
            kwargs.update(profile.infnet_kwargs())
        else:
            kwargs.update(profile.baseline_kwargs.get(network, {}))
    kwargs.update(overrides.pop("model_kwargs", None) or {})
    settings.update(overrides)
    settings["model_kwargs"] = kwargs
    return SegConfig(**settings)


# ------------------------------------------------------------------------------------------ models

def load_init_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The inpainter's state dict from a pretraining checkpoint, an exported model or a state dict.

    Accepts ``train``/``pretrain`` checkpoints (``state["models"]["inpainter"]``, or the only model),
    :func:`ssinfnet.predict.export_model` files and plain ``{name: tensor}`` dicts, all loaded with
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


def _priors_for(cfg: SegConfig, samples: Sequence[Sample], priors, arg: str) -> list[np.ndarray] | None:
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


def _scores_table(task: str, probs: Sequence[np.ndarray], samples: Sequence[Sample]) -> pd.DataFrame:
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
    table = _scores_table(task, probs, samples)
    if task == "single":
        return {"dice": _class_mean(table, "infection")}
    ggo, cons = _class_mean(table, "ggo"), _class_mean(table, "consolidation")
    finite = [v for v in (ggo, cons) if math.isfinite(v)]
    return {"dice": float(np.mean(finite)) if finite else float("nan"), "dice_ggo": ggo, "dice_consolidation": cons}


# ------------------------------------------------------------------------------------------ predict

def predict_samples(model: torch.nn.Module | LoadedModel, samples: Sequence[Sample], size: int | None = None,
                    device: str | torch.device = "cpu", priors: Sequence[np.ndarray] | None = None,
                    batch_size: int = 8) -> list[np.ndarray]:
    """Probability maps of ``samples`` at each sample's own size.

    Thin wrapper of :func:`ssinfnet.predict.predict_probabilities` (eval mode, restored afterwards).

    Parameters
    ----------
    model : nn.Module or LoadedModel
        A trained network, or an exported model from :func:`ssinfnet.predict.load_exported`.
    samples : sequence of Sample
    size : int, optional
        Network input side (pixels); default the loaded model's ``image_size`` (required for modules).
    device : str or torch.device
    priors : sequence of float arrays (H, W) in [0, 1], optional
        Stage-1 maps, required by two-channel (multi) models.
    batch_size : int

    Returns
    -------
    list of float32 arrays: (H, W) infection probability, or (3, H, W) class probabilities.
    """
    if isinstance(model, LoadedModel):
        size = model.image_size if size is None else size
        model = model.model
    if size is None:
        raise ValueError("size is required when model is a module (the training image_size)")
    if len(samples) == 0:
        raise ValueError("samples is empty")
    in_chans = getattr(model, "in_chans", 1)
    if in_chans > 1 and priors is None:
        raise ValueError(f"priors are required: the model takes {in_chans} channels (image + prior)")
    if in_chans == 1 and priors is not None:
        raise ValueError("priors must be None for a one-channel (single) model")
    if priors is not None and len(priors) != len(samples):
        raise ValueError(f"priors has {len(priors)} maps for {len(samples)} samples")
    with eval_mode(model):
        return predict_probabilities(model, [s.image for s in samples], size, device, batch_size, priors)


# ------------------------------------------------------------------------------------------ fit

@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    ``model`` holds the best-validation weights (eval mode, on the training device); ``history``
    is :func:`ssinfnet.train.train`'s table (step and epoch rows, ``val_dice`` per epoch);
    ``best`` is ``(epoch, val_dice)`` (0-based epoch) or None when no validation score was finite
    (then the last weights were exported); ``export_path`` is ``run_dir/model.pt``; ``transfer`` the
    inpainting-init report (None from scratch).
    """

    config: SegConfig
    model: torch.nn.Module
    history: pd.DataFrame
    best: tuple[int, float] | None
    export_path: Path
    transfer: TransferReport | None
    run_dir: Path


def _check_run_dir(run_dir: Path, cfg: SegConfig, seed: int, train_samples: Sequence[Sample] = (),
                   val_samples: Sequence[Sample] = (), priors_train=None, priors_val=None) -> dict[str, str | None]:
    """Refuse to reuse a run made from other settings, data or code; record the key of a new one.

    ``run_dir/config.json`` holds the settings, the seed and the provenance record
    (:func:`ssinfnet.provenance.stamp`): the data key (the training and validation samples with
    their priors, :func:`ssinfnet.provenance.samples_fingerprint`), the code fingerprint, and the
    commit, dirty flag and time of the session that trained it. When the folder holds a checkpoint,
    a difference in any of them raises :class:`ssinfnet.provenance.StaleRunError` naming the
    folder, the differing settings and hashes, and what to do (``SSINFNET_ALLOW_STALE=1``: warn,
    reuse, and note it in ``config.json`` and the manifest). A folder without a checkpoint holds
    nothing to reuse: its record is rewritten.

    The initial weights are recorded by file name and content hash, not by path, so a run folder
    moved or cloned elsewhere still resumes. A setting added to :class:`SegConfig` after the folder
    was written counts as equal when it holds its default (the behaviour the old run had).

    Returns the key that :func:`ssinfnet.train.train` is to find in the folder's checkpoint (the
    folder's own key when a stale folder is reused knowingly).
    """
    config = cfg.to_dict()
    if config.get("init_weights"):
        from .data.sources import sha256_of

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
        path.write_text(json.dumps(old, indent=2))
        note_stale(run_dir, note)
        return dict(provenance.get("key") or {})
    run_dir.mkdir(parents=True, exist_ok=True)
    record["provenance"] = stamp(key)
    path.write_text(json.dumps(record, indent=2))
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
    p_train = _priors_for(cfg, train_samples, priors_train, "priors_train")
    p_val = _priors_for(cfg, val_samples, priors_val, "priors_val")
    _ground_truths(cfg.task, val_samples)  # fail now, not after the first epoch
    key = _check_run_dir(run_dir, cfg, seed, train_samples, val_samples, p_train, p_val)

    torch.manual_seed(seed)  # model initialisation is part of the seeded run
    model, report = build_segmenter(cfg)
    require = ("infection",) if cfg.task == "single" else ("classes",)
    dataset = SliceDataset(train_samples, cfg.image_size, train_transform(cfg.image_size, cutout=cfg.cutout),
                           require=require, priors=p_train)
    loader = make_loader(dataset, cfg.batch_size, shuffle=True, seed=seed, num_workers=cfg.num_workers,
                         pin_memory=device.type == "cuda")
    with_prior = cfg.task == "multi"

    def loss_fn(models, batch, ctx):
        outputs = models[MODEL_KEY](network_input(batch, with_prior))
        return segmentation_loss(cfg, outputs, batch), {}

    def val_fn(models, _loader, ctx):
        probs = predict_probabilities(models[MODEL_KEY], [s.image for s in val_samples], cfg.image_size,
                                      ctx.device, cfg.batch_size, p_val)
        return validation_scores(cfg.task, probs, val_samples)

    phase = Phase(PHASE_NAME, cfg.epochs, [MODEL_KEY], loss_fn, make_optimizer=_optimizer_factory(cfg),
                  lr_factors=cfg.lr_factors, val_fn=val_fn, monitor="dice", mode="max",
                  max_steps_per_epoch=cfg.max_steps_per_epoch, grad_clip=cfg.grad_clip)
    result = train([phase], {MODEL_KEY: model}, loader, device=device, seed=seed, run_dir=run_dir,
                   progress=progress, provenance=key)

    best = None
    if PHASE_NAME in result.best:
        entry = result.best[PHASE_NAME]
        state = load_checkpoint(entry["path"], map_location=device)
        model.load_state_dict(state["models"][MODEL_KEY])
        best = (int(entry["epoch"]), float(entry["value"]))
    else:
        warnings.warn(f"{cfg.name}: no finite validation Dice; exporting the last weights", stacklevel=2)
    model.eval()
    kwargs = {k: v for k, v in cfg.network_kwargs().items() if k != "pretrained_path"}  # weights are saved
    extra = {"task": cfg.task, "variant": cfg.name, "label": cfg.label, "prior_source": cfg.prior_source,
             "best_epoch": None if best is None else best[0], "val_dice": None if best is None else best[1],
             "seed": seed, "config": cfg.to_dict(),
             "transfer": None if report is None else {"copied": len(report.copied),
                                                      "skipped_head": list(report.skipped_head),
                                                      "skipped_shape": [n for n, _, _ in report.skipped_shape],
                                                      "missing": list(report.missing)}}
    from .provenance import read_record

    extra["provenance"] = read_record(run_dir)  # the commit, code and data that trained these weights
    path = export_model(run_dir / "model.pt", model, cfg.network, kwargs, cfg.image_size, extra, task=cfg.task)
    return FitResult(cfg, model, result.history, best, path, report, run_dir)


# ------------------------------------------------------------------------------------------ CV

@dataclass
class CVResult:
    """Outcome of :func:`cross_validate`.

    ``scores``: paper-protocol rows (``fold, image, class, dice, iou, recall, precision, auc``) of
    every held-out image; ``predictions``: out-of-fold probability maps in the order of the input
    samples (each predicted by the fold that held it out: honest stage-1 priors);
    ``fold``: int array, the fold that held out each sample; ``fits``: per-fold
    ``{"fold", "n_train", "n_val", "n_test", "best_epoch", "val_dice", "export_path"}`` rows.
    """

    scores: pd.DataFrame
    predictions: list[np.ndarray]
    fold: np.ndarray
    fits: pd.DataFrame


def cross_validate(cfg: SegConfig, samples: Sequence[Sample], k: int, *, device: str | torch.device, seed: int,
                   run_dir: str | Path, priors: Sequence[np.ndarray] | None = None, val_fraction: float = 0.2,
                   progress: bool = True) -> CVResult:
    """Grouped k-fold cross-validation of ``cfg``; validation split carved inside each fold's training part.

    Parameters
    ----------
    cfg : SegConfig
    samples : sequence of Sample
        Labelled slices; groups (``group_id``) never straddle folds
        (:func:`ssinfnet.data.splits.grouped_kfold`).
    k : int >= 2
    device, seed : as in :func:`fit`; fold ``f`` trains with ``seed + f``.
    run_dir : str or Path
        Fold ``f`` runs in ``run_dir/fold<f>`` (resumable).
    priors : sequence of float arrays (H, W), optional
        Stage-1 maps aligned with ``samples`` (multi, ``prior_source="predicted"``); they should be
        out-of-fold predictions themselves.
    val_fraction : float in (0, 1)
        Share of each fold's training part used for model selection.
    progress : bool

    Returns
    -------
    CVResult
    """
    samples = list(samples)
    all_priors = _priors_for(cfg, samples, priors, "priors")
    explicit = cfg.task == "multi" and cfg.prior_source == "predicted"
    folds = grouped_kfold(samples, k=k, seed=seed)
    run_dir = Path(run_dir)
    predictions: list[np.ndarray | None] = [None] * len(samples)
    fold_of = np.full(len(samples), -1, dtype=np.int64)
    tables, fits = [], []
    for f, (train_idx, held_idx) in enumerate(tqdm(folds, desc=f"cv {cfg.label}", disable=not progress)):
        part = [samples[i] for i in train_idx]
        tr, va = validation_split(part, fraction=val_fraction, seed=seed + f)
        tr_idx, va_idx = [train_idx[i] for i in tr], [train_idx[i] for i in va]

        def pick(idx):
            return [all_priors[i] for i in idx] if explicit else None

        res = fit(cfg, [samples[i] for i in tr_idx], [samples[i] for i in va_idx], device=device, seed=seed + f,
                  run_dir=run_dir / f"fold{f}", priors_train=pick(tr_idx), priors_val=pick(va_idx),
                  progress=progress)
        held = [samples[i] for i in held_idx]
        held_priors = None if all_priors is None else [all_priors[i] for i in held_idx]
        probs = predict_samples(res.model, held, cfg.image_size, device, held_priors, cfg.batch_size)
        for i, p in zip(held_idx, probs):
            predictions[i] = p
            fold_of[i] = f
        table = _scores_table(cfg.task, probs, held)
        table.insert(0, "fold", f)
        tables.append(table)
        fits.append({"fold": f, "n_train": len(tr_idx), "n_val": len(va_idx), "n_test": len(held_idx),
                     "best_epoch": None if res.best is None else res.best[0],
                     "val_dice": float("nan") if res.best is None else res.best[1],
                     "export_path": str(res.export_path)})
    return CVResult(pd.concat(tables, ignore_index=True), predictions, fold_of, pd.DataFrame(fits))
