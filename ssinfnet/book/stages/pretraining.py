"""Chapter 2: self-supervised pretraining, an inpainter trained against a coach.

Reads the unlabelled pool and the training images without their labels (from the run's data, no
earlier chapter); writes the exported inpainter (which chapter 3 fine-tunes) and coach, the training
history and the coach's masks of a fixed batch after every phase, all under ``pretrain/single/``.
Resumable: a finished pretraining in the run folder is loaded, not retrained.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ...data.dataset import SliceDataset
from ...data.transforms import eval_transform
from ...models.registry import build_model
from ...models.transfer import TransferReport, transfer_weights
from ...pretraining import inpainting as pretrain
from .. import artifacts
from ..projection import announce

STAGE = "02_pretraining"

#: Number of fixed slices whose coach masks are followed through training.
N_FIXED = 4

#: Keep fractions at which the trained coach's erased fraction is measured.
KEEPS = (0.5, 0.6, 0.75, 0.9)


@dataclass
class PretrainingStage:
    """What chapter 2 shows.

    ``samples``/``pool_counts``: the pretraining pool (labels removed) and its make-up; ``cfg``: the
    :class:`~ssinfnet.pretraining.inpainting.PretrainConfig` it ran with; ``steps_per_epoch``: batches
    per epoch after the profile's cap; ``models``: "inpainter" and "coach" (on the CPU); ``history``:
    the training history (one row per step and per epoch, column ``kind``); ``fixed``: the fixed batch
    (N, 1, H, W) and ``masks`` phase name -> the coach's keep-masks of it (N, 1, H, W); ``examples``:
    the inpainter on the last masks (:func:`~ssinfnet.pretraining.inpainting.inpaint_examples`);
    ``erased``: erased fraction against the budget per keep fraction; ``transfer``: "single" / "multi"
    -> :class:`~ssinfnet.models.transfer.TransferReport` of copying the inpainter into the
    segmentation networks; ``paths``: artifact name -> file written.
    """

    samples: list
    pool_counts: dict
    cfg: pretrain.PretrainConfig
    steps_per_epoch: int
    models: dict
    history: pd.DataFrame
    fixed: torch.Tensor
    masks: dict
    examples: dict
    erased: pd.DataFrame
    transfer: dict[str, TransferReport]
    paths: dict[str, Path]

    @property
    def epochs(self) -> pd.DataFrame:
        """The per-epoch rows of the history (columns phase, loss, ...)."""
        return self.history[self.history.kind == "epoch"]

    @property
    def steps(self) -> pd.DataFrame:
        """The per-step rows of the history."""
        return self.history[self.history.kind == "step"]

    def final_losses(self) -> pd.Series:
        """Last epoch loss of each phase, in schedule order."""
        return self.epochs.groupby("phase", sort=False).loss.last()

    def setup(self, ctx) -> pd.Series:
        """The input pipeline and schedule this stage ran with, for the page."""
        cfg = self.cfg
        return pd.Series({"image size (px)": cfg.image_size, "batch size": cfg.batch_size,
                          "rotation (degrees, at most)": cfg.rotation,
                          "backbone": cfg.model_kwargs.get("backbone"),
                          "inpainter epochs": cfg.inpainter_epochs, "coach epochs": cfg.coach_epochs,
                          "alternations": f"{cfg.alternations} x {cfg.alternate_epochs} epochs",
                          "steps per epoch": self.steps_per_epoch})


def fixed_batch(samples, image_size: int, n: int = N_FIXED) -> torch.Tensor:
    """``n`` evenly spaced slices of ``samples`` at ``image_size`` px without augmentation: (n, 1, H, W)."""
    dataset = SliceDataset(samples, image_size, eval_transform(image_size))
    step = max(1, len(samples) // n)
    return torch.stack([dataset[i]["image"] for i in range(0, len(samples), step)][:n])


def transfer_reports(inpainter: torch.nn.Module, profile) -> dict[str, TransferReport]:
    """What copying ``inpainter``'s weights into a fresh single- and multi-class InfNet of ``profile``
    copies, re-initialises (heads) and skips (shape mismatches, e.g. the multi network's two-channel
    first convolution)."""
    return {name: transfer_weights(inpainter, build_model(network, **profile.infnet_kwargs()))
            for name, network in (("single", "infnet"), ("multi", "infnet_multi"))}


def run(ctx, progress: bool = True) -> PretrainingStage:
    """Pretrain (or load) the inpainter and the coach on the run's pool with the profile's configuration,
    export both, measure the coach's erased fraction and the weight transfer, and record the artifacts
    (inpainter, coach, pretrain_history, coach_masks)."""
    samples, pool_counts = pretrain.pretraining_pool(ctx.data, ctx.profile, seed=ctx.seed)
    cfg = pretrain.config_from_profile(ctx.profile)
    loader = pretrain.pool_loader(samples, cfg, seed=ctx.seed, pin_memory=ctx.device == "cuda")
    steps = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)

    announce(ctx, STAGE, 0, len(samples))  # projected training time, from a speed measured now
    folder = ctx.path("pretrain", "single")
    fixed = fixed_batch(samples, cfg.image_size)
    recorder = pretrain.MaskRecorder(fixed, path=folder / "coach_masks.pt")
    models, result = pretrain.pretrain(cfg, loader, device=ctx.device, seed=ctx.seed, run_dir=folder,
                                       progress=progress, on_phase_end=recorder)
    saved = pretrain.save_pretrained(models, cfg, folder, cfg.image_size)

    models = {k: m.cpu() for k, m in models.items()}
    examples = pretrain.inpaint_examples(models["inpainter"], fixed, recorder.masks[list(recorder.masks)[-1]])
    erased = pretrain.erased_fraction(models["coach"], fixed, keeps=KEEPS)
    transfer = transfer_reports(models["inpainter"], ctx.profile)

    paths = {**saved, "pretrain_history": result.history_path, "coach_masks": recorder.path}
    history = result.history
    epochs = history[history.kind == "epoch"]
    artifacts.record(ctx, STAGE, paths, pool=pool_counts, config=cfg.to_dict(),
                     final_losses=epochs.groupby("phase", sort=False).loss.last().round(4).to_dict())
    return PretrainingStage(samples, pool_counts, cfg, steps, models, history, fixed, dict(recorder.masks),
                            examples, erased, transfer, paths)
