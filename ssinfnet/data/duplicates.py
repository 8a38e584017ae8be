"""Duplicate check across splits: exact (content hash) and near duplicates (thumbnail distance).

The labelled COVID-SemiSeg slices have no patient ids, and MedSeg's 100 slices come from about 40
patients, so train and test share patients. No pixel-identical pairs exist, but near duplicates do;
this module finds and reports both so the book can say how optimistic test scores are.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from .sample import Sample


def content_hash(image: np.ndarray) -> str:
    """SHA-1 of the pixel bytes and shape of a uint8 image (independent of file format)."""
    a = np.ascontiguousarray(image)
    return hashlib.sha1(f"{a.shape}{a.dtype}".encode() + a.tobytes()).hexdigest()


def thumbnail(image: np.ndarray, size: int = 16) -> np.ndarray:
    """The image shrunk to ``size`` x ``size`` (area-averaging), float64 grey levels 0..255."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BOX), dtype=np.float64)


def find_duplicates(a: Sequence[Sample], b: Sequence[Sample], near_rms: float = 12.0,
                    size: int = 16) -> pd.DataFrame:
    """For every slice of ``a``, its closest slice in ``b`` by RMS thumbnail distance (grey levels).

    Returns one row per slice of ``a`` with columns a_id, b_id, rms, exact (identical pixels), near
    (rms <= ``near_rms``), sorted by rms. Exact duplicates have rms 0 and exact True.
    """
    if not a or not b:
        raise ValueError("both sample lists must be non-empty")
    ta = np.stack([thumbnail(s.image, size).ravel() for s in a])
    tb = np.stack([thumbnail(s.image, size).ravel() for s in b])
    d2 = (ta**2).sum(1)[:, None] + (tb**2).sum(1)[None, :] - 2 * ta @ tb.T
    rms = np.sqrt(np.maximum(d2, 0) / ta.shape[1])
    j = rms.argmin(1)
    hb = {}
    rows = []
    for i, s in enumerate(a):
        t = b[j[i]]
        exact = s.image.shape == t.image.shape and content_hash(s.image) == hb.setdefault(j[i], content_hash(t.image))
        rows.append({"a_id": s.slice_id, "b_id": t.slice_id, "rms": float(rms[i, j[i]]),
                     "exact": bool(exact), "near": bool(rms[i, j[i]] <= near_rms)})
    return pd.DataFrame(rows).sort_values("rms", kind="stable").reset_index(drop=True)
