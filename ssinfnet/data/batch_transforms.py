"""The training augmentation on a whole batch of device tensors (device-held data).

:func:`~ssinfnet.data.transforms.train_transform` augments one slice at a time on the CPU, inside
DataLoader workers. :class:`BatchAugment` applies the same families to a batch already on the device,
each sample with its own random draws, in a few batched tensor operations and without reading anything
back to the host: the shift augmentations (window, gamma, noise; resolution and JPEG per selected
sample), then ONE ``grid_sample`` for the whole geometry (zoom-out, random resized crop, flips,
rotation; bilinear for image and prior, nearest for masks, air (0) outside the slice), then the grey
cutout. :meth:`BatchAugment.from_transform` reads the settings from a ``train_transform`` (one source
of truth); a transform it does not know is refused.

Differences from the per-slice path, all within the same families: the input is the slice already
resized to the training side (device-held data, :mod:`ssinfnet.data.held`), so a crop is resampled
from that rather than from the original resolution, without antialiasing (a crop of the default scale
0.8 to 1.0 is an enlargement); crops are continuous rather than whole pixels; rotation is bilinear
(torchvision's default is nearest); the shifts act on the slice before the zoom-out, so the air around a
zoomed-out slice stays 0 (the per-slice path windows it too) and the resolution shift is relative to the
slice. All draws come from the ``generator`` given (a device generator) and, for the per-sample sizes
of the resolution and JPEG shifts, from ``host_generator`` (a CPU generator, so no sync is needed).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from torchvision.transforms import v2

from .transforms import (GreyCutout, RandomGamma, RandomJPEG, RandomNoise, RandomResolution, RandomWindow)


@dataclass(frozen=True)
class BatchAugment:
    """Settings of the batched augmentation; the names and meanings of
    :func:`~ssinfnet.data.transforms.train_transform`, plus each shift's probability.

    ``shifts`` is a tuple of ``(kind, setting, p)`` in application order, kind one of ``window``
    (jitter), ``gamma`` ((low, high)), ``resolution`` ((low, high) px), ``noise`` (SD) and ``jpeg``
    ((low, high) quality).
    """

    size: int
    scale: tuple = (0.8, 1.0)
    ratio: tuple = (0.85, 1.15)
    hflip: float = 0.5
    vflip: float = 0.0
    rotation: float = 0.0
    cutout: float = 0.0
    cutout_p: float = 0.5
    cutout_value: float = 0.5
    zoom_out: float = 1.0
    zoom_p: float = 0.5
    shifts: tuple = ()

    @classmethod
    def from_transform(cls, transform, size: int) -> "BatchAugment":
        """The batched twin of a ``train_transform(size, ...)`` (a ``v2.Compose``); ValueError naming a
        step it has no batched form for. ``eval_transform`` (a resize alone) gives None: no augmentation."""
        steps = list(getattr(transform, "transforms", [transform]))
        if len(steps) == 1 and isinstance(steps[0], v2.Resize):
            return None
        kw: dict = {"size": size, "hflip": 0.0, "shifts": []}
        for t in steps:
            if isinstance(t, v2.RandomZoomOut):
                kw.update(zoom_out=float(t.side_range[1]), zoom_p=float(t.p))
            elif isinstance(t, RandomWindow):
                kw["shifts"].append(("window", float(t.jitter), t.p))
            elif isinstance(t, RandomGamma):
                kw["shifts"].append(("gamma", tuple(t.range), t.p))
            elif isinstance(t, RandomResolution):
                kw["shifts"].append(("resolution", tuple(t.sides), t.p))
            elif isinstance(t, RandomNoise):
                kw["shifts"].append(("noise", float(t.std), t.p))
            elif isinstance(t, RandomJPEG):
                kw["shifts"].append(("jpeg", tuple(t.quality), t.p))
            elif isinstance(t, v2.RandomResizedCrop):
                if tuple(t.size) != (size, size):
                    raise ValueError(f"the transform crops to {tuple(t.size)} px, the held slices are {size} px")
                kw.update(scale=tuple(t.scale), ratio=tuple(t.ratio))
            elif isinstance(t, v2.RandomHorizontalFlip):
                kw["hflip"] = float(t.p)
            elif isinstance(t, v2.RandomVerticalFlip):
                kw["vflip"] = float(t.p)
            elif isinstance(t, v2.RandomRotation):
                kw["rotation"] = float(max(abs(d) for d in t.degrees))
            elif isinstance(t, GreyCutout):
                kw.update(cutout=float(t.fraction), cutout_p=float(t.p), cutout_value=float(t.value))
            else:
                raise ValueError(f"no batched form of the augmentation step {type(t).__name__}; "
                                 f"use the per-slice loader (device_data=False)")
        kw["shifts"] = tuple(kw["shifts"])
        return cls(**kw)

    def __call__(self, image: torch.Tensor, prior: torch.Tensor | None, masks: torch.Tensor | None,
                 generator: torch.Generator, host_generator: torch.Generator):
        """Augment a batch.

        Parameters
        ----------
        image : float (B, 1, S, S) in [0, 1]
        prior : float (B, 1, S, S) in [0, 1], or None
        masks : uint8 (B, K, S, S) label masks (infection, classes), or None
        generator : torch.Generator on the batch's device; host_generator : CPU torch.Generator

        Returns
        -------
        (image, prior, masks) with the same shapes and dtypes: image in [0, 1] (cutout squares at
        ``cutout_value``), prior in [0, 1], masks moved with nearest-neighbour sampling.
        """
        image = self._shift(image, generator, host_generator)
        theta = self._geometry(image.shape[0], image.device, generator)
        grid = F.affine_grid(theta, list(image.shape), align_corners=False)
        dense = image if prior is None else torch.cat([image, prior], 1)
        dense = F.grid_sample(dense, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        image, prior = (dense, None) if prior is None else (dense[:, :1], dense[:, 1:])
        if masks is not None:
            moved = F.grid_sample(masks.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
            masks = moved.round().to(masks.dtype)
        return self._cutout(image.clamp(0.0, 1.0), generator), prior, masks

    # ---------------------------------------------------------------------------------------- parts

    def _shift(self, x: torch.Tensor, gen: torch.Generator, host: torch.Generator) -> torch.Tensor:
        b, dev = x.shape[0], x.device
        for kind, setting, p in self.shifts:
            if kind in ("resolution", "jpeg"):  # per-sample sizes: drawn on the host, no sync
                apply = torch.rand(b, generator=host) < p
                lo, hi = setting
                values = torch.randint(lo, hi + 1, (b,), generator=host)
                x = x.clone()
                for i in torch.nonzero(apply).flatten().tolist():
                    one = x[i:i + 1]
                    x[i:i + 1] = _lower_resolution(one, int(values[i])) if kind == "resolution" \
                        else _jpeg(one, int(values[i]))
                continue
            apply = (torch.rand(b, 1, 1, 1, generator=gen, device=dev) < p)
            u = torch.rand(b, 1, 1, 1, generator=gen, device=dev)
            if kind == "window":
                lw = math.log1p(setting)
                w = torch.exp(-lw + 2 * lw * u)
                d = (torch.rand(b, 1, 1, 1, generator=gen, device=dev) - 0.5) * (setting / 2)
                out = (x - 0.5 + d) / w + 0.5
            elif kind == "gamma":
                lo, hi = math.log(setting[0]), math.log(setting[1])
                out = x.clamp(0.0, 1.0) ** torch.exp(lo + (hi - lo) * u)
            else:  # noise
                out = x + setting * u * torch.randn(x.shape, generator=gen, device=dev)
            x = torch.where(apply, out.clamp(0.0, 1.0), x)
        return x

    def _geometry(self, b: int, dev: torch.device, gen: torch.Generator) -> torch.Tensor:
        """(B, 2, 3) affine maps from output to input coordinates (``affine_grid``'s theta)."""
        u = lambda *shape: torch.rand(*shape, generator=gen, device=dev)  # noqa: E731
        zoom = torch.ones(b, device=dev)
        if self.zoom_out > 1:
            zoom = torch.where(u(b) < self.zoom_p, 1.0 + (self.zoom_out - 1.0) * u(b), zoom)
        ox, oy = u(b), u(b)  # where the slice sits on the zoomed-out canvas
        # random resized crop of the canvas, as fractions of its side: 10 tries, else the whole canvas
        tries = 10
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * u(b, tries)
        lr0, lr1 = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(lr0 + (lr1 - lr0) * u(b, tries))
        wf, hf = torch.sqrt(area * aspect), torch.sqrt(area / aspect)
        ok = (wf <= 1) & (hf <= 1)
        first = torch.argmax(ok.int(), dim=1, keepdim=True)
        any_ok = ok.any(dim=1)
        wf = torch.where(any_ok, wf.gather(1, first)[:, 0], torch.ones(b, device=dev))
        hf = torch.where(any_ok, hf.gather(1, first)[:, 0], torch.ones(b, device=dev))
        jf, if_ = u(b) * (1 - wf), u(b) * (1 - hf)
        sx = torch.where(u(b) < self.hflip, -1.0, 1.0)
        sy = torch.where(u(b) < self.vflip, -1.0, 1.0)
        angle = torch.deg2rad((2 * u(b) - 1) * self.rotation)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # output -> (rotation) -> (flips) -> crop of the canvas -> the slice's own coordinates
        ax, ay = zoom * wf, zoom * hf
        bx = zoom * wf + 2 * zoom * jf - 2 * (zoom - 1) * ox - 1
        by = zoom * hf + 2 * zoom * if_ - 2 * (zoom - 1) * oy - 1
        theta = torch.stack([torch.stack([ax * sx * cos, ax * sx * sin, bx], 1),
                             torch.stack([-ay * sy * sin, ay * sy * cos, by], 1)], 1)
        return theta

    def _cutout(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if not self.cutout:
            return x
        b, dev, s = x.shape[0], x.device, x.shape[-1]
        side = int(round(self.cutout * min(x.shape[-2:])))
        if side == 0:
            return x
        apply = torch.rand(b, generator=gen, device=dev) < self.cutout_p
        top = (torch.rand(b, generator=gen, device=dev) * (x.shape[-2] - side + 1)).floor()
        left = (torch.rand(b, generator=gen, device=dev) * (s - side + 1)).floor()
        rows = torch.arange(x.shape[-2], device=dev).view(1, -1, 1)
        cols = torch.arange(s, device=dev).view(1, 1, -1)
        box = ((rows >= top.view(-1, 1, 1)) & (rows < (top + side).view(-1, 1, 1))
               & (cols >= left.view(-1, 1, 1)) & (cols < (left + side).view(-1, 1, 1)) & apply.view(-1, 1, 1))
        return torch.where(box[:, None], torch.full_like(x, self.cutout_value), x)


def _lower_resolution(x: torch.Tensor, side: int) -> torch.Tensor:
    """(1, 1, H, W) scaled down so its longer side is ``side`` and back up (antialiased), as
    :class:`~ssinfnet.data.transforms.RandomResolution` does."""
    h, w = x.shape[-2:]
    f = side / max(h, w)
    if f >= 1:
        return x
    small = F.interpolate(x, size=(max(1, round(h * f)), max(1, round(w * f))), mode="bilinear",
                          antialias=True, align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", antialias=True, align_corners=False).clamp(0.0, 1.0)


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """(1, 1, H, W) through JPEG at ``quality`` on the host (a copy to and from the host per sample),
    as :class:`~ssinfnet.data.transforms.RandomJPEG` does."""
    from PIL import Image

    buf = io.BytesIO()
    grey = (x[0, 0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    Image.fromarray(grey).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    back = np.asarray(Image.open(buf).convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy(back).to(x.device)[None, None]
