"""The one vocabulary of lesion classes: codes, machine names, display labels, colours, regions.

Machine names (``CLASS_NAMES``, lowercase) are the values and column prefixes written to files: the
``class`` column of the score tables, ``ggo_fraction``, ``val_dice_ggo``, the radiomics ``region``
column. Display labels (``CLASS_LABELS``) are the words shown to people: figure legends, table
headers, the manifest keys ``"GGO meanDic"`` and the ``classes`` of exported multi-class models.
"""
from __future__ import annotations

import numpy as np

__all__ = ["BACKGROUND", "GGO", "CONSOLIDATION", "CODES", "CLASS_NAMES", "CLASS_LABELS", "CLASS_COLOURS",
           "REGIONS", "class_rgb"]

#: Class codes of the multi-class masks (MedSeg / COVID-SemiSeg convention).
BACKGROUND, GGO, CONSOLIDATION = 0, 1, 2
CODES = (BACKGROUND, GGO, CONSOLIDATION)

#: Machine names, indexed by code: CSV values and columns, dict keys.
CLASS_NAMES = ("background", "ggo", "consolidation")
#: Display labels, indexed by code: figures, tables, manifest keys, exported model classes.
CLASS_LABELS = ("background", "GGO", "consolidation")

#: Class code -> RGB in [0, 1]: 1 GGO (or binary infection) red, 2 consolidation green.
CLASS_COLOURS = {GGO: (1.0, 0.0, 0.0), CONSOLIDATION: (0.0, 0.8, 0.0)}

#: Radiomics regions -> the class codes each covers: all infection, GGO, consolidation.
REGIONS = {"overall": (GGO, CONSOLIDATION), CLASS_NAMES[GGO]: (GGO,), CLASS_NAMES[CONSOLIDATION]: (CONSOLIDATION,)}


def class_rgb(labels: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) of a label map on black: GGO red, consolidation green."""
    lab = np.asarray(labels)
    rgb = np.zeros(lab.shape + (3,), dtype=np.uint8)
    for code, colour in CLASS_COLOURS.items():
        rgb[lab == code] = np.round(np.asarray(colour) * 255).astype(np.uint8)
    return rgb
