"""Metrics of both evaluation protocols on small hand-computed maps."""

import math

import numpy as np
import pandas as pd
import pytest

from ssinfnet.evaluation import infnet_metrics as IM, paper_metrics as M

EPS = np.finfo(float).eps
D = -1.0 / 255.0


# ------------------------------------------------------------------ paper protocol
def test_overlap_scores_by_hand():
    gt = np.array([[1, 1, 1], [0, 0, 0]], dtype=bool)
    pred = np.array([[1, 1, 0], [1, 0, 0]], dtype=bool)  # TP 2, FP 1, FN 1, TN 2
    np.testing.assert_array_equal(M.confusion_counts(pred, gt), [[2, 1, 1, 2]])
    s = M.overlap_scores(pred, gt)
    assert s["dice"][0] == pytest.approx(4 / 6)
    assert s["iou"][0] == pytest.approx(2 / 4)
    assert s["recall"][0] == pytest.approx(2 / 3)
    assert s["precision"][0] == pytest.approx(2 / 3)


def test_overlap_empty_gt_rule_is_explicit():
    gt = np.zeros((2, 2), dtype=bool)
    none = np.zeros((2, 2), dtype=bool)
    one_fp = np.array([[1, 0], [0, 0]], dtype=bool)
    for pred in (none, one_fp):
        assert all(np.isnan(v[0]) for v in M.overlap_scores(pred, gt, ignore_empty=True).values())
    assert all(v[0] == 1.0 for v in M.overlap_scores(none, gt, ignore_empty=False).values())
    assert all(v[0] == 0.0 for v in M.overlap_scores(one_fp, gt, ignore_empty=False).values())


def test_overlap_empty_prediction_nonempty_gt_scores_zero():
    s = M.overlap_scores(np.zeros((2, 2), bool), np.eye(2, dtype=bool))
    assert s["dice"][0] == 0 and s["iou"][0] == 0 and s["recall"][0] == 0 and s["precision"][0] == 0


def test_roc_auc_by_hand_and_ties():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: 3 of 4 pairs ordered -> 0.75
    assert M.roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool)) == pytest.approx(0.75)
    assert M.roc_auc(np.array([0.5, 0.5]), np.array([0, 1], bool)) == pytest.approx(0.5)
    assert math.isnan(M.roc_auc(np.ones(4), np.zeros(4, bool)))  # empty GT: undefined
    assert math.isnan(M.roc_auc(np.ones(4), np.ones(4, bool)))  # full GT: undefined


def test_roc_auc_equals_pairwise_count_and_curve_area():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 6, 200) / 5.0  # many ties
    y = rng.random(200) < 0.3
    pos, neg = s[y], s[~y]
    diff = pos[:, None] - neg[None, :]
    want = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
    assert M.roc_auc(s, y) == pytest.approx(want, abs=1e-12)
    fpr, tpr = M.roc_curve(s, y)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.trapezoid(tpr, fpr) == pytest.approx(want, abs=1e-12)


def test_paper_image_scores_threshold_is_inclusive():
    prob = np.array([[0.5, 0.49], [0.9, 0.0]])
    gt = np.array([[1, 1], [0, 0]], bool)
    s = M.paper_image_scores(prob, gt, threshold=0.5)  # pred {0.5, 0.9}: TP 1, FP 1, FN 1
    assert s["dice"][0] == pytest.approx(0.5)
    assert s["auc"][0] == pytest.approx(0.5)  # pos {0.5, .49} vs neg {.9, 0}: 2 of 4 pairs


def test_paper_scores_multiclass_rows_and_overall():
    labels = np.array([[0, 1], [2, 2]])
    prob = np.zeros((3, 2, 2))
    prob[0] = [[0.8, 0.1], [0.1, 0.6]]  # background predicted at (0,0) and wrongly at (1,1)
    prob[1] = [[0.1, 0.8], [0.1, 0.2]]
    prob[2] = [[0.1, 0.1], [0.8, 0.2]]
    df = M.paper_scores([prob], [labels])
    by = df.set_index("class")
    assert by.loc["background", "dice"] == pytest.approx(2 / 3)  # TP 1, FP 1
    assert by.loc["ggo", "dice"] == pytest.approx(1.0)
    assert by.loc["consolidation", "dice"] == pytest.approx(2 / 3)  # TP 1, FN 1
    assert by.loc["overall_with_background", "dice"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert by.loc["overall_without_background", "dice"] == pytest.approx((1 + 2 / 3) / 2)
    # argmax instead of threshold: (1,1) goes to background (0.6) as well
    am = M.paper_scores([prob], [labels], threshold=None).set_index("class")
    assert am.loc["consolidation", "recall"] == pytest.approx(0.5)


def test_paper_scores_overall_skips_nan_class():
    labels = np.array([[0, 1], [0, 1]])  # no consolidation in this image
    prob = np.stack([labels == 0, labels == 1, np.zeros((2, 2), bool)]).astype(float)
    by = M.paper_scores([prob], [labels]).set_index("class")
    assert np.isnan(by.loc["consolidation", "dice"]) and np.isnan(by.loc["consolidation", "auc"])
    assert by.loc["overall_without_background", "dice"] == pytest.approx(1.0)


def test_summarise_mean_and_se():
    df = pd.DataFrame({"image": ["a", "b", "c"], "class": ["x"] * 3, "dice": [0.5, 1.0, np.nan]})
    row = M.summarise(df, metrics=("dice",)).iloc[0]
    se = np.std([0.5, 1.0], ddof=1) / np.sqrt(2)  # = 0.25
    assert se == pytest.approx(0.25)
    assert row["mean"] == pytest.approx(0.75) and row["se"] == pytest.approx(0.25)
    assert row["ci_low"] == pytest.approx(0.75 - 1.96 * 0.25) and row["ci_high"] == pytest.approx(0.75 + 0.49)
    assert (row["n"], row["n_excluded"]) == (2, 1)


@pytest.mark.parametrize("prob,gt,kw", [
    (np.zeros((2, 2)), np.zeros((2, 2), bool), {"threshold": 1.5}),
    (np.zeros((2, 2)), np.zeros((3, 2), bool), {}),
    (np.zeros((3, 2, 2)), np.full((2, 2), 5), {}),
    (np.full((2, 2), np.nan), np.zeros((2, 2), bool), {}),
    (np.zeros((2, 2)), np.zeros((2, 2), bool), {"threshold": None}),
])
def test_paper_bad_input(prob, gt, kw):
    with pytest.raises(ValueError):
        M.paper_image_scores(prob, gt, **kw)


# ------------------------------------------------------------------ Inf-Net protocol
def test_thresholds_match_matlab_colon():
    t = IM.infnet_thresholds()
    assert t.shape == (256,) and t[0] == 1.0 and t[-1] == 0.0 and (np.diff(t) < 0).all()
    k = np.arange(128)
    np.testing.assert_array_equal(t[:128], 1.0 + k * D)  # from the top: a + k*d
    np.testing.assert_array_equal(t[255 - k], k * (1.0 / 255.0))  # from the bottom: b - k*d
    # this is not the same as 1 - k/255 in float64, which is why it is built this way
    assert (t != 1.0 - np.arange(256) / 255.0).any()
    np.testing.assert_array_equal(IM.matlab_colon(0, 0.5, 2), [0, 0.5, 1, 1.5, 2])  # even n: middle (a+c)/2
    assert IM.matlab_colon(0, -1, 2).size == 0


def test_minmax_normalise():
    got = IM.minmax_normalise(np.array([[2.0, 4.0], [6.0, 3.0]]))
    np.testing.assert_array_equal(got, [[0, 0.5], [1, 0.25]])
    const = np.full((2, 2), 0.3)
    np.testing.assert_array_equal(IM.minmax_normalise(const), const)  # constant map unchanged
    v = np.arange(256) / 255.0  # already spanning [0, 1]: exactly unchanged, ties preserved
    np.testing.assert_array_equal(IM.minmax_normalise(v), v)


def test_dice_sen_spe_by_hand():
    smap = np.array([[1.0, 0.5], [0.5, 0.0]])
    gt = np.array([[1, 1], [0, 0]], bool)
    c = IM.dice_sen_spe_curves(smap, gt, np.array([1.0, 0.5, 0.0]))
    np.testing.assert_allclose(c["dice"], [2 / 3, 0.8, 4 / 6])
    np.testing.assert_allclose(c["sen"], [0.5, 1.0, 1.0])
    np.testing.assert_allclose(c["spe"], [1.0, 0.5, 0.0])


def test_tp_zero_makes_all_three_zero():
    smap = np.array([[1.0, 0.5], [0.5, 0.0]])
    gt = np.array([[0, 0], [0, 1]], bool)
    c = IM.dice_sen_spe_curves(smap, gt, np.array([0.5]))  # TP 0, TN 1, FP 3: spe would be 0.25
    assert c["dice"][0] == 0 and c["sen"][0] == 0 and c["spe"][0] == 0


def _naive_fmeasure(smap, gt, t):
    """Independent per-threshold loop written like the MATLAB Fmeasure_calu."""
    label = smap >= t
    tp = int((label & gt).sum())
    if tp == 0:
        return 0.0, 0.0, 0.0
    fn = int(gt.sum()) - tp
    fp = int(label.sum()) - tp
    tn = int((~label).sum()) - fn
    return 2 * tp / (gt.sum() + label.sum()), tp / gt.sum(), tn / (tn + fp)


def test_vectorised_curves_equal_per_threshold_loop_on_8bit_map():
    rng = np.random.default_rng(1)
    smap = IM.minmax_normalise(rng.integers(0, 256, (20, 17)).astype(np.uint8) / 255.0)
    gt = rng.random((20, 17)) < 0.3
    c = IM.dice_sen_spe_curves(smap, gt)
    want = np.array([_naive_fmeasure(smap, gt, t) for t in IM.infnet_thresholds()])
    np.testing.assert_allclose(np.c_[c["dice"], c["sen"], c["spe"]], want, rtol=0, atol=1e-15)


def test_ties_at_exact_multiples_of_1_over_255():
    smap = (np.arange(256) / 255.0).reshape(16, 16)  # every 8-bit level once, as MATLAB's im2double
    gt = smap >= 0.5
    t = IM.infnet_thresholds()
    n_pred, tp = IM.threshold_counts(smap, gt, t)
    np.testing.assert_array_equal(n_pred, [(smap >= tk).sum() for tk in t])
    # 251/255 is one ulp below t_4 = 1 + 4*(-1/255): MATLAB counts 4 pixels there, not 5
    assert 251 / 255 < t[4]
    assert n_pred[4] == 4
    n_strict, _ = IM.threshold_counts(smap, gt, t, strict=True)
    np.testing.assert_array_equal(n_strict, [(smap > tk).sum() for tk in t])


def test_e_measure_by_hand():
    gt = np.array([[1, 0], [0, 0]], bool)
    assert IM.e_measure(gt, gt) == pytest.approx(4 / 3)  # every pixel aligned, N / (N - 1)
    assert IM.e_measure(np.zeros((2, 2), bool), gt) == pytest.approx(1 / 3)  # align 0 -> 1/4 each
    fm = np.array([[0, 1], [0, 0]], bool)  # FP and FN cells: align -0.6 -> 0.04 each; 2 TN -> 1 each
    assert IM.e_measure(fm, gt) == pytest.approx(2.08 / 3)
    assert IM.e_measure(fm, np.zeros((2, 2), bool)) == pytest.approx(3 / 3)  # empty GT: 1 - FM
    assert IM.e_measure(fm, np.ones((2, 2), bool)) == pytest.approx(1 / 3)  # full GT: FM


def _naive_e_measure(fm, gt):
    f, g = fm.astype(float), gt.astype(float)
    if g.sum() == 0:
        e = 1 - f
    elif g.sum() == g.size:
        e = f
    else:
        af, ag = f - f.mean(), g - g.mean()
        e = ((2 * af * ag / (af ** 2 + ag ** 2 + EPS)) + 1) ** 2 / 4
    return e.sum() / (g.size - 1 + EPS)


def test_e_measure_curve_uses_strict_threshold_and_matches_loop():
    rng = np.random.default_rng(2)
    smap = rng.integers(0, 256, (15, 11)) / 255.0
    for gt in (rng.random((15, 11)) < 0.4, np.zeros((15, 11), bool), np.ones((15, 11), bool)):
        got = IM.e_measure_curve(smap, gt)
        want = [_naive_e_measure(smap > t, gt) for t in IM.infnet_thresholds()]
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_s_measure_special_cases():
    smap = np.array([[0.2, 0.4], [0.6, 0.0]])
    assert IM.s_measure(smap, np.zeros((2, 2), bool)) == pytest.approx(1 - 0.3)
    assert IM.s_measure(smap, np.ones((2, 2), bool)) == pytest.approx(0.3)
    gt = np.zeros((6, 6), bool)
    gt[1:4, 2:5] = True
    assert IM.s_measure(gt.astype(float), gt) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError):
        IM.s_measure(smap * 2, gt[:2, :2])


def test_s_object_by_hand():
    gt = np.array([[1, 0], [0, 0]], bool)
    smap = np.array([[0.8, 0.2], [0.0, 0.0]])
    o_fg = 2 * 0.8 / (0.8 ** 2 + 1 + 0)  # one pixel: std 0
    bg = np.array([0.8, 1.0, 1.0])
    o_bg = 2 * bg.mean() / (bg.mean() ** 2 + 1 + bg.std(ddof=1))
    assert IM.s_object(smap, gt) == pytest.approx(0.25 * o_fg + 0.75 * o_bg)
    assert 0.25 * o_fg + 0.75 * o_bg == pytest.approx(0.948631, abs=1e-6)


def test_region_ssim_by_hand():
    # x = .25, y = .5, var_x = .125, var_y = .5, cov = .25 -> 4xy cov / ((x^2+y^2)(vx+vy)) = .125/.1953125
    assert IM._ssim_region(np.array([0.5, 0.0]), np.array([1.0, 0.0])) == pytest.approx(0.64)
    assert IM._ssim_region(np.zeros(3), np.zeros(3)) == 1.0  # alpha = beta = 0
    assert IM._ssim_region(np.array([0.2, 0.4]), np.ones(2)) == 0.0  # alpha 0, beta > 0


def _reference_s_region(smap, gt):
    """Straight port written from the MATLAB S_region with 1-based loops."""
    rows, cols = gt.shape
    area = gt.sum()
    X = int(math.floor(sum((j + 1) * gt[:, j].sum() for j in range(cols)) / area + 0.5))
    Y = int(math.floor(sum((i + 1) * gt[i, :].sum() for i in range(rows)) / area + 0.5))
    blocks = [(smap[:Y, :X], gt[:Y, :X]), (smap[:Y, X:], gt[:Y, X:]),
              (smap[Y:, :X], gt[Y:, :X]), (smap[Y:, X:], gt[Y:, X:])]
    w = [X * Y / (rows * cols), (cols - X) * Y / (rows * cols), X * (rows - Y) / (rows * cols)]
    w.append(1 - sum(w))
    return sum(wi * IM._ssim_region(p, g.astype(float)) for wi, (p, g) in zip(w, blocks) if p.size)


def test_s_region_against_reference_and_centroid_rounding():
    rng = np.random.default_rng(3)
    for _ in range(5):
        gt = rng.random((9, 12)) < 0.3
        smap = rng.random((9, 12))
        assert IM.s_region(smap, gt) == pytest.approx(_reference_s_region(smap, gt), abs=1e-12)
    gt = np.array([[0, 1, 1, 0]], bool)  # centroid 2.5 -> MATLAB round -> 3 (numpy would give 2)
    smap = np.array([[0.1, 0.9, 0.7, 0.3]])
    left = IM._ssim_region(smap[:, :3], gt[:, :3].astype(float))
    right = IM._ssim_region(smap[:, 3:], gt[:, 3:].astype(float))
    want = 0.75 * left + 0.25 * right
    assert IM.s_region(smap, gt) == pytest.approx(want)


def test_s_region_empty_quadrant_is_skipped_not_nan():
    gt = np.array([[1, 0]], bool)  # centroid on the last row: bottom quadrants are empty
    assert IM.s_region(np.array([[0.7, 0.1]]), gt) == pytest.approx(1.0)


def test_mae_and_adaptive_dice():
    smap = np.array([[0.5, 0.0], [1.0, 0.25]])
    gt = np.array([[1, 0], [1, 0]], bool)
    assert IM.mae(smap, gt) == pytest.approx(0.1875)
    # t = 2 * mean = 0.875 -> only the 1.0 pixel: TP 1, |pred| 1, |GT| 2
    assert IM.adaptive_dice(smap, gt) == pytest.approx(2 * 1 / (2 + 1))
    high = np.array([[1.0, 0.9], [0.8, 0.9]])  # 2*mean > 1 -> capped at 1: only the 1.0 pixel
    assert IM.adaptive_dice(high, gt) == pytest.approx(2 / 3)


def test_infnet_summary_max_is_of_averaged_curve():
    gt1 = np.array([[1, 0], [0, 0]], bool)
    s1 = IM.infnet_image_scores(np.array([[1.0, 0.6], [0.0, 0.0]]), gt1)
    s2 = IM.infnet_image_scores(np.array([[0.0, 0.0], [0.0, 0.0]]), gt1)  # constant 0: Dice 0 everywhere
    res = IM.infnet_summary([s1, s2])
    col = (s1["dice"] + s2["dice"]) / 2
    assert res["meanDic"] == pytest.approx(col.mean())
    assert res["maxDic"] == pytest.approx(0.5)  # image 1 perfect above 0.6, image 2 zero
    assert res["MAE"] == pytest.approx((0.15 + 0.25) / 2)
    assert res["n_images"] == 2 and len(res["curves"]["em"]) == 256
    with pytest.raises(ValueError):
        IM.infnet_summary([])


def test_binary_map_against_itself_has_exact_expected_scores():
    gt = np.zeros((8, 10), bool)
    gt[2:5, 3:7] = True  # P = 12, N = 80
    s = IM.infnet_image_scores(gt.astype(float), gt)
    # map >= t equals GT for the 255 thresholds t > 0; at t = 0 every pixel is predicted
    assert s["dice"].mean() == pytest.approx((255 + 2 * 12 / (12 + 80)) / 256, abs=1e-15)
    assert s["sen"].mean() == 1.0 and s["spe"].mean() == pytest.approx(255 / 256)
    # E-measure (map > t): t = 1 predicts nothing (N/4), others predict GT (N); / (N - 1)
    assert s["em"].mean() == pytest.approx((255 * 80 + 80 / 4) / 79 / 256, rel=1e-12)
    assert s["mae"] == 0.0 and s["sm"] == pytest.approx(1.0, abs=1e-9)


def test_infnet_bad_input():
    with pytest.raises(ValueError):
        IM.dice_sen_spe_curves(np.zeros((2, 2)), np.zeros((2, 2)))  # gt not bool
    with pytest.raises(ValueError):
        IM.e_measure_curve(np.zeros((2, 3)), np.zeros((2, 2), bool))
    with pytest.raises(ValueError):
        IM.minmax_normalise(np.array([np.nan, 1.0]))
