"""Chapter 7's image branch: iCTCF CT images -> lesion class maps -> per-patient CT phenotypes.

When the data root holds per-patient CT slices (``ictcf-images/Patient <N>/*.jpg``, read by
:func:`ssinfnet.data.ictcf.read_ictcf_images`) and the iCTCF clinical table, :func:`image_cohort`

1. reads the trained stage-1 model (``stage1_model``, chapter 3) and multi SSInfNet
   (``model:multi_ssinfnet``, chapter 4) through the artifact contract;
2. predicts a class map per slice, restricted to the lungs
   (:func:`ssinfnet.segmentation.cohort.predict_class_maps`), and saves them (``ictcf_class_maps``);
3. extracts radiomic features inside the overall, GGO and consolidation regions of every slice
   (:func:`ssinfnet.stats.phenotypes.slice_radiomics`, joblib processes for large cohorts), averages them
   per patient and joins the clinical table (:func:`ssinfnet.stats.phenotypes.patient_phenotypes`),
   and saves that table (``ictcf_phenotypes``);
4. picks the candidate mediators (:func:`candidate_mediators`).

:func:`missing_inputs` says, in plain words, why the branch cannot run (no clinical table, a model not
trained in this run folder); the chapter then uses the simulated cohort and prints that reason.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ...data import ictcf
from ...data.io import DataError
from ...data.maps import save_maps
from ...data.sources import get_source
from ...stats import phenotypes
from .. import artifacts

if TYPE_CHECKING:  # the networks are imported only when there are images to segment
    from ...segmentation.cohort import CohortMaps

STAGE = "07_radiomics_mediation"

#: The two trained models the branch needs: artifact name -> what it is, in words.
MODELS = {"stage1_model": "the stage-1 (infection) model of chapter 3",
          "model:multi_ssinfnet": "the multi SSInfNet (GGO/consolidation) model of chapter 4"}

#: A candidate mediator needs a value in at least this many patients: the mediation regressions have
#: up to five coefficients (intercept, exposure, mediator, two other exposures).
MIN_PATIENTS = 8

#: Slices from which radiomics run in joblib processes (one per core); fewer run in this process.
PARALLEL_FROM = 64

#: Slices whose region masks are built and measured at a time (bounds the memory of a large cohort).
RADIOMICS_CHUNK = 1024


@dataclass
class ImageCohort:
    """What the image branch produced.

    ``image_root``: the ``ictcf-images`` folder; ``patients_found`` / ``patients_used``: patient folders
    there and used (the profile's ``ictcf_patient_limit``); ``maps``: the class maps and the per-slice
    table (:class:`ssinfnet.segmentation.cohort.CohortMaps`); ``features``: radiomics per slice and region;
    ``phenotypes``: one row per patient (clinical columns + ``<region>_<feature>``); ``features_all``: the
    ``<region>_<feature>`` columns; ``mediators``: the candidates (:func:`candidate_mediators`);
    ``excluded``: feature column -> why it is not a candidate; ``paths``: artifact name -> file.
    """

    image_root: Path
    patients_found: int
    patients_used: int
    maps: CohortMaps
    features: pd.DataFrame
    phenotypes: pd.DataFrame
    features_all: list
    mediators: list
    excluded: dict
    paths: dict

    def summary_line(self) -> str:
        """Patients, slices, lung masks flagged, and the lesion share, in one line."""
        s = self.maps.slices
        limited = (f" (the profile's limit; {self.patients_found} found)"
                   if self.patients_used < self.patients_found else "")
        lung = s.lung_pixels.sum()
        share = (s.ggo_pixels.sum() + s.consolidation_pixels.sum()) / lung if lung else float("nan")
        return (f"{self.patients_used} patients{limited}, {len(s)} CT slices from {self.image_root}; "
                f"{self.maps.n_flagged} lung masks flagged (used); predicted lesions cover {share:.1%} of the "
                f"lungs; {len(self.mediators)} of {len(self.features_all)} patient features are candidate "
                f"mediators")


def missing_inputs(ctx) -> list[str]:
    """Why the image branch cannot run in ``ctx`` (empty when it can): no iCTCF clinical table, or a
    trained model that is not in this run folder (each naming the chapter to run)."""
    out = []
    if not ctx.data.has("ictcf-clinical"):
        out.append(f"no iCTCF clinical table ({get_source('ictcf-clinical').marker} below the data root) "
                   "to join the patients to")
    for name, what in MODELS.items():
        if artifacts.optional(ctx, name, STAGE) is None:
            writer = next(a.writer for a in artifacts.ARTIFACTS if a.matches(name) is not None and STAGE in a.readers)
            out.append(f"{what} is not in this run folder (run chapter {writer}: "
                       f"python -m ssinfnet stage {writer[:2]})")
    return out


def candidate_mediators(table: pd.DataFrame, names: list[str], min_patients: int = MIN_PATIENTS
                        ) -> tuple[list[str], dict[str, str]]:
    """The columns of ``names`` usable as mediators: a value in at least ``min_patients`` rows of ``table``
    and not constant there. Returns (candidates in input order, excluded column -> reason)."""
    keep, excluded = [], {}
    for c in names:
        values = pd.to_numeric(table[c], errors="coerce").dropna()
        if len(values) < min_patients:
            excluded[c] = f"values in {len(values)} patients (< {min_patients})"
        elif values.nunique() < 2:
            excluded[c] = "constant"
        else:
            keep.append(c)
    return keep, excluded


def slice_features(samples, class_maps: dict, cache_dir: Path | None = None, progress: bool = False) -> pd.DataFrame:
    """:func:`ssinfnet.stats.phenotypes.slice_radiomics` of ``samples`` in their class maps, in chunks of
    :data:`RADIOMICS_CHUNK` slices, each in joblib processes from :data:`PARALLEL_FROM` slices on (rows in
    input order either way)."""
    parts = []
    for start in range(0, len(samples), RADIOMICS_CHUNK):
        part = samples[start:start + RADIOMICS_CHUNK]
        parts.append(phenotypes.slice_radiomics(part, class_maps, n_jobs=-1 if len(part) >= PARALLEL_FROM else 1,
                                                cache_dir=cache_dir, progress=progress))
    return pd.concat(parts, ignore_index=True)


def _check_patients(samples, clinical: pd.DataFrame, image_root: Path, ctx) -> None:
    """DataError naming the image folder and the clinical table when a patient has no clinical row."""
    have = set(clinical.patient_id.astype(int))
    unknown = sorted({int(s.group_id) for s in samples} - have)
    if unknown:
        raise DataError(f"{image_root}: patients {unknown[:10]} have CT images but no row in the clinical table "
                        f"{ictcf.clinical_path(ctx.data.path)}")


def image_cohort(ctx, clinical: pd.DataFrame, progress: bool = False) -> ImageCohort:
    """Run the image branch (module docstring) on the images below ``ctx``'s data root.

    ``clinical``: :func:`ssinfnet.data.ictcf.load_clinical` of the data root. Call only when
    :func:`missing_inputs` is empty. Writes and returns the paths of ``ictcf_class_maps``
    (``07_radiomics_mediation/ictcf_class_maps.npz``, uint8 labels per slice id ``"<patient>/<stem>"``)
    and ``ictcf_phenotypes`` (CSV, one row per patient); the caller records them.

    Raises DataError for an unreadable image folder, a patient without a clinical row, or a model file
    that is not the model it should be (a broken artifact is an error, not a reason to simulate).
    """
    from ...segmentation.cohort import predict_class_maps
    from ...training.export import load_exported

    image_root = phenotypes.ictcf_image_root(ctx.data.path)
    if image_root is None:
        raise ValueError(f"{ctx.data.describe()}: no {phenotypes.ICTCF_IMAGE_FOLDER} folder below the data root")
    limit = ctx.profile.ictcf_patient_limit
    found = sum(p.is_dir() and re.fullmatch(r"Patient \d+", p.name) is not None for p in image_root.iterdir())
    samples = ictcf.read_ictcf_images(image_root, limit_patients=limit)
    _check_patients(samples, clinical, image_root, ctx)
    stage1 = load_exported(artifacts.require(ctx, "stage1_model", STAGE), ctx.device, expect_task="single")
    multi = load_exported(artifacts.require(ctx, "model:multi_ssinfnet", STAGE), ctx.device, expect_task="multi")
    maps = predict_class_maps(stage1, multi, samples, ctx.device, batch_size=ctx.profile.batch_size)
    paths = {"ictcf_class_maps": ctx.path(STAGE, "ictcf_class_maps.npz"),
             "ictcf_phenotypes": ctx.path(STAGE, "ictcf_phenotypes.csv")}
    save_maps(paths["ictcf_class_maps"], samples, maps.maps_of(samples))
    features = slice_features(samples, maps.class_maps, ctx.path("radiomics_cache"), progress)
    table, names = phenotypes.patient_phenotypes(features, clinical)
    table.to_csv(paths["ictcf_phenotypes"], index=False)
    mediators, excluded = candidate_mediators(table, names)
    return ImageCohort(image_root, found, len({s.group_id for s in samples}), maps, features, table, names,
                       mediators, excluded, paths)
