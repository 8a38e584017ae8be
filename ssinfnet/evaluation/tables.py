"""Scoring trained models on the test split in both protocols, and the published numbers beside them.

All scores come from :mod:`~ssinfnet.evaluation.paper_metrics` and :mod:`~ssinfnet.evaluation.infnet_metrics`
(the one metric implementation). The Inf-Net protocol is
applied to maps quantised to 8 bits, exactly what ``python -m ssinfnet evaluate`` would read from the
PNGs that ``predict`` writes; the paper protocol thresholds the float maps at 0.5.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..data.classes import CLASS_LABELS, CONSOLIDATION, GGO
from . import infnet_metrics, paper_metrics

#: Inf-Net protocol, published on these 48 test slices (Fan et al., IEEE TMI 2020, Tables II and IV).
PUBLISHED_SINGLE = pd.DataFrame([
    {"method": "U-Net (published)", "meanDic": 0.439},
    {"method": "U-Net++ (published)", "meanDic": 0.581},
    {"method": "Inf-Net (published)", "meanDic": 0.682, "Sm": 0.781, "meanEm": 0.838, "MAE": 0.082},
    {"method": "Semi-Inf-Net (published)", "meanDic": 0.739, "Sm": 0.800, "meanEm": 0.894, "MAE": 0.064},
])
#: Manifest keys / table columns of the multi-class Inf-Net-protocol scores: "GGO meanDic", "consolidation meanDic".
MULTI_COLUMNS = tuple(f"{CLASS_LABELS[c]} meanDic" for c in (GGO, CONSOLIDATION))

PUBLISHED_MULTI = pd.DataFrame([
    {"method": "FCN8s (published)", "GGO meanDic": 0.471, "consolidation meanDic": 0.221},
    {"method": "Semi-Inf-Net + FCN8s (published)", "GGO meanDic": 0.646, "consolidation meanDic": 0.238},
    {"method": "Semi-Inf-Net & MC (published)", "GGO meanDic": 0.624, "consolidation meanDic": 0.362},
])
INFNET_COLUMNS = ("meanDic", "maxDic", "meanSen", "meanSpe", "Sm", "meanEm", "maxEm", "MAE", "adpDice")


def as_saved_png(prob: np.ndarray) -> np.ndarray:
    """A probability map as the evaluation tool reads it back from an 8-bit PNG: round(255 p) / 255."""
    return np.round(np.clip(prob, 0, 1) * 255.0) / 255.0


def infnet_protocol(maps: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> dict:
    """Inf-Net-protocol summary (meanDic, Sm, Em, MAE, ...) of probability maps against binary masks.

    Maps are quantised to 8 bits and min-max normalised per image, as the MATLAB tool does.
    """
    if len(maps) != len(gts) or not maps:
        raise ValueError(f"need equal, non-zero numbers of maps and masks, got {len(maps)} and {len(gts)}")
    per = [infnet_metrics.infnet_image_scores(infnet_metrics.minmax_normalise(as_saved_png(m)), np.asarray(g, bool))
           for m, g in zip(maps, gts)]
    return infnet_metrics.infnet_summary(per)


def infnet_table(results: Mapping[str, dict]) -> pd.DataFrame:
    """One row per method with the Inf-Net-protocol scalars (curves dropped)."""
    return pd.DataFrame([{"method": name, **{k: r[k] for k in INFNET_COLUMNS}, "images": r["n_images"]}
                         for name, r in results.items()])


def paper_table(scores: Mapping[str, pd.DataFrame], classes: Sequence[str],
                columns: Sequence[str] = ("dice", "iou", "recall", "precision", "auc")) -> pd.DataFrame:
    """"mean ± 1.96 SE" strings per method (rows) and class x metric (columns), paper protocol."""
    rows = []
    for name, table in scores.items():
        s = paper_metrics.summarise(table, metrics=list(columns))
        row = {"method": name}
        for cls in classes:
            for col in columns:
                hit = s[(s["class"] == cls) & (s["metric"] == col)]
                if len(hit):
                    r = hit.iloc[0]
                    row[f"{cls} {col}"] = f"{r['mean']:.3f} ± {1.96 * r['se']:.3f}" if np.isfinite(r["se"]) \
                        else f"{r['mean']:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def class_maps(probs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Argmax label maps (uint8: 0 background, 1 GGO, 2 consolidation) of (C, H, W) class probabilities."""
    return [np.asarray(p).argmax(0).astype(np.uint8) for p in probs]


def worst_images(scores: pd.DataFrame, n: int = 3, metric: str = "dice", cls: str = "infection") -> pd.DataFrame:
    """The ``n`` images with the lowest ``metric`` for class ``cls`` (NaN left out)."""
    rows = scores[(scores["class"] == cls) & scores[metric].notna()]
    return rows.nsmallest(n, metric)[["image", metric, "recall", "precision"]]


def multi_infnet_table(probs: Mapping[str, Sequence[np.ndarray]], labels: Sequence[np.ndarray],
                       suffix: str = "") -> pd.DataFrame:
    """Inf-Net-protocol meanDic of GGO and of consolidation per method: each class's probability map
    (channel 1 or 2 of (3, H, W) maps) scored as a binary problem against its mask (label 1 or 2)."""
    rows = []
    for name, maps in probs.items():
        rows.append({"method": f"{name}{suffix}",
                     MULTI_COLUMNS[0]: infnet_protocol([p[GGO] for p in maps], [g == GGO for g in labels])["meanDic"],
                     MULTI_COLUMNS[1]: infnet_protocol([p[CONSOLIDATION] for p in maps],
                                                       [g == CONSOLIDATION for g in labels])["meanDic"]})
    return pd.DataFrame(rows)


def init_effect(results: Mapping[str, dict], pairs: Sequence[tuple[str, str]], key: str = "meanDic") -> dict:
    """Differences ``results[a][key] - results[b][key]`` for each (a, b) pair present in ``results``
    (e.g. inpainting-initialised minus from-scratch), keyed "a - b"."""
    return {f"{a} - {b}": results[a][key] - results[b][key] for a, b in pairs if a in results and b in results}
