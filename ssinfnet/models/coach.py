"""The coach: a small network choosing which image regions to erase, and random erasure masks.

The coach scores every position of a reduced-resolution grid, ``B(x)``; per image the mask is

    M = sigmoid(alpha * (B - kth_largest(B))),   k = round(keep * number of positions),

so about a fraction ``keep`` of positions is kept (M ~ 1) and ``1 - keep`` erased (M ~ 0).
``alpha = 1`` while the coach trains (a soft, differentiable mask), ``alpha ~ 100`` when masks are
applied to the inpainter (nearly binary). The grid mask is upsampled to the input size with
nearest-neighbour interpolation by default, which keeps each grid cell a solid block and keeps the
erased fraction when the input size is a multiple of the grid (``upsample="bilinear"`` gives
smooth borders instead). ``M = 1`` means keep, ``M = 0`` erase; the inpainter sees ``x * M``.

Scale of the scores. With the raw formula, ``alpha = 100`` gives a binary mask only when the
scores of neighbouring ranks differ by more than ~0.05; a freshly initialised coach has nearly
flat scores, so its "hard" masks would be soft and erase more than the budget. :class:`Coach`
therefore standardises ``B`` per image (zero mean, unit std) before the threshold by default
(``standardize=True``, our choice; ``standardize=False`` is the paper's formula on raw scores).

Optional variational mode: mean and log-variance heads, a reparameterised sample
``B = mu + exp(logvar / 2) * eps`` in training mode (``B = mu`` in eval mode), and the KL
divergence to N(0, 1) (mean over positions and images) returned for the coach loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Coach", "BasicBlock", "mask_from_scores", "random_masks"]


def mask_from_scores(scores: torch.Tensor, keep: float, alpha: float,
                     size: Sequence[int] | None = None, upsample: str = "nearest",
                     standardize: bool = False) -> torch.Tensor:
    """Soft keep-mask from a score map, keeping the top ``keep`` fraction per image.

    Parameters
    ----------
    scores : tensor (B, 1, h, w)
        Score map ``B(x)``, any real values.
    keep : float in (0, 1]
        Fraction of positions kept; ``k = max(1, round(keep * h * w))``.
    alpha : float > 0
        Sharpness (1 while training the coach, ~100 when applying masks).
    size : (H, W), optional
        Output size; default the score-map size.
    upsample : {"nearest", "bilinear"}
    standardize : bool, default False
        Standardise the scores per image (zero mean, unit std) first, so ``alpha`` means the
        same whatever their scale (False = the paper's formula on raw scores).

    Returns
    -------
    tensor (B, 1, H, W), values in [0, 1], 1 = keep.
    """
    if scores.ndim != 4 or scores.shape[1] != 1:
        raise ValueError(f"scores must be (B, 1, h, w), got {tuple(scores.shape)}")
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if upsample not in ("nearest", "bilinear"):
        raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")
    if standardize:
        flat = scores.flatten(1)
        std = flat.std(1).clamp_min(1e-12).view(-1, 1, 1, 1)
        scores = (scores - flat.mean(1).view(-1, 1, 1, 1)) / std
    flat = scores.flatten(1)
    k = max(1, round(keep * flat.shape[1]))
    kth = torch.topk(flat, k, dim=1).values[:, -1]
    mask = torch.sigmoid(alpha * (scores - kth.view(-1, 1, 1, 1)))
    if size is not None and tuple(size) != tuple(mask.shape[-2:]):
        kwargs = {} if upsample == "nearest" else {"align_corners": False}
        mask = F.interpolate(mask, size=tuple(size), mode=upsample, **kwargs)
    return mask


def random_masks(shape: Sequence[int], keep: float = 0.75, patch: int = 16,
                 generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Random block masks for the inpainter-alone phase.

    The image is tiled by ``patch x patch`` cells (the last row/column may be cut); per image
    exactly ``round((1 - keep) * n_cells)`` cells, drawn without replacement, are erased.

    Parameters
    ----------
    shape : (B, H, W) or (B, C, H, W)
        Batch size and spatial size (channels are ignored).
    keep : float in (0, 1]
        Fraction of cells kept (erased fraction ~ 1 - keep; exact when H, W are multiples of
        ``patch``).
    patch : int >= 1
        Cell side in pixels.
    generator : torch.Generator, optional
        Random source (on ``device``'s type for CUDA; CPU otherwise); pass one for reproducibility.
    device : optional
        Device of the result.

    Returns
    -------
    tensor (B, 1, H, W) float32 of 0/1, 1 = keep.
    """
    if len(shape) not in (3, 4):
        raise ValueError(f"shape must be (B, H, W) or (B, C, H, W), got {tuple(shape)}")
    b, h, w = shape[0], shape[-2], shape[-1]
    if min(b, h, w) < 1:
        raise ValueError(f"shape must be positive, got {tuple(shape)}")
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    if patch < 1:
        raise ValueError(f"patch must be >= 1, got {patch}")
    gh, gw = math.ceil(h / patch), math.ceil(w / patch)
    n = gh * gw
    n_erase = round((1.0 - keep) * n)
    gen_device = generator.device if generator is not None else "cpu"
    order = torch.argsort(torch.rand(b, n, generator=generator, device=gen_device), dim=1)
    grid = torch.ones(b, n, device=gen_device)
    grid.scatter_(1, order[:, :n_erase], 0.0)
    grid = grid.view(b, 1, gh, gw).repeat_interleave(patch, 2).repeat_interleave(patch, 3)
    return grid[:, :, :h, :w].contiguous().to(device or gen_device)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with batch norm and an (optionally projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class Coach(nn.Module):
    """ResNet-18-like scorer producing erasure masks.

    Parameters
    ----------
    in_chans : int, default 1
        Input channels (image, or image + prior).
    width : int, default 16
        Channels of the first stage (ResNet-18 uses 64); stage ``i`` has ``width * 2**i``.
    blocks : tuple of 4 int, default (2, 2, 2, 2)
        Basic blocks per stage (ResNet-18's layout).
    reduction : {2, 4, 8, 16}, default 8
        Stride of the score grid: a 352-px image gives a 44 x 44 grid at 8.
    keep : float, default 0.75
        Fraction of grid positions kept.
    variational : bool, default False
        Mean/log-variance heads and a reparameterised sample.
    upsample : {"nearest", "bilinear"}
        Grid-to-image interpolation of the mask.
    standardize : bool, default True
        Standardise scores per image before the threshold (module docstring).

    Notes
    -----
    ``forward(x, alpha)``: x (B, in_chans, H, W) -> M (B, 1, H, W) in [0, 1] (1 = keep); with
    ``return_kl=True`` returns ``(M, kl)``, kl a scalar tensor (0 when not variational).
    """

    head_names = ("score", "score_logvar")

    def __init__(self, in_chans: int = 1, width: int = 16, blocks: Sequence[int] = (2, 2, 2, 2),
                 reduction: int = 8, keep: float = 0.75, variational: bool = False,
                 upsample: str = "nearest", standardize: bool = True):
        super().__init__()
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"blocks must be 4 positive ints, got {blocks}")
        if reduction not in (2, 4, 8, 16):
            raise ValueError(f"reduction must be one of 2, 4, 8, 16, got {reduction}")
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"keep must be in (0, 1], got {keep}")
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")
        self.in_chans, self.keep, self.variational = in_chans, keep, variational
        self.upsample, self.standardize = upsample, standardize
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        n_down = int(math.log2(reduction)) - 1  # the stem already halves
        strides = [1] + [2 if i < n_down else 1 for i in range(3)]
        stages, cin = [], width
        for i, (n, s) in enumerate(zip(blocks, strides)):
            cout = width * 2 ** i
            stages.append(nn.Sequential(BasicBlock(cin, cout, s),
                                        *[BasicBlock(cout, cout) for _ in range(n - 1)]))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.score = nn.Conv2d(cin, 1, 1)
        self.score_logvar = nn.Conv2d(cin, 1, 1) if variational else None

    def scores(self, x: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score map B (B, 1, H/r, W/r) and the KL term (scalar; 0 unless variational)."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"x must be (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        feat = self.stages(self.stem(x))
        mu = self.score(feat)
        if self.score_logvar is None:
            return mu, mu.new_zeros(())
        logvar = self.score_logvar(feat)
        kl = -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).mean()
        if not self.training:
            return mu, kl
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps, kl

    def forward(self, x: torch.Tensor, alpha: float = 1.0, keep: float | None = None,
                generator: torch.Generator | None = None, return_kl: bool = False):
        """Keep-mask (B, 1, H, W) in [0, 1] for x (B, in_chans, H, W); see class Notes."""
        b, kl = self.scores(x, generator)
        mask = mask_from_scores(b, self.keep if keep is None else keep, alpha,
                                size=x.shape[-2:], upsample=self.upsample,
                                standardize=self.standardize)
        return (mask, kl) if return_kl else mask
