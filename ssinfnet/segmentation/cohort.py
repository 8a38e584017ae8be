"""Lesion class maps of a cohort's CT slices: the two trained stages, restricted to the lungs.

The image path of the statistics chapter, one slice at a time and in chunks (so that only uint8 label
maps, never probability maps, are kept for a large cohort):

1. stage 1: the single (infection) model gives an infection probability map per slice;
2. stage 2: the multi model, with that map as its prior channel, gives background / GGO / consolidation
   probabilities; their argmax is the slice's class map (as chapter 5 builds its ``test_class_maps``);
3. the lungs: :func:`ssinfnet.severity.lungs.segment_lungs` segments each slice (8-bit lung window), and
   every lesion pixel outside the lungs is set to background.

:func:`predict_class_maps` returns the maps (slice id -> uint8 (H, W) codes of
:mod:`ssinfnet.data.classes`) and one row per slice saying how much of it is lung and lesion, and
whether its lung mask was flagged (flagged masks are used, and counted, not dropped).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.classes import CONSOLIDATION, GGO
from ..data.sample import Sample
from ..severity.lungs import LungParams, segment_lungs
from ..training.export import LoadedModel
from .predict import predict_samples

#: Columns of :attr:`CohortMaps.slices`.
SLICE_COLUMNS = ["slice_id", "patient_id", "height", "width", "lung_pixels", "lung_fraction", "lung_flags",
                 "infection_pixels", "ggo_pixels", "consolidation_pixels", "lesion_pixels_outside_lungs"]

#: Slices from which lung segmentation runs in parallel processes (joblib); fewer run in this process.
PARALLEL_FROM = 64


@dataclass
class CohortMaps:
    """Output of :func:`predict_class_maps`.

    ``class_maps``: slice id -> uint8 (H, W) labels (0 background, 1 GGO, 2 consolidation), zero outside
    the lungs, at the slice's own size. ``slices``: one row per slice (:data:`SLICE_COLUMNS`), in input
    order: ``patient_id`` (the sample's ``group_id``), ``lung_pixels`` and ``lung_fraction`` (of the
    slice), ``lung_flags`` (the lung mask's flags joined by "; ", "" when fine), ``infection_pixels``
    (stage-1 probability >= 0.5 inside the lungs), ``ggo_pixels`` / ``consolidation_pixels`` (of the
    class map), ``lesion_pixels_outside_lungs`` (stage-2 lesion pixels the lung mask removed).
    """

    class_maps: dict
    slices: pd.DataFrame

    @property
    def n_flagged(self) -> int:
        """Slices whose lung mask was flagged (used all the same)."""
        return int((self.slices.lung_flags != "").sum())

    def maps_of(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        """The class maps of ``samples``, in their order (for :func:`ssinfnet.data.maps.save_maps`)."""
        return [self.class_maps[s.slice_id] for s in samples]


def _check_models(stage1: LoadedModel, multi: LoadedModel) -> None:
    if not isinstance(stage1, LoadedModel) or not isinstance(multi, LoadedModel):
        raise ValueError("stage1 and multi must be exported models (training.export.load_exported)")
    for model, task, role in ((stage1, "single", "stage1"), (multi, "multi", "multi")):
        if model.task != task:
            where = f" ({model.path})" if model.path else ""
            raise ValueError(f"{role}: expected a {task} segmentation model, got task {model.task!r}{where}")


def lung_masks(images: Sequence[np.ndarray], params: LungParams | None = None, n_jobs: int | None = None):
    """:func:`ssinfnet.severity.lungs.segment_lungs` of each uint8 (H, W) image, in order.

    ``n_jobs`` joblib processes (None: one per core from :data:`PARALLEL_FROM` images on, else 1).
    """
    if n_jobs is None:
        n_jobs = -1 if len(images) >= PARALLEL_FROM else 1
    if n_jobs == 1:
        return [segment_lungs(img, "uint8", params) for img in images]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs)(delayed(segment_lungs)(img, "uint8", params) for img in images)


def predict_class_maps(stage1: LoadedModel, multi: LoadedModel, samples: Sequence[Sample], device: str = "cpu",
                       *, batch_size: int = 8, chunk: int = 256, lung_params: LungParams | None = None,
                       n_jobs: int | None = None, flip: bool = False) -> CohortMaps:
    """Class maps of ``samples`` from the two trained stages, restricted to the lungs (module docstring).

    Parameters
    ----------
    stage1 : LoadedModel
        The exported single (infection) model (``task == "single"``).
    multi : LoadedModel
        The exported multi model (``task == "multi"``) taking image + stage-1 prior. A model trained
        with the ground-truth prior (``extra["prior_source"] == "ground_truth"``) is refused: a cohort
        without labels has no such prior.
    samples : sequence of Sample
        uint8 (H, W) slices; ``group_id`` is the patient (None allowed); slice ids must be unique.
    device : str
    batch_size : int
        Slices per network forward pass.
    chunk : int
        Slices predicted before their probability maps are reduced to labels and freed.
    lung_params : LungParams, optional
        Passed to :func:`ssinfnet.severity.lungs.segment_lungs`.
    n_jobs : int, optional
        Processes for the lung masks (see :func:`lung_masks`).
    flip : bool
        Average both stages' logits with their left-right mirror's
        (:func:`ssinfnet.segmentation.predict.predict_probabilities`).

    Returns
    -------
    CohortMaps

    Raises
    ------
    ValueError
        No samples, duplicate slice ids, a model of the wrong task or prior, chunk < 1.
    """
    samples = list(samples)
    if not samples:
        raise ValueError("samples is empty")
    ids = [s.slice_id for s in samples]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"samples: duplicate slice ids {dup[:5]}")
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    _check_models(stage1, multi)
    if multi.extra.get("prior_source") == "ground_truth":
        raise ValueError(f"multi: {multi.path or 'the model'} was trained with the ground-truth prior, "
                         "which unlabelled slices do not have; use a model trained on stage-1 priors")
    maps, rows = {}, []
    for start in range(0, len(samples), int(chunk)):
        part = samples[start:start + int(chunk)]
        infection = predict_samples(stage1, part, device=device, batch_size=batch_size, flip=flip)
        classes = predict_samples(multi, part, device=device, priors=infection, batch_size=batch_size, flip=flip)
        lungs = lung_masks([s.image for s in part], lung_params, n_jobs)
        for s, p_inf, p_cls, lung in zip(part, infection, classes, lungs):
            labels = np.asarray(p_cls).argmax(0).astype(np.uint8)
            inside = lung.mask
            outside = int(((labels > 0) & ~inside).sum())
            labels[~inside] = 0
            maps[s.slice_id] = labels
            rows.append({"slice_id": s.slice_id, "patient_id": s.group_id, "height": labels.shape[0],
                         "width": labels.shape[1], "lung_pixels": int(inside.sum()),
                         "lung_fraction": float(lung.area_fraction), "lung_flags": "; ".join(lung.flags),
                         "infection_pixels": int(((p_inf >= 0.5) & inside).sum()),
                         "ggo_pixels": int((labels == GGO).sum()),
                         "consolidation_pixels": int((labels == CONSOLIDATION).sum()),
                         "lesion_pixels_outside_lungs": outside})
    return CohortMaps(maps, pd.DataFrame(rows, columns=SLICE_COLUMNS))
