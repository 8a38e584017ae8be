"""Phenotype glue: radiomic rows from slices (ground truth or predicted maps), summaries, patient tables."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from ssinfnet.stats import phenotypes as PH
from ssinfnet.data.maps import load_maps
from ssinfnet.data.sample import Sample
from ssinfnet.plots import stats as P


def _sample(i, value=100, subset="test", group=None):
    """(32, 32) slice: left half of a 16x16 square GGO at grey ``value``, right half consolidation at value+50."""
    image = np.full((32, 32), 20, np.uint8)
    image[8:24, 8:16] = value
    image[8:24, 16:24] = value + 50
    classes = np.zeros((32, 32), np.uint8)
    classes[8:24, 8:16] = 1
    classes[8:24, 16:24] = 2
    return Sample(image=image, slice_id=f"s{i}", source="toy", subset=subset, classes=classes,
                  infection=classes > 0, group_id=group)


def test_slice_radiomics_ground_truth_values():
    samples = [_sample(0, 100), _sample(1, 60, subset="train")]
    t = PH.slice_radiomics(samples)
    assert len(t) == 6 and list(t["region"][:3]) == ["overall", "ggo", "consolidation"]
    assert set(t["mask_source"]) == {"ground truth"} and list(t["subset"]) == ["test"] * 3 + ["train"] * 3
    r = t.set_index(["slice_id", "region"])
    assert r.loc[("s0", "ggo"), "firstorder_Mean"] == pytest.approx(100.0)
    assert r.loc[("s0", "consolidation"), "firstorder_Mean"] == pytest.approx(150.0)
    assert r.loc[("s1", "overall"), "firstorder_Mean"] == pytest.approx(85.0)  # half 60, half 110
    assert r.loc[("s0", "overall"), "mask_pixels"] == 256 and r.loc[("s0", "ggo"), "mask_pixels"] == 128
    assert len(PH.slice_radiomics(samples, limit=1)) == 3


def test_slice_radiomics_predicted_maps_and_errors(tmp_path):
    samples = [_sample(0), _sample(1)]
    pred = {s.slice_id: np.where(s.classes > 0, 1, 0).astype(np.uint8) for s in samples}  # everything GGO
    np.savez(tmp_path / "pred.npz", **pred)
    maps = load_maps(tmp_path / "pred.npz", kind="labels")
    assert set(maps) == {"s0", "s1"} and maps["s0"].dtype == np.uint8
    t = PH.slice_radiomics(samples, maps)
    assert set(t["mask_source"]) == {"predicted"}
    r = t.set_index(["slice_id", "region"])
    assert r.loc[("s0", "ggo"), "mask_pixels"] == 256
    # an empty predicted consolidation is kept, with NaN features and a reason
    assert r.loc[("s0", "consolidation"), "reason"].startswith("mask has 0 pixels")
    assert np.isnan(r.loc[("s0", "consolidation"), "firstorder_Mean"])
    with pytest.raises(ValueError, match="no class map for slice 's1'"):
        PH.slice_items(samples, {"s0": maps["s0"]})
    with pytest.raises(ValueError, match="shape"):
        PH.slice_items(samples[:1], {"s0": maps["s0"][:10]})
    unlabelled = Sample(image=np.zeros((8, 8), np.uint8), slice_id="u", source="toy", subset="unlabelled")
    with pytest.raises(ValueError, match="no ground-truth classes"):
        PH.slice_items([unlabelled])
    with pytest.raises(ValueError, match="limit"):
        PH.slice_radiomics(samples, limit=0)


def test_region_summary_counts_and_medians():
    t = PH.slice_radiomics([_sample(0, 100), _sample(1, 60), _sample(2, 80)])
    t.loc[(t["slice_id"] == "s2") & (t["region"] == "ggo"), ["reason", "firstorder_Mean"]] = ["too small", np.nan]
    s = PH.region_summary(t, {"mean (grey level)": "firstorder_Mean"}).set_index("region")
    assert s.loc["ggo", "rows"] == 3 and s.loc["ggo", "valid"] == 2 and s.loc["overall", "valid"] == 3
    assert s.loc["ggo", "mean (grey level)"] == pytest.approx(80.0)  # median of 100 and 60
    assert s.loc["consolidation", "mean (grey level)"] == pytest.approx(130.0)  # 150, 110, 130
    with pytest.raises(ValueError, match="missing"):
        PH.region_summary(t, ["nope"])


def test_patient_phenotypes_average_and_join():
    samples = [_sample(0, 100, group="1"), _sample(1, 60, group="1"), _sample(2, 80, group="3")]
    t = PH.slice_radiomics(samples)
    clinical = pd.DataFrame({"patient_id": [1, 2, 3], "age": [50.0, 60.0, 70.0]})
    merged, meds = PH.patient_phenotypes(t, clinical, regions=["ggo"], features=["firstorder_Mean"])
    assert meds == ["ggo_firstorder_Mean"] and list(merged["patient_id"]) == [1, 3]
    assert list(merged["ggo_firstorder_Mean"]) == pytest.approx([80.0, 80.0])
    assert list(merged["age"]) == [50.0, 70.0]
    with pytest.raises(ValueError, match="not in the clinical table"):
        PH.patient_phenotypes(t, clinical[clinical.patient_id != 3])
    with pytest.raises(ValueError, match="patient_id"):
        PH.patient_phenotypes(PH.slice_radiomics([_sample(0)]), clinical)
    with pytest.raises(ValueError, match="features"):
        PH.patient_phenotypes(t, clinical, features=["glcm_Nope"])


def test_ictcf_image_root(tmp_path):
    assert PH.ictcf_image_root(None) is None and PH.ictcf_image_root(tmp_path) is None
    (tmp_path / "ictcf-images").mkdir()
    assert PH.ictcf_image_root(tmp_path) == tmp_path / "ictcf-images"


def test_feature_distributions_plot():
    t = PH.slice_radiomics([_sample(0, 100), _sample(1, 60, subset="train"), _sample(2, 90)])
    fig = P.feature_distributions(t, {"mean (grey level)": "firstorder_Mean", "area (pixels)": "mask_pixels"})
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title() == "" and ax.get_ylabel() == "mean (grey level)"
    assert [tl.get_text() for tl in ax.get_xticklabels()] == ["overall", "ggo", "consolidation"]
    assert [tl.get_text() for tl in ax.get_legend().get_texts()] == ["test", "train"]
    # medians drawn as black segments: ggo of the two test slices -> median of 100 and 90
    medians = sorted(line.get_ydata()[0] for line in ax.lines if line.get_color() == "k")
    assert 95.0 in medians and 60.0 in medians
    with pytest.raises(ValueError, match="missing"):
        P.feature_distributions(t, ["nope"])
    with pytest.raises(ValueError, match="features"):
        P.feature_distributions(t, [])
