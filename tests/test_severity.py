"""Tests for ssinfnet.severity: hand-made ratios, bin edges, aggregation, regional score, agreement, iCTCF path."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score, confusion_matrix, f1_score, precision_score, recall_score

from ssinfnet import severity as sv
from ssinfnet.lungs import LungMask


def _lung():
    lung = np.zeros((4, 6), bool)
    lung[:, :2] = True   # lung 1: 8 px
    lung[:, 4:] = True   # lung 2: 8 px
    return lung


def test_ratio_hand_made():
    lung = _lung()
    prob = np.zeros((4, 6))
    prob[0, 0] = 1.0
    prob[1, 1] = 0.5
    prob[2, 5] = 0.25
    prob[0, 3] = 1.0  # outside the lungs: ignored
    assert sv.severity_ratio(prob, lung) == pytest.approx(1.75 / 16)
    rec = sv.slice_record(prob, lung)
    assert rec == {"infection_sum": 1.75, "lung_area": 16, "ratio": pytest.approx(1.75 / 16)}
    # Integer labels work as a mask too.
    assert sv.severity_ratio(prob, lung.astype(np.int8) * 2) == pytest.approx(1.75 / 16)


def test_ratio_bad_input():
    lung = _lung()
    with pytest.raises(ValueError, match="shape"):
        sv.severity_ratio(np.zeros((3, 3)), lung)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sv.severity_ratio(np.full((4, 6), 1.5), lung)
    with pytest.raises(ValueError, match="NaN"):
        sv.severity_ratio(np.full((4, 6), np.nan), lung)
    with pytest.raises(ValueError, match="empty"):
        sv.severity_ratio(np.zeros((4, 6)), np.zeros((4, 6), bool))


def test_flagged_lung_mask_refused_unless_allowed():
    lung = _lung()
    lm = LungMask(mask=lung, labels=lung.astype(np.int8), lung_axis=1, area_fraction=lung.mean(),
                  flags=["only one lung found"])
    with pytest.raises(ValueError, match="flagged.*only one lung"):
        sv.severity_ratio(np.zeros((4, 6)), lm)
    with pytest.warns(UserWarning, match="flagged"):
        assert sv.severity_ratio(np.zeros((4, 6)), lm, allow_flagged=True) == 0.0


@pytest.mark.parametrize("ratio, bins, expected", [
    (0.0, sv.PAPER_BINS, 0), (0.00999, sv.PAPER_BINS, 0), (0.01, sv.PAPER_BINS, 1),
    (0.49999, sv.PAPER_BINS, 1), (0.5, sv.PAPER_BINS, 2), (1.0, sv.PAPER_BINS, 2),
    (0.0, sv.CT_BINS, 0), (0.001, sv.CT_BINS, 1), (0.25, sv.CT_BINS, 2), (0.5, sv.CT_BINS, 3),
    (0.75, sv.CT_BINS, 4), (0.7499, sv.CT_BINS, 3),
])
def test_classify_edges_go_up(ratio, bins, expected):
    assert sv.classify(ratio, bins) == expected


def test_classify_array_and_bad_bins():
    np.testing.assert_array_equal(sv.classify([0.0, 0.01, 0.5]), [0, 1, 2])
    with pytest.raises(ValueError, match="bins"):
        sv.classify(0.1, bins=(0.5, 0.1))
    with pytest.raises(ValueError, match="NaN"):
        sv.classify([0.1, np.nan])
    assert len(sv.CT_LABELS) == len(sv.CT_BINS) + 1 and len(sv.PAPER_LABELS) == len(sv.PAPER_BINS) + 1


def test_aggregate_by_hand():
    df = pd.DataFrame({"volume": ["a", "a", "b"], "infection_sum": [10.0, 0.0, 5.0],
                       "lung_area": [100, 300, 50]})
    out = sv.aggregate_ratios(df, "volume")
    # Volume a: (10 + 0) / (100 + 300) = 0.025, not the mean of slice ratios (0.05).
    assert out.loc["a", "ratio"] == pytest.approx(0.025)
    assert out.loc["b", "ratio"] == pytest.approx(0.1)
    assert out.loc["a", "n_slices"] == 2 and out.loc["a", "lung_area"] == 400
    with pytest.raises(ValueError, match="lung_area"):
        sv.aggregate_ratios(df.drop(columns="lung_area"), "volume")
    flagged = df.assign(flagged=[False, True, False])
    with pytest.raises(ValueError, match="flagged"):
        sv.aggregate_ratios(flagged, "volume")
    assert sv.aggregate_ratios(flagged, "volume", allow_flagged=True).loc["a", "n_flagged"] == 1


def test_regional_score_by_hand():
    labels = np.zeros((6, 4), np.int8)
    labels[:, 0] = 1
    labels[:, 3] = 2
    prob = np.zeros((6, 4))
    prob[0:2, 0] = 1.0        # lung 1 zone 0 fully involved → 2
    prob[2, 0] = 0.2          # lung 1 zone 1: 0.1 → 1
    prob[5, 3] = 1.0          # lung 2 zone 2: 0.5 → 2 (edge goes up)
    total, table = sv.regional_score(prob, labels, zones=3)
    assert list(table["score"]) == [2, 1, 0, 0, 0, 2]
    assert total == 5
    assert table.loc[(table.lung == 1) & (table.zone == 1), "involvement"].item() == pytest.approx(0.1)
    with pytest.raises(ValueError, match="labels"):
        sv.regional_score(prob, labels > 0)
    with pytest.raises(ValueError, match="zones"):
        sv.regional_score(prob, labels, zones=0)


def test_regional_score_volume_axial_zones():
    labels = np.zeros((3, 4, 4), np.int8)
    labels[:, :, :2] = 1
    labels[:, :, 2:] = 2
    prob = np.zeros(labels.shape)
    prob[2] = 1.0  # lowest third of both lungs fully involved
    total, table = sv.regional_score(prob, labels, zones=3)
    assert total == 4
    assert list(table.loc[table.zone == 2, "score"]) == [2, 2]


def test_agreement_against_sklearn_scipy():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 1, 40) ** 2
    pred = np.clip(ref + rng.normal(0, 0.1, 40), 0, 1)
    res = sv.agreement(ref, pred, bins=sv.CT_BINS)
    rc, pc = sv.classify(ref, sv.CT_BINS), sv.classify(pred, sv.CT_BINS)
    assert res["micro_f1"] == pytest.approx(f1_score(rc, pc, average="micro"))
    assert res["micro_precision"] == pytest.approx(precision_score(rc, pc, average="micro"))
    assert res["micro_recall"] == pytest.approx(recall_score(rc, pc, average="micro"))
    assert res["accuracy"] == pytest.approx(np.mean(rc == pc))
    assert res["macro_f1"] == pytest.approx(f1_score(rc, pc, average="macro"))
    np.testing.assert_array_equal(res["confusion"], confusion_matrix(rc, pc, labels=range(5)))
    assert res["kappa_quadratic"] == pytest.approx(cohen_kappa_score(rc, pc, weights="quadratic"))
    assert res["spearman_rho"] == pytest.approx(stats.spearmanr(ref, pred).statistic)
    d = pred - ref
    assert res["mean_diff"] == pytest.approx(d.mean())
    assert res["loa_high"] == pytest.approx(d.mean() + 1.96 * d.std(ddof=1))
    assert res["loa_low"] == pytest.approx(d.mean() - 1.96 * d.std(ddof=1))
    table = sv.agreement_table({"model": res, "same": sv.agreement(ref, ref, bins=sv.CT_BINS)})
    assert table.loc["same", "kappa_quadratic"] == pytest.approx(1.0)
    assert "confusion" not in table.columns
    with pytest.raises(ValueError, match="length"):
        sv.agreement(ref, pred[:-1])


def test_patient_severity_fixture():
    slices = pd.DataFrame({"patient_id": [1, 1, 2, 3, 4], "infection_sum": [0.0, 2.0, 60.0, 1.0, 0.0],
                           "lung_area": [100, 100, 100, 100, 0]})
    clinical = pd.DataFrame({"patient_id": [1, 2, 3, 5], "severity_score": [1, 2, np.nan, 0]})
    out = sv.patient_severity(slices, clinical)
    assert list(out.index) == [1, 2, 3, 4]  # no patient dropped
    assert out.loc[1, "ratio"] == pytest.approx(0.01) and out.loc[1, "predicted_class"] == 1
    assert out.loc[2, "predicted_class"] == 2 and out.loc[2, "clinical_score"] == 2
    assert np.isnan(out.loc[3, "clinical_score"]) and out.loc[3, "reason"] == "clinical score missing"
    assert out.loc[4, "reason"] == "patient not in clinical table; no lung area"
    assert out.loc[1, "reason"] == ""
    with pytest.raises(ValueError, match="severity_score"):
        sv.patient_severity(slices, clinical.assign(severity_score=[1, 2, 3, 0]))
    with pytest.raises(ValueError, match="lacks"):
        sv.patient_severity(slices, clinical.drop(columns="severity_score"))


def test_plots_return_figures_without_titles():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ssinfnet.plots import severity as ps

    lung = _lung()
    labels = np.where(lung, np.where(np.arange(6) < 3, 1, 2)[None, :], 0).astype(np.int8)
    ok = LungMask(mask=lung, labels=labels, lung_axis=1, area_fraction=lung.mean())
    bad = LungMask(mask=lung, labels=labels, lung_axis=1, area_fraction=lung.mean(), flags=["only one lung found"])
    img = np.random.default_rng(0).uniform(0, 255, (4, 6))
    ref, pred = np.array([0.0, 0.2, 0.6, 0.3]), np.array([0.01, 0.25, 0.5, 0.3])
    res = sv.agreement(ref, pred)
    _, table = sv.regional_score(np.zeros((4, 6)), labels, zones=2)
    figs = [ps.lung_mask_grid([img, img], [ok, bad], names=["a", "b"]),
            ps.ratio_scatter(ref, pred, bins=sv.PAPER_BINS), ps.bland_altman(ref, pred),
            ps.confusion_heatmap(res["confusion"], sv.PAPER_LABELS),
            ps.regional_score_map(labels, table, image=img)]
    for fig in figs:
        assert isinstance(fig, matplotlib.figure.Figure)
        assert all(ax.get_title() == "" for ax in fig.axes)
    texts = [t.get_text() for t in figs[0].axes[1].texts]
    assert any("FLAGGED: only one lung found" in t for t in texts)
    with pytest.raises(ValueError, match="equal length"):
        ps.lung_mask_grid([img], [ok, bad])
    plt.close("all")
