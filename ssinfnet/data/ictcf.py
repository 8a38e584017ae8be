"""iCTCF / HUST-19 (Ning et al., Nat Biomed Eng 2020): the clinical table and the per-patient image layout.

:func:`load_clinical` returns one row per patient with the columns every analysis uses:

=================  ==========================================================================
column             meaning
=================  ==========================================================================
patient_id         int, iCTCF "Patient N" number
age                float, years
gender             "Female" / "Male"
male               0 / 1
n_diseases         int, distinct underlying diseases parsed from the free text (see below)
diseases           str, the normalised disease names joined by "; " ("" for none)
morbidity          str, the morbidity outcome as released (9 levels)
severity_binary    0 / 1, the paper's binary severity
severity_score     0 / 1 / 2, the paper's score, NaN for levels it does not score
mortality          str, "Cured" / "Deceased" / "Unknown"
=================  ==========================================================================

Codings (Fung et al. 2021):

* binary severity: Control (Healthy), Control, Control (Community-acquired pneumonia), Suspected -> 0;
  Suspected (COVID-19-confirmed later), Mild, Regular, Severe, Critically ill -> 1.
* 0/1/2 score: Control, Control (Healthy), Mild, Regular -> 0; Severe -> 1; Critically ill -> 2;
  Suspected and community-acquired pneumonia -> NaN (not scored).

Underlying diseases are free text ("Hypertension, Diabetes", "Coronary disease", ...). Items are split
on commas and semicolons, lower-cased, mapped through :data:`DISEASE_SYNONYMS` and counted once each;
"No underlying disease" counts 0.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .io import DataError, list_images
from .sample import Sample

SOURCE_NAME = "ictcf"

BINARY_SEVERITY = {
    "Control (Healthy)": 0, "Control": 0, "Control (Community-acquired pneumonia)": 0, "Suspected": 0,
    "Suspected (COVID-19-confirmed later)": 1, "Mild": 1, "Regular": 1, "Severe": 1, "Critically ill": 1,
}
SEVERITY_SCORE = {"Control": 0, "Control (Healthy)": 0, "Mild": 0, "Regular": 0, "Severe": 1,
                  "Critically ill": 2}
NO_DISEASE = {"no underlying disease", "none", "no", ""}
DISEASE_SYNONYMS = {
    "coronary disease": "coronary atherosclerotic heart disease",
    "coronary heart disease": "coronary atherosclerotic heart disease",
    "hyperlipemia": "hyperlipidemia",
    "chronic obstructive pulmonary disease": "copd",
    "lacunar cerebral infarction": "cerebral infarction",
    "chronic hepatitis b": "hepatitis b",
}
REQUIRED_COLUMNS = ("Age", "Gender", "Underlying diseases", "Morbidity outcome")


def parse_diseases(text) -> list[str]:
    """Normalised, de-duplicated disease names from one free-text cell (NaN or "No ..." -> [])."""
    if text is None or (np.ndim(text) == 0 and pd.isna(text)):  # None, NaN, pd.NA
        return []
    items = []
    for raw in re.split(r"[,;]", str(text)):
        name = re.sub(r"\s+", " ", raw.strip().lower())
        if name in NO_DISEASE:
            continue
        name = DISEASE_SYNONYMS.get(name, name)
        if name not in items:
            items.append(name)
    return items


def clinical_from_frame(raw: pd.DataFrame, origin: str = "table") -> pd.DataFrame:
    """Apply the codings of the module docstring to a raw iCTCF table (as released)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"{origin}: missing clinical columns {missing}")
    id_col = next((c for c in ("Patient ID", "Unnamed: 0", "patient_id") if c in raw.columns), None)
    if id_col is None:
        raise DataError(f"{origin}: no patient id column (first unnamed column or 'Patient ID')")
    unknown = sorted(set(raw["Morbidity outcome"].dropna()) - set(BINARY_SEVERITY))
    if unknown:
        raise DataError(f"{origin}: unknown morbidity outcome values {unknown}")
    if raw["Morbidity outcome"].isna().any():
        rows = raw.index[raw["Morbidity outcome"].isna()].tolist()[:5]
        raise DataError(f"{origin}: morbidity outcome missing in rows {rows}")
    gender = raw["Gender"].astype(str).str.strip().str.capitalize()
    bad_gender = sorted(set(gender) - {"Female", "Male"})
    if bad_gender:
        raise DataError(f"{origin}: unexpected gender values {bad_gender}")
    age = pd.to_numeric(raw["Age"], errors="coerce")
    if age.isna().any() or (age < 0).any() or (age > 120).any():
        raise DataError(f"{origin}: age missing or outside 0..120 years in "
                        f"{int((age.isna() | (age < 0) | (age > 120)).sum())} rows")
    diseases = raw["Underlying diseases"].map(parse_diseases)
    out = pd.DataFrame({
        "patient_id": raw[id_col].astype(int).to_numpy(),
        "age": age.astype(float).to_numpy(),
        "gender": gender.to_numpy(),
        "male": (gender == "Male").astype(int).to_numpy(),
        "n_diseases": diseases.map(len).astype(int).to_numpy(),
        "diseases": diseases.map("; ".join).to_numpy(),
        "morbidity": raw["Morbidity outcome"].to_numpy(),
        "severity_binary": raw["Morbidity outcome"].map(BINARY_SEVERITY).astype(int).to_numpy(),
        "severity_score": raw["Morbidity outcome"].map(SEVERITY_SCORE).astype(float).to_numpy(),
        "mortality": raw.get("Mortality outcome", pd.Series(["Unknown"] * len(raw))).fillna("Unknown").to_numpy(),
    })
    if out["patient_id"].duplicated().any():
        raise DataError(f"{origin}: duplicated patient ids {out.loc[out.patient_id.duplicated(), 'patient_id'].tolist()[:5]}")
    return out


def clinical_path(root: Path | str) -> Path:
    """The clinical CSV below a data root (``iCTCF-HUST19-clinical/raw_cf_data.csv``) or the file itself."""
    root = Path(root)
    for cand in (root, root / "iCTCF-HUST19-clinical" / "raw_cf_data.csv", root / "raw_cf_data.csv"):
        if cand.is_file():
            return cand
    raise DataError(f"{root}: iCTCF clinical table not found (expected iCTCF-HUST19-clinical/raw_cf_data.csv)")


def load_clinical(root: Path | str) -> pd.DataFrame:
    """Read and code the iCTCF clinical table (path to the CSV, or a data root holding it)."""
    path = clinical_path(root)
    try:
        raw = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{path}: unreadable CSV ({exc})") from exc
    return clinical_from_frame(raw, str(path))


# ----------------------------------------------------------------------------- images

def read_ictcf_images(image_root: Path | str, limit_patients: int | None = None) -> list[Sample]:
    """Read per-patient CT slices laid out as ``<image_root>/Patient <N>/<slice>.jpg``.

    Each sample has ``group_id`` = the patient number as a string, ``source`` "ictcf", no labels.
    Raises :class:`DataError` for an empty root or a patient folder with no images.
    """
    image_root = Path(image_root)
    if not image_root.is_dir():
        raise DataError(f"{image_root}: iCTCF image folder not found")
    folders = sorted((p for p in image_root.iterdir() if p.is_dir() and re.fullmatch(r"Patient \d+", p.name)),
                     key=lambda p: int(p.name.split()[1]))
    if not folders:
        raise DataError(f"{image_root}: no 'Patient <N>' folders found")
    from .io import read_image

    samples = []
    for folder in folders[:limit_patients]:
        pid = folder.name.split()[1]
        for img_path in list_images(folder, f"slices of patient {pid}"):
            samples.append(Sample(image=read_image(img_path), slice_id=f"{pid}/{img_path.stem}",
                                  source=SOURCE_NAME, subset="patients", path=str(img_path), group_id=pid))
    return samples


# ----------------------------------------------------------------------------- synthetic cohort

#: Planted effects of the synthetic clinical cohort (log-odds of binary severity).
SYNTHETIC_EFFECTS = {"intercept": -0.4, "age_per_10y": 0.45, "per_disease": 0.5, "male": 0.2}


def synthetic_clinical(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A synthetic clinical cohort with planted, documented effects (same columns as :func:`load_clinical`).

    age ~ Normal(55, 16) clipped to 18..95 years; male ~ Bernoulli(0.5);
    n_diseases ~ Poisson(0.15 + 0.02 * max(age - 30, 0)); binary severity ~ Bernoulli(sigmoid(eta)) with
    eta = intercept + age_per_10y * (age - 55) / 10 + per_disease * n_diseases + male * male
    (values in :data:`SYNTHETIC_EFFECTS`). Morbidity text is derived from the severity.
    """
    if n < 10:
        raise ValueError(f"n must be >= 10, got {n}")
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(55, 16, n), 18, 95).round()
    male = rng.integers(0, 2, n)
    n_dis = rng.poisson(0.15 + 0.02 * np.maximum(age - 30, 0))
    e = SYNTHETIC_EFFECTS
    eta = e["intercept"] + e["age_per_10y"] * (age - 55) / 10 + e["per_disease"] * n_dis + e["male"] * male
    sev = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int)
    level = np.where(sev == 1, rng.choice(["Regular", "Severe", "Critically ill"], n, p=[0.7, 0.22, 0.08]),
                     rng.choice(["Control", "Suspected"], n))
    return pd.DataFrame({
        "patient_id": np.arange(1, n + 1), "age": age.astype(float),
        "gender": np.where(male == 1, "Male", "Female"), "male": male, "n_diseases": n_dis,
        "diseases": ["; ".join(f"synthetic disease {j + 1}" for j in range(k)) for k in n_dis], "morbidity": level,
        "severity_binary": sev, "severity_score": pd.Series(level).map(SEVERITY_SCORE).astype(float).to_numpy(),
        "mortality": "Unknown",
    })
