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


class ImageShift(v2.Transform):
    """Base of the shift augmentations: with probability ``p``, change the CT image only.

    Like :class:`GreyCutout`, only the first :class:`tv_tensors.Image` of the inputs (the CT image,
    float in [0, 1]) changes; the prior and the masks keep their values. Subclasses draw their
    parameters in :meth:`draw` (torch's generator, so a seeded DataLoader repeats them) and change the
    (1, H, W) image in :meth:`shift`; the result is clamped to [0, 1].
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = p

    def draw(self, image: torch.Tensor) -> dict:
        return {}

    def shift(self, image: torch.Tensor, params: dict) -> torch.Tensor:
        raise NotImplementedError

    def make_params(self, flat_inputs):
        image = next(i for i in flat_inputs if isinstance(i, tv_tensors.Image))
        apply = bool(torch.rand(()) < self.p)
        return {"apply": apply, "target": image, **(self.draw(image) if apply else {})}

    def transform(self, inpt, params):
        if not params["apply"] or inpt is not params["target"]:
            return inpt
        out = self.shift(inpt.as_subclass(torch.Tensor).float(), params).clamp_(0.0, 1.0)
        return tv_tensors.wrap(out.to(inpt.dtype), like=inpt)


def _uniform(lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * torch.rand(()))


class RandomWindow(ImageShift):
    """Another window: grey x in [0, 1] becomes ``(x - 0.5 + d) / w + 0.5``, the width factor ``w``
    log-uniform in [1 / (1 + jitter), 1 + jitter] (w > 1 is a wider window, less contrast), the level
    shift ``d`` uniform in [-jitter / 4, jitter / 4]."""

    def __init__(self, jitter: float, p: float = 0.5):
        super().__init__(p)
        if not jitter >= 0:
            raise ValueError(f"jitter must be >= 0, got {jitter}")
        self.jitter = jitter

    def draw(self, image):
        lw = float(torch.log(torch.tensor(1.0 + self.jitter)))
        return {"w": float(torch.exp(torch.tensor(_uniform(-lw, lw)))), "d": _uniform(-self.jitter / 4, self.jitter / 4)}

    def shift(self, image, params):
        return (image - 0.5 + params["d"]) / params["w"] + 0.5


class RandomGamma(ImageShift):
    """Another gamma: x becomes ``x ** g``, ``g`` log-uniform in ``gamma_range``."""

    def __init__(self, gamma_range: tuple[float, float], p: float = 0.5):
        super().__init__(p)
        lo, hi = gamma_range
        if not 0 < lo <= hi:
            raise ValueError(f"gamma_range must satisfy 0 < low <= high, got {gamma_range}")
        self.range = (float(lo), float(hi))

    def draw(self, image):
        lo, hi = torch.log(torch.tensor(self.range))
        return {"g": float(torch.exp(lo + (hi - lo) * torch.rand(())))}

    def shift(self, image, params):
        return image.clamp(0.0, 1.0) ** params["g"]


class RandomResolution(ImageShift):
    """A coarser scan: the image is scaled down so its longer side is a side drawn uniformly in
    ``sides`` (pixels; no change when that is not smaller) and back up (bilinear, antialiased)."""

    def __init__(self, sides: tuple[int, int], p: float = 0.5):
        super().__init__(p)
        lo, hi = sides
        if not 8 <= lo <= hi:
            raise ValueError(f"sides must satisfy 8 <= low <= high, got {sides}")
        self.sides = (int(lo), int(hi))

    def draw(self, image):
        return {"side": int(torch.randint(self.sides[0], self.sides[1] + 1, ()))}

    def shift(self, image, params):
        h, w = image.shape[-2:]
        f = params["side"] / max(h, w)
        if f >= 1:
            return image
        small = v2.functional.resize(image, [max(1, round(h * f)), max(1, round(w * f))], antialias=True)
        return v2.functional.resize(small, [h, w], antialias=True)


class RandomNoise(ImageShift):
    """Noise: Gaussian with an SD drawn uniformly in [0, ``std``] (grey fraction, 0.02 ~ 5 grey levels)."""

    def __init__(self, std: float, p: float = 0.5):
        super().__init__(p)
        if not std >= 0:
            raise ValueError(f"std must be >= 0, got {std}")
        self.std = std

    def draw(self, image):
        return {"sd": _uniform(0.0, self.std)}

    def shift(self, image, params):
        return image + params["sd"] * torch.randn(image.shape)


class RandomJPEG(ImageShift):
    """JPEG compression at a quality drawn uniformly in ``quality`` (1..100), as an export to JPEG does."""

    def __init__(self, quality: tuple[int, int], p: float = 0.5):
        super().__init__(p)
        lo, hi = quality
        if not 1 <= lo <= hi <= 100:
            raise ValueError(f"quality must satisfy 1 <= low <= high <= 100, got {quality}")
        self.quality = (int(lo), int(hi))

    def draw(self, image):
        return {"q": int(torch.randint(self.quality[0], self.quality[1] + 1, ()))}

    def shift(self, image, params):
        import io

        import numpy as np
        from PIL import Image

        buf = io.BytesIO()
        grey = (image.clamp(0, 1) * 255).round().to(torch.uint8)[0].numpy()
        Image.fromarray(grey).save(buf, format="JPEG", quality=params["q"])
        buf.seek(0)
        return torch.from_numpy(np.asarray(Image.open(buf).convert("L"), dtype=np.float32) / 255.0)[None]


def train_transform(size: int, cutout: float = 0.0, rotation: float = 15.0, scale=(0.8, 1.0),
                    hflip: float = 0.5, vflip: float = 0.0, *, zoom_out: float = 1.0, window_jitter: float = 0.0,
                    gamma_range=(1.0, 1.0), resolution=None, noise_std: float = 0.0, jpeg_quality=None,
                    shift_p: float = 0.5) -> v2.Compose:
    """Augmentation for training: random resized crop to ``size`` px, flips, rotation (degrees),
    optional grey cutout (fraction of the side). Inputs are tv_tensors (Image, Mask).

    The shift augmentations (the shifts users' slices bring; each off at its default, each applied
    with probability ``shift_p``) come first, in this order: ``zoom_out`` > 1 pads image, prior and
    masks with air (0) to up to ``zoom_out`` times the side (a wider field of view), then
    :class:`RandomWindow` (``window_jitter``), :class:`RandomGamma` (``gamma_range``),
    :class:`RandomResolution` (``resolution``, (low, high) px), :class:`RandomNoise` (``noise_std``)
    and :class:`RandomJPEG` (``jpeg_quality``, (low, high)). With all of them off the transform and its
    random draws are those of the crop, flip, rotation and cutout alone.
    """
    steps = []
    if zoom_out > 1:
        steps.append(v2.RandomZoomOut(fill=0, side_range=(1.0, float(zoom_out)), p=shift_p))
    if window_jitter:
        steps.append(RandomWindow(window_jitter, shift_p))
    if tuple(gamma_range) != (1.0, 1.0):
        steps.append(RandomGamma(tuple(gamma_range), shift_p))
    if resolution:
        steps.append(RandomResolution(tuple(resolution), shift_p))
    if noise_std:
        steps.append(RandomNoise(noise_std, shift_p))
    if jpeg_quality:
        steps.append(RandomJPEG(tuple(jpeg_quality), shift_p))
    steps += [v2.RandomResizedCrop(size, scale=scale, ratio=(0.85, 1.15), antialias=True),
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
