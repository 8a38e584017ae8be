"""Fine-tuning with device-held data: the training loader and a validation that stays on the device.

:func:`training_loader` gives :func:`ssinfnet.segmentation.fit.fit` its loader: device-held slices
augmented on the device (:class:`~ssinfnet.data.held.DeviceLoader`) when ``SegConfig.device_data``
resolves to on (:func:`~ssinfnet.training.device.default_device_data`), else the per-slice DataLoader.

:class:`HeldValidation` scores the validation split as :func:`~ssinfnet.segmentation.fit.validation_scores`
does on :func:`~ssinfnet.segmentation.predict.predict_probabilities`' maps (paper protocol: each map
resized back to its slice's own size, threshold 0.5, Dice per image, images with an empty ground truth
of a class left out), without the per-slice trip to the host: the network inputs (built once by
:func:`~ssinfnet.data.inputs.batch_input`, the one input path) and the ground truths are held on the
device, the confusion counts of every image and class are computed there, and one read-back per
validation brings them to the host. The Dice values are those of the host path (the same inputs,
batches, resizing and threshold; the test checks equality on the CPU); no AUC is computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ..data.classes import CONSOLIDATION, GGO
from ..data.dataset import SliceDataset
from ..data.held import DeviceLoader
from ..data.inputs import batch_input
from ..data.sample import Sample
from ..training.device import default_amp, default_channels_last, default_device_data
from ..training.loader import make_loader
from ..training.steps import CUDA_GRAPH_MODES
from .variants import SegConfig


def use_device_data(cfg: SegConfig, device: str | torch.device) -> bool:
    """Whether ``cfg`` trains on device-held data on ``device``."""
    return default_device_data(device) if cfg.device_data == "auto" else bool(cfg.device_data)


def training_loader(cfg: SegConfig, dataset: SliceDataset, device: torch.device, seed: int):
    """The fine-tuning loader of ``cfg`` over ``dataset``: a :class:`~ssinfnet.data.held.DeviceLoader`
    (batches complete when the compile mode captures CUDA graphs) or a seeded DataLoader."""
    if use_device_data(cfg, device):
        return DeviceLoader(dataset, cfg.batch_size, seed, static_shapes=cfg.compile in CUDA_GRAPH_MODES)
    return make_loader(dataset, cfg.batch_size, shuffle=True, seed=seed, num_workers=cfg.num_workers,
                       pin_memory=device.type == "cuda")


class HeldValidation:
    """The validation split held on the device, scored in place (module docstring).

    Parameters
    ----------
    task : {"single", "multi"}
    samples : the validation slices (``infection`` for single, ``classes`` for multi)
    size : network input side (pixels)
    priors : float (H, W) maps in [0, 1] aligned with ``samples`` (multi), or None

    Calling it with ``(model, device, batch_size)`` returns ``{"dice": ...}`` (multi: also
    ``dice_ggo`` and ``dice_consolidation``), as :func:`~ssinfnet.segmentation.fit.validation_scores`.
    """

    def __init__(self, task: str, samples: Sequence[Sample], size: int, priors=None):
        key = "infection" if task == "single" else "classes"
        missing = [s.slice_id for s in samples if getattr(s, key) is None]
        if missing:
            raise ValueError(f"{len(missing)} samples have no {key} mask (first: {missing[0]})")
        self.task = task
        self.x = batch_input([s.image for s in samples], size, priors)
        self.truth = [torch.from_numpy(np.asarray(getattr(s, key)).astype(np.int64)) for s in samples]
        self.device = torch.device("cpu")

    def place(self, device: torch.device) -> None:
        if device != self.device:
            self.x = self.x.to(device)
            self.truth = [t.to(device) for t in self.truth]
            self.device = device

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, device: str | torch.device, batch_size: int) -> dict[str, float]:
        device = torch.device(device)
        self.place(device)
        amp, channels_last = default_amp(device), default_channels_last(device)
        counts = []
        for start in range(0, len(self.truth), batch_size):
            x = self.x[start:start + batch_size]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(x)
                logits = (out[getattr(model, "prediction_key", "out")] if isinstance(out, dict) else out).float()
            probs = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, 1)
            for j in range(probs.shape[0]):
                truth = self.truth[start + j]
                p = F.interpolate(probs[j:j + 1], size=tuple(truth.shape), mode="bilinear", align_corners=False)[0]
                pred = p >= 0.5
                gt = truth[None] != 0 if pred.shape[0] == 1 else truth[None] == torch.arange(
                    pred.shape[0], device=device).view(-1, 1, 1)
                counts.append(torch.stack([(pred & gt).sum((1, 2)), (pred & ~gt).sum((1, 2)),
                                           (~pred & gt).sum((1, 2))], 1))
        tp, fp, fn = np.moveaxis(torch.stack(counts).cpu().numpy().astype(np.float64), 2, 0)  # the one read-back
        with np.errstate(invalid="ignore", divide="ignore"):
            dice = np.where(tp + fn == 0, np.nan, 2 * tp / (2 * tp + fp + fn))  # (images, classes)
        if self.task == "single":
            return {"dice": _mean(dice[:, 0])}
        ggo, cons = _mean(dice[:, GGO]), _mean(dice[:, CONSOLIDATION])
        finite = [v for v in (ggo, cons) if math.isfinite(v)]
        return {"dice": float(np.mean(finite)) if finite else float("nan"), "dice_ggo": ggo, "dice_consolidation": cons}


def _mean(v: np.ndarray) -> float:
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")
