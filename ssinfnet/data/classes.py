"""The one vocabulary of lesion classes: codes, machine names, display labels, colours, regions."""
from __future__ import annotations

import numpy as np


#: Class codes of the multi-class masks (MedSeg / COVID-SemiSeg convention).
BACKGROUND, GGO, CONSOLIDATION = 0, 1, 2


CLASS_NAMES = ("background", "GGO", "consolidation")


#: Class code -> RGB in [0, 1]: 1 GGO (or binary infection) red, 2 consolidation green.
CLASS_COLOURS = {1: (1.0, 0.0, 0.0), 2: (0.0, 0.8, 0.0)}


def class_rgb(labels: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) of a label map on black: GGO red, consolidation green."""
    lab = np.asarray(labels)
    rgb = np.zeros(lab.shape + (3,), dtype=np.uint8)
    for code, colour in CLASS_COLOURS.items():
        rgb[lab == code] = np.round(np.asarray(colour) * 255).astype(np.uint8)
    return rgb
