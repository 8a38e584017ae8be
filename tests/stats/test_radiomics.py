"""Radiomic features on phantoms with known intensities, provenance, small masks and the cache."""

import hashlib
import logging

import numpy as np
import pytest

from ssinfnet.stats import radiomics as R


def _square(value_left=100.0, value_right=None, size=32, lo=8, hi=24):
    """(size, size) float image with a lo:hi square; right half of it set to value_right if given."""
    image = np.zeros((size, size), np.float64)
    image[lo:hi, lo:hi] = value_left
    if value_right is not None:
        image[lo:hi, (lo + hi) // 2:hi] = value_right
    mask = np.zeros((size, size), bool)
    mask[lo:hi, lo:hi] = True
    return image, mask


def test_constant_region_mean_100_entropy_0():
    image, mask = _square(100.0)
    f = R.extract_features(image.astype(np.uint8), mask)
    assert f["firstorder_Mean"] == pytest.approx(100.0)
    assert f["firstorder_Entropy"] == pytest.approx(0.0, abs=1e-9)
    assert f["firstorder_Variance"] == pytest.approx(0.0, abs=1e-9)
    assert f["glcm_Contrast"] == pytest.approx(0.0, abs=1e-9)


def test_two_levels_binwidth_25_entropy_one_bit():
    # 50 and 150 fall in different 25-wide bins, half the pixels each: entropy = 1 bit, uniformity 1/2
    image, mask = _square(50.0, 150.0)
    f = R.extract_features(image, mask, {"binWidth": 25})
    assert f["firstorder_Mean"] == pytest.approx(100.0)
    assert f["firstorder_Entropy"] == pytest.approx(1.0)
    assert f["firstorder_Uniformity"] == pytest.approx(0.5)
    assert f["firstorder_Variance"] == pytest.approx(2500.0)
    # one 200-wide bin holds both levels: no grey-level information left
    g = R.extract_features(image, mask, {"binWidth": 200})
    assert g["firstorder_Entropy"] == pytest.approx(0.0, abs=1e-9)


def test_feature_classes_and_names():
    names = R.feature_names()
    assert {n.split("_")[0] for n in names} == set(R.FEATURE_CLASSES)
    assert "gldm_DependenceEntropy" in names and "ngtdm_Coarseness" in names
    assert len(names) == 61  # 18 first-order + 24 GLCM + 14 GLDM + 5 NGTDM in PyRadiomics 3.0.1


def test_mask_covering_whole_image_equals_padded_case():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (20, 20)).astype(np.uint8)
    full = R.extract_features(image, np.ones((20, 20), bool))
    padded = np.zeros((24, 24), np.uint8)
    padded[2:-2, 2:-2] = image
    inner = np.zeros((24, 24), bool)
    inner[2:-2, 2:-2] = True
    ref = R.extract_features(padded, inner)
    for k in full:
        assert full[k] == pytest.approx(ref[k], rel=1e-9, abs=1e-12), k


@pytest.mark.parametrize("image, mask, match", [
    (np.zeros((8, 8)), np.zeros((8, 9), bool), "mask shape"),
    (np.full((8, 8), np.nan), np.ones((8, 8), bool), "NaN"),
    (np.zeros((8, 8)), np.full((8, 8), 2), "boolean or 0/1"),
    (np.zeros((8, 8, 3)), np.ones((8, 8, 3), bool), "2-D"),
    (np.zeros((8, 8)), np.zeros((8, 8), bool), "empty"),
])
def test_bad_input(image, mask, match):
    with pytest.raises(ValueError, match=match):
        R.extract_features(image, mask)


def test_small_mask_gets_nan_and_reason_row_kept_and_provenance(tmp_path):
    image, mask = _square(50.0, 150.0)
    tiny = np.zeros_like(mask)
    tiny[10:12, 10:12] = True  # 4 pixels
    line = np.zeros_like(mask)
    line[5, 2:30] = True  # 28 pixels in one row: PyRadiomics refuses a 1-D ROI
    items = [{"patient_id": 7, "slice": 0, "image": image, "mask": mask},
             {"patient_id": 7, "slice": 1, "image": image, "mask": tiny},
             {"patient_id": 7, "slice": 2, "image": image, "mask": line}]
    t = R.extract_table(items, min_mask_pixels=10)
    assert len(t) == 3 and list(t["slice"]) == [0, 1, 2]
    assert t.loc[0, "reason"] == "" and t.loc[0, "firstorder_Mean"] == pytest.approx(100.0)
    assert "4 pixels < min_mask_pixels=10" in t.loc[1, "reason"]
    assert t.loc[2, "reason"].startswith("pyradiomics failed")
    names = R.feature_columns(t)
    assert t.loc[[1, 2], names].isna().all().all()
    for col in R.PROVENANCE_COLUMNS:
        assert col in t.columns
    import radiomics

    assert set(t["pyradiomics_version"]) == {radiomics.__version__}
    assert set(t["numpy_version"]) == {np.__version__}
    assert set(t["binWidth"]) == {25.0} and set(t["force2D"]) == {True} and set(t["min_mask_pixels"]) == {10}
    assert list(t["mask_pixels"]) == [256, 4, 28]
    expected = hashlib.sha1(f"{tiny.dtype.str}|{tiny.shape}|".encode() + tiny.tobytes()).hexdigest()
    assert t.loc[1, "mask_sha1"] == expected
    assert t["image_sha1"].nunique() == 1 and t["mask_sha1"].nunique() == 3


def test_cache_hit_and_settings_in_key(tmp_path):
    image, mask = _square(50.0, 150.0)
    items = [{"patient_id": 1, "image": image, "mask": mask}]
    first = R.extract_table(items, cache_dir=tmp_path)
    assert first.attrs["cache_hits"] == 0 and len(list(tmp_path.glob("*.json"))) == 1
    second = R.extract_table(items, cache_dir=tmp_path)
    assert second.attrs["cache_hits"] == 1
    names = R.feature_columns(first)
    np.testing.assert_allclose(second[names].to_numpy(float), first[names].to_numpy(float))
    other = R.extract_table(items, settings={"binWidth": 200}, cache_dir=tmp_path)
    assert other.attrs["cache_hits"] == 0 and other.loc[0, "firstorder_Entropy"] == pytest.approx(0.0, abs=1e-9)


def test_parallel_equals_serial():
    image, mask = _square(50.0, 150.0)
    items = [{"k": i, "image": image + i, "mask": mask} for i in range(3)]
    serial = R.extract_table(items, n_jobs=1)
    parallel = R.extract_table(items, n_jobs=2)
    assert list(parallel["k"]) == [0, 1, 2]
    names = R.feature_columns(serial)
    np.testing.assert_allclose(parallel[names].to_numpy(float), serial[names].to_numpy(float))


def test_logging_silenced_and_restored(capfd):
    logger = logging.getLogger("radiomics")
    before = logger.level
    image, mask = _square(50.0, 150.0)
    R.extract_features(image, mask)  # a symmetrical GLCM makes PyRadiomics warn on stderr
    assert "GLCM is symmetrical" not in capfd.readouterr().err
    assert logger.level == before


def test_region_masks_and_aggregate():
    labels = np.zeros((32, 32), np.uint8)
    labels[8:24, 8:16] = 1
    labels[8:24, 16:24] = 2
    masks = R.region_masks(labels)
    assert masks["overall"].sum() == 256 and masks["ggo"].sum() == 128 and masks["consolidation"].sum() == 128
    with pytest.raises(ValueError, match="values in"):
        R.region_masks(labels + 1)
    img_a, _ = _square(50.0, 150.0)
    img_b = img_a + 20.0
    items = (R.region_items(img_a, labels, patient_id=1, slice=0) + R.region_items(img_b, labels, patient_id=1, slice=1)
             + R.region_items(img_a, np.zeros_like(labels), patient_id=2, slice=0))
    t = R.extract_table(items)
    agg = R.aggregate(t).set_index(["patient_id", "region"])
    assert agg.loc[(1, "overall"), "firstorder_Mean"] == pytest.approx(110.0)  # mean of 100 and 120
    assert agg.loc[(1, "ggo"), "firstorder_Mean"] == pytest.approx(60.0)  # mean of 50 and 70
    assert agg.loc[(1, "overall"), "n_slices"] == 2 and agg.loc[(1, "overall"), "n_valid"] == 2
    assert agg.loc[(2, "overall"), "n_valid"] == 0 and np.isnan(agg.loc[(2, "overall"), "firstorder_Mean"])
    w = R.wide(R.aggregate(t))
    assert list(w["patient_id"]) == [1, 2] and "consolidation_firstorder_Mean" in w
    with pytest.raises(ValueError, match="by"):
        R.aggregate(t, by="volume_id")


def test_extract_table_bad_arguments():
    image, mask = _square()
    with pytest.raises(ValueError, match="min_mask_pixels"):
        R.extract_table([{"image": image, "mask": mask}], min_mask_pixels=0)
    with pytest.raises(ValueError, match="empty"):
        R.extract_table([])
    with pytest.raises(ValueError, match="items\\[0\\]"):
        R.extract_table([{"image": image}])
    with pytest.raises(ValueError, match="binWidth"):
        R.extract_table([{"image": image, "mask": mask}], settings={"binWidth": 0})
