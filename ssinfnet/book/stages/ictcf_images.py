"""Chapter 7's image branch: iCTCF CT images -> lesion class maps -> per-patient CT phenotypes.

When the data root holds per-patient CT slices (``ictcf-images/Patient <N>/*.jpg``, read by
:func:`ssinfnet.data.ictcf.read_ictcf_images`) and the iCTCF clinical table, :func:`image_cohort`

1. reads the two models chapter 5 selected on validation (its manifest record ``selected``: the best
   single-class and the best multi-class InfNet-family model whose training did not fail) through the
   artifact contract (``model:<variant>`` of chapters 3 and 4), and checks each model's own health record
   (:func:`usable_models`);
2. predicts a class map per slice, restricted to the lungs
   (:func:`ssinfnet.segmentation.cohort.predict_class_maps`; the selected single-class model's map is
   the multi model's prior, standing in for the out-of-fold SSInfNet maps it was trained on), and saves
   them (``ictcf_class_maps``);
3. extracts radiomic features inside the overall, GGO and consolidation regions of every slice
   (:func:`ssinfnet.stats.phenotypes.slice_radiomics`, joblib processes for large cohorts), averages them
   per patient and joins the clinical table (:func:`ssinfnet.stats.phenotypes.patient_phenotypes`),
   and saves that table (``ictcf_phenotypes``);
4. picks the candidate mediators (:func:`candidate_mediators`).

:func:`missing_inputs` says, in plain words, why the branch cannot run (no clinical table; chapter 5 not run
in this run folder; no usable model because every candidate failed its training checks; a selected model
whose file is missing or whose own record says its training failed); the chapter then uses the simulated
cohort and prints that reason. A model is never used when its training failed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
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

#: The stage whose validation-based choice of models the branch follows, and the keys of its manifest
#: record ``selected`` (artifact it hands on -> variant) for each role: role -> (key, task, in words).
SELECTION_STAGE = "05_evaluation"
ROLES = {"stage1": ("test_predictions", "single", "single-class (infection) model"),
         "multi": ("test_class_maps", "multi", "multi-class (GGO/consolidation) model")}

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
    ``excluded``: feature column -> why it is not a candidate; ``paths``: artifact name -> file;
    ``models``: role (``"stage1"``, ``"multi"``) -> the variant used (chapter 5's choice on validation).
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
    models: dict = field(default_factory=dict)

    def summary_line(self) -> str:
        """Patients, slices, lung masks flagged, and the lesion share, in one line."""
        s = self.maps.slices
        limited = (f" (the profile's limit; {self.patients_found} found)"
                   if self.patients_used < self.patients_found else "")
        lung = s.lung_pixels.sum()
        share = (s.ggo_pixels.sum() + s.consolidation_pixels.sum()) / lung if lung else float("nan")
        used = (f"segmented by {self.models['stage1']} + {self.models['multi']} (chapter 5's choice on validation); "
                if self.models else "")
        return (f"{self.patients_used} patients{limited}, {len(s)} CT slices from {self.image_root}; {used}"
                f"{self.maps.n_flagged} lung masks flagged (used); predicted lesions cover {share:.1%} of the "
                f"lungs; {len(self.mediators)} of {len(self.features_all)} patient features are candidate "
                f"mediators")


def usable_models(ctx) -> tuple[dict[str, Path], list[str]]:
    """The models the image branch uses: role (``"stage1"``, ``"multi"``) -> exported model file, and
    why there are none (plain words, empty when both are usable).

    Each role's model is the variant chapter 5 selected on validation (manifest record ``selected`` of
    ``05_evaluation``), read through the contract as ``model:<variant>``, and only when the file's own
    health record says its training did not fail (a model retrained after chapter 5 ran may have). A file
    that is not an exported model of its task raises DataError (a broken artifact is an error).
    """
    from ...training.export import load_exported

    selected = artifacts.selection(ctx)
    if selected is None:
        return {}, ["chapter 5 has not selected the models on validation in this run folder (run chapter "
                    f"{SELECTION_STAGE}: python -m ssinfnet stage 05)"]
    paths, why = {}, []
    for role, (key, task, what) in ROLES.items():
        variant = selected.get(key)
        if variant is None:
            why.append(f"chapter 5 found no usable {what}: every InfNet-family candidate failed its training "
                       "checks, and a failed model is never used")
            continue
        path = artifacts.optional(ctx, f"model:{variant}", STAGE)
        if path is None:
            writer = "03_single" if task == "single" else "04_multi"
            why.append(f"the {what} chapter 5 selected ({variant}) is not in this run folder (run chapter "
                       f"{writer}: python -m ssinfnet stage {writer[:2]})")
            continue
        health = load_exported(path, "cpu", expect_task=task).extra.get("health") or {}
        if health.get("failed", True):
            status = health.get("status", "no health record")
            why.append(f"the {what} chapter 5 selected ({variant}) now records a failed training ({status}; "
                       "retrained after chapter 5?), and a failed model is never used: run chapter 05 again")
            continue
        paths[role] = path
    return paths, why


def missing_inputs(ctx) -> list[str]:
    """Why the image branch cannot run in ``ctx`` (empty when it can): no iCTCF clinical table, or no
    usable model (:func:`usable_models`), each in plain words naming the chapter to run."""
    out = []
    if not ctx.data.has("ictcf-clinical"):
        out.append(f"no iCTCF clinical table ({get_source('ictcf-clinical').marker} below the data root) "
                   "to join the patients to")
    return out + usable_models(ctx)[1]


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
    that is not the model it should be (a broken artifact is an error, not a reason to simulate);
    ValueError when there is no usable model (:func:`usable_models`).
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
    models, why = usable_models(ctx)
    if why:
        raise ValueError(f"{ctx.run_dir}: the image branch has no usable models: {'; '.join(why)}")
    stage1 = load_exported(models["stage1"], ctx.device, expect_task="single")
    multi = load_exported(models["multi"], ctx.device, expect_task="multi")
    maps = predict_class_maps(stage1, multi, samples, ctx.device, batch_size=ctx.profile.batch_size,
                              flip=ctx.profile.test_time_flip)
    paths = {"ictcf_class_maps": ctx.path(STAGE, "ictcf_class_maps.npz"),
             "ictcf_phenotypes": ctx.path(STAGE, "ictcf_phenotypes.csv")}
    save_maps(paths["ictcf_class_maps"], samples, maps.maps_of(samples))
    features = slice_features(samples, maps.class_maps, ctx.path("radiomics_cache"), progress)
    table, names = phenotypes.patient_phenotypes(features, clinical)
    table.to_csv(paths["ictcf_phenotypes"], index=False)
    mediators, excluded = candidate_mediators(table, names)
    used = {role: m.extra.get("variant", Path(m.path).parent.name) for role, m in (("stage1", stage1), ("multi", multi))}
    return ImageCohort(image_root, found, len({s.group_id for s in samples}), maps, features, table, names,
                       mediators, excluded, paths, used)
