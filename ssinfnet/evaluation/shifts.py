"""The shift benchmark: the test slices as users bring them, and how much Dice survives.

Six shifts, each at three severities (:data:`SHIFTS`), applied to an 8-bit test slice and, where
the geometry changes, to its mask:

=============  =================================================================  ==================
shift          what it does                                                        severities
=============  =================================================================  ==================
window         re-window, as if the slice (lung window, level -600 HU, width        (-500, 2000),
               1500 HU) had been exported with another (level, width)               (-300, 2500),
                                                                                    (0, 3500) HU
gamma          grey ``g`` becomes ``255 (g / 255) ** gamma``                         1.3, 1.7, 2.2
resolution     scaled down to a fraction of its side and back (bilinear); on the    1/2, 1/3, 1/4
               ~400 px test slices about 200, 130 and 100 px
noise          Gaussian noise of this SD in grey levels (seeded per slice)          4, 8, 16
jpeg           saved as JPEG of this quality and read back                          50, 25, 10
fov            padded with air (grey 0) to this multiple of its side, centred       1.25, 1.5, 2
               (a wider field of view; the mask is padded too)
=============  =================================================================  ==================

:func:`shift_slice` applies one; :func:`shifted_set` a whole test set; :func:`mean_dice` scores maps
in the paper's protocol (per image at 0.5, images with an empty mask left out, mean over images);
:func:`shift_table` turns per-shift scores into the page's table (clean Dice, each shift's mean over
its severities, the mean over shifts, their ratio and whether it meets :data:`BAR`).
No torch here: predicting the shifted slices is the book's business
(:mod:`ssinfnet.book.stages.shifts`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from .paper_metrics import overlap_scores

#: The training window the window shift starts from (level, width in HU): the lung window.
SOURCE_WINDOW = (-600.0, 1500.0)

#: shift -> its three severities, mildest first.
SHIFTS: dict[str, tuple] = {
    "window": ((-500.0, 2000.0), (-300.0, 2500.0), (0.0, 3500.0)),
    "gamma": (1.3, 1.7, 2.2),
    "resolution": (1 / 2, 1 / 3, 1 / 4),
    "noise": (4.0, 8.0, 16.0),
    "jpeg": (50, 25, 10),
    "fov": (1.25, 1.5, 2.0),
}

#: The bar: mean shifted Dice at least this share of clean Dice, for the model the book recommends.
BAR = 0.8


def _grey(a: np.ndarray) -> np.ndarray:
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def _resize(a: np.ndarray, shape: tuple[int, int], resample=Image.BILINEAR) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((shape[1], shape[0]), resample))


def shift_slice(image: np.ndarray, mask: np.ndarray | None, shift: str, severity, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """One shift of one slice.

    Parameters
    ----------
    image : uint8 (H, W)
    mask : bool (H, W) or None
        Moves with the image when the geometry changes (``fov``); otherwise returned as is.
    shift : a key of :data:`SHIFTS`
    severity : the shift's parameter (one of its :data:`SHIFTS` entries, or any value of that kind)
    seed : int
        Seeds the noise.

    Returns (shifted uint8 image, mask); ValueError for an unknown shift or a non-uint8 2-D image.
    """
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"image must be a 2-D uint8 array, got {image.dtype} of shape {image.shape}")
    g = image.astype(np.float64)
    if shift == "window":
        level0, width0 = SOURCE_WINDOW
        level, width = severity
        hu = level0 - width0 / 2 + g / 255.0 * width0
        return _grey((hu - (level - width / 2)) / width * 255.0), mask
    if shift == "gamma":
        return _grey(255.0 * (g / 255.0) ** float(severity)), mask
    if shift == "resolution":
        h, w = image.shape
        small = _resize(image, (max(2, round(h * severity)), max(2, round(w * severity))))
        return _resize(small, (h, w)), mask
    if shift == "noise":
        rng = np.random.default_rng(seed)
        return _grey(g + rng.normal(0.0, float(severity), image.shape)), mask
    if shift == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=int(severity))
        buf.seek(0)
        return np.asarray(Image.open(buf).convert("L")), mask
    if shift == "fov":
        h, w = image.shape
        ph, pw = round(h * (severity - 1) / 2), round(w * (severity - 1) / 2)
        pad = ((ph, ph), (pw, pw))
        return np.pad(image, pad), (None if mask is None else np.pad(np.asarray(mask, bool), pad))
    raise ValueError(f"unknown shift {shift!r}; shifts: {', '.join(SHIFTS)}")


def shifted_set(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], shift: str, severity,
                seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """:func:`shift_slice` of every slice (slice ``k`` seeded with ``seed + k``)."""
    out = [shift_slice(img, m, shift, severity, seed + k) for k, (img, m) in enumerate(zip(images, masks))]
    return [a for a, _ in out], [m for _, m in out]


def conditions() -> list[tuple[str, int, object]]:
    """(shift, level 1..3, severity) of every shifted condition, in :data:`SHIFTS` order."""
    return [(name, k + 1, sev) for name, sevs in SHIFTS.items() for k, sev in enumerate(sevs)]


def severity_label(shift: str, severity) -> str:
    """The severity in words, e.g. ``"level -300, width 2500"``, ``"quality 25"``."""
    if shift == "window":
        return f"level {severity[0]:g}, width {severity[1]:g}"
    if shift == "resolution":
        return f"1/{round(1 / severity)} of the side"
    return {"gamma": "gamma {:g}", "noise": "SD {:g} grey levels", "jpeg": "quality {:g}",
            "fov": "{:g} x the side"}[shift].format(severity)


def per_image_dice(probs: Sequence[np.ndarray], masks: Sequence[np.ndarray], threshold: float = 0.5) -> np.ndarray:
    """Dice of ``probs >= threshold`` against bool ``masks``, one per image (n_images,), NaN where the
    mask is empty (paper protocol)."""
    if len(probs) != len(masks):
        raise ValueError(f"{len(probs)} maps for {len(masks)} masks")
    scores = []
    for p, m in zip(probs, masks):
        m = np.asarray(m, bool)
        if np.shape(p) != m.shape:
            raise ValueError(f"map of shape {np.shape(p)} for a mask of shape {m.shape}")
        scores.append(float(overlap_scores((np.asarray(p) >= threshold)[None], m[None])["dice"][0]))
    return np.asarray(scores)


def mean_dice(probs: Sequence[np.ndarray], masks: Sequence[np.ndarray], threshold: float = 0.5) -> float:
    """Mean of :func:`per_image_dice` (images with an empty mask left out; NaN when every mask is empty)."""
    scores = per_image_dice(probs, masks, threshold)
    return float(np.nanmean(scores)) if np.isfinite(scores).any() else float("nan")


def shift_table(scores: pd.DataFrame, bar: float = BAR) -> pd.DataFrame:
    """The page's table from long scores.

    ``scores`` has columns ``model, handling, shift, level, dice``; ``shift`` "clean" (level 0) is the
    unshifted set. Returns one row per (model, handling): ``clean``, one column per shift (mean over
    its severities), ``mean shifted`` (mean over the shifts), ``ratio`` (mean shifted / clean) and
    ``meets bar`` (ratio >= ``bar``).
    """
    need = {"model", "handling", "shift", "level", "dice"}
    if not need <= set(scores.columns):
        raise ValueError(f"scores lack columns {sorted(need - set(scores.columns))}")
    keys = list(dict.fromkeys(zip(scores.model, scores.handling)))
    rows = []
    for model, handling in keys:
        sub = scores[(scores.model == model) & (scores.handling == handling)]
        clean = sub[sub["shift"] == "clean"].dice
        row = {"model": model, "handling": handling, "clean": float(clean.mean()) if len(clean) else float("nan")}
        per = {s: float(sub[sub["shift"] == s].dice.mean()) for s in SHIFTS if (sub["shift"] == s).any()}
        row.update(per)
        row["mean shifted"] = float(np.mean(list(per.values()))) if per else float("nan")
        row["ratio"] = row["mean shifted"] / row["clean"] if row["clean"] > 0 else float("nan")
        row["meets bar"] = bool(row["ratio"] >= bar) if np.isfinite(row["ratio"]) else False
        rows.append(row)
    return pd.DataFrame(rows)
