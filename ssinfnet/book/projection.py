"""How long a training stage will take: its schedule's images per network times speeds measured now.

Each training chapter prints :func:`projection_line` before it trains, so a reader who starts the
``paper`` profile learns within seconds that it means hours. The count is every image the stage's
training steps would see if every fit ran to its epoch cap: each variant's fit, its extra fine-tuning
seeds (``seed_variants``), its cross-validation folds, and the stage's pretraining. The speed is one
training step of each network the stage trains (its registry name and the profile's constructor
arguments, a synthetic loss, Adam) at the profile's size and batch on the run's device, timed after a
warm-up step. Early stopping ends fits sooner; validation, loading and checkpoints come on top.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ..models.registry import build_model
from ..pretraining.inpainting import config_from_profile
from ..segmentation.variants import variant_config
from ..training.cost import time_training_step
from .profiles import Profile

__all__ = ["training_images", "training_images_by_network", "network_specs", "measure_ms_per_image",
           "projection_line"]

#: Training stages with a schedule to project.
TRAINING_STAGES = ("02_pretraining", "03_single", "04_multi")

#: The label of a stage's pretraining in :func:`training_images_by_network` (the inpainter's steps;
#: the coach's phases run the inpainter too, so they count at its speed).
INPAINTER = "inpainter"


def _check_stage(stage: str) -> None:
    if stage not in TRAINING_STAGES:
        raise ValueError(f"stage must be one of {TRAINING_STAGES}, got {stage!r}")


def _per_epoch(profile: Profile, n: int) -> int:
    """Images one epoch over ``n`` slices trains on (the smoke cap of steps per epoch applied)."""
    if profile.max_steps_per_epoch is None:
        return n
    return min(n, profile.max_steps_per_epoch * profile.batch_size)


def _variants(profile: Profile, stage: str) -> tuple:
    return profile.single_variants if stage == "03_single" else profile.multi_variants


def network_specs(profile: Profile, stage: str) -> dict[str, tuple[str, dict]]:
    """{label: (registry name, constructor arguments)} of every network ``stage`` trains under ``profile``:
    ``"inpainter"`` for its pretraining, the variants' network names for fine-tuning (variants that share
    a network share its arguments: the profile's ``infnet_kwargs()`` or ``baseline_kwargs``)."""
    _check_stage(stage)
    specs = {}
    if stage in ("02_pretraining", "04_multi"):
        cfg = config_from_profile(profile, with_prior=stage == "04_multi")
        specs[INPAINTER] = (cfg.network, dict(cfg.model_kwargs, in_chans=cfg.in_chans, head="inpaint"))
    if stage != "02_pretraining":
        for v in _variants(profile, stage):
            cfg = variant_config(v, profile)
            specs.setdefault(cfg.network, (cfg.network, cfg.network_kwargs()))
    return specs


def training_images_by_network(profile: Profile, stage: str, n_train: int, n_pool: int = 0) -> dict[str, int]:
    """Images that pass through a training step in ``stage`` under ``profile``, by network label
    (the keys of :func:`network_specs`), every fit run to its epoch cap.

    ``n_train``: labelled training slices (validation split included; it is carved out here);
    ``n_pool``: slices of the stage's pretraining pool (chapter 2's, or chapter 4's image + prior
    pool). Fine-tuning counts, per variant, its fit, its extra seeds (``n_seeds`` - 1 when it is one of
    ``seed_variants``) and its cross-validation folds (when it is one of ``cv_variants``).
    """
    _check_stage(stage)
    images: dict[str, int] = {}
    if stage in ("02_pretraining", "04_multi"):
        epochs = (profile.pretrain_inpainter_epochs + profile.pretrain_coach_epochs
                  + 2 * profile.pretrain_alternations * profile.pretrain_alternate_epochs)
        images[INPAINTER] = epochs * _per_epoch(profile, n_pool)
    if stage == "02_pretraining":
        return images
    epochs = profile.finetune_epochs if stage == "03_single" else profile.multi_epochs
    fit = _per_epoch(profile, round(n_train * (1 - profile.val_fraction)))
    fold = _per_epoch(profile, round(n_train * (1 - 1 / profile.cv_folds) * (1 - profile.val_fraction)))
    for v in _variants(profile, stage):
        fits = 1 + (profile.n_seeds - 1) * (v in profile.seed_variants)
        folds = profile.cv_folds * (v in profile.cv_variants)
        network = variant_config(v, profile).network
        images[network] = images.get(network, 0) + epochs * (fits * fit + folds * fold)
    return images


def training_images(profile: Profile, stage: str, n_train: int, n_pool: int = 0) -> int:
    """All images of :func:`training_images_by_network` (every network together)."""
    return sum(training_images_by_network(profile, stage, n_train, n_pool).values())


def measure_ms_per_image(profile: Profile, device: str, network: str = "infnet", model_kwargs: dict | None = None,
                         repeats: int = 2, seed: int = 0) -> float:
    """Milliseconds per image of one training step of ``network`` (a registry name; constructor arguments
    ``model_kwargs``, default the profile's ``infnet_kwargs()``) with a synthetic loss and Adam 1e-4, batch
    ``profile.batch_size``, ``profile.image_size`` px, the loop's device defaults, on ``device``."""
    kwargs = profile.infnet_kwargs() if model_kwargs is None else dict(model_kwargs)
    gen = torch.Generator().manual_seed(seed)
    devices = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the stage's own seeded randomness is left untouched
        torch.manual_seed(seed)
        model = build_model(network, **kwargs)
        b, s = profile.batch_size, profile.image_size
        batch = torch.randn(b, kwargs.get("in_chans", 1), s, s, generator=gen)
        seconds = time_training_step(model, batch, device=device, repeats=repeats,
                                     make_optimizer=lambda p: torch.optim.Adam(p, lr=1e-4))
    return 1000 * seconds / b


def announce(ctx, stage: str, n_train: int, n_pool: int = 0) -> str:
    """Print (and return) :func:`projection_line` for a stage of the run ``ctx`` before it trains."""
    line = projection_line(ctx.profile, stage, ctx.device, n_train, n_pool)
    print(line, flush=True)
    return line


def _span(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def projection_line(profile: Profile, stage: str, device: str, n_train: int, n_pool: int = 0,
                    ms_per_image: float | Mapping[str, float] | None = None) -> str:
    """One sentence for the page: images to train per network, the measured speeds, the projected time.

    ``ms_per_image``: one speed for every network, or {label: ms} for each label of
    :func:`network_specs`; None measures each network now (:func:`measure_ms_per_image`).
    """
    images = training_images_by_network(profile, stage, n_train, n_pool)
    if ms_per_image is None:
        specs = network_specs(profile, stage)
        ms = {label: measure_ms_per_image(profile, device, *specs[label]) for label in images}
    elif isinstance(ms_per_image, Mapping):
        missing = sorted(set(images) - set(ms_per_image))
        if missing:
            raise ValueError(f"ms_per_image has no speed for {missing}; {stage} trains {sorted(images)}")
        ms = dict(ms_per_image)
    else:
        ms = dict.fromkeys(images, float(ms_per_image))
    seconds = sum(n * ms[label] for label, n in images.items()) / 1000
    parts = "; ".join(f"{label}: {n:,} images x {ms[label]:.1f} ms" for label, n in images.items())
    return (f"projected training time of {stage}: {_span(seconds)} if every fit runs to its epoch cap "
            f"({parts}; speeds measured now on {device} at {profile.image_size} px, batch {profile.batch_size}); "
            "early stopping ends fits sooner, validation and loading come on top")
