"""CT phenotypes for the statistics chapter: radiomic rows from slices and their masks, and patient tables.

Glue between the data layer (:class:`ssinfnet.data.sample.Sample`), :mod:`ssinfnet.stats.radiomics` and
:mod:`ssinfnet.stats.mediation`:

* :func:`slice_radiomics` extracts the features of the overall, GGO and consolidation regions of each
  slice, from its ground-truth classes or from predicted class maps (:func:`ssinfnet.data.maps.load_maps` with ``kind="labels"``);
* :func:`region_summary` counts valid rows and takes medians per region;
* :func:`patient_phenotypes` averages slices per patient and joins the clinical table, giving the
  one-row-per-patient mediator table the mediation tests need (iCTCF, where slices carry patient ids).

COVID-SemiSeg's labelled slices carry no patient id, so their features stay per slice.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import radiomics

#: The features SSInfNet kept after its correlation filter (display name -> column of our tables).
#: "area" is the mask's pixel count (``mask_pixels``): shape features are not among the extracted classes.
PAPER_FEATURES = {
    "entropy (bits)": "firstorder_Entropy", "kurtosis": "firstorder_Kurtosis", "skewness": "firstorder_Skewness",
    "mean (grey level)": "firstorder_Mean", "area (pixels)": "mask_pixels", "glcm imc1": "glcm_Imc1",
}

#: What Fung et al. (2021) report for the univariate mediation on iCTCF (predicted masks).
PAPER_MEDIATION = {
    "significant GGO mediators": 37,
    "retained after the |r| > 0.8 filter": 8,
    "retained feature types": "entropy, kurtosis, skewness, mean, area, IMC1",
    "significant consolidation mediators": 0,
}

ICTCF_IMAGE_FOLDER = "ictcf-images"


def ictcf_image_root(data_root: Path | str | None) -> Path | None:
    """``<data_root>/ictcf-images`` when it exists (per-patient iCTCF CT slices), else None."""
    if data_root is None:
        return None
    path = Path(data_root) / ICTCF_IMAGE_FOLDER
    return path if path.is_dir() else None


def slice_items(samples: Sequence, class_maps: Mapping[str, np.ndarray] | None = None,
                mask_source: str | None = None) -> list[dict]:
    """:func:`ssinfnet.stats.radiomics.extract_table` items, three per slice (overall, ggo, consolidation).

    Parameters
    ----------
    samples : sequence of Sample
        Slices; their ``classes`` (ground truth) are used when ``class_maps`` is None.
    class_maps : mapping slice_id -> (H, W) labels in {0, 1, 2}, optional
        Predicted class maps; every sample needs one of its own size.
    mask_source : str, optional
        Recorded in each row; default ``"ground truth"`` or ``"predicted"``.

    Returns
    -------
    list of dict with ``image``, ``mask`` and the metadata ``slice_id``, ``subset``, ``patient_id``
    (the sample's ``group_id``, None when unknown), ``mask_source``, ``region``.
    """
    source = mask_source or ("ground truth" if class_maps is None else "predicted")
    items = []
    for s in samples:
        if class_maps is None:
            labels = s.classes
            if labels is None:
                raise ValueError(f"samples: slice {s.slice_id!r} has no ground-truth classes; pass class_maps")
        else:
            if s.slice_id not in class_maps:
                raise ValueError(f"class_maps: no class map for slice {s.slice_id!r}")
            labels = np.asarray(class_maps[s.slice_id])
            if labels.shape != s.image.shape:
                raise ValueError(f"class_maps: slice {s.slice_id!r} map has shape {labels.shape}, "
                                 f"image has {s.image.shape}")
        items += radiomics.region_items(s.image, labels, slice_id=s.slice_id, subset=s.subset,
                                        patient_id=s.group_id, mask_source=source)
    return items


def slice_radiomics(samples: Sequence, class_maps: Mapping[str, np.ndarray] | None = None,
                    mask_source: str | None = None, limit: int | None = None, **extract_kwargs) -> pd.DataFrame:
    """Radiomic features of the three regions of each slice (one row per slice and region).

    Parameters
    ----------
    samples, class_maps, mask_source
        See :func:`slice_items`.
    limit : int, optional
        Use only the first ``limit`` samples (reduced profiles).
    **extract_kwargs
        Passed to :func:`ssinfnet.stats.radiomics.extract_table` (``settings``, ``min_mask_pixels``,
        ``n_jobs``, ``cache_dir``, ``progress``).

    Returns
    -------
    pandas.DataFrame from :func:`ssinfnet.stats.radiomics.extract_table`; rows of masks below the minimum
    size are kept with NaN features and a ``reason``.
    """
    samples = list(samples)
    if limit is not None:
        if int(limit) < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        samples = samples[: int(limit)]
    if not samples:
        raise ValueError("samples is empty")
    return radiomics.extract_table(slice_items(samples, class_maps, mask_source), **extract_kwargs)


def region_summary(table: pd.DataFrame, features: Mapping[str, str] | Sequence[str],
                   by: Sequence[str] = ("mask_source", "region")) -> pd.DataFrame:
    """Rows, valid rows (features computed) and the median of each feature per group.

    Parameters
    ----------
    table : DataFrame from :func:`slice_radiomics`
    features : mapping display name -> column, or sequence of columns
    by : grouping columns, default ("mask_source", "region")

    Returns
    -------
    pandas.DataFrame, one row per group: ``rows``, ``valid``, then one median column per feature
    (named by its display name).
    """
    features = dict(features) if isinstance(features, Mapping) else {c: c for c in features}
    by = [c for c in by]
    missing = [c for c in [*by, "reason", *features.values()] if c not in table.columns]
    if missing:
        raise ValueError(f"table: missing column(s) {missing}")
    valid = table["reason"] == ""
    grouped = table.assign(_valid=valid).groupby(by, sort=False)
    out = pd.DataFrame({"rows": grouped.size(), "valid": grouped["_valid"].sum().astype(int)})
    medians = table[valid].groupby(by, sort=False)[list(features.values())].median()
    medians.columns = list(features)
    return out.join(medians).reset_index()


def patient_phenotypes(table: pd.DataFrame, clinical: pd.DataFrame, regions: Sequence[str] | None = None,
                       features: Sequence[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """One row per patient: slice features averaged per patient and region, joined to the clinical table.

    Parameters
    ----------
    table : DataFrame from :func:`slice_radiomics` with a ``patient_id`` column (iCTCF patient numbers)
    clinical : DataFrame with an integer ``patient_id`` column (e.g. :func:`ssinfnet.data.ictcf.load_clinical`)
    regions : regions to keep (default all in the table)
    features : feature columns to keep (default all)

    Returns
    -------
    merged : DataFrame, the clinical rows of patients with slices plus ``<region>_<feature>`` columns
    mediators : list of the ``<region>_<feature>`` column names
    """
    if "patient_id" not in table or table["patient_id"].isna().any():
        raise ValueError("table: every row needs a patient_id (slices without patient ids cannot be averaged "
                         "per patient)")
    if "patient_id" not in clinical:
        raise ValueError("clinical: missing column 'patient_id'")
    t = table.copy()
    try:
        t["patient_id"] = t["patient_id"].astype(int)
    except (TypeError, ValueError) as err:
        raise ValueError(f"table: patient_id must hold integer patient numbers ({err})") from err
    if regions is not None:
        t = t[t["region"].isin(list(regions))]
    names = radiomics.feature_columns(t)
    if features is not None:
        absent = [f for f in features if f not in names]
        if absent:
            raise ValueError(f"features: {absent} not in the table")
        t = t.drop(columns=[c for c in names if c not in features])
    wide = radiomics.wide(radiomics.aggregate(t, by="patient_id"))
    unknown = sorted(set(wide["patient_id"]) - set(clinical["patient_id"]))
    if unknown:
        raise ValueError(f"table: patient ids {unknown[:10]} are not in the clinical table")
    merged = clinical.merge(wide, on="patient_id", how="inner", validate="one_to_one")
    mediators = [c for c in wide.columns if c != "patient_id"]
    return merged, mediators
