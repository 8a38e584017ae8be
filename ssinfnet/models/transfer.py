"""Copy a pretrained trunk (e.g. the inpainter) into another model (e.g. the segmenter).

Every parameter and buffer of the destination whose name and shape match the source is copied,
except the destination's prediction layers (``head_names``, re-initialised by design). With
``only=`` the copy is restricted to some modules (e.g. ``dst.encoder_names``: the encoder alone, the
decoder keeps its fresh initialisation). The report says what was copied and why anything else was
not, so a silently skipped trunk is visible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["TransferReport", "transfer_weights"]


@dataclass
class TransferReport:
    """Outcome of :func:`transfer_weights`; every destination tensor is in exactly one of the
    first five lists (names as in ``state_dict``).

    Attributes
    ----------
    copied : names copied from the source.
    skipped_head : destination head tensors left as they were.
    skipped_shape : ``(name, source shape, destination shape)`` for mismatched shapes.
    missing : destination names absent from the source.
    not_requested : destination tensors outside ``only`` (left at their initialisation).
    unused : source names absent from the destination.
    """

    copied: list[str] = field(default_factory=list)
    skipped_head: list[str] = field(default_factory=list)
    skipped_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    not_requested: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        def block(title, items, limit=8):
            lines = [f"{title}: {len(items)}"]
            lines += [f"  {it}" for it in items[:limit]]
            if len(items) > limit:
                lines.append(f"  ... and {len(items) - limit} more")
            return lines

        shapes = [f"{n}: {tuple(s)} -> {tuple(d)}" for n, s, d in self.skipped_shape]
        lines = [f"copied: {len(self.copied)} tensors"]
        lines += block("skipped (head)", self.skipped_head)
        lines += block("skipped (shape mismatch)", shapes)
        lines += block("missing in source", self.missing)
        if self.not_requested:
            lines += block("not requested (kept their initialisation)", self.not_requested)
        lines += block("unused from source", self.unused)
        return "\n".join(lines)


def _is_head(name: str, heads: Sequence[str]) -> bool:
    return any(name == h or name.startswith(h + ".") for h in heads)


def transfer_weights(src: nn.Module | Mapping[str, torch.Tensor], dst: nn.Module,
                     head_names: Sequence[str] | None = None,
                     only: Sequence[str] | None = None) -> TransferReport:
    """Copy matching tensors from ``src`` into ``dst`` in place, skipping ``dst``'s heads.

    Parameters
    ----------
    src : nn.Module or mapping name -> tensor
        The source model or its state dict (e.g. a checkpoint loaded with ``weights_only=True``).
    dst : nn.Module
        The destination; modified in place (values are cast to its dtype and device).
    head_names : sequence of str, optional
        Module names treated as heads; default ``dst.head_names`` (empty if it has none).
    only : sequence of str, optional
        Copy only tensors under these module names (e.g. ``dst.encoder_names``); the rest of
        ``dst`` is reported as ``not_requested``. Default: everything but the heads.

    Returns
    -------
    TransferReport
    """
    if isinstance(src, nn.Module):
        src_state = src.state_dict()
    elif isinstance(src, Mapping):
        src_state = src
    else:
        raise ValueError(f"src must be an nn.Module or a state dict, got {type(src).__name__}")
    if not isinstance(dst, nn.Module):
        raise ValueError(f"dst must be an nn.Module, got {type(dst).__name__}")
    heads = tuple(getattr(dst, "head_names", ()) if head_names is None else head_names)
    if only is not None:
        if isinstance(only, str) or not only:
            raise ValueError(f"only must be a non-empty list of module names, got {only!r}")
        unknown = [m for m in only if not any(_is_head(n, (m,)) for n in dst.state_dict())]
        if unknown:
            raise ValueError(f"only names modules that {type(dst).__name__} does not have: {unknown}")
    report = TransferReport()
    dst_state = dst.state_dict()
    with torch.no_grad():
        for name, target in dst_state.items():
            if _is_head(name, heads):
                report.skipped_head.append(name)
            elif only is not None and not _is_head(name, tuple(only)):
                report.not_requested.append(name)
            elif name not in src_state:
                report.missing.append(name)
            elif tuple(src_state[name].shape) != tuple(target.shape):
                report.skipped_shape.append((name, tuple(src_state[name].shape), tuple(target.shape)))
            else:
                target.copy_(src_state[name].to(device=target.device, dtype=target.dtype))
                report.copied.append(name)
    report.unused = [n for n in src_state if n not in dst_state]
    return report
