"""Chapter 2: self-supervised pretraining, an inpainter trained against a coach.

Reads the unlabelled pool and the training images without their labels (from the run's data, no
earlier chapter); writes the exported inpainter (which chapter 3 fine-tunes) and coach, the training
history and the coach's masks of a fixed batch after every phase, all under ``pretrain/single/``.
Resumable: a finished pretraining in the run folder is loaded, not retrained.

Evidence that the pretraining learnt (:mod:`ssinfnet.pretraining.evidence`, recomputed on every run,
seconds on smoke and well under a minute on the ``cpu`` profile): reconstruction error on held-out
slices against mean-fill and blur, a frozen-encoder probe on the training/validation split of
chapter 1 (read when chapter 1 has run, else the same split computed here), and how the coach's loss
and the concentration of its masks change from phase to phase.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ...data.dataset import SliceDataset
from ...data.inputs import batch_input
from ...data.transforms import eval_transform
from ...models.coach import random_masks
from ...models.registry import build_model
from ...models.transfer import TransferReport, transfer_weights
from ...pretraining import evidence as ev
from ...pretraining import inpainting as pretrain
from .. import artifacts
from ..projection import announce
from .variants import train_val_split

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

    Evidence (:mod:`ssinfnet.pretraining.evidence`): ``held_out_note`` says where the held-out
    unlabelled slices come from; ``reconstruction`` holds one row per held-out set, mask kind and slice
    (erased-region error in grey levels of the inpainter and the baselines) and
    ``reconstruction_summary`` their means with bootstrap intervals; ``probe`` the frozen-encoder probe
    (:class:`~ssinfnet.pretraining.evidence.ProbeResult`) and ``probe_split`` its slice counts;
    ``coach``: per training point (init, then each phase) the loss of that phase at its first and last
    step and the concentration of the coach's masks after it, plus two reference rows.
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
    held_out_note: str
    reconstruction: pd.DataFrame
    reconstruction_summary: pd.DataFrame
    probe: ev.ProbeResult
    probe_split: dict
    coach: pd.DataFrame

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

    def reconstruction_table(self) -> pd.DataFrame:
        """The reconstruction summary for the page: per held-out set and mask kind, the mean error of
        each method in grey levels with its 95 % bootstrap interval, the inpainter's gain over the
        better baseline (> 0: the inpainter is better) and the verdict."""
        s = self.reconstruction_summary
        def ci(m):
            return [f"{v:.1f} [{lo:.1f}, {hi:.1f}]" for v, lo, hi in zip(s[m], s[f"{m}_lo"], s[f"{m}_hi"])]

        return pd.DataFrame({"held-out set": s["set"], "masks": s["masks"], "slices": s["n"],
                             "inpainter": ci("inpainter"), "mean-fill": ci("mean-fill"),
                             "blur (best σ)": [f"{c} (σ {g:g} px)" for c, g in zip(ci("blur"), s["blur_sigma"])],
                             "gain over better baseline": ci("gain"), "verdict": s["verdict"]})

    def probe_table(self) -> pd.DataFrame:
        """The probe for the page: per encoder, mean validation Dice [95 % interval] and the head's final
        training loss; a last row with the paired difference (pretrained - random) and its verdict."""
        s, d = self.probe.summary, self.probe.difference
        rows = [{"encoder": r.encoder, "validation Dice": f"{r.dice:.3f} [{r.dice_lo:.3f}, {r.dice_hi:.3f}]",
                 "head's training loss": f"{r.train_loss:.3f}"} for r in s.itertuples()]
        if d:
            rows.append({"encoder": f"difference ({d['compared']})",
                         "validation Dice": f"{d['estimate']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]: {d['verdict']}",
                         "head's training loss": ""})
        return pd.DataFrame(rows).set_index("encoder")

    def setup(self, ctx) -> pd.Series:
        """The input pipeline and schedule this stage ran with, for the page."""
        cfg = self.cfg
        return pd.Series({"image size (px)": cfg.image_size, "batch size": cfg.batch_size,
                          "rotation (degrees, at most)": cfg.rotation,
                          "backbone": cfg.model_kwargs.get("backbone"),
                          "inpainter epochs": cfg.inpainter_epochs, "coach epochs": cfg.coach_epochs,
                          "alternations": f"{cfg.alternations} x {cfg.alternate_epochs} epochs",
                          "inpainter's starting rate (SGD)": cfg.inpainter_lr,
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


def reconstruction(ctx, pool, cfg, models) -> tuple[str, pd.DataFrame]:
    """Erased-region errors (:func:`~ssinfnet.pretraining.evidence.reconstruction_errors`) of the trained
    inpainter and the baselines on the held-out unlabelled slices (when there are any) and on the test
    slices (images only: no label is read), with random block masks of the pretraining's budget and
    patch (seeded) and with the trained coach's masks. Returns (where the held-out slices come from,
    one row per set, mask kind and slice with columns set, masks, slice_id, slice, inpainter, ...)."""
    held, note = ev.held_out_slices(ctx.data, ctx.profile, pool, seed=ctx.seed)
    sets = {"held-out unlabelled": held} if held else {}
    sets["test (images only)"] = pretrain.strip_labels(ctx.samples("test"))
    device = next(models["coach"].parameters()).device
    tables = []
    for name, slices in sets.items():
        x = batch_input([s.image for s in slices], cfg.image_size)
        masks = {"random blocks": random_masks(x.shape, cfg.keep, cfg.patch,
                                               generator=torch.Generator().manual_seed(ctx.seed)),
                 "coach": pretrain.coach_masks(models["coach"], x.to(device)).cpu()}
        for kind, mask in masks.items():
            t = ev.reconstruction_errors(models["inpainter"], x, mask)
            t.insert(0, "slice_id", [s.slice_id for s in slices])
            t.insert(0, "masks", kind)
            t.insert(0, "set", name)
            tables.append(t)
    return note, pd.concat(tables, ignore_index=True)


def coach_table(history: pd.DataFrame, masks: dict, cfg, seed: int = 0) -> pd.DataFrame:
    """One row per training point (``masks``' keys: init and each phase): the phase's training loss at
    its first and last step (NaN for init) and :func:`~ssinfnet.pretraining.evidence.concentration_table`
    of the coach's masks after it (regions of two coach cells, 16 px), then the reference rows."""
    conc = ev.concentration_table(masks, max(2, cfg.image_size // 16), keep=cfg.keep, seed=seed)
    steps = history[history.kind == "step"].groupby("phase", sort=False).loss
    loss = pd.DataFrame({"loss_first_step": steps.first(), "loss_last_step": steps.last()})
    return conc.join(loss, on="masks")[["masks", "loss_first_step", "loss_last_step", "erased", "top_share",
                                        "entropy"]]


def gather_evidence(ctx, pool, cfg, models, history: pd.DataFrame, masks: dict) -> dict:
    """The evidence fields of :class:`PretrainingStage`: :func:`reconstruction` (and its summary with
    ``ctx.profile.n_boot`` resamples), the frozen-encoder probe of the inpainter's encoder against the
    same seeded initialisation on the training/validation split, and :func:`coach_table`. ``models``
    may sit on ``ctx.device``; the probe's encoders are built there."""
    note, recon = reconstruction(ctx, pool, cfg, models)
    train_all = ctx.samples("train")
    tr_idx, va_idx, split_source = train_val_split(ctx, train_all, STAGE)
    encoders = ev.probe_encoders(models["inpainter"], "infnet", ctx.profile.infnet_kwargs(), seed=ctx.seed)
    probe = ev.encoder_probe({k: m.to(ctx.device) for k, m in encoders.items()}, [train_all[i] for i in tr_idx],
                             [train_all[i] for i in va_idx], cfg.image_size, n_boot=ctx.profile.n_boot,
                             seed=ctx.seed)
    return {"held_out_note": note, "reconstruction": recon,
            "reconstruction_summary": ev.summarise_errors(recon, n_boot=ctx.profile.n_boot, seed=ctx.seed),
            "probe": probe,
            "probe_split": {"training slices": len(tr_idx), "validation slices": len(va_idx), "split": split_source},
            "coach": coach_table(history, masks, cfg, seed=ctx.seed)}


def evidence_summary(found: dict) -> dict:
    """The headline numbers of :func:`gather_evidence` for the run manifest (JSON-ready, rounded)."""
    recon = {f"{r['set']} / {r['masks']}": {**{m: round(r[m], 2) for m in ("inpainter", "mean-fill", "blur")},
                                            "verdict": r["verdict"]}
             for _, r in found["reconstruction_summary"].iterrows()}
    probe = found["probe"]
    return {"held_out": found["held_out_note"], "reconstruction": recon,
            "probe_dice": probe.summary.set_index("encoder").dice.round(4).to_dict(),
            "probe_difference": {k: round(v, 4) if isinstance(v, float) else v for k, v in probe.difference.items()}}


def run(ctx, progress: bool = True) -> PretrainingStage:
    """Pretrain (or load) the inpainter and the coach on the run's pool with the profile's configuration,
    export both, gather the evidence that it learnt (:func:`gather_evidence`), measure the coach's erased
    fraction and the weight transfer, and record the artifacts (inpainter, coach, pretrain_history,
    coach_masks) with the evidence's headline numbers."""
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

    found = gather_evidence(ctx, samples, cfg, models, result.history, recorder.masks)

    models = {k: m.cpu() for k, m in models.items()}
    examples = pretrain.inpaint_examples(models["inpainter"], fixed, recorder.masks[list(recorder.masks)[-1]])
    erased = pretrain.erased_fraction(models["coach"], fixed, keeps=KEEPS)
    transfer = transfer_reports(models["inpainter"], ctx.profile)

    paths = {**saved, "pretrain_history": result.history_path, "coach_masks": recorder.path}
    history = result.history
    epochs = history[history.kind == "epoch"]
    artifacts.record(ctx, STAGE, paths, pool=pool_counts, config=cfg.to_dict(),
                     final_losses=epochs.groupby("phase", sort=False).loss.last().round(4).to_dict(),
                     evidence=evidence_summary(found))
    return PretrainingStage(samples, pool_counts, cfg, steps, models, history, fixed, dict(recorder.masks),
                            examples, erased, transfer, paths, **found)
