"""The one sample structure that every reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Sample:
    """One 2-D CT slice with whatever labels its source provides.

    Attributes
    ----------
    image : uint8 array of shape (H, W)
        Grey values 0..255 (8-bit lung-window crops as released, or HU slices windowed to 0..255).
    infection : bool array (H, W) or None
        Overall infection mask (GGO or consolidation).
    classes : uint8 array (H, W) or None
        0 background, 1 GGO, 2 consolidation.
    edge : bool array (H, W) or None
        Infection boundary, as released with COVID-SemiSeg.
    prior : float32 array (H, W) in [0, 1] or None
        Stage-1 infection prediction fed to the multi-class network.
    pseudo_label : float32 array (H, W) in [0, 1] or None
        Soft Semi-Inf-Net pseudo label of the unlabelled pool (not ground truth; unused for training).
    slice_id : str
        Identifier unique within its source and subset (the file stem for COVID-SemiSeg).
    group_id : str or None
        Volume or patient the slice belongs to, when known; splits keep a group on one side.
    source : str
        Name of the source in :mod:`ssinfnet.data.sources` (e.g. ``"covid-semiseg"``, ``"synthetic"``).
    subset : str
        Subset within the source (e.g. ``"train"``, ``"test"``, ``"unlabelled"``).
    path : str
        File the image was read from (or a synthetic identifier).
    meta : dict
        Anything else a reader knows (original size, HU window, ...).
    """

    image: np.ndarray
    slice_id: str
    source: str
    subset: str
    path: str = ""
    infection: np.ndarray | None = None
    classes: np.ndarray | None = None
    edge: np.ndarray | None = None
    prior: np.ndarray | None = None
    pseudo_label: np.ndarray | None = None
    group_id: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.image.shape)  # type: ignore[return-value]

    def __post_init__(self) -> None:
        if self.image.ndim != 2 or self.image.dtype != np.uint8:
            raise ValueError(f"{self.path or self.slice_id}: image must be a 2-D uint8 array, "
                             f"got {self.image.dtype} of shape {self.image.shape}")
        for name in ("infection", "classes", "edge", "prior", "pseudo_label"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != self.image.shape:
                raise ValueError(f"{self.path or self.slice_id}: {name} has shape {arr.shape}, "
                                 f"image has {self.image.shape}")
