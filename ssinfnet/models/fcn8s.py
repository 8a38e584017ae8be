"""FCN-8s (Long et al., CVPR 2015) on a VGG-16 encoder, the multi-class baseline of Inf-Net.

The encoder is torchvision's VGG-16 ``features`` (``make_layers(cfgs['D'])``, the layers of
``vgg16(weights=None).features``; no download); a local
torchvision VGG-16 state dict can be loaded (``pretrained_path``), including its first two
fully connected layers converted to the ``fc6`` (7x7) and ``fc7`` (1x1) convolutions when
``fc_width == 4096``. Differences from the original, chosen for arbitrary input sizes: ``fc6``
uses padding 3 instead of the 100-pixel input padding and crops, and the 2x, 2x, 8x upsamplings
are fixed bilinear interpolations (the original learns transposed convolutions initialised to
bilinear kernels).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.vgg import cfgs, make_layers

from .infnet import _adapt_first_conv

__all__ = ["FCN8s"]

# End indices (exclusive) of the VGG-16 ``features`` slices ending at pool3, pool4, pool5.
_POOL3, _POOL4, _POOL5 = 17, 24, 31


class FCN8s(nn.Module):
    """FCN-8s with a VGG-16 encoder.

    Parameters
    ----------
    in_chans : int, default 1
        Input channels; the first VGG convolution is rebuilt when it is not 3.
    out_chans : int, default 3
        Classes (background, GGO, consolidation) for ``head="seg"``.
    fc_width : int, default 4096
        Channels of ``fc6``/``fc7`` (FCN's value; smaller is lighter).
    dropout : float, default 0.5
        Dropout after ``fc6`` and ``fc7``.
    pretrained_path : str, optional
        Local torchvision VGG-16 state dict (``torch.load(..., weights_only=True)``).
    head : {"seg", "inpaint"}
        Logits, or a linear reconstruction of the ``in_chans`` channels.

    Notes
    -----
    ``forward(x)``: x (B, in_chans, H, W) -> ``{"out": (B, C, H, W)}``, H, W >= 32.
    """

    head_names = ("score_fr", "score_pool4", "score_pool3")
    prediction_key = "out"

    def __init__(self, in_chans: int = 1, out_chans: int = 3, fc_width: int = 4096,
                 dropout: float = 0.5, pretrained_path: str | None = None, head: str = "seg"):
        super().__init__()
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        if out_chans < 1:
            raise ValueError(f"out_chans must be >= 1, got {out_chans}")
        if fc_width < 1:
            raise ValueError(f"fc_width must be >= 1, got {fc_width}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if head not in ("seg", "inpaint"):
            raise ValueError(f"head must be 'seg' or 'inpaint', got {head!r}")
        self.in_chans = in_chans
        # torchvision's VGG-16 'features' (config D), built without the 120M-parameter classifier
        encoder = make_layers(cfgs["D"])
        if in_chans != 3:
            encoder[0] = nn.Conv2d(in_chans, 64, 3, padding=1)
        self.encoder = encoder
        self.fc6 = nn.Sequential(nn.Conv2d(512, fc_width, 7, padding=3), nn.ReLU(inplace=True),
                                 nn.Dropout2d(dropout))
        self.fc7 = nn.Sequential(nn.Conv2d(fc_width, fc_width, 1), nn.ReLU(inplace=True),
                                 nn.Dropout2d(dropout))
        n = out_chans if head == "seg" else in_chans
        self.score_fr = nn.Conv2d(fc_width, n, 1)
        self.score_pool4 = nn.Conv2d(512, n, 1)
        self.score_pool3 = nn.Conv2d(256, n, 1)
        if pretrained_path is not None:
            self._load_vgg(pretrained_path)

    def _load_vgg(self, path: str) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        own = self.state_dict()
        new = {}
        for key, value in state.items():
            if key.startswith("features."):
                name = "encoder." + key[len("features."):]
                if name == "encoder.0.weight":
                    value = _adapt_first_conv(value, self.in_chans)
                if name in own and own[name].shape == value.shape:
                    new[name] = value
        fc = {"classifier.0": "fc6.0", "classifier.3": "fc7.0"}
        for src, dst in fc.items():
            w, b = state.get(src + ".weight"), state.get(src + ".bias")
            if w is not None and w.numel() == own[dst + ".weight"].numel():
                new[dst + ".weight"] = w.reshape(own[dst + ".weight"].shape)
                new[dst + ".bias"] = b
        if not new:
            raise ValueError(f"pretrained_path: no VGG-16 tensor in {path!r} matches the encoder")
        self.load_state_dict(new, strict=False)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder maps ``[pool3, pool4, fc7]`` at strides 8, 16, 32."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"x must be (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        p3 = self.encoder[:_POOL3](x)
        p4 = self.encoder[_POOL3:_POOL4](p3)
        p5 = self.encoder[_POOL4:_POOL5](p4)
        return [p3, p4, self.fc7(self.fc6(p5))]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, in_chans, H, W) -> {"out": (B, C, H, W)} logits or reconstruction."""
        p3, p4, f7 = self.forward_features(x)

        def up(t, ref):
            return F.interpolate(t, size=ref.shape[-2:], mode="bilinear", align_corners=False)

        y = self.score_pool4(p4) + up(self.score_fr(f7), p4)
        y = self.score_pool3(p3) + up(y, p3)
        return {"out": up(y, x)}
