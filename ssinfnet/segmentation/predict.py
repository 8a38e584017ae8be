"""Class probabilities of a trained segmenter on slices or samples (batched, device-aware)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ..data.inputs import batch_input
from ..data.sample import Sample
from ..models.modes import eval_mode
from ..training.device import default_amp, default_channels_last
from ..training.export import LoadedModel


# ------------------------------------------------------------------------------------------ predict

def predict_samples(model: torch.nn.Module | LoadedModel, samples: Sequence[Sample], size: int | None = None,
                    device: str | torch.device = "cpu", priors: Sequence[np.ndarray] | None = None,
                    batch_size: int = 8, flip: bool = False) -> list[np.ndarray]:
    """Probability maps of ``samples`` at each sample's own size.

    Thin wrapper of :func:`ssinfnet.segmentation.predict.predict_probabilities` (eval mode, restored afterwards).

    Parameters
    ----------
    model : nn.Module or LoadedModel
        A trained network, or an exported model from :func:`ssinfnet.training.export.load_exported`.
    samples : sequence of Sample
    size : int, optional
        Network input side (pixels); default the loaded model's ``image_size`` (required for modules).
    device : str or torch.device
    priors : sequence of float arrays (H, W) in [0, 1], optional
        Stage-1 maps, required by two-channel (multi) models.
    batch_size : int
    flip : bool
        Average each slice's logits with its left-right mirror's (see :func:`predict_probabilities`).

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
        return predict_probabilities(model, [s.image for s in samples], size, device, batch_size, priors, flip=flip)


# ----------------------------------------------------------------------------- inference

def _output_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if isinstance(out, dict):
        out = out[getattr(model, "prediction_key", "out")]
    return out


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, images: Sequence[np.ndarray], size: int,
                          device: str | torch.device = "cpu", batch_size: int = 8,
                          priors: Sequence[np.ndarray] | None = None, flip: bool = False) -> list[np.ndarray]:
    """Probability maps for uint8 (H, W) images of any size.

    Each image (and its prior, as a second channel, when ``priors`` is given) becomes the network's
    input through :func:`ssinfnet.data.inputs.batch_input`, the path training uses without
    augmentation (resize to ``size`` x ``size``, bilinear antialiased on float values, the one
    normalisation); the output is resized back to the image's own size. Returns float32 arrays:
    (H, W) lesion probability for one output channel (sigmoid), (C, H, W) class probabilities
    otherwise (softmax). ValueError, naming the image's position, for a non-uint8 image or a prior
    of another shape or outside [0, 1].
    ``flip=True`` averages the network's logits for each input and for its left-right mirror (mirrored
    back) before the sigmoid / softmax: test-time augmentation with the flip training uses. It doubles
    the cost; the paper's protocol does not use it, and no chapter does (``benchmarks/finetune_cap.py
    --flip`` measures what it changes).
    Inputs are channels_last on CUDA only (the training loop's default) and run under bf16
    autocast on CUDA.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if priors is not None and len(priors) != len(images):
        raise ValueError(f"priors has {len(priors)} maps for {len(images)} images")
    if not isinstance(flip, bool):
        raise ValueError(f"flip must be True or False, got {flip!r}")
    device = torch.device(device)
    amp, channels_last = default_amp(device), default_channels_last(device)
    results: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        x = batch_input(chunk, size, None if priors is None else priors[start:start + batch_size], first=start)
        x = x.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = _output_logits(model, x).float()
            if flip:
                mirrored = _output_logits(model, torch.flip(x, dims=[-1])).float()
                logits = (logits + torch.flip(mirrored, dims=[-1])) / 2
        probs = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, 1)
        for j, img in enumerate(chunk):
            p = F.interpolate(probs[j:j + 1], size=img.shape, mode="bilinear", align_corners=False)[0]
            results.append((p[0] if p.shape[0] == 1 else p).cpu().numpy().astype(np.float32))
    return results
