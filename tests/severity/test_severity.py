"""Tests for ssinfnet.severity: hand-made ratios, bin edges, aggregation, regional score, agreement, iCTCF path."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score, confusion_matrix, f1_score, precision_score, recall_score

from ssinfnet.severity import agreement as sv_agreement, scores as sv_scores, slices as sv_slices
from ssinfnet.severity.lungs import LungMask


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
    assert sv_scores.severity_ratio(prob, lung) == pytest.approx(1.75 / 16)
    rec = sv_scores.slice_record(prob, lung)
    assert rec == {"infection_sum": 1.75, "lung_area": 16, "ratio": pytest.approx(1.75 / 16)}
    # Integer labels work as a mask too.
    assert sv_scores.severity_ratio(prob, lung.astype(np.int8) * 2) == pytest.approx(1.75 / 16)


def test_ratio_bad_input():
    lung = _lung()
    with pytest.raises(ValueError, match="shape"):
        sv_scores.severity_ratio(np.zeros((3, 3)), lung)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sv_scores.severity_ratio(np.full((4, 6), 1.5), lung)
    with pytest.raises(ValueError, match="NaN"):
        sv_scores.severity_ratio(np.full((4, 6), np.nan), lung)
    with pytest.raises(ValueError, match="empty"):
        sv_scores.severity_ratio(np.zeros((4, 6)), np.zeros((4, 6), bool))


def test_flagged_lung_mask_refused_unless_allowed():
    lung = _lung()
    lm = LungMask(mask=lung, labels=lung.astype(np.int8), lung_axis=1, area_fraction=lung.mean(),
                  flags=["only one lung found"])
    with pytest.raises(ValueError, match="flagged.*only one lung"):
        sv_scores.severity_ratio(np.zeros((4, 6)), lm)
    with pytest.warns(UserWarning, match="flagged"):
        assert sv_scores.severity_ratio(np.zeros((4, 6)), lm, allow_flagged=True) == 0.0


@pytest.mark.parametrize("ratio, bins, expected", [
    (0.0, sv_scores.PAPER_BINS, 0), (0.00999, sv_scores.PAPER_BINS, 0), (0.01, sv_scores.PAPER_BINS, 1),
    (0.49999, sv_scores.PAPER_BINS, 1), (0.5, sv_scores.PAPER_BINS, 2), (1.0, sv_scores.PAPER_BINS, 2),
    (0.0, sv_scores.CT_BINS, 0), (0.001, sv_scores.CT_BINS, 1), (0.25, sv_scores.CT_BINS, 2), (0.5, sv_scores.CT_BINS, 3),
    (0.75, sv_scores.CT_BINS, 4), (0.7499, sv_scores.CT_BINS, 3),
])
def test_classify_edges_go_up(ratio, bins, expected):
    assert sv_scores.classify(ratio, bins) == expected


def test_classify_array_and_bad_bins():
    np.testing.assert_array_equal(sv_scores.classify([0.0, 0.01, 0.5]), [0, 1, 2])
    with pytest.raises(ValueError, match="bins"):
        sv_scores.classify(0.1, bins=(0.5, 0.1))
    with pytest.raises(ValueError, match="NaN"):
        sv_scores.classify([0.1, np.nan])
    assert len(sv_scores.CT_LABELS) == len(sv_scores.CT_BINS) + 1 and len(sv_scores.PAPER_LABELS) == len(sv_scores.PAPER_BINS) + 1


def test_aggregate_by_hand():
    df = pd.DataFrame({"volume": ["a", "a", "b"], "infection_sum": [10.0, 0.0, 5.0],
                       "lung_area": [100, 300, 50]})
    out = sv_scores.aggregate_ratios(df, "volume")
    # Volume a: (10 + 0) / (100 + 300) = 0.025, not the mean of slice ratios (0.05).
    assert out.loc["a", "ratio"] == pytest.approx(0.025)
    assert out.loc["b", "ratio"] == pytest.approx(0.1)
    assert out.loc["a", "n_slices"] == 2 and out.loc["a", "lung_area"] == 400
    with pytest.raises(ValueError, match="lung_area"):
        sv_scores.aggregate_ratios(df.drop(columns="lung_area"), "volume")
    flagged = df.assign(flagged=[False, True, False])
    with pytest.raises(ValueError, match="flagged"):
        sv_scores.aggregate_ratios(flagged, "volume")
    assert sv_scores.aggregate_ratios(flagged, "volume", allow_flagged=True).loc["a", "n_flagged"] == 1


def test_regional_score_by_hand():
    labels = np.zeros((6, 4), np.int8)
    labels[:, 0] = 1
    labels[:, 3] = 2
    prob = np.zeros((6, 4))
    prob[0:2, 0] = 1.0        # lung 1 zone 0 fully involved → 2
    prob[2, 0] = 0.2          # lung 1 zone 1: 0.1 → 1
    prob[5, 3] = 1.0          # lung 2 zone 2: 0.5 → 2 (edge goes up)
    total, table = sv_scores.regional_score(prob, labels, zones=3)
    assert list(table["score"]) == [2, 1, 0, 0, 0, 2]
    assert total == 5
    assert table.loc[(table.lung == 1) & (table.zone == 1), "involvement"].item() == pytest.approx(0.1)
    with pytest.raises(ValueError, match="labels"):
        sv_scores.regional_score(prob, labels > 0)
    with pytest.raises(ValueError, match="zones"):
        sv_scores.regional_score(prob, labels, zones=0)


def test_regional_score_volume_axial_zones():
    labels = np.zeros((3, 4, 4), np.int8)
    labels[:, :, :2] = 1
    labels[:, :, 2:] = 2
    prob = np.zeros(labels.shape)
    prob[2] = 1.0  # lowest third of both lungs fully involved
    total, table = sv_scores.regional_score(prob, labels, zones=3)
    assert total == 4
    assert list(table.loc[table.zone == 2, "score"]) == [2, 2]


def test_agreement_against_sklearn_scipy():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 1, 40) ** 2
    pred = np.clip(ref + rng.normal(0, 0.1, 40), 0, 1)
    res = sv_agreement.agreement(ref, pred, bins=sv_scores.CT_BINS)
    rc, pc = sv_scores.classify(ref, sv_scores.CT_BINS), sv_scores.classify(pred, sv_scores.CT_BINS)
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
    table = sv_agreement.agreement_table({"model": res, "same": sv_agreement.agreement(ref, ref, bins=sv_scores.CT_BINS)})
    assert table.loc["same", "kappa_quadratic"] == pytest.approx(1.0)
    assert "confusion" not in table.columns
    with pytest.raises(ValueError, match="length"):
        sv_agreement.agreement(ref, pred[:-1])


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
    res = sv_agreement.agreement(ref, pred)
    _, table = sv_scores.regional_score(np.zeros((4, 6)), labels, zones=2)
    figs = [ps.lung_mask_grid([img, img], [ok, bad], names=["a", "b"]),
            ps.ratio_scatter(ref, pred, bins=sv_scores.PAPER_BINS), ps.bland_altman(ref, pred),
            ps.confusion_heatmap(res["confusion"], sv_scores.PAPER_LABELS),
            ps.regional_score_panels([{"labels": labels, "per_region": table, "image": img}])]
    for fig in figs:
        assert isinstance(fig, matplotlib.figure.Figure)
        assert all(ax.get_title() == "" for ax in fig.axes)
    texts = [t.get_text() for t in figs[0].axes[1].texts]
    assert any("FLAGGED: only one lung found" in t for t in texts)
    with pytest.raises(ValueError, match="equal length"):
        ps.lung_mask_grid([img], [ok, bad])
    plt.close("all")


# ----------------------------------------------------------------------------- test-slice severity

def _sample(slice_id, image, infection, lungs=None):
    from ssinfnet.data.sample import Sample

    meta = {} if lungs is None else {"lungs": lungs}
    return Sample(image=image, slice_id=slice_id, source="test", subset="test", infection=infection, meta=meta)


def test_simulated_prediction():
    mask = np.zeros((32, 32), bool)
    mask[10:20, 8:24] = True
    plain = sv_slices.simulated_prediction(mask, sigma=0, noise=0)
    np.testing.assert_array_equal(plain, mask.astype(np.float32))
    blur = sv_slices.simulated_prediction(mask, sigma=2.0, noise=0)
    assert blur.dtype == np.float32
    assert blur.sum() == pytest.approx(mask.sum(), rel=1e-3)  # a blur far from the border keeps the mass
    assert 0 < blur[10, 8] < 1 and blur[15, 16] == pytest.approx(1.0, abs=0.02)
    a, b = sv_slices.simulated_prediction(mask, seed=1), sv_slices.simulated_prediction(mask, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sv_slices.simulated_prediction(mask, seed=2))
    assert a.min() >= 0 and a.max() <= 1
    assert not sv_slices.simulated_prediction(np.zeros((16, 16), bool), seed=3).any()  # empty stays empty
    with pytest.raises(ValueError, match="sigma"):
        sv_slices.simulated_prediction(mask, sigma=-1)
    with pytest.raises(ValueError, match="2-D"):
        sv_slices.simulated_prediction(np.zeros(5))


def test_severity_frame_on_phantoms():
    from ssinfnet.data.phantoms import synthetic_subset
    from ssinfnet.severity.lungs import segment_lungs

    samples = synthetic_subset("test", 3, 96, 0)
    blank = _sample("blank", np.full((96, 96), 100, np.uint8), np.zeros((96, 96), bool))
    preds = [s.infection.astype(np.float32) for s in samples] + [np.zeros((96, 96), np.float32)]
    frame, masks = sv_slices.severity_frame(samples + [blank], preds)
    assert list(frame.slice_id) == [s.slice_id for s in samples] + ["blank"]
    # Independent recomputation for one phantom.
    s = samples[0]
    auto = segment_lungs(s.image)
    ref = auto.mask | s.infection
    row = frame.iloc[0]
    assert row.ratio_reference == pytest.approx(s.infection.sum() / ref.sum())
    assert row.ratio_predicted == pytest.approx((s.infection & auto.mask).sum() / auto.mask.sum())
    assert row.ratio_predicted == pytest.approx(row.ratio_gt_auto)  # the prediction is the GT itself
    truth = s.meta["lungs"]
    assert row.lung_dice == pytest.approx(2 * (truth & auto.mask).sum() / (truth.sum() + auto.mask.sum()))
    assert row.lung_dice > 0.9 and row.included and row.reason == ""
    np.testing.assert_array_equal(masks[s.slice_id][0].mask, auto.mask)
    # The blank slice stays in the table, excluded with its reason.
    last = frame.iloc[-1]
    assert not last.included and last.reason == "lung mask flagged" and "constant" in last.lung_flags
    res = sv_agreement.agreement_suite(frame)
    assert res["ratio, paper bins"]["n"] == 3 and res["ratio, paper bins"]["n_excluded"] == 1
    assert res["CT-SS total"]["confusion"].shape == (13, 13)
    with pytest.raises(ValueError, match="length"):
        sv_slices.severity_frame(samples, preds)


def test_agreement_suite_by_hand():
    frame = pd.DataFrame({"included": [True, True, True, False],
                          "ratio_reference": [0.0, 0.2, 0.6, 0.3], "ratio_predicted": [0.02, 0.2, 0.4, 0.3],
                          "ratio_gt_auto": [0.0, 0.21, 0.61, 0.3],
                          "ctss_reference": [0, 3, 8, 1], "ctss_predicted": [1, 3, 8, 1]})
    res = sv_agreement.agreement_suite(frame)
    # Paper bins: reference classes 0, 1, 2; predicted 1, 1, 1 → 1 of 3 right.
    assert res["ratio, paper bins"]["micro_f1"] == pytest.approx(1 / 3)
    assert res["lung mask only, paper bins"]["micro_f1"] == pytest.approx(1.0)
    # CT bins: reference none, <25%, 50-75%; predicted <25%, <25%, 25-50% → 1 of 3.
    assert res["ratio, CT bins"]["accuracy"] == pytest.approx(1 / 3)
    assert res["CT-SS total"]["accuracy"] == pytest.approx(2 / 3)
    assert res["CT-SS total"]["mean_diff"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="lacks"):
        sv_agreement.agreement_suite(frame.drop(columns="ctss_reference"))
    with pytest.raises(ValueError, match="no included"):
        sv_agreement.agreement_suite(frame.assign(included=False))
    table = sv_agreement.table_vi_layout({"ours": res["ratio, paper bins"]}, reference="image-derived")
    assert list(table.columns) == ["micro F1", "precision", "recall", "n", "reference labels", "source",
                                   "like-for-like"]
    assert table.loc["ours", "micro F1"] == pytest.approx(1 / 3) and table.loc["ours", "n"] == 3
    table = sv_agreement.table_vi_layout({"ours": res["ratio, paper bins"]}, reference="image-derived",
                                         published={"SSInfNet": 0.55}, published_reference="clinical grades",
                                         published_source="draft, Table VI")
    paper = table.loc["SSInfNet (paper)"]
    assert (paper["micro F1"], paper["precision"], paper["recall"]) == (0.55, 0.55, 0.55) and pd.isna(paper["n"])
    assert paper["like-for-like"] == "not like-for-like" and paper["source"] == "draft, Table VI"
    assert table.loc["ours", "like-for-like"] == "" and table.loc["ours", "n"] == 3
    with pytest.raises(ValueError, match="published micro F1 of 'x' must lie in"):
        sv_agreement.table_vi_layout({"ours": res["ratio, paper bins"]}, reference="r", published={"x": 55})


def test_new_plots():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ssinfnet.plots import severity as ps

    lung = _lung()
    labels = np.where(lung, np.where(np.arange(6) < 3, 1, 2)[None, :], 0).astype(np.int8)
    ok = LungMask(mask=lung, labels=labels, lung_axis=1, area_fraction=lung.mean())
    img = np.random.default_rng(0).uniform(0, 255, (4, 6))
    _, table = sv_scores.regional_score(np.ones((4, 6)) * 0.3, labels, zones=2)
    fig = ps.regional_score_panels([{"labels": labels, "per_region": table, "image": img, "label": "ref",
                                     "infection": lung}] * 3, ncols=2)
    assert all(ax.get_title() == "" for ax in fig.axes)
    assert any("CT-SS total 4" in t.get_text() for t in fig.axes[0].texts)
    fig2 = ps.lung_mask_grid([img], [ok], infections=[lung], truths=[lung])
    assert len(fig2.axes[0].collections) >= 3  # two lungs, truth, infection contours
    with pytest.raises(ValueError, match="infections"):
        ps.lung_mask_grid([img], [ok], infections=[lung, lung])
    with pytest.raises(ValueError, match="lacks"):
        ps.regional_score_panels([{"labels": labels}])
    plt.close("all")


def test_find_predictions_falls_back_only_for_other_data(tmp_path):
    img = np.zeros((4, 6), np.uint8)
    samples = [_sample("a", img, np.zeros((4, 6), bool)), _sample("b", img, np.zeros((4, 6), bool))]
    assert sv_slices.find_predictions(None, samples)[0] is None
    np.savez(tmp_path / "other.npz", x=np.zeros((4, 6)))
    preds, note = sv_slices.find_predictions(tmp_path / "other.npz", samples)
    assert preds is None and "none of these 2 slice ids" in note
    np.savez(tmp_path / "partial.npz", a=np.zeros((4, 6)))
    with pytest.raises(ValueError, match="no map for 1"):
        sv_slices.find_predictions(tmp_path / "partial.npz", samples)
    np.savez(tmp_path / "ok.npz", a=np.zeros((4, 6)), b=np.ones((4, 6)))
    preds, note = sv_slices.find_predictions(tmp_path / "ok.npz", samples)
    assert note == "" and float(preds[1].mean()) == 1.0
