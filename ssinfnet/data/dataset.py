"""Torch datasets over :class:`~ssinfnet.data.sample.Sample` lists.

Decoded images stay in memory as uint8 (the samples hold them), so an epoch does no file I/O.
Each item is a dict of tensors at ``size`` x ``size`` pixels:

==============  ======================  ===============================================
key             shape, dtype            values
==============  ======================  ===============================================
image           (1, S, S) float32       normalised grey, [-1, 1]
infection       (1, S, S) float32       0 / 1 (absent for unlabelled samples)
edge            (1, S, S) float32       0 / 1, boundary of the transformed infection mask
classes         (S, S) int64            0 / 1 / 2
prior           (1, S, S) float32       normalised like the image, [-1, 1]
index           int64                   position of the sample in the list
==============  ======================  ===============================================
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from .sample import Sample
from .transforms import eval_transform, normalize


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
        Output side in pixels (used for the default deterministic resize).
    transform : callable or None
        A torchvision v2 transform taking and returning a dict of tv_tensors; default resize only.
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
        h, w = s.image.shape
        item = {"image": tv_tensors.Image(torch.from_numpy(s.image)[None])}
        if s.infection is not None:
            item["infection"] = tv_tensors.Mask(torch.from_numpy(s.infection.astype(np.uint8))[None])
        if s.classes is not None:
            item["classes"] = tv_tensors.Mask(torch.from_numpy(s.classes)[None])
        prior = self.priors[i] if self.priors is not None else s.prior
        if prior is not None:
            p = np.asarray(prior, dtype=np.float32)
            if p.shape != (h, w):
                raise ValueError(f"{s.slice_id}: prior shape {p.shape} differs from image {(h, w)}")
            # The prior is an image-like channel: it gets the image's geometry and interpolation.
            item["prior"] = tv_tensors.Image(torch.from_numpy(np.round(p * 255).astype(np.uint8))[None])
        item = self.transform(item)
        out = {"image": normalize(item["image"].float() / 255.0), "index": torch.tensor(i)}
        if "infection" in item:
            out["infection"] = item["infection"].float()
            out["edge"] = mask_edge(out["infection"])
        if "classes" in item:
            out["classes"] = item["classes"][0].long()
        if "prior" in item:
            out["prior"] = normalize(item["prior"].float() / 255.0)
        return out
