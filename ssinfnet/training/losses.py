"""Losses: inpainting and coach (self-supervision), InfNet structure/edge losses, focal losses.

Conventions: maps are (B, C, H, W) float tensors; segmentation inputs are logits; keep-masks are
(B, 1, H, W) in [0, 1] with 1 = visible (kept) and 0 = erased; every loss is computed in float32
(safe under bf16 autocast) and returns a scalar tensor unless ``reduction="none"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch.nn import functional as F

__all__ = ["masked_errors", "inpainting_loss", "coach_loss", "past_ceiling", "boundary_weights",
           "structure_loss", "edge_loss", "focal_loss", "focal_loss_multiclass", "multiclass_structure_loss",
           "infnet_loss", "multi_infnet_loss"]

SEG_KEYS = ("global", "lateral5", "lateral4", "lateral3")


def _as_list(outputs) -> list[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, Mapping):
        values = list(outputs.values())
    elif isinstance(outputs, Sequence) and not isinstance(outputs, (str, bytes)):
        values = list(outputs)
    else:
        values = None
    if values is None or not all(isinstance(v, torch.Tensor) for v in values):
        raise ValueError(f"outputs must be a tensor, dict or list of tensors, got {type(outputs).__name__}")
    if not values:
        raise ValueError("outputs is empty")
    return values


def _check_same(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name} must have shape {tuple(a.shape)}, got {tuple(b.shape)}")


def masked_errors(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                  ceiling: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped squared error averaged over erased (L_rec) and visible (L_con) pixels.

    Parameters
    ----------
    pred, target : tensor (B, C, H, W)
        Reconstruction and original image (same units, e.g. normalised intensity).
    mask : tensor (B, 1, H, W) or (B, C, H, W), values in [0, 1]
        Keep-mask (1 = visible). Soft masks weight pixels by ``1 - M`` and ``M``.
    ceiling : float > 0
        Squared errors above it count as ``ceiling`` (squared intensity units), so a few
        unpredictable pixels cannot dominate, and the coach cannot win by erasing them.

    Returns
    -------
    (L_rec, L_con) : scalar tensors; each is 0 when its region is empty.
    """
    if not ceiling > 0:
        raise ValueError(f"ceiling must be > 0, got {ceiling}")
    _check_same("target", pred, target)
    if mask.ndim != 4 or mask.shape[0] != pred.shape[0] or mask.shape[-2:] != pred.shape[-2:] \
            or mask.shape[1] not in (1, pred.shape[1]):
        raise ValueError(f"mask must be (B, 1, H, W) matching pred {tuple(pred.shape)}, "
                         f"got {tuple(mask.shape)}")
    err = (pred.float() - target.float()).pow(2).clamp(max=ceiling)
    keep = mask.float().expand_as(err)
    erased = 1.0 - keep
    rec = (err * erased).sum() / erased.sum().clamp_min(1e-8)
    con = (err * keep).sum() / keep.sum().clamp_min(1e-8)
    return rec, con


def inpainting_loss(outputs, target: torch.Tensor, mask: torch.Tensor, ceiling: float = 1.0,
                    weight: float = 0.99) -> torch.Tensor:
    """Inpainter loss ``sum_outputs [w * L_rec + (1 - w) * L_con]``.

    Parameters
    ----------
    outputs : tensor, dict or list of tensors, each (B, C, H, W)
        Reconstructions of ``target`` (e.g. every output of an InfNet with ``head="inpaint"``).
    target : tensor (B, C, H, W)
        The unmasked image (and prior, for the multi-class twin).
    mask : tensor (B, 1, H, W)
        Keep-mask that was applied to the input (1 = visible).
    ceiling : float
        Clip for squared errors (see :func:`masked_errors`).
    weight : float in [0, 1], default 0.99
        Weight of the erased-region term.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    total = target.new_zeros((), dtype=torch.float32)
    for pred in _as_list(outputs):
        rec, con = masked_errors(pred, target, mask, ceiling)
        total = total + weight * rec + (1.0 - weight) * con
    return total


def coach_loss(outputs, target: torch.Tensor, mask: torch.Tensor, ceiling: float = 1.0,
               kl: torch.Tensor | None = None, kl_weight: float = 0.0) -> torch.Tensor:
    """Coach loss ``1 - L_rec(x * M) [+ kl_weight * KL]``: the coach wants hard-to-inpaint masks.

    Parameters
    ----------
    outputs : tensor, dict or list of tensors
        The (frozen) inpainter's reconstructions of ``x * M``; L_rec is averaged over the outputs
        (so with ``ceiling=1`` the loss stays in [0, 1] before the KL term).
    target, mask, ceiling
        As in :func:`inpainting_loss`; ``mask`` is the coach's soft mask (gradients flow into it).
    kl : scalar tensor, optional
        KL term of a variational coach.
    kl_weight : float >= 0
    """
    if kl_weight < 0:
        raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
    recs = [masked_errors(p, target, mask, ceiling)[0] for p in _as_list(outputs)]
    loss = 1.0 - torch.stack(recs).mean()
    if kl is not None and kl_weight > 0:
        loss = loss + kl_weight * kl.float()
    return loss


@torch.no_grad()
def past_ceiling(outputs, target: torch.Tensor, ceiling: float = 1.0) -> torch.Tensor:
    """Share of output pixels whose squared error to ``target`` exceeds ``ceiling``: a 0-d float32
    tensor in [0, 1], pooled over every output (each (B, C, H, W) like ``target``).

    The clipped losses above give such pixels no gradient, so a share near 1 means an inpainter
    thrown past the ceiling that cannot come back (a diverged pretraining); a working one, at
    initialisation or later, stays far below (see :class:`ssinfnet.training.guard.DivergenceGuard`).
    """
    if not ceiling > 0:
        raise ValueError(f"ceiling must be > 0, got {ceiling}")
    shares = []
    for pred in _as_list(outputs):
        _check_same("target", pred, target)
        shares.append(((pred.float() - target.float()).pow(2) > ceiling).float().mean())
    return torch.stack(shares).mean()


def boundary_weights(mask: torch.Tensor, kernel: int = 31) -> torch.Tensor:
    """InfNet's per-pixel weights ``1 + 5 * |avgpool_k(mask) - mask|`` (same shape as ``mask``).

    The average pool has stride 1, zero padding ``kernel // 2`` counted in the mean (PyTorch's
    default, as in the authors' code), so pixels near a boundary (or the image border next to a
    lesion) weigh up to 6. A k x k box mean with zero padding is a k x 1 mean of 1 x k means, so it
    is computed as two 1-D pools: 2k instead of k^2 additions per pixel (the same values up to
    float rounding; at k = 31, 160 px, batch 8 on the 2-core CPU: the weights 8x and InfNet's whole
    loss, forward and backward, 5x cheaper).
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be a positive odd int, got {kernel}")
    m = mask.float()
    r = kernel // 2
    rows = F.avg_pool2d(m, (kernel, 1), stride=1, padding=(r, 0))
    box = F.avg_pool2d(rows, (1, kernel), stride=1, padding=(0, r))
    return 1.0 + 5.0 * (box - m).abs()


def structure_loss(logits: torch.Tensor, mask: torch.Tensor, bce_weight: float = 1.0,
                   kernel: int = 31, reduction: str = "mean") -> torch.Tensor:
    """InfNet structure loss ``L_seg = L_wIoU + bce_weight * L_wBCE`` with boundary weights.

    Parameters
    ----------
    logits : tensor (B, C, H, W)
    mask : tensor (B, C, H, W), values in [0, 1]
    bce_weight : float, default 1 (lambda)
    kernel : int, default 31
        Window of :func:`boundary_weights`.
    reduction : {"mean", "none"}
        ``"none"`` returns the (B, C) per-image values.

    Notes
    -----
    Per image and channel: ``wBCE = sum(w * bce) / sum(w)`` and
    ``wIoU = 1 - (sum(w p m) + 1) / (sum(w (p + m)) - sum(w p m) + 1)`` with ``p = sigmoid``.
    The authors' code (Inf-Net/PraNet) built the BCE with the legacy ``reduce='none'`` argument,
    which PyTorch turns into a *mean* reduction, so their "weighted" BCE was an unweighted mean;
    here the BCE is really weighted, as the papers describe.
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    _check_same("mask", logits, mask)
    x, m = logits.float(), mask.float()
    w = boundary_weights(m, kernel)
    bce = F.binary_cross_entropy_with_logits(x, m, reduction="none")
    wbce = (w * bce).sum((2, 3)) / w.sum((2, 3))
    p = torch.sigmoid(x)
    inter = (w * p * m).sum((2, 3))
    union = (w * (p + m)).sum((2, 3))
    wiou = 1.0 - (inter + 1.0) / (union - inter + 1.0)
    loss = wiou + bce_weight * wbce
    return loss.mean() if reduction == "mean" else loss


def edge_loss(logits: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy between edge logits and an edge map in [0, 1] (same shape)."""
    _check_same("edge", logits, edge)
    return F.binary_cross_entropy_with_logits(logits.float(), edge.float())


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 1.0, gamma: float = 2.0,
               reduction: str = "mean") -> torch.Tensor:
    """Binary focal loss ``alpha * (1 - p_t)**gamma * BCE`` (Lin et al., 2017).

    ``alpha`` is a plain scale (the paper's alpha = 1), not RetinaNet's class-balancing
    ``alpha_t``; with ``gamma = 0, alpha = 1`` this is the binary cross-entropy.
    ``logits`` and ``target`` (in [0, 1]) have the same shape; ``p_t = p t + (1 - p)(1 - t)``.
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    _check_same("target", logits, target)
    x, t = logits.float(), target.float()
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p = torch.sigmoid(x)
    p_t = p * t + (1.0 - p) * (1.0 - t)
    return _reduce(alpha * (1.0 - p_t).pow(gamma) * bce, reduction)


def _check_labels(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.ndim != 4 or labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"labels must be (B, H, W) matching logits {tuple(logits.shape)}, "
                         f"got {tuple(labels.shape)}")
    if labels.dtype not in (torch.int64, torch.int32, torch.uint8, torch.int16):
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"labels must be in [0, {logits.shape[1] - 1}], got "
                         f"[{int(labels.min())}, {int(labels.max())}]")


def focal_loss_multiclass(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 1.0,
                          gamma: float = 2.0, reduction: str = "mean") -> torch.Tensor:
    """Softmax focal loss ``-alpha * (1 - p_y)**gamma * log p_y`` per pixel.

    Parameters
    ----------
    logits : tensor (B, C, H, W)
    labels : integer tensor (B, H, W), values in [0, C)
    alpha, gamma : float
        Scale and focusing exponent (gamma = 0, alpha = 1 gives cross-entropy).
    reduction : {"mean", "sum", "none"} (``"none"`` gives (B, H, W))
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    _check_labels(logits, labels)
    logp = F.log_softmax(logits.float(), dim=1).gather(1, labels.long().unsqueeze(1)).squeeze(1)
    return _reduce(-alpha * (1.0 - logp.exp()).pow(gamma) * logp, reduction)


def multiclass_structure_loss(logits: torch.Tensor, labels: torch.Tensor, focal_weight: float = 1.0,
                              alpha: float = 1.0, gamma: float = 2.0, kernel: int = 31) -> torch.Tensor:
    """Multi-class ``L_seg = L_wIoU + focal_weight * L_focal`` (focal replaces BCE, as in SSInfNet).

    The weighted IoU of :func:`structure_loss` is computed on softmax probabilities against each
    class's one-hot map (boundary weights per class), averaged over images and classes.
    ``logits`` (B, C, H, W); ``labels`` integer (B, H, W) in [0, C).
    """
    _check_labels(logits, labels)
    onehot = F.one_hot(labels.long(), logits.shape[1]).permute(0, 3, 1, 2).float()
    w = boundary_weights(onehot, kernel)
    p = torch.softmax(logits.float(), dim=1)
    inter = (w * p * onehot).sum((2, 3))
    union = (w * (p + onehot)).sum((2, 3))
    wiou = (1.0 - (inter + 1.0) / (union - inter + 1.0)).mean()
    return wiou + focal_weight * focal_loss_multiclass(logits, labels, alpha, gamma)


def _seg_outputs(outputs: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    if not isinstance(outputs, Mapping):
        raise ValueError(f"outputs must be the model's dict, got {type(outputs).__name__}")
    missing = [k for k in SEG_KEYS if k not in outputs]
    if missing:
        raise ValueError(f"outputs lacks keys {missing}")
    return [outputs[k] for k in SEG_KEYS]


def infnet_loss(outputs: Mapping[str, torch.Tensor], mask: torch.Tensor, edge: torch.Tensor,
                bce_weight: float = 1.0) -> torch.Tensor:
    """``L_seg(S_g) + L_edge + sum_{i=5,4,3} L_seg(S_i)`` for a single-class InfNet.

    Parameters
    ----------
    outputs : dict
        ``InfNet.forward`` output (``global``, ``lateral5``, ``lateral4``, ``lateral3``, ``edge``
        logits, each (B, 1, H, W)).
    mask : tensor (B, 1, H, W) in [0, 1]
        Infection ground truth.
    edge : tensor (B, 1, H, W) in [0, 1]
        Edge ground truth.
    bce_weight : float
        lambda of :func:`structure_loss`.
    """
    if "edge" not in outputs:
        raise ValueError("outputs lacks key 'edge'")
    seg = sum(structure_loss(o, mask, bce_weight) for o in _seg_outputs(outputs))
    return seg + edge_loss(outputs["edge"], edge)


def multi_infnet_loss(outputs: Mapping[str, torch.Tensor], labels: torch.Tensor,
                      edge: torch.Tensor | None = None, focal_weight: float = 1.0,
                      alpha: float = 1.0, gamma: float = 2.0) -> torch.Tensor:
    """Multi-class InfNet loss: :func:`multiclass_structure_loss` over ``global``, ``lateral5..3``,
    plus the edge BCE when ``edge`` (B, 1, H, W) is given. ``labels`` integer (B, H, W)."""
    loss = sum(multiclass_structure_loss(o, labels, focal_weight, alpha, gamma)
               for o in _seg_outputs(outputs))
    if edge is not None:
        loss = loss + edge_loss(outputs["edge"], edge)
    return loss
