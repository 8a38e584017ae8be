"""Radiomic features of lesion masks on 2-D CT slices, with provenance and an on-disk cache.

Wraps PyRadiomics 3.0.1 (van Griethuysen et al., Cancer Res 2017): the *first-order*, *GLCM*, *GLDM*
and *NGTDM* feature classes of the original image (no filters), computed in 2-D (``force2D``) inside the
overall, GGO and consolidation masks of each slice, as in SSInfNet (Fung et al. 2021). Pixel spacing is
taken as 1 × 1 (× 1) so size-dependent features (e.g. ``firstorder_Energy`` is not, ``TotalEnergy`` is)
are in pixel units: our slices are 8-bit crops without a physical spacing.

Every row of :func:`extract_table` says where it came from (package versions, settings, image and mask
SHA-1), and a mask too small to describe yields NaN features with a ``reason``; nothing is dropped.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.classes import REGIONS

FEATURE_CLASSES = ("firstorder", "glcm", "gldm", "ngtdm")
DEFAULT_SETTINGS = {"binWidth": 25.0, "force2D": True, "force2DDimension": 0}
REGION_LABELS = REGIONS  # region -> class codes (data.classes.REGIONS)
PROVENANCE_COLUMNS = (
    "pyradiomics_version", "numpy_version", "binWidth", "force2D", "min_mask_pixels",
    "image_sha1", "mask_sha1", "mask_pixels", "reason",
)


@contextlib.contextmanager
def quiet_radiomics(level: int = logging.ERROR):
    """Raise the ``radiomics`` logger to ``level`` for the duration of the block, then restore it.

    Only PyRadiomics' own logger is touched (it logs INFO and, for symmetrical GLCMs, a WARNING per call).
    """
    logger = logging.getLogger("radiomics")
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


def _settings(settings: Mapping | None) -> dict:
    out = dict(DEFAULT_SETTINGS)
    if settings:
        if not isinstance(settings, Mapping):
            raise ValueError(f"settings must be a mapping of PyRadiomics settings, got {type(settings).__name__}")
        out.update(settings)
    if float(out["binWidth"]) <= 0:
        raise ValueError(f"settings['binWidth'] must be > 0, got {out['binWidth']}")
    return out


def _check_pair(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
    if mask.shape != image.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape}")
    if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
        raise ValueError(f"image must be real-valued, got dtype {image.dtype}")
    if not np.all(np.isfinite(image)):
        raise ValueError("image contains NaN or Inf values")
    if mask.dtype != bool:
        values = np.unique(mask)
        if not np.all(np.isin(values, (0, 1))):
            raise ValueError(f"mask must be boolean or 0/1, got values {values[:10].tolist()}")
        mask = mask.astype(bool)
    return image, mask


def array_sha1(array: np.ndarray) -> str:
    """SHA-1 of an array's dtype, shape and C-ordered bytes (hex string, 40 characters)."""
    array = np.ascontiguousarray(array)
    h = hashlib.sha1()
    h.update(f"{array.dtype.str}|{array.shape}|".encode())
    h.update(array.tobytes())
    return h.hexdigest()


def _versions() -> dict:
    import radiomics

    return {"pyradiomics_version": str(radiomics.__version__), "numpy_version": np.__version__}


def extract_features(image: np.ndarray, mask: np.ndarray, settings: Mapping | None = None) -> dict:
    """PyRadiomics first-order, GLCM, GLDM and NGTDM features of one 2-D region.

    Parameters
    ----------
    image : ndarray of shape (H, W), uint8 or float
        Grey levels (8-bit CT window here; no Hounsfield units). Must be finite.
    mask : ndarray of shape (H, W), bool or 0/1
        Region of interest; needs at least a few pixels spanning two rows and two columns.
    settings : mapping, optional
        PyRadiomics settings merged over ``DEFAULT_SETTINGS`` (binWidth 25 grey levels, force2D).

    Returns
    -------
    dict
        ``{"firstorder_Mean": float, "glcm_Contrast": float, ...}`` (feature class, underscore, name;
        the ``original_`` image-type prefix is dropped).

    Raises
    ------
    ValueError
        Shape mismatch, non-finite image, non-binary mask or an empty mask.
    """
    import SimpleITK as sitk
    from radiomics import featureextractor

    image, mask = _check_pair(image, mask)
    if not mask.any():
        raise ValueError("mask is empty")
    params = _settings(settings)
    with quiet_radiomics():
        extractor = featureextractor.RadiomicsFeatureExtractor(additionalInfo=False, **params)
        extractor.disableAllFeatures()
        for name in FEATURE_CLASSES:
            extractor.enableFeatureClassByName(name)
        # a (1, H, W) volume with force2DDimension=0 makes the 2-D slice explicit for every feature class;
        # a one-pixel background border because PyRadiomics 3.0.1 rejects a mask that covers the whole
        # image ("No labels found"); features only read pixels inside the mask, so the border changes nothing
        img = sitk.GetImageFromArray(np.pad(image.astype(np.float64), 1, mode="edge")[None])
        msk = sitk.GetImageFromArray(np.pad(mask.astype(np.uint8), 1)[None])
        result = extractor.execute(img, msk, label=1)
    return {k.removeprefix("original_"): float(v) for k, v in result.items() if k.startswith("original_")}


def feature_names(settings: Mapping | None = None) -> list[str]:
    """Names of the features :func:`extract_features` returns (computed on a tiny phantom, memoised)."""
    return list(_feature_names(json.dumps(_settings(settings), sort_keys=True, default=str)))


@functools.lru_cache(maxsize=8)
def _feature_names(settings_json: str) -> tuple[str, ...]:
    image = np.zeros((8, 8), np.float64)
    image[2:6, 2:6] = 50.0
    image[2:6, 4:6] = 150.0
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    return tuple(sorted(extract_features(image, mask, json.loads(settings_json))))


def _cache_key(image_sha1: str, mask_sha1: str, params: dict, min_mask_pixels: int) -> str:
    blob = json.dumps({"image": image_sha1, "mask": mask_sha1, "settings": params,
                       "min": int(min_mask_pixels), **_versions(), "classes": FEATURE_CLASSES},
                      sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()


def _extract_row(item: Mapping, params: dict, min_mask_pixels: int, cache_dir: str | None) -> tuple[dict, bool]:
    """Features + provenance of one item; returns (row, cache_hit)."""
    image, mask = _check_pair(item["image"], item["mask"])
    meta = {k: v for k, v in item.items() if k not in ("image", "mask")}
    img_sha, msk_sha = array_sha1(image), array_sha1(mask)
    n_pix = int(mask.sum())
    prov = {**_versions(), "binWidth": float(params["binWidth"]), "force2D": bool(params["force2D"]),
            "min_mask_pixels": int(min_mask_pixels), "image_sha1": img_sha, "mask_sha1": msk_sha,
            "mask_pixels": n_pix}
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{_cache_key(img_sha, msk_sha, params, min_mask_pixels)}.json"
        if path.exists():
            cached = json.loads(path.read_text())
            return {**meta, **prov, "reason": cached["reason"], **cached["features"]}, True
    reason = ""
    if n_pix < min_mask_pixels:
        features, reason = {}, f"mask has {n_pix} pixels < min_mask_pixels={min_mask_pixels}"
    else:
        try:
            features = extract_features(image, mask, params)
        except (ValueError, RuntimeError) as err:  # PyRadiomics rejects e.g. one-row masks
            features, reason = {}, f"pyradiomics failed: {err}"
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"reason": reason, "features": features}))
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written cache entry
    return {**meta, **prov, "reason": reason, **features}, False


def extract_table(
    items: Iterable[Mapping],
    settings: Mapping | None = None,
    min_mask_pixels: int = 20,
    n_jobs: int = 1,
    progress: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Radiomic features of many (image, mask) pairs, one row per pair, in input order.

    Parameters
    ----------
    items : iterable of mappings
        Each has ``"image"`` (H, W) and ``"mask"`` (H, W) plus any metadata (e.g. ``patient_id``,
        ``slice``, ``region``) copied verbatim into the row. :func:`region_items` builds them from a label map.
    settings : mapping, optional
        PyRadiomics settings (see :func:`extract_features`).
    min_mask_pixels : int, default=20
        Masks with fewer pixels get NaN features and a ``reason``; they are kept, not dropped.
    n_jobs : int, default=1
        joblib workers (processes); results keep input order.
    progress : bool, default=False
        Show a tqdm bar.
    cache_dir : path, optional
        Folder of JSON results keyed by image SHA-1, mask SHA-1, settings, ``min_mask_pixels`` and
        package versions; a hit skips PyRadiomics.

    Returns
    -------
    pandas.DataFrame
        Metadata columns, then ``PROVENANCE_COLUMNS`` (``reason`` is ``""`` when features were computed),
        then one float column per feature (NaN where ``reason`` is set). ``df.attrs["cache_hits"]`` counts hits.
    """
    from joblib import Parallel, delayed
    from tqdm import tqdm  # text bars: they render in the stored notebook outputs of the book

    if int(min_mask_pixels) < 1:
        raise ValueError(f"min_mask_pixels must be >= 1, got {min_mask_pixels}")
    if n_jobs == 0:
        raise ValueError("n_jobs must be non-zero (joblib convention: -1 = all cores)")
    items = list(items)
    if not items:
        raise ValueError("items is empty: nothing to extract")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or "image" not in item or "mask" not in item:
            raise ValueError(f"items[{i}] must be a mapping with 'image' and 'mask'")
    params = _settings(settings)
    cache = None if cache_dir is None else str(cache_dir)
    jobs = (delayed(_extract_row)(item, params, int(min_mask_pixels), cache) for item in items)
    if n_jobs == 1:
        results = (_extract_row(item, params, int(min_mask_pixels), cache) for item in items)
    else:
        results = Parallel(n_jobs=n_jobs, return_as="generator")(jobs)
    rows, hits = [], 0
    for row, hit in tqdm(results, total=len(items), disable=not progress, desc="radiomics"):
        rows.append(row)
        hits += hit
    names = feature_names(params)
    table = pd.DataFrame(rows)
    for name in names:  # all-NaN columns still exist when every mask was too small
        if name not in table:
            table[name] = np.nan
    meta = [c for c in table.columns if c not in PROVENANCE_COLUMNS and c not in names]
    table = table[meta + list(PROVENANCE_COLUMNS) + names]
    table[names] = table[names].astype(float)
    table.attrs["cache_hits"] = hits
    return table


def region_masks(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Overall / GGO / consolidation masks of a label map (0 background, 1 GGO, 2 consolidation).

    Parameters
    ----------
    labels : ndarray of shape (H, W), integer values in {0, 1, 2}

    Returns
    -------
    dict of str -> bool ndarray (H, W)
        ``overall`` = labels > 0, ``ggo`` = labels == 1, ``consolidation`` = labels == 2.
    """
    labels = np.asarray(labels)
    bad = np.setdiff1d(np.unique(labels), (0, 1, 2))
    if bad.size:
        raise ValueError(f"labels must take values in {{0, 1, 2}}, found {bad[:10].tolist()}")
    return {name: np.isin(labels, vals) for name, vals in REGION_LABELS.items()}


def region_items(image: np.ndarray, labels: np.ndarray, **meta) -> list[dict]:
    """Three :func:`extract_table` items (overall, ggo, consolidation) for one slice; ``meta`` is copied in."""
    return [{**meta, "region": name, "image": image, "mask": mask} for name, mask in region_masks(labels).items()]


def feature_columns(table: pd.DataFrame) -> list[str]:
    """Feature columns of an :func:`extract_table` result (``class_Name`` for the enabled classes)."""
    return [c for c in table.columns if str(c).split("_", 1)[0] in FEATURE_CLASSES]


def aggregate(table: pd.DataFrame, by: str | list[str] = "patient_id", region: str | None = "region") -> pd.DataFrame:
    """Mean of each feature per patient (or volume) and region, over slices whose features exist.

    Parameters
    ----------
    table : DataFrame from :func:`extract_table`
    by : str or list of str, default="patient_id"
        Grouping column(s), e.g. ``"volume_id"``.
    region : str or None, default="region"
        Column naming the mask region; grouped on too when present (None: ignore regions).

    Returns
    -------
    pandas.DataFrame
        One row per group: the group keys, ``n_slices`` (rows in the group), ``n_valid`` (rows without a
        ``reason``) and the mean of every feature column (NaN-skipping; NaN when no slice is valid).
    """
    keys = [by] if isinstance(by, str) else list(by)
    missing = [k for k in keys if k not in table]
    if missing:
        raise ValueError(f"by: column(s) {missing} not in table")
    if region is not None and region in table:
        keys.append(region)
    names = feature_columns(table)
    grouped = table.groupby(keys, sort=True, dropna=False)
    out = grouped[names].mean()
    out.insert(0, "n_valid", grouped["reason"].apply(lambda r: int((r == "").sum())) if "reason" in table else grouped.size())
    out.insert(0, "n_slices", grouped.size())
    return out.reset_index()


def wide(aggregated: pd.DataFrame, by: str = "patient_id", region: str = "region") -> pd.DataFrame:
    """Pivot :func:`aggregate` output to one row per ``by`` with columns ``<region>_<feature>``."""
    names = feature_columns(aggregated)
    pivot = aggregated.pivot(index=by, columns=region, values=names)
    pivot.columns = [f"{reg}_{feat}" for feat, reg in pivot.columns]
    return pivot.sort_index(axis=1).reset_index()
