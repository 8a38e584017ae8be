"""Torch datasets over :class:`~ssinfnet.data.sample.Sample` lists.

Decoded images stay in memory as uint8 (the samples hold them), so an epoch does no file I/O.
Each item is built by :func:`ssinfnet.data.inputs.slice_input`, the one input path that inference
shares (float values, the transform, then the one normalisation; the prior stays float), and is a
dict of tensors at ``size`` x ``size`` pixels:

==============  ======================  ===============================================
key             shape, dtype            values
==============  ======================  ===============================================
image           (1, S, S) float32       normalised grey, [-1, 1]
infection       (1, S, S) float32       0 / 1 (absent for unlabelled samples)
edge            (1, S, S) float32       0 / 1, boundary of the transformed infection mask
classes         (S, S) int64            0 / 1 / 2
prior           (1, S, S) float32       probability normalised like the image, [-1, 1]
index           int64                   position of the sample in the list
==============  ======================  ===============================================
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .inputs import slice_input
from .sample import Sample
from .transforms import eval_transform


def mask_edge(mask: torch.Tensor) -> torch.Tensor:
    """Boundary of a 0/1 mask (..., H, W): dilation minus erosion with a 3 x 3 square, 2 px wide.

    Edges are drawn after the geometric transform, from the transformed mask: resampling a thin edge
    map with nearest-neighbour interpolation (as masks must be) breaks it into dots.
    """
    m = mask.float().reshape(-1, 1, *mask.shape[-2:])
    dil = torch.nn.functional.max_pool2d(m, 3, stride=1, padding=1)
    ero = -torch.nn.functional.max_pool2d(-m, 3, stride=1, padding=1)
    return (dil - ero).reshape(mask.shape)


class SliceDataset(Dataset):
    """Samples as tensors, with a joint transform applied to image and labels together.

    Parameters
    ----------
    samples : sequence of Sample
    size : int
        Output side in pixels; the transform must produce it.
    transform : callable or None
        A torchvision v2 transform taking and returning a dict of tv_tensors (image and prior as
        float Images in [0, 1], masks as uint8 Masks); default the deterministic resize
        :func:`~ssinfnet.data.transforms.eval_transform`.
    require : tuple of str
        Labels every sample must have (e.g. ``("infection",)``); checked up front, naming the first
        sample that lacks one.
    priors : sequence of float arrays (H, W) in [0, 1], or None
        Priors replacing ``sample.prior`` (e.g. stage-1 predictions at test time).
    """

    def __init__(self, samples: Sequence[Sample], size: int, transform: Callable | None = None,
                 require: tuple[str, ...] = (), priors: Sequence[np.ndarray] | None = None):
        if len(samples) == 0:
            raise ValueError("samples must be non-empty")
        for key in require:
            missing = [s.slice_id for s in samples if getattr(s, key) is None]
            if missing:
                raise ValueError(f"{len(missing)} samples have no {key} (first: {missing[0]})")
        if priors is not None and len(priors) != len(samples):
            raise ValueError(f"priors has {len(priors)} maps for {len(samples)} samples")
        self.samples = list(samples)
        self.size = size
        self.transform = transform or eval_transform(size)
        self.priors = priors

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        labels = {key: getattr(s, key) for key in ("infection", "classes") if getattr(s, key) is not None}
        prior = self.priors[i] if self.priors is not None else s.prior
        item = slice_input(s.image, self.size, prior, labels, self.transform, name=s.slice_id)
        out = {"image": item["image"], "index": torch.tensor(i)}
        if "infection" in item:
            out["infection"] = item["infection"].float()
            out["edge"] = mask_edge(out["infection"])
        if "classes" in item:
            out["classes"] = item["classes"][0].long()
        if "prior" in item:
            out["prior"] = item["prior"]
        return out
