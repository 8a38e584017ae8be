"""How long a training stage will take: its schedule's image count times a speed measured now.

Each training chapter prints :func:`projection_line` before it trains, so a reader who starts the
``paper`` profile learns within seconds that it means hours. The speed is one training step of the
profile's InfNet (its own loss, Adam) at the profile's size and batch on the run's device, timed after
a warm-up step; the count is every image the stage's training steps will see (validation, loading
and checkpoints come on top, so the projection is a lower bound).
"""
from __future__ import annotations

import torch

from ..models.registry import build_model
from ..training.cost import time_training_step
from ..training.losses import infnet_loss
from .profiles import Profile

__all__ = ["training_images", "measure_ms_per_image", "projection_line"]

#: Training stages with a schedule to project.
TRAINING_STAGES = ("02_pretraining", "03_single", "04_multi")


def _per_epoch(profile: Profile, n: int) -> int:
    """Images one epoch over ``n`` slices trains on (the smoke cap of steps per epoch applied)."""
    if profile.max_steps_per_epoch is None:
        return n
    return min(n, profile.max_steps_per_epoch * profile.batch_size)


def training_images(profile: Profile, stage: str, n_train: int, n_pool: int = 0) -> int:
    """Images that pass through a training step in ``stage`` under ``profile``.

    ``n_train``: labelled training slices (validation split included; it is carved out here);
    ``n_pool``: slices of the stage's pretraining pool (chapter 2's, or chapter 4's image + prior
    pool). Fine-tuning counts every variant and every cross-validation fold.
    """
    if stage not in TRAINING_STAGES:
        raise ValueError(f"stage must be one of {TRAINING_STAGES}, got {stage!r}")
    pre_epochs = (profile.pretrain_inpainter_epochs + profile.pretrain_coach_epochs
                  + 2 * profile.pretrain_alternations * profile.pretrain_alternate_epochs)
    fit_n = round(n_train * (1 - profile.val_fraction))
    fold_n = round(n_train * (1 - 1 / profile.cv_folds) * (1 - profile.val_fraction))
    if stage == "02_pretraining":
        return pre_epochs * _per_epoch(profile, n_pool)
    variants = profile.single_variants if stage == "03_single" else profile.multi_variants
    epochs = profile.finetune_epochs if stage == "03_single" else profile.multi_epochs
    n_cv = sum(v in profile.cv_variants for v in variants)
    images = epochs * (len(variants) * _per_epoch(profile, fit_n) + n_cv * profile.cv_folds * _per_epoch(profile, fold_n))
    if stage == "04_multi":
        images += pre_epochs * _per_epoch(profile, n_pool)
    return images


def measure_ms_per_image(profile: Profile, device: str, repeats: int = 2, seed: int = 0) -> float:
    """Milliseconds per image of one training step of the profile's InfNet (infnet_loss, Adam 1e-4,
    batch ``profile.batch_size``, ``profile.image_size`` px, the loop's device defaults), on ``device``."""
    gen = torch.Generator().manual_seed(seed)
    devices = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the stage's own seeded randomness is left untouched
        torch.manual_seed(seed)
        model = build_model("infnet", **profile.infnet_kwargs())
        b, s = profile.batch_size, profile.image_size
        batch = {"image": torch.randn(b, 1, s, s, generator=gen),
                 "mask": (torch.rand(b, 1, s, s, generator=gen) > 0.7).float(),
                 "edge": (torch.rand(b, 1, s, s, generator=gen) > 0.9).float()}

        def loss(m, x):
            return infnet_loss(m(x["image"]), x["mask"], x["edge"])

        seconds = time_training_step(model, batch, loss, device=device, repeats=repeats,
                                     make_optimizer=lambda p: torch.optim.Adam(p, lr=1e-4))
    return 1000 * seconds / b


def announce(ctx, stage: str, n_train: int, n_pool: int = 0) -> str:
    """Print (and return) :func:`projection_line` for a stage of the run ``ctx`` before it trains."""
    line = projection_line(ctx.profile, stage, ctx.device, n_train, n_pool)
    print(line, flush=True)
    return line


def projection_line(profile: Profile, stage: str, device: str, n_train: int, n_pool: int = 0,
                    ms_per_image: float | None = None) -> str:
    """One sentence for the page: images to train, the measured speed, the projected wall time."""
    images = training_images(profile, stage, n_train, n_pool)
    ms = measure_ms_per_image(profile, device) if ms_per_image is None else ms_per_image
    seconds = images * ms / 1000
    span = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"
    return (f"projected training time of {stage}: {span} or more ({images:,} training images x {ms:.1f} ms "
            f"per image, measured now on {device} at {profile.image_size} px, batch {profile.batch_size}; "
            "validation and loading come on top)")
