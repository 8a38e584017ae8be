"""Joint image / mask / edge / prior transforms (torchvision.transforms.v2 with tv_tensors).

Geometric transforms move the image and every label together; intensity transforms (cutout) touch
the image only. They receive the image and the prior as float Images in [0, 1] and masks as uint8
Masks (:func:`ssinfnet.data.inputs.slice_input`, the one input path, builds those and normalises
after the transform). One normalisation serves every stage (pretraining and fine-tuning alike):
grey values g in 0..255 become ``(g / 255 - 0.5) / 0.5`` in [-1, 1]; the prior, a probability,
goes through the same map so that image and prior are scaled alike.
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

MEAN, STD = 0.5, 0.5


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Map values in [0, 1] to [-1, 1] (the one normalisation of the project)."""
    return (x - MEAN) / STD


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`."""
    return x * STD + MEAN


class GreyCutout(v2.Transform):
    """The paper's augmentation: erase one random square of the image to mid grey.

    The square's side is ``fraction`` x the shorter image side (the paper's cutout 0.4 / 0.5); it is
    applied with probability ``p``. Only the first :class:`tv_tensors.Image` of the inputs (the CT
    image; pass it first, as :class:`~ssinfnet.data.dataset.SliceDataset` does) changes: masks, edges
    and the prior (also an Image, for its interpolation) keep their values (the lesion is still
    there, only hidden).
    """

    def __init__(self, fraction: float, p: float = 0.5, value: float = 0.5):
        super().__init__()
        if not 0 <= fraction <= 1:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        self.fraction, self.p, self.value = fraction, p, value

    def make_params(self, flat_inputs):
        image = next(i for i in flat_inputs if isinstance(i, tv_tensors.Image))
        h, w = v2.functional.get_size(image)
        side = int(round(self.fraction * min(h, w)))
        apply = bool(torch.rand(()) < self.p) and side > 0
        top = int(torch.randint(0, max(1, h - side + 1), ()))
        left = int(torch.randint(0, max(1, w - side + 1), ()))
        return {"apply": apply, "box": (top, left, side), "target": image}

    def transform(self, inpt, params):
        if not params["apply"] or inpt is not params["target"]:
            return inpt
        top, left, side = params["box"]
        out = inpt.clone()
        fill = self.value * (255 if out.dtype == torch.uint8 else 1)
        out[..., top:top + side, left:left + side] = fill
        return tv_tensors.wrap(out, like=inpt)


def train_transform(size: int, cutout: float = 0.0, rotation: float = 15.0, scale=(0.8, 1.0),
                    hflip: float = 0.5, vflip: float = 0.0) -> v2.Compose:
    """Augmentation for training: random resized crop to ``size`` px, flips, rotation (degrees),
    optional grey cutout (fraction of the side). Inputs are tv_tensors (Image, Mask)."""
    steps = [v2.RandomResizedCrop(size, scale=scale, ratio=(0.85, 1.15), antialias=True),
             v2.RandomHorizontalFlip(hflip)]
    if vflip:
        steps.append(v2.RandomVerticalFlip(vflip))
    if rotation:
        steps.append(v2.RandomRotation(rotation))
    if cutout:
        steps.append(GreyCutout(cutout))
    return v2.Compose(steps)


def eval_transform(size: int) -> v2.Compose:
    """Deterministic resize to ``size`` x ``size`` px: bilinear with antialiasing for images (and the
    prior), nearest neighbour for masks. The resize of :func:`ssinfnet.data.inputs.slice_input`."""
    return v2.Compose([v2.Resize((size, size), antialias=True)])
