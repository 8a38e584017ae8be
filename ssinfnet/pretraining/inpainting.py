"""Coach-adversarial inpainting pretraining (SSInfNet stage 0), expressed as phases of the one loop.

The paper's schedule (Fung et al. 2021, after Pathak et al.'s context encoders and the coach idea of
Misra et al.): the **inpainter** learns alone with random masks, then the **coach** learns alone
against the frozen inpainter, then the two alternate. Each inpainter phase runs SGD (momentum 0.9,
weight decay 5e-4) down the ladder lr 0.1 -> 0.01 -> 0.001 -> 0.0001 at 40 %, 80 % and 90 % of the
phase's optimiser steps (:data:`LR_LADDER`; the paper's epochs 40, 80, 90 of 100), so a phase of any
length, one epoch included, ends at 0.0001; the coach uses Adam at 1e-5.

Every phase has a divergence guard (:class:`~ssinfnet.training.guard.DivergenceGuard`, settings
``diverge_loss_ratio`` and ``diverge_past_ceiling`` of :class:`PretrainConfig`): training stops with a
:class:`~ssinfnet.training.guard.DivergenceError` when an epoch's mean loss exceeds 3 x the phase's best
epoch so far, or when more than half of an inpainter epoch's output pixels sit past the loss's clipping
ceiling (logged per step as ``past_ceiling``). That is how the failed run looked: every output thrown
past the ceiling (a share of 1), the loss flat at its maximum, no gradient left. A healthy inpainter
starts at a share of about 0.15 (real slices, ``cpu`` profile) to 0.25 (synthetic ``smoke``) and falls.

Masks keep a fraction ``keep`` of each slice: for the coach ``M = sigmoid(alpha (B(x) - kth(B(x))))``
with alpha = 1 while the coach learns (soft, so gradients reach it) and alpha = 100 when its masks
are applied to train the inpainter (practically binary). Erased pixels are set to 0, the mid grey of
the normalised image. The inpainter's input and target use the same normalisation as fine-tuning.

:func:`pretrain` builds the phases from a :class:`PretrainConfig` and runs
:func:`ssinfnet.training.loop.train`; everything is resumable from ``run_dir/checkpoints/last.pt``. The run
folder is keyed on the configuration, the pool the loader reads (pixels, size, transform, batch
size) and the training code (:func:`pretraining_key`): a folder trained with another key is refused,
never resumed (:class:`ssinfnet.training.provenance.StaleRunError`).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import default_collate

from ..data.inputs import network_input
from ..models.coach import Coach, random_masks
from ..models.modes import eval_mode
from ..models.registry import build_model
from ..training.device import check_flag
from ..training.distributed import on_main
from ..training.loop import TrainResult, train
from ..training.guard import DivergenceGuard
from ..training.losses import coach_loss, inpainting_loss, past_ceiling
from ..training.optimisers import adam, sgd
from ..training.phases import Phase, alternate
from ..training.provenance import code_fingerprint, config_fingerprint, loader_fingerprint


@dataclass
class PretrainConfig:
    """Settings of the pretraining stage (sizes in pixels, rates per step).

    ``network`` and ``model_kwargs`` name the inpainter (the segmentation twin is built later with
    the same arguments and ``head="seg"``); ``with_prior`` feeds image + prior (multi network).
    """

    network: str = "infnet"
    model_kwargs: dict = field(default_factory=lambda: {"backbone": "resnet18"})
    with_prior: bool = False
    keep: float = 0.75
    alpha_train: float = 1.0
    alpha_apply: float = 100.0
    patch: int = 16
    inpainter_epochs: int = 1
    coach_epochs: int = 1
    alternations: int = 1
    alternate_epochs: int = 1
    inpainter_lr: float = 0.1
    coach_lr: float = 1e-5
    ceiling: float = 1.0
    rec_weight: float = 0.99
    coach_width: int = 16
    variational: bool = False
    kl_weight: float = 0.0
    max_steps_per_epoch: int | None = None
    grad_clip: float | None = 5.0
    # divergence guard of every phase (None turns a rule off): stop when an epoch's mean loss exceeds this
    # multiple of the phase's best epoch mean so far, or (inpainter phases) when the epoch's mean share of
    # output pixels past the loss's clipping ceiling exceeds this share
    diverge_loss_ratio: float | None = 3.0
    diverge_past_ceiling: float | None = 0.5
    # the input pipeline of the pool (pool_loader): side in pixels, batch, augmentation, loader workers
    image_size: int = 64
    batch_size: int = 4
    rotation: float = 10.0
    num_workers: int = 0
    # hold the pool on the device and augment it there (True, False, or "auto": on CUDA only,
    # ssinfnet.training.device.default_device_data), the torch.compile mode (None: eager), and bf16
    # autocast and channels-last format (True, False, or "auto": the device's default, ssinfnet.training.loop.train)
    device_data: bool | str = "auto"
    compile: str | None = None
    amp: bool | str = "auto"
    channels_last: bool | str = "auto"

    def __post_init__(self) -> None:
        if not 0 < self.keep < 1:
            raise ValueError(f"keep must be in (0, 1), got {self.keep}")
        for name in ("inpainter_epochs", "coach_epochs", "alternate_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.alternations < 0:
            raise ValueError(f"alternations must be >= 0, got {self.alternations}")
        if self.diverge_past_ceiling is not None and not 0 < self.diverge_past_ceiling < 1:
            raise ValueError(f"diverge_past_ceiling must be in (0, 1) or None, got {self.diverge_past_ceiling}")
        if self.device_data not in (True, False, "auto"):
            raise ValueError(f"device_data must be True, False or 'auto', got {self.device_data!r}")
        for name in ("amp", "channels_last"):
            check_flag(getattr(self, name), name)
        self.guards()  # validates diverge_loss_ratio

    @property
    def in_chans(self) -> int:
        return 2 if self.with_prior else 1

    def to_dict(self) -> dict:
        return asdict(self)

    def guards(self) -> tuple[DivergenceGuard, DivergenceGuard]:
        """The divergence guards of the inpainter phases and of the coach phases."""
        limits = {} if self.diverge_past_ceiling is None else {"past_ceiling": self.diverge_past_ceiling}
        meaning = {"past_ceiling": f"share of output pixels whose squared error is past the loss's clipping "
                                   f"ceiling {self.ceiling:g}, where the loss gives no gradient"}
        return (DivergenceGuard(self.diverge_loss_ratio, limits, meaning),
                DivergenceGuard(self.diverge_loss_ratio))


#: The paper's ladder within an inpainter phase: fraction of the phase's optimiser steps -> multiplier
#: of the initial lr (x0.1 at 40 %, x0.01 at 80 %, x0.001 at 90 %;
#: :class:`~ssinfnet.training.schedules.FractionLadder`).
LR_LADDER = {0.4: 0.1, 0.8: 0.01, 0.9: 0.001}


def build_models(cfg: PretrainConfig) -> dict[str, torch.nn.Module]:
    """The inpainter (``head="inpaint"``) and the coach."""
    kwargs = dict(cfg.model_kwargs, in_chans=cfg.in_chans, head="inpaint")
    inpainter = build_model(cfg.network, **kwargs)
    coach = Coach(in_chans=cfg.in_chans, width=cfg.coach_width, keep=cfg.keep, variational=cfg.variational)
    return {"inpainter": inpainter, "coach": coach}


def make_losses(cfg: PretrainConfig):
    """The three loss callables of the schedule: inpaint with random masks, inpaint with the coach's
    masks, and the coach's adversarial loss."""

    def inpaint_random(models, batch, ctx):
        x = network_input(batch, cfg.with_prior)
        mask = random_masks(x.shape, cfg.keep, cfg.patch, generator=ctx.generator, device=x.device)
        return _inpaint(models["inpainter"], x, mask)

    def inpaint_coached(models, batch, ctx):
        x = network_input(batch, cfg.with_prior)
        with torch.no_grad():
            mask = models["coach"](x, alpha=cfg.alpha_apply)
        return _inpaint(models["inpainter"], x, mask)

    def _inpaint(inpainter, x, mask):
        out = inpainter(x * mask)
        loss = inpainting_loss(out, x, mask, cfg.ceiling, cfg.rec_weight)
        return loss, {"erased": 1.0 - mask.mean(), "past_ceiling": past_ceiling(out, x, cfg.ceiling)}

    def coach_step(models, batch, ctx):
        x = network_input(batch, cfg.with_prior)
        mask, kl = models["coach"](x, alpha=cfg.alpha_train, generator=ctx.generator, return_kl=True)
        loss = coach_loss(models["inpainter"](x * mask), x, mask, cfg.ceiling, kl=kl, kl_weight=cfg.kl_weight)
        return loss, {"erased": 1.0 - mask.mean(), "kl": kl}

    return inpaint_random, inpaint_coached, coach_step


def build_phases(cfg: PretrainConfig) -> list[Phase]:
    """Inpainter alone -> coach alone -> ``alternations`` x (inpainter with coach masks, coach)."""
    inpaint_random, inpaint_coached, coach_step = make_losses(cfg)
    common = {"max_steps_per_epoch": cfg.max_steps_per_epoch, "grad_clip": cfg.grad_clip}
    inp_guard, coach_guard = cfg.guards()
    inp_common = {"make_optimizer": sgd(cfg.inpainter_lr, momentum=0.9, weight_decay=5e-4),
                  "lr_fractions": LR_LADDER, "guard": inp_guard, **common}
    coach_common = {"make_optimizer": adam(cfg.coach_lr), "guard": coach_guard, **common}
    phases = [
        Phase("inpainter", cfg.inpainter_epochs, ["inpainter"], inpaint_random, frozen=["coach"], **inp_common),
        Phase("coach", cfg.coach_epochs, ["coach"], coach_step, frozen=["inpainter"], **coach_common),
    ]
    if cfg.alternations:
        inp = Phase("inpainter_adv", cfg.alternate_epochs, ["inpainter"], inpaint_coached, frozen=["coach"],
                    **inp_common)
        coach = Phase("coach_adv", cfg.alternate_epochs, ["coach"], coach_step, frozen=["inpainter"],
                      **coach_common)
        phases += alternate(inp, coach, cfg.alternations)
    return phases


def pretrain(cfg: PretrainConfig, loader, *, device: str, seed: int, run_dir: str | Path,
             progress: bool = True, on_phase_end=None) -> tuple[dict[str, torch.nn.Module], TrainResult]:
    """Run the whole schedule (or resume it); returns the trained models and the training result.

    ``on_phase_end(name, models)``, when given, is called before the first phase (name ``"init"``)
    and after every phase *that this call runs*, e.g. to record the coach's masks as training goes.
    The schedule is then run as growing prefixes of the phase list over the same run folder; each call
    resumes where the previous one stopped, so the result equals a single uninterrupted run. Phases
    already completed in ``run_dir`` are not re-run (the callback must keep what it recorded, as
    :class:`MaskRecorder` does on disk).

    A ``run_dir`` trained with another configuration, pool or code (:func:`pretraining_key`) raises
    :class:`ssinfnet.training.provenance.StaleRunError` before anything is trained.
    """
    key = pretraining_key(cfg, loader)
    torch.manual_seed(seed)  # model initialisation is part of the seeded run
    models = build_models(cfg)
    phases = build_phases(cfg)
    if on_phase_end is None:
        result = train(phases, models, loader, device=device, seed=seed, run_dir=run_dir, progress=progress,
                       provenance=key, compile=cfg.compile,
                       amp=cfg.amp, channels_last=cfg.channels_last)
        warn_if_saturated(models["inpainter"], loader, cfg)
        return models, result
    started = _phases_started(Path(run_dir))
    if started == 0:
        on_phase_end("init", models)
    # Prefixes shorter than the checkpointed one are complete; resuming starts at the last started phase.
    for k in range(max(1, started), len(phases) + 1):
        result = train(phases[:k], models, loader, device=device, seed=seed, run_dir=run_dir, progress=progress,
                       provenance=key, compile=cfg.compile,
                       amp=cfg.amp, channels_last=cfg.channels_last)
        on_phase_end(phases[k - 1].name, models)
    warn_if_saturated(models["inpainter"], loader, cfg)
    return models, result


class SaturatedInpainterWarning(RuntimeWarning):
    """The inpainter's outputs sit past the loss's clipping ceiling: the pretraining has failed."""


def saturated_share(inpainter: torch.nn.Module, x: torch.Tensor, ceiling: float = 1.0) -> float:
    """Share of output pixels whose squared error to ``x`` exceeds ``ceiling``, in [0, 1].

    ``x`` (B, C, H, W) is given unmasked, so a working inpainter reproduces it closely (a small
    share); a diverged one whose outputs were thrown past the ceiling has a share near 1 and gets
    no gradient from the clipped loss. Pooled over every output with ``x``'s shape; eval mode, no
    gradient, on the inpainter's device.
    """
    x = x.to(next(inpainter.parameters()).device)
    with eval_mode(inpainter), torch.no_grad():
        out = inpainter(x)
    preds = [v for v in (out.values() if isinstance(out, dict) else [out]) if v.shape == x.shape]
    if not preds:
        raise ValueError(f"no inpainter output has the input's shape {tuple(x.shape)}")
    over = sum(float(((p.float() - x) ** 2 > ceiling).sum()) for p in preds)
    return over / (len(preds) * x.numel())


def warn_if_saturated(inpainter: torch.nn.Module, loader, cfg: PretrainConfig, n: int = 8,
                      threshold: float = 0.5) -> float | None:
    """Warn (:class:`SaturatedInpainterWarning`) when more than ``threshold`` of the outputs on the
    first ``n`` slices of ``loader.dataset`` are past the clipping ceiling; returns that share
    (None when the loader has no indexable dataset). The random state is left as it was."""
    dataset = getattr(loader, "dataset", None)
    if dataset is None or not hasattr(dataset, "__getitem__"):
        return None
    with torch.random.fork_rng(devices=[]):
        batch = default_collate([dataset[i] for i in range(min(n, len(dataset)))])
    share = saturated_share(inpainter, network_input(batch, cfg.with_prior), cfg.ceiling)
    if share > threshold:
        warnings.warn(f"{share:.0%} of the inpainter's output pixels are past the loss's clipping ceiling "
                      f"({cfg.ceiling}): the pretraining diverged and its weights should not be used "
                      "(rerun with another seed, or a lower inpainter lr)", SaturatedInpainterWarning,
                      stacklevel=3)
    return share


def pretraining_key(cfg: PretrainConfig, loader) -> dict[str, str | None]:
    """The key of a pretraining run folder (:mod:`ssinfnet.training.provenance`): ``config`` (the settings
    that differ from :class:`PretrainConfig`'s defaults, so a field added later at its default
    keeps the key), ``data`` (:func:`ssinfnet.training.provenance.loader_fingerprint`: the pool's pixels and
    priors, output size, transform, batch size) and ``code``."""
    config = config_fingerprint(cfg.to_dict(), PretrainConfig().to_dict())
    return {"data": loader_fingerprint(loader), "config": config, "code": code_fingerprint()}


def _phases_started(run_dir: Path) -> int:
    """How many phases the last checkpoint in ``run_dir`` has started (0 without a checkpoint)."""
    from ..training.checkpoint import load_checkpoint

    last = run_dir / "checkpoints" / "last.pt"
    return len(load_checkpoint(last)["phase_names"]) if last.is_file() else 0


@torch.no_grad()
def coach_masks(coach: torch.nn.Module, x: torch.Tensor, alpha: float = 100.0) -> torch.Tensor:
    """The coach's (nearly binary) keep-masks for a batch, in eval mode: (B, 1, H, W) in [0, 1]."""
    with eval_mode(coach):
        return coach(x, alpha=alpha)


@torch.no_grad()
def inpaint_examples(inpainter: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Input, mask, masked input, reconstruction (the final output) and target, all (B, C, H, W)."""
    with eval_mode(inpainter):
        out = inpainter(x * mask)
    rec = out[getattr(inpainter, "prediction_key", "out")] if isinstance(out, dict) else out
    # Visible pixels are known: the reconstruction is pasted into the erased region only.
    return {"input": x, "mask": mask, "masked": x * mask, "reconstruction": rec,
            "composite": mask * x + (1 - mask) * rec, "target": x}


# ----------------------------------------------------------------------------- stage helpers for the book

def config_from_profile(profile, with_prior: bool = False, network: str | None = None) -> PretrainConfig:
    """The :class:`PretrainConfig` of a :class:`ssinfnet.book.profiles.Profile` (epochs, sizes, network)."""
    net = network or ("infnet_multi" if with_prior else "infnet")
    return PretrainConfig(network=net, model_kwargs=profile.infnet_kwargs(), with_prior=with_prior,
                          keep=profile.keep_fraction, patch=max(4, profile.image_size // 16),
                          inpainter_epochs=profile.pretrain_inpainter_epochs,
                          coach_epochs=profile.pretrain_coach_epochs,
                          alternations=profile.pretrain_alternations,
                          alternate_epochs=profile.pretrain_alternate_epochs,
                          max_steps_per_epoch=profile.max_steps_per_epoch, image_size=profile.image_size,
                          batch_size=profile.batch_size, num_workers=profile.num_workers,
                          **({} if profile.pretrain_lr is None else {"inpainter_lr": profile.pretrain_lr}))


def pool_loader(samples, cfg: PretrainConfig, *, seed: int = 0, priors=None, pin_memory: bool = False,
                device: str | None = None):
    """The shuffled, augmented loader of the pretraining pool: ``cfg.image_size`` px crops, flips and
    ``cfg.rotation`` degrees of rotation, ``cfg.batch_size`` per batch; ``priors`` (one map per sample)
    add the prior channel of the multi network. Batches are dicts of (B, 1, H, W) tensors.

    With ``cfg.device_data`` on (``"auto"``: when ``device``, default CUDA if available, is CUDA) the
    pool is held on the training device and augmented there (:class:`~ssinfnet.data.held.DeviceLoader`);
    otherwise a DataLoader over a SliceDataset (:func:`~ssinfnet.training.loader.make_loader`)."""
    from ..data.dataset import SliceDataset
    from ..data.held import DeviceLoader
    from ..data.transforms import train_transform
    from ..training.device import default_device_data
    from ..training.loader import make_loader
    from ..training.steps import CUDA_GRAPH_MODES

    dataset = SliceDataset(samples, cfg.image_size, train_transform(cfg.image_size, rotation=cfg.rotation),
                           priors=priors)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if default_device_data(device) if cfg.device_data == "auto" else cfg.device_data:
        return DeviceLoader(dataset, cfg.batch_size, seed, static_shapes=cfg.compile in CUDA_GRAPH_MODES)
    return make_loader(dataset, cfg.batch_size, shuffle=True, seed=seed, num_workers=cfg.num_workers,
                       pin_memory=pin_memory)


def strip_labels(samples):
    """Copies of samples without any label (the pretraining stage must never see one)."""
    from dataclasses import replace

    return [replace(s, infection=None, classes=None, edge=None, prior=None, pseudo_label=None) for s in samples]


class MaskRecorder:
    """``on_phase_end`` callback of :func:`pretrain`: the coach's masks (alpha = ``alpha``) on a fixed
    batch ``x`` (B, C, H, W) after each phase, kept in ``masks`` (phase name -> (B, 1, H, W) tensor).

    With ``path``, the masks are saved there after every phase and loaded back when the recorder is
    created, so a resumed or re-run pretraining still shows the masks of the phases it skipped.
    """

    def __init__(self, x: torch.Tensor, alpha: float = 100.0, path: str | Path | None = None):
        self.x, self.alpha = x, alpha
        self.path = None if path is None else Path(path)
        self.masks: dict[str, torch.Tensor] = {}
        if self.path is not None and self.path.is_file():
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            if saved["x"].shape == x.shape and torch.equal(saved["x"], x):
                self.masks = dict(saved["masks"])

    def __call__(self, name: str, models) -> None:
        coach = models["coach"]
        device = next(coach.parameters()).device
        self.masks[name] = coach_masks(coach, self.x.to(device), self.alpha).cpu()
        if self.path is not None:
            on_main(self._save)  # under torchrun process 0 writes, the others wait

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({"x": self.x.cpu(), "masks": self.masks}, tmp)
        tmp.replace(self.path)


@torch.no_grad()
def erased_fraction(coach: torch.nn.Module, x: torch.Tensor, keeps, alpha: float = 100.0):
    """Mean and s.d. over images of the erased fraction (1 - mean mask) for each keep fraction.

    Returns a DataFrame with columns keep, target (1 - keep), erased_mean, erased_sd.
    """
    import pandas as pd

    rows = []
    with eval_mode(coach):
        for k in keeps:
            m = coach(x, alpha=alpha, keep=float(k))
            erased = 1.0 - m.mean(dim=(1, 2, 3))
            rows.append({"keep": float(k), "target": 1.0 - float(k), "erased_mean": float(erased.mean()),
                         "erased_sd": float(erased.std()) if len(erased) > 1 else 0.0})
    return pd.DataFrame(rows)


def save_pretrained(models, cfg: PretrainConfig, folder: str | Path, image_size: int) -> dict[str, Path]:
    """Export the inpainter and the coach (:func:`ssinfnet.training.export.export_model`) into ``folder``.

    The files record their task (``"inpainting"``, ``"coach"``), so ``predict`` refuses them as
    segmentation models. Under torchrun process 0 writes them (the others wait).
    """
    from ..training.export import export_model

    folder = Path(folder)
    kwargs = dict(cfg.model_kwargs, in_chans=cfg.in_chans, head="inpaint")
    from ..training.provenance import read_record

    trained = {"provenance": read_record(folder)}  # the commit, code and data that trained them (or None)
    inp, coach = folder / "inpainter.pt", folder / "coach.pt"
    on_main(export_model, inp, models["inpainter"], cfg.network, kwargs, image_size,
            extra={"pretrain_config": cfg.to_dict(), **trained}, task="inpainting")
    on_main(export_model, coach, models["coach"], "coach",
            {"in_chans": cfg.in_chans, "width": cfg.coach_width, "keep": cfg.keep,
             "variational": cfg.variational}, image_size, extra=trained, task="coach")
    return {"inpainter": inp, "coach": coach}


def pretraining_pool(data_root, profile, seed: int = 0, limit: int | None = -1):
    """The unlabelled pool plus the labelled training images *without their labels*, as the paper
    pretrains: (samples, counts dict). ``profile.unlabelled_limit`` keeps that many evenly spaced
    slices of the pool (every volume stays represented); None keeps all. ``limit`` overrides the
    profile's cap when given (-1: use the profile's)."""
    import numpy as np

    from ..data.catalog import load_samples

    n = profile.synthetic_counts
    pool = load_samples(data_root, "unlabelled", synthetic_n=n["unlabelled"], synthetic_size=profile.synthetic_size,
                        seed=seed)
    limit = profile.unlabelled_limit if limit == -1 else limit
    if limit is not None and limit < len(pool):
        pool = [pool[i] for i in np.linspace(0, len(pool) - 1, limit).round().astype(int)]
    train = load_samples(data_root, "train", synthetic_n=n["train"], synthetic_size=profile.synthetic_size, seed=seed)
    samples = strip_labels(pool + train)
    return samples, {"unlabelled pool": len(pool), "labelled training images (labels removed)": len(train),
                     "total": len(samples)}
