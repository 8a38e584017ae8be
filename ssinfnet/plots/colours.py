"""The one colour code of the book: GGO red, consolidation green, blended over the grey CT."""

from __future__ import annotations

import numpy as np

from ..data.classes import CLASS_COLOURS


def overlay(image: np.ndarray, labels: np.ndarray | None, alpha: float = 0.45) -> np.ndarray:
    """Colour a grey image with a label map.

    Parameters
    ----------
    image : (H, W) grey, uint8 (0..255) or float in [0, 1]
    labels : (H, W) bool or int labels in {0, 1, 2}, or None (grey only)
    alpha : opacity of the colour

    Returns
    -------
    (H, W, 3) float RGB in [0, 1].
    """
    img = np.asarray(image, dtype=np.float64)
    if img.dtype != np.uint8 and np.asarray(image).dtype == np.uint8 or img.max(initial=0) > 1:
        img = img / 255.0
    rgb = np.repeat(img[..., None], 3, axis=2)
    if labels is None:
        return rgb
    lab = np.asarray(labels).astype(np.int64)
    if lab.shape != img.shape:
        raise ValueError(f"labels shape {lab.shape} differs from image shape {img.shape}")
    for code, colour in CLASS_COLOURS.items():
        m = lab == code
        rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(colour)
    return np.clip(rgb, 0, 1)
