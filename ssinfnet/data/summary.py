"""Tables that describe a dataset: counts, class balance, image sizes, clinical cohort."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .classes import CLASS_LABELS, CLASS_NAMES, CONSOLIDATION, GGO
from .sample import Sample
from .sources import SOURCES


def sources_table() -> pd.DataFrame:
    """The source registry as a table (name, title, version, licence, citation)."""
    return pd.DataFrame([{"source": s.name, "title": s.title, "version": s.version, "licence": s.licence,
                          "citation": s.citation} for s in SOURCES.values()])


def subset_counts(subsets: dict[str, Sequence[Sample]]) -> pd.DataFrame:
    """One row per subset: slices, groups (volumes/patients; 0 when unknown), labelled slices,
    slices with an empty infection mask."""
    rows = []
    for name, samples in subsets.items():
        groups = {s.group_id for s in samples if s.group_id is not None}
        labelled = [s for s in samples if s.infection is not None]
        rows.append({"subset": name, "slices": len(samples), "groups": len(groups),
                     "labelled": len(labelled), "empty_infection": sum(int(not s.infection.any()) for s in labelled)})
    return pd.DataFrame(rows)


def class_balance(samples: Sequence[Sample]) -> pd.DataFrame:
    """Per labelled slice: pixel fractions of GGO, consolidation and all infection (fractions of the
    slice in [0, 1]), lesion pixel counts, and the number of connected lesions."""
    from scipy import ndimage

    rows = []
    for s in samples:
        if s.classes is None:
            continue
        n = s.classes.size
        inf = s.classes > 0
        rows.append({"slice_id": s.slice_id, "subset": s.subset,
                     f"{CLASS_NAMES[GGO]}_fraction": float((s.classes == GGO).sum() / n),
                     f"{CLASS_NAMES[CONSOLIDATION]}_fraction": float((s.classes == CONSOLIDATION).sum() / n),
                     "infection_fraction": float(inf.sum() / n), "infection_pixels": int(inf.sum()),
                     "lesions": int(ndimage.label(inf)[1])})
    return pd.DataFrame(rows)


def pixel_shares(samples: Sequence[Sample]) -> pd.Series:
    """Pooled pixel shares of background, GGO and consolidation over all labelled slices (sum 1)."""
    counts = np.zeros(3)
    for s in samples:
        if s.classes is not None:
            counts += np.bincount(s.classes.ravel(), minlength=3)[:3]
    return pd.Series(counts / counts.sum(), index=list(CLASS_LABELS))


def size_table(subsets: dict[str, Sequence[Sample]]) -> pd.DataFrame:
    """Width and height in pixels of every slice, with its subset."""
    return pd.DataFrame([{"subset": k, "width": s.image.shape[1], "height": s.image.shape[0]}
                         for k, v in subsets.items() for s in v])


def clinical_summary(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Summary tables of a clinical cohort (columns of :func:`ssinfnet.data.ictcf.load_clinical`):
    ``overview`` (n, age mean/median/range, share male), ``morbidity`` (counts with binary severity
    and score), ``diseases`` (counts of the number of underlying diseases)."""
    overview = pd.DataFrame([{"patients": len(df), "age_mean": df.age.mean(), "age_median": df.age.median(),
                              "age_min": df.age.min(), "age_max": df.age.max(), "male_share": df.male.mean(),
                              "with_disease_share": (df.n_diseases > 0).mean(),
                              "severe_binary_share": df.severity_binary.mean()}])
    morbidity = (df.groupby("morbidity").agg(patients=("patient_id", "size"), median_age=("age", "median"),
                                             severity_binary=("severity_binary", "first"),
                                             severity_score=("severity_score", "first"))
                 .sort_values(["severity_binary", "severity_score", "median_age"]).reset_index())
    diseases = df.n_diseases.clip(upper=4).map(lambda k: "4+" if k >= 4 else str(k)).value_counts().sort_index()
    return {"overview": overview, "morbidity": morbidity,
            "diseases": diseases.rename_axis("underlying_diseases").reset_index(name="patients")}
