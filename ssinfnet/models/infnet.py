"""Inf-Net: a timm backbone, a parallel partial decoder, reverse attention and an edge branch.

Re-implementation of Inf-Net (Fan et al., "Inf-Net: Automatic COVID-19 Lung Infection Segmentation
from CT Images", IEEE TMI 39(8), 2020; code: github.com/DengPingFan/Inf-Net), written from the paper.

Layout (paper notation; ``f2..f5`` are the backbone stages at strides 4, 8, 16, 32):

* ``forward_features``: the backbone (``timm.create_model(..., features_only=True)``) gives
  ``f2..f5``; channels are read from ``feature_info.channels()``, so any timm CNN with four
  stride-4..32 stages works (Res2Net-50 by default, a narrow ResNet-18 for CPU profiles).
* ``forward_decoder``: receptive-field blocks shrink ``f3, f4, f5`` to ``channels`` maps, the
  parallel partial decoder (PPD) fuses them into the global map ``S_g`` (stride 8); the edge branch
  turns the low-level ``f2`` into edge-guidance features; three reverse-attention (RA) modules,
  deep to shallow (``f5 -> f4 -> f3``), each erase what the coarser prediction already found,
  concatenate the edge guidance, and add a residual to that prediction (``S_5, S_4, S_3``).
* ``forward_head``: the prediction layers (``head_names``) turn decoder features into maps, which
  are upsampled (bilinear) to the input size.

Heads. ``head="seg"``: 3x3 convolutions giving logits (``out_chans`` for the region maps, 1 for the
edge). ``head="inpaint"``: linear 1x1 convolutions (no activation) reconstructing the ``in_chans``
input channels from every output, including the edge branch, so the low-level features get direct
reconstruction signal. Only the layers named in ``head_names`` differ, which lets
:func:`ssinfnet.models.transfer.transfer_weights` move the trunk from the inpainter to the segmenter.

Reverse attention with several channels: ``ra_mode="sigmoid"`` uses ``1 - mean_c sigmoid(p_c)``
(for one channel exactly Inf-Net's ``1 - sigmoid(p)``); ``ra_mode="softmax"`` uses the softmax
probability of class 0 (background), i.e. ``1 - P(lesion)``, for multi-class logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import timm
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["InfNet", "ConvBNReLU", "ReceptiveFieldBlock", "PartialDecoder", "ReverseAttention",
           "load_backbone_weights"]

OUTPUT_KEYS = ("global", "lateral5", "lateral4", "lateral3", "edge")


class ConvBNReLU(nn.Sequential):
    """Convolution, batch norm and (optionally) ReLU; 'same' padding for odd kernels."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int] = 3,
                 dilation: int = 1, relu: bool = True):
        k = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        pad = tuple(dilation * (ki - 1) // 2 for ki in k)
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
                                   nn.BatchNorm2d(cout)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ReceptiveFieldBlock(nn.Module):
    """Multi-branch dilated block shrinking a stage to ``cout`` channels (Inf-Net's RFB).

    Branch ``b`` (b = 1, 2, 3) uses a (1, 2b+1) then (2b+1, 1) convolution and a 3x3 convolution of
    dilation 2b+1; branch 0 is a 1x1 convolution. The branches are concatenated, fused by a 3x3
    convolution and added to a 1x1 shortcut.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        branches = [ConvBNReLU(cin, cout, 1, relu=False)]
        for b in (1, 2, 3):
            k = 2 * b + 1
            branches.append(nn.Sequential(
                ConvBNReLU(cin, cout, 1, relu=False),
                ConvBNReLU(cout, cout, (1, k), relu=False),
                ConvBNReLU(cout, cout, (k, 1), relu=False),
                ConvBNReLU(cout, cout, 3, dilation=k, relu=False)))
        self.branches = nn.ModuleList(branches)
        self.fuse = ConvBNReLU(4 * cout, cout, 3, relu=False)
        self.shortcut = ConvBNReLU(cin, cout, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fuse(torch.cat([b(x) for b in self.branches], dim=1))
        return F.relu(y + self.shortcut(x))


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class PartialDecoder(nn.Module):
    """Parallel partial decoder over the three deepest stages (returns features at the f3 size).

    Deeper maps are upsampled and multiplied into shallower ones (so a location must be supported
    at every depth), then concatenated stage by stage. Output: ``(B, 3*channels, H/8, W/8)``;
    the prediction layer itself is a head (``head_global``) of :class:`InfNet`.
    """

    def __init__(self, channels: int):
        super().__init__()
        c = channels
        self.up5_to4 = ConvBNReLU(c, c, 3, relu=False)
        self.up5_to3 = ConvBNReLU(c, c, 3, relu=False)
        self.up4_to3 = ConvBNReLU(c, c, 3, relu=False)
        self.up5_cat4 = ConvBNReLU(c, c, 3, relu=False)
        self.fuse4 = ConvBNReLU(2 * c, 2 * c, 3, relu=False)
        self.up4_cat3 = ConvBNReLU(2 * c, 2 * c, 3, relu=False)
        self.fuse3 = ConvBNReLU(3 * c, 3 * c, 3, relu=False)
        self.refine = ConvBNReLU(3 * c, 3 * c, 3, relu=False)

    def forward(self, r3: torch.Tensor, r4: torch.Tensor, r5: torch.Tensor) -> torch.Tensor:
        s3, s4 = r3.shape[-2:], r4.shape[-2:]
        r5_at4 = _resize(r5, s4)
        x4 = self.up5_to4(r5_at4) * r4
        x3 = self.up5_to3(_resize(r5, s3)) * self.up4_to3(_resize(r4, s3)) * r3
        x4 = self.fuse4(torch.cat([x4, self.up5_cat4(r5_at4)], dim=1))
        x3 = self.fuse3(torch.cat([x3, self.up4_cat3(_resize(x4, s3))], dim=1))
        return self.refine(x3)


class ReverseAttention(nn.Module):
    """Reverse-attention body: erase found regions, add edge guidance, convolve.

    ``forward(feat, reverse, guide)``: ``feat`` (B, cin, h, w) stage features, ``reverse``
    (B, 1, h, w) in [0, 1] (1 where the coarser prediction saw nothing), ``guide`` (B, cg, h, w)
    edge guidance (and any extra maps); returns (B, width, h, w) features for a prediction head.
    """

    def __init__(self, cin: int, guide_chans: int, width: int, n_convs: int = 2, kernel: int = 3):
        super().__init__()
        self.reduce = ConvBNReLU(cin, width, 1, relu=False)
        convs = [ConvBNReLU(width + guide_chans, width, kernel)]
        convs += [ConvBNReLU(width, width, kernel) for _ in range(n_convs - 1)]
        self.convs = nn.Sequential(*convs)

    def forward(self, feat: torch.Tensor, reverse: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        x = self.reduce(feat * reverse)
        return self.convs(torch.cat([x, guide], dim=1))


def _adapt_first_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Map a (O, I, k, k) first-layer kernel to ``in_chans`` inputs (sum for 1, tiled otherwise)."""
    if weight.shape[1] == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_chans // weight.shape[1])
    tiled = weight.repeat(1, reps, 1, 1)[:, :in_chans]
    return tiled * (weight.shape[1] / in_chans)


def load_backbone_weights(backbone: nn.Module, path: str, in_chans: int) -> list[str]:
    """Load a local state dict (e.g. ImageNet Res2Net weights) into a timm feature backbone.

    Parameters
    ----------
    backbone : nn.Module
        The ``features_only`` model.
    path : str
        Local ``.pth`` file holding a state dict (``torch.load(..., weights_only=True)``); a
        ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper is unwrapped.
    in_chans : int
        Input channels of the backbone; a 3-channel first convolution is adapted (summed for 1
        channel, tiled and rescaled otherwise).

    Returns
    -------
    list of str
        Names of backbone tensors that were not found in the file (classifier keys in the file are
        ignored).

    Raises
    ------
    ValueError
        If no tensor in the file matches the backbone by name and shape.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    own = backbone.state_dict()
    matched = {}
    for name, tensor in own.items():
        src = state.get(name)
        if src is None:
            continue
        if src.ndim == 4 and tensor.shape[1] == in_chans != src.shape[1] and src.shape[0] == tensor.shape[0]:
            src = _adapt_first_conv(src, in_chans)
        if src.shape == tensor.shape:
            matched[name] = src
    if not matched:
        raise ValueError(f"pretrained_path: no tensor in {path!r} matches the backbone")
    backbone.load_state_dict(matched, strict=False)
    return sorted(set(own) - set(matched))


class InfNet(nn.Module):
    """Inf-Net for single-class segmentation or image inpainting.

    Parameters
    ----------
    in_chans : int, default 1
        Input channels (1 for CT; 2 for image + prior).
    out_chans : int, default 1
        Segmentation channels (logits) of the region maps (ignored by ``head="inpaint"``, which
        reconstructs ``in_chans`` channels).
    backbone : str, default "res2net50_26w_4s"
        timm model name; must offer ``features_only`` with stride-4, 8, 16, 32 stages
        (``resnet18``, ``resnet10t``, ``res2net50_26w_4s``, ... all build offline).
    backbone_kwargs : dict, optional
        Extra ``timm.create_model`` arguments, e.g. ``{"channels": (16, 32, 64, 128),
        "stem_width": 16}`` for a narrow ResNet.
    pretrained_path : str, optional
        Local weights file for the backbone (see :func:`load_backbone_weights`).
    head : {"seg", "inpaint"}
        Prediction layers: logits, or a linear image reconstruction.
    channels : int, default 32
        Width of the receptive-field blocks and the partial decoder.
    edge_channels : int, default 64
        Width of the edge-guidance features.
    ra_widths : tuple of 3 int, default (256, 64, 64)
        Widths of the RA modules at f5, f4, f3 (Inf-Net's values).
    ra_mode : {"sigmoid", "softmax"}
        How a coarser prediction becomes a reverse-attention map (module docstring).
    guide_prior : int, default 0
        Number of trailing input channels (the prior) resized and concatenated to the edge
        guidance of every RA module (used by :class:`ssinfnet.models.multi.MultiInfNet`).

    Notes
    -----
    ``forward(x)`` takes (B, in_chans, H, W) float tensors (any H, W >= 32) and returns a dict
    with keys ``global``, ``lateral5``, ``lateral4``, ``lateral3``, ``edge``, each (B, C, H, W) at
    the input size; ``lateral3`` (S_3) is the final prediction (``prediction_key``).
    """

    head_names = ("head_global", "head_lateral5", "head_lateral4", "head_lateral3", "head_edge")
    encoder_names = ("backbone",)
    prediction_key = "lateral3"

    def __init__(self, in_chans: int = 1, out_chans: int = 1, backbone: str = "res2net50_26w_4s",
                 backbone_kwargs: dict | None = None, pretrained_path: str | None = None,
                 head: str = "seg", channels: int = 32, edge_channels: int = 64,
                 ra_widths: Sequence[int] = (256, 64, 64), ra_mode: str = "sigmoid",
                 guide_prior: int = 0):
        super().__init__()
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        if out_chans < 1:
            raise ValueError(f"out_chans must be >= 1, got {out_chans}")
        if head not in ("seg", "inpaint"):
            raise ValueError(f"head must be 'seg' or 'inpaint', got {head!r}")
        if ra_mode not in ("sigmoid", "softmax"):
            raise ValueError(f"ra_mode must be 'sigmoid' or 'softmax', got {ra_mode!r}")
        if ra_mode == "softmax" and head == "seg" and out_chans < 2:
            raise ValueError("ra_mode='softmax' needs out_chans >= 2 (class 0 = background)")
        if len(ra_widths) != 3:
            raise ValueError(f"ra_widths must have 3 entries, got {ra_widths}")
        if not 0 <= guide_prior < in_chans:
            raise ValueError(f"guide_prior must be in [0, in_chans), got {guide_prior}")
        self.in_chans, self.head, self.guide_prior = in_chans, head, guide_prior
        # The inpainter's RA maps come from reconstructions, not logits of classes.
        self.ra_mode = ra_mode if head == "seg" else "sigmoid"
        self.pred_chans = out_chans if head == "seg" else in_chans
        self.edge_chans = 1 if head == "seg" else in_chans

        self.backbone = timm.create_model(backbone, pretrained=False, features_only=True,
                                          out_indices=(1, 2, 3, 4), in_chans=in_chans,
                                          **(backbone_kwargs or {}))
        if tuple(self.backbone.feature_info.reduction()) != (4, 8, 16, 32):
            raise ValueError(f"backbone {backbone!r} must give stride 4/8/16/32 stages, got "
                             f"{self.backbone.feature_info.reduction()}")
        if pretrained_path is not None:
            load_backbone_weights(self.backbone, pretrained_path, in_chans)
        c2, c3, c4, c5 = self.backbone.feature_info.channels()

        self.rfb3 = ReceptiveFieldBlock(c3, channels)
        self.rfb4 = ReceptiveFieldBlock(c4, channels)
        self.rfb5 = ReceptiveFieldBlock(c5, channels)
        self.decoder = PartialDecoder(channels)
        self.edge_branch = nn.Sequential(ConvBNReLU(c2, edge_channels, 1),
                                         ConvBNReLU(edge_channels, edge_channels, 3),
                                         ConvBNReLU(edge_channels, edge_channels, 3))
        g = edge_channels + guide_prior
        w5, w4, w3 = ra_widths
        self.ra5 = ReverseAttention(c5, g, w5, n_convs=3, kernel=5)
        self.ra4 = ReverseAttention(c4, g, w4, n_convs=2, kernel=3)
        self.ra3 = ReverseAttention(c3, g, w3, n_convs=2, kernel=3)

        k, pad = (3, 1) if head == "seg" else (1, 0)
        pc = self.pred_chans
        self.head_global = nn.Conv2d(3 * channels, pc, k, padding=pad)
        self.head_lateral5 = nn.Conv2d(w5, pc, k, padding=pad)
        self.head_lateral4 = nn.Conv2d(w4, pc, k, padding=pad)
        self.head_lateral3 = nn.Conv2d(w3, pc, k, padding=pad)
        self.head_edge = nn.Conv2d(edge_channels, self.edge_chans, k, padding=pad)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Backbone stages ``[f2, f3, f4, f5]`` at strides 4, 8, 16, 32."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"x must be (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        return list(self.backbone(x))

    def _reverse(self, pred: torch.Tensor) -> torch.Tensor:
        if self.ra_mode == "softmax":
            return torch.softmax(pred.float(), dim=1)[:, :1].to(pred.dtype)
        return 1.0 - torch.sigmoid(pred).mean(dim=1, keepdim=True)

    def _guide(self, edge_feat: torch.Tensor, prior: torch.Tensor | None, size) -> torch.Tensor:
        g = _resize(edge_feat, size)
        if prior is not None:
            g = torch.cat([g, _resize(prior, size)], dim=1)
        return g

    def forward_decoder(self, feats: list[torch.Tensor], x: torch.Tensor | None = None
                        ) -> dict[str, torch.Tensor]:
        """Run PPD, edge branch and the RA cascade; returns per-output maps at their own strides.

        Parameters
        ----------
        feats : list of 4 tensors
            ``forward_features`` output.
        x : tensor, optional
            The network input; needed only when ``guide_prior > 0``.
        """
        f2, f3, f4, f5 = feats
        prior = None
        if self.guide_prior:
            if x is None:
                raise ValueError("x is required when guide_prior > 0")
            prior = x[:, -self.guide_prior:]
        edge_feat = self.edge_branch(f2)
        s_g = self.head_global(self.decoder(self.rfb3(f3), self.rfb4(f4), self.rfb5(f5)))
        out = {"global": s_g, "edge": self.head_edge(edge_feat)}
        coarse = s_g
        for key, ra, head, f in (("lateral5", self.ra5, self.head_lateral5, f5),
                                 ("lateral4", self.ra4, self.head_lateral4, f4),
                                 ("lateral3", self.ra3, self.head_lateral3, f3)):
            size = f.shape[-2:]
            coarse = _resize(coarse, size)
            feat = ra(f, self._reverse(coarse), self._guide(edge_feat, prior, size))
            coarse = head(feat) + coarse
            out[key] = coarse
        return out

    def forward_head(self, maps: dict[str, torch.Tensor], size: Sequence[int]) -> dict[str, torch.Tensor]:
        """Upsample every map to ``size`` (bilinear); returns the dict in ``OUTPUT_KEYS`` order."""
        return {k: _resize(maps[k], size) for k in OUTPUT_KEYS}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, in_chans, H, W) -> dict of (B, C, H, W) maps (logits or reconstructions)."""
        feats = self.forward_features(x)
        return self.forward_head(self.forward_decoder(feats, x), x.shape[-2:])
