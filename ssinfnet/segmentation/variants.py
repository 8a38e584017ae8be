"""The paper's segmentation variants as configurations: :class:`SegConfig` and :data:`VARIANTS`.

A variant is one :class:`SegConfig` (task, network, initialisation, loss, optimiser, schedule); each
ablation changes one setting of ``multi_ssinfnet``. :func:`variant_config` builds a named variant
sized by a profile. Training them is :mod:`ssinfnet.segmentation.fit`; cross-validation
:mod:`ssinfnet.segmentation.crossval`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from typing import Any, Callable

from ..data.transforms import train_transform
from ..training.device import check_flag
from ..training.optimisers import adam, sgd


__all__ = ["SegConfig", "VARIANTS", "variant_config", "pretrained_variant_config"]


TASKS = ("single", "multi")


NETWORKS = {"single": ("infnet", "unet"), "multi": ("infnet_multi", "unet_multi", "fcn8s")}


LOSSES = {"single": ("infnet", "bce"), "multi": ("focal", "bce")}


OPTIMIZERS = ("adam", "sgd", "lookahead_sgd")


DEFAULT_LR = {"adam": 1e-4, "sgd": 0.01, "lookahead_sgd": 0.01}


INITS = ("scratch", "inpainting")


TRANSFERS = ("all", "encoder")


PRIOR_SOURCES = ("predicted", "ground_truth")


COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


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
        Pretraining checkpoint (``checkpoints/last.pt`` of :func:`ssinfnet.pretraining.inpainting.pretrain`), an
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
        Epoch milestone -> lr multiplier (:class:`ssinfnet.training.optimisers.MilestoneFactor`); default constant.
    epochs, batch_size, image_size : int
        Passes over the training data (the cap when ``patience`` is set), slices per batch, training
        side (pixels).
    patience : int, optional
        Early stopping: stop after this many epochs without a better validation Dice (the selected
        epoch is the best one either way); None trains all ``epochs``.
    cutout : float in [0, 1)
        Side of the grey cutout square as a fraction of the image side (paper: 0, 0.4, 0.5).
    rotation, crop_scale, hflip : float, (float, float), float
        The rest of the training augmentation (:func:`ssinfnet.data.transforms.train_transform`): random
        rotation up to ``rotation`` degrees, random resized crop keeping ``crop_scale`` of the area,
        horizontal flip with probability ``hflip``.
    zoom_out, window_jitter, gamma_range, resolution, noise_std, jpeg_quality, shift_p
        The shift augmentations (the shifts users' slices bring; see
        :func:`ssinfnet.data.transforms.train_transform`), all off by default: padding with air to up
        to ``zoom_out`` x the side (field of view), window width factor up to ``1 + window_jitter``,
        gamma in ``gamma_range``, down-sampling to a side in ``resolution`` (px, e.g. (128, 512)),
        Gaussian noise SD up to ``noise_std`` (grey fraction), JPEG quality in ``jpeg_quality``; each
        applied with probability ``shift_p``. :data:`ROBUST_AUGMENTATION` turns them all on.
    prior_source : {"predicted", "ground_truth"}
        Multi only (ignored for single): caller's stage-1 maps, or the oracle infection mask.
    max_steps_per_epoch : int, optional
        Cap on batches per epoch (smoke runs).
    grad_clip : float, optional
        Clip of the global gradient L2 norm.
    num_workers : int
        DataLoader workers (per-item seeds and persistent workers when > 0,
        :func:`ssinfnet.training.loader.make_loader`).
    device_data : bool or "auto"
        Hold the training slices on the device and augment them there, and validate there
        (:mod:`ssinfnet.segmentation.held`); "auto": on CUDA only
        (:func:`ssinfnet.training.device.default_device_data` says why).
    compile : str, optional
        ``torch.compile`` mode of the network during training (None: eager; see
        :func:`ssinfnet.training.loop.train`).
    amp, channels_last : bool or "auto"
        bf16 autocast and channels-last memory format in training (:func:`ssinfnet.training.loop.train`;
        "auto": the device's default, :func:`ssinfnet.training.device.default_amp`). Settings like the
        others, so a run folder trained in one precision is not resumed in another.
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
    patience: int | None = None
    batch_size: int = 16
    image_size: int = 352
    cutout: float = 0.0
    rotation: float = 15.0
    crop_scale: tuple = (0.8, 1.0)
    hflip: float = 0.5
    zoom_out: float = 1.0
    window_jitter: float = 0.0
    gamma_range: tuple = (1.0, 1.0)
    resolution: tuple | None = None
    noise_std: float = 0.0
    jpeg_quality: tuple | None = None
    shift_p: float = 0.5
    prior_source: str = "predicted"
    max_steps_per_epoch: int | None = None
    grad_clip: float | None = None
    num_workers: int = 0
    device_data: bool | str = "auto"
    compile: str | None = None
    amp: bool | str = "auto"
    channels_last: bool | str = "auto"
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
        if self.patience is not None and (not isinstance(self.patience, int) or isinstance(self.patience, bool)
                                          or self.patience < 1):
            raise ValueError(f"patience must be an int >= 1 or None, got {self.patience!r}")
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32 pixels (stride-32 encoders), got {self.image_size}")
        if not 0.0 <= self.cutout < 1.0:
            raise ValueError(f"cutout must be in [0, 1), got {self.cutout}")
        self.augmentation()  # the shift augmentations check their own settings
        if self.prior_source not in PRIOR_SOURCES:
            raise ValueError(f"prior_source must be one of {PRIOR_SOURCES}, got {self.prior_source!r}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"max_steps_per_epoch must be >= 1 or None, got {self.max_steps_per_epoch}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {self.num_workers!r}")
        if self.device_data not in (True, False, "auto"):
            raise ValueError(f"device_data must be True, False or 'auto', got {self.device_data!r}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}, got {self.compile!r}")
        for name in ("amp", "channels_last"):
            check_flag(getattr(self, name), name)

    def augmentation(self):
        """The training transform of these settings (:func:`ssinfnet.data.transforms.train_transform`);
        ValueError for an invalid augmentation setting."""
        if not self.zoom_out >= 1:
            raise ValueError(f"zoom_out must be >= 1, got {self.zoom_out}")
        return train_transform(self.image_size, cutout=self.cutout, rotation=self.rotation,
                               scale=tuple(self.crop_scale), hflip=self.hflip, zoom_out=self.zoom_out,
                               window_jitter=self.window_jitter, gamma_range=tuple(self.gamma_range),
                               resolution=None if self.resolution is None else tuple(self.resolution),
                               noise_std=self.noise_std,
                               jpeg_quality=None if self.jpeg_quality is None else tuple(self.jpeg_quality),
                               shift_p=self.shift_p)

    @property
    def in_chans(self) -> int:
        """Input channels: image (1), or image and prior (2) for multi."""
        return 2 if self.task == "multi" else 1

    @property
    def takes_priors(self) -> bool:
        """Whether a caller passes stage-1 priors with the samples: multi with ``prior_source="predicted"``
        (the oracle builds its priors from the masks; single takes none)."""
        return self.task == "multi" and self.prior_source == "predicted"

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


#: The shift augmentations all on: ``variant_config(name, profile, **ROBUST_AUGMENTATION)``, or a profile
#: with ``shift_augmentation=True`` (cpu, gpu). On real data (cpu recipe, SInfNet, 3 seeds x 48 test
#: slices, benchmarks/results/robust_augmentation_cpu.json) they changed clean Dice by +0.001 (95 % CI
#: -0.017 to +0.021) and raised the mean Dice over the 18 shifted conditions by +0.032 (+0.014 to +0.054).
ROBUST_AUGMENTATION = dict(zoom_out=1.6, window_jitter=0.6, gamma_range=(0.7, 1.5), resolution=(128, 512),
                           noise_std=0.03, jpeg_quality=(15, 95), shift_p=0.3)


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


def variant_config(name: str, profile: Any = None, **overrides) -> SegConfig:
    """The :class:`SegConfig` of a named variant, sized by a profile and with field overrides.

    Parameters
    ----------
    name : str
        A key of :data:`VARIANTS`.
    profile : ssinfnet.book.profiles.Profile, optional
        Takes ``image_size``, ``batch_size``, ``finetune_epochs`` (single) or ``multi_epochs``
        (multi), ``patience``, ``max_steps_per_epoch``, ``num_workers``, ``single_lr`` (single-class rate),
        ``finetune_lr_drop`` (10x drop at that fraction of the epochs), ``shift_augmentation`` (turns on
        :data:`ROBUST_AUGMENTATION`) and the network's constructor arguments
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
                        epochs=profile.multi_epochs if multi else profile.finetune_epochs, patience=profile.patience,
                        max_steps_per_epoch=profile.max_steps_per_epoch, num_workers=profile.num_workers)
        if not multi and getattr(profile, "single_lr", None) is not None:
            settings["lr"] = profile.single_lr
        if getattr(profile, "shift_augmentation", False):
            settings.update(ROBUST_AUGMENTATION)
        if getattr(profile, "finetune_lr_drop", None) is not None:
            settings["lr_factors"] = {max(1, round(profile.finetune_lr_drop * settings["epochs"])): 0.1}
        network = overrides.get("network", settings["network"])
        if network.startswith("infnet"):
            kwargs.update(profile.infnet_kwargs())
        else:
            kwargs.update(profile.baseline_kwargs.get(network, {}))
    kwargs.update(overrides.pop("model_kwargs", None) or {})
    settings.update(overrides)
    settings["model_kwargs"] = kwargs
    return SegConfig(**settings)


def pretrained_variant_config(name: str, profile: Any = None, init_weights=None, **overrides) -> SegConfig:
    """:func:`variant_config`, with ``init_weights`` (a pretrained inpainter's file) when the variant is
    inpainting-initialised and they are given. A scratch variant records none, since it never loads them,
    so its run folder is the same whichever pretraining the run made."""
    cfg = variant_config(name, profile, **overrides)
    if cfg.init == "inpainting" and init_weights is not None:
        cfg = variant_config(name, profile, init_weights=str(init_weights), **overrides)
    return cfg
