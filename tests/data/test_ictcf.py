"""iCTCF clinical table: parsing and codings on a tiny frame, the real table when present, images,
and the synthetic cohort's planted effects."""

import numpy as np
import pandas as pd
import pytest

from ssinfnet.data.ictcf import (BINARY_SEVERITY, SEVERITY_SCORE, SYNTHETIC_EFFECTS, clinical_from_frame,
                                 load_clinical, parse_diseases, read_ictcf_images, synthetic_clinical)
from ssinfnet.data.io import DataError

from .conftest import save_grey, truncate

# The paper's two codings of the 9 morbidity levels: (binary severity, 0/1/2 score or NaN).
CODINGS = {
    "Control (Healthy)": (0, 0.0), "Control": (0, 0.0), "Control (Community-acquired pneumonia)": (0, np.nan),
    "Suspected": (0, np.nan), "Suspected (COVID-19-confirmed later)": (1, np.nan), "Mild": (1, 0.0),
    "Regular": (1, 0.0), "Severe": (1, 1.0), "Critically ill": (1, 2.0),
}


def _raw(**columns) -> pd.DataFrame:
    n = len(CODINGS)
    base = {
        "Unnamed: 0": np.arange(1, n + 1), "Age": [30, 41.5, 52, 63, 74, 85, 18, 1, 97],
        "Gender": ["Male", "female", "Female", "MALE", "Male", "Female", "Male", "Female", " Male "],
        "Underlying diseases": ["No underlying disease", "Hypertension, Diabetes", np.nan,
                                "Coronary disease; coronary atherosclerotic heart disease", "Diabetes, diabetes",
                                "Hyperlipemia, COPD", "No underlying disease", "none", "Chronic hepatitis B"],
        "Morbidity outcome": list(CODINGS), "Mortality outcome": ["Unknown"] * 7 + ["Cured", np.nan],
    }
    base.update(columns)
    return pd.DataFrame(base)


@pytest.mark.parametrize("text, expected", [
    ("No underlying disease", []),
    (np.nan, []),
    (None, []),
    (pd.NA, []),
    ("", []),
    ("Hypertension", ["hypertension"]),
    ("Hypertension, Diabetes", ["hypertension", "diabetes"]),
    ("Diabetes;  hypertension ,Diabetes", ["diabetes", "hypertension"]),
    ("Coronary disease, Coronary heart disease, Coronary atherosclerotic heart disease",
     ["coronary atherosclerotic heart disease"]),
    ("Hyperlipemia, hyperlipidemia", ["hyperlipidemia"]),
    ("Chronic obstructive pulmonary disease", ["copd"]),
    ("Lacunar cerebral infarction, Cerebral infarction", ["cerebral infarction"]),
])
def test_parse_diseases(text, expected):
    assert parse_diseases(text) == expected


def test_codings_of_all_nine_levels():
    assert set(BINARY_SEVERITY) == set(CODINGS)
    df = clinical_from_frame(_raw())
    assert df.morbidity.tolist() == list(CODINGS)
    assert df.severity_binary.tolist() == [c[0] for c in CODINGS.values()]
    np.testing.assert_array_equal(df.severity_score.to_numpy(), [c[1] for c in CODINGS.values()])
    assert set(SEVERITY_SCORE) == {k for k, (_, s) in CODINGS.items() if not np.isnan(s)}


def test_columns_and_types():
    df = clinical_from_frame(_raw())
    assert list(df.columns) == ["patient_id", "age", "gender", "male", "n_diseases", "diseases", "morbidity",
                                "severity_binary", "severity_score", "mortality"]
    assert df.patient_id.tolist() == list(range(1, 10))
    assert df.gender.tolist() == ["Male", "Female", "Female", "Male", "Male", "Female", "Male", "Female", "Male"]
    assert df.male.tolist() == [1, 0, 0, 1, 1, 0, 1, 0, 1]
    assert df.n_diseases.tolist() == [0, 2, 0, 1, 1, 2, 0, 0, 1]
    assert df.diseases[1] == "hypertension; diabetes" and df.diseases[0] == ""
    assert df.age.dtype == float and df.age[1] == 41.5
    assert df.mortality.tolist()[-2:] == ["Cured", "Unknown"]


def test_patient_id_column_names():
    raw = _raw().rename(columns={"Unnamed: 0": "Patient ID"})
    assert clinical_from_frame(raw).patient_id.tolist() == list(range(1, 10))
    with pytest.raises(DataError, match="no patient id column"):
        clinical_from_frame(_raw().drop(columns="Unnamed: 0"))


def test_mortality_column_optional():
    df = clinical_from_frame(_raw().drop(columns="Mortality outcome"))
    assert (df.mortality == "Unknown").all()


@pytest.mark.parametrize("drop", [["Age"], ["Morbidity outcome", "Gender"]])
def test_missing_columns(drop):
    with pytest.raises(DataError, match=r"tbl\.csv: missing clinical columns") as exc:
        clinical_from_frame(_raw().drop(columns=drop), "tbl.csv")
    assert all(c in str(exc.value) for c in drop)


@pytest.mark.parametrize("column, values, phrase", [
    ("Morbidity outcome", list(CODINGS)[:8] + ["Moderate"], "unknown morbidity outcome values ['Moderate']"),
    ("Morbidity outcome", list(CODINGS)[:8] + [np.nan], "morbidity outcome missing in rows [8]"),
    ("Gender", ["Male"] * 8 + ["X"], "unexpected gender values ['X']"),
    ("Age", [30] * 8 + [130], "outside 0..120 years in 1 rows"),
    ("Age", [30] * 7 + ["?", np.nan], "age missing or outside 0..120 years in 2 rows"),
    ("Unnamed: 0", [1, 2, 3, 4, 5, 6, 7, 8, 3], "duplicated patient ids [3]"),
])
def test_bad_values(column, values, phrase):
    with pytest.raises(DataError) as exc:
        clinical_from_frame(_raw(**{column: values}), "tbl.csv")
    assert str(exc.value).startswith("tbl.csv: ") and phrase in str(exc.value)


def test_load_clinical_from_csv(tmp_path):
    folder = tmp_path / "iCTCF-HUST19-clinical"
    folder.mkdir()
    raw = _raw().rename(columns={"Unnamed: 0": ""})
    raw.to_csv(folder / "raw_cf_data.csv", index=False)
    by_root = load_clinical(tmp_path)
    by_file = load_clinical(folder / "raw_cf_data.csv")
    pd.testing.assert_frame_equal(by_root, by_file)
    assert len(by_root) == 9 and by_root.n_diseases.sum() == 7


def test_load_clinical_missing_and_unreadable(tmp_path):
    with pytest.raises(DataError, match="iCTCF clinical table not found"):
        load_clinical(tmp_path)
    bad = tmp_path / "raw_cf_data.csv"
    for content in (b"\xff\xfe\x00\x81 not csv\n\x00\x00", b""):
        bad.write_bytes(content)
        with pytest.raises(DataError, match=r"raw_cf_data\.csv: unreadable CSV"):
            load_clinical(tmp_path)


# ----------------------------------------------------------------------------- the real table

@pytest.fixture(scope="module")
def real_table(real_root):
    if not (real_root / "iCTCF-HUST19-clinical" / "raw_cf_data.csv").is_file():
        pytest.skip("iCTCF clinical table not below the real data root")
    return load_clinical(real_root)


def test_real_table_numbers(real_table):
    df = real_table
    assert len(df) == 1521 and df.patient_id.is_unique
    assert df.severity_binary.value_counts().to_dict() == {1: 945, 0: 576}
    score = df.severity_score.value_counts(dropna=False)
    assert score[0.0] == 836 and score[1.0] == 202 and score[2.0] == 72 and df.severity_score.isna().sum() == 411
    assert df.age.min() == 1 and df.age.max() == 97
    assert (df.n_diseases == 0).sum() == 853
    assert df.gender.value_counts().to_dict() == {"Female": 765, "Male": 756}


# ----------------------------------------------------------------------------- images

def test_read_ictcf_images(tmp_path):
    for pid, n in ((12, 2), (3, 1)):
        for k in range(n):
            save_grey(np.full((8, 9), 10 * k), tmp_path / f"Patient {pid}" / f"{k + 1}.jpg")
    (tmp_path / "notes").mkdir()
    samples = read_ictcf_images(tmp_path)
    assert [s.slice_id for s in samples] == ["3/1", "12/1", "12/2"]  # patients numerically, not "12" < "3"
    assert [s.group_id for s in samples] == ["3", "12", "12"]
    assert len(read_ictcf_images(tmp_path, limit_patients=1)) == 1


def test_read_ictcf_images_errors(tmp_path):
    with pytest.raises(DataError, match="iCTCF image folder not found"):
        read_ictcf_images(tmp_path / "none")
    with pytest.raises(DataError, match="no 'Patient <N>' folders"):
        read_ictcf_images(tmp_path)
    (tmp_path / "Patient 1").mkdir()
    with pytest.raises(DataError, match=r"Patient 1: no slices of patient 1 found \(empty folder\)"):
        read_ictcf_images(tmp_path)
    path = truncate(save_grey(np.random.default_rng(0).integers(0, 255, (64, 64)), tmp_path / "Patient 1" / "1.jpg"))
    with pytest.raises(DataError, match="unreadable image") as exc:
        read_ictcf_images(tmp_path)
    assert str(path) in str(exc.value)


# ----------------------------------------------------------------------------- synthetic cohort

def test_synthetic_reproducible_and_shaped():
    a, b = synthetic_clinical(200, seed=3), synthetic_clinical(200, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(synthetic_clinical(200, seed=4))
    assert list(a.columns) == list(clinical_from_frame(_raw()).columns)
    assert a.age.between(18, 95).all() and set(a.male) <= {0, 1}
    assert set(a.morbidity) <= set(BINARY_SEVERITY)
    # the columns agree with the codings and with the disease parser
    assert (a.morbidity.map(BINARY_SEVERITY) == a.severity_binary).all()
    assert (a.diseases.map(lambda t: len(parse_diseases(t))) == a.n_diseases).all()
    with pytest.raises(ValueError, match="n must be >= 10"):
        synthetic_clinical(5)


def test_synthetic_planted_effects_recovered():
    import statsmodels.api as sm

    df = synthetic_clinical(4000, seed=0)
    x = pd.DataFrame({"const": 1.0, "age10": (df.age - 55) / 10, "n_diseases": df.n_diseases, "male": df.male})
    fit = sm.Logit(df.severity_binary, x).fit(disp=0)
    truth = {"const": SYNTHETIC_EFFECTS["intercept"], "age10": SYNTHETIC_EFFECTS["age_per_10y"],
             "n_diseases": SYNTHETIC_EFFECTS["per_disease"], "male": SYNTHETIC_EFFECTS["male"]}
    for name, value in truth.items():
        est, se = fit.params[name], fit.bse[name]
        assert abs(est - value) < 3 * se, (name, est, value, se)
    assert fit.bse["age10"] < 0.06 and fit.bse["n_diseases"] < 0.1  # n=4000 pins them down
