"""U-Net baseline (Ronneberger et al., MICCAI 2015) with a configurable width and depth.

Double 3x3 convolutions with batch norm, max-pool down, bilinear up (then a 3x3 convolution)
so that any input size works: each upsampled map is resized to its skip connection. One
prediction layer ``head`` (1x1 convolution): logits for ``head="seg"``, a linear reconstruction of
the ``in_chans`` input channels for ``head="inpaint"``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["UNet", "DoubleConv"]


class DoubleConv(nn.Sequential):
    """Two (3x3 conv, batch norm, ReLU) layers."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class UNet(nn.Module):
    """U-Net for segmentation (single: 1 output, multi: 3 outputs) or inpainting.

    Parameters
    ----------
    in_chans : int, default 1
        Input channels (1 = CT, 2 = CT + prior).
    out_chans : int, default 1
        Output logits for ``head="seg"`` (ignored by ``head="inpaint"``, which gives ``in_chans``).
    base_width : int, default 64
        Channels of the first level; level ``i`` has ``base_width * 2**i``.
    depth : int, default 4
        Number of down-sampling steps (>= 1).
    head : {"seg", "inpaint"}

    Notes
    -----
    ``forward(x)``: x (B, in_chans, H, W) -> ``{"out": (B, C, H, W)}`` (any H, W >= 2**depth).
    """

    head_names = ("head",)
    prediction_key = "out"

    def __init__(self, in_chans: int = 1, out_chans: int = 1, base_width: int = 64, depth: int = 4,
                 head: str = "seg"):
        super().__init__()
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        if out_chans < 1:
            raise ValueError(f"out_chans must be >= 1, got {out_chans}")
        if base_width < 1:
            raise ValueError(f"base_width must be >= 1, got {base_width}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if head not in ("seg", "inpaint"):
            raise ValueError(f"head must be 'seg' or 'inpaint', got {head!r}")
        self.in_chans, self.depth = in_chans, depth
        widths = [base_width * 2 ** i for i in range(depth + 1)]
        self.stem = DoubleConv(in_chans, widths[0])
        self.down = nn.ModuleList(DoubleConv(widths[i], widths[i + 1]) for i in range(depth))
        self.up_conv = nn.ModuleList(nn.Conv2d(widths[i + 1], widths[i], 3, padding=1)
                                     for i in reversed(range(depth)))
        self.up = nn.ModuleList(DoubleConv(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], out_chans if head == "seg" else in_chans, 1)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder maps, shallow to deep: ``depth + 1`` tensors at strides 1, 2, ..., 2**depth."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"x must be (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        feats = [self.stem(x)]
        for block in self.down:
            feats.append(block(F.max_pool2d(feats[-1], 2)))
        return feats

    def forward_decoder(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Decoder features (B, base_width, H, W) from the encoder maps."""
        y = feats[-1]
        for conv, block, skip in zip(self.up_conv, self.up, reversed(feats[:-1])):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([skip, conv(y)], dim=1))
        return y

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, in_chans, H, W) -> {"out": (B, C, H, W)} logits or reconstruction."""
        return {"out": self.head(self.forward_decoder(self.forward_features(x)))}
