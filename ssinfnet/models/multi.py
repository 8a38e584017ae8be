"""Multi-class InfNet: CT image + stage-1 prior -> background / GGO / consolidation logits.

Design choice. The SSInfNet authors fed image and prior to a U-Net-style network that concatenates
them at several depths. We keep the Inf-Net trunk instead (so the multi-class network shares its
decoder, reverse attention and edge branch with the single-class one and with the inpainting
twin) and give the prior two routes:

1. it is concatenated to the image at the input (``in_chans = 2``), so the encoder sees it;
2. it is resized (bilinear) and concatenated again to the edge guidance of each of the three
   reverse-attention modules (``guide_prior=1``), i.e. re-injected at strides 32, 16 and 8.

Why: after the encoder the prior survives only at stride 32, and the stride-8 head is where the
GGO/consolidation boundary is drawn; re-injecting the full-precision prior next to the edge cue
costs one extra input channel per RA module and mirrors the authors' multi-depth concatenation.
Reverse attention uses the softmax background probability (``ra_mode="softmax"``): each RA module
looks at what is not yet called lesion. The edge output stays a single lesion-boundary logit.

The inpainting twin (``head="inpaint"``) reconstructs both input channels (image and prior) from
every output, with the same trunk, so :func:`ssinfnet.models.transfer.transfer_weights` carries the
pretrained trunk over and re-initialises only ``head_names``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .infnet import InfNet

__all__ = ["MultiInfNet"]


class MultiInfNet(InfNet):
    """Inf-Net taking (image, prior) and predicting ``out_chans`` classes (class 0 = background).

    Parameters
    ----------
    in_chans : int, default 2
        Image channels plus one prior channel (the prior is the last channel, a probability in
        [0, 1] or scaled like the image; it must be cropped and resized with the image).
    out_chans : int, default 3
        Classes: background, GGO, consolidation (logits; use a softmax).
    head : {"seg", "inpaint"}
        Segmentation logits, or a linear reconstruction of all ``in_chans`` channels.
    **kwargs
        Passed to :class:`~ssinfnet.models.infnet.InfNet` (``backbone``, ``backbone_kwargs``,
        ``pretrained_path``, ``channels``, ``edge_channels``, ``ra_widths``).

    Notes
    -----
    ``forward(x)`` with x (B, in_chans, H, W) returns the dict of :class:`InfNet` (``global``,
    ``lateral5``, ``lateral4``, ``lateral3`` with ``out_chans`` channels, ``edge`` with 1; all
    ``in_chans`` for the inpainting head).
    """

    def __init__(self, in_chans: int = 2, out_chans: int = 3, head: str = "seg",
                 backbone: str = "res2net50_26w_4s", ra_widths: Sequence[int] = (256, 64, 64),
                 **kwargs):
        if in_chans < 2:
            raise ValueError(f"in_chans must be >= 2 (image + prior), got {in_chans}")
        if out_chans < 2:
            raise ValueError(f"out_chans must be >= 2 (class 0 = background), got {out_chans}")
        for bad in ("guide_prior", "ra_mode"):
            if bad in kwargs:
                raise ValueError(f"{bad} is fixed by MultiInfNet")
        super().__init__(in_chans=in_chans, out_chans=out_chans, head=head, backbone=backbone,
                         ra_widths=ra_widths, ra_mode="softmax", guide_prior=1, **kwargs)
