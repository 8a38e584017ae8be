"""Predictions confined to the lungs: known maps in, known maps and counts out; lungs at a reduced size."""

import numpy as np
import pytest
from realdata import real_data_root

from ssinfnet.data.phantoms import synthetic_subset
from ssinfnet.severity.lungs import segment_lungs
from ssinfnet.severity.restrict import MIN_INSIDE, lung_mask_for, restrict_to_lungs


def _case():
    lungs = np.zeros((40, 60), bool)
    lungs[10:30, 5:25] = True
    prob = np.zeros((40, 60), np.float32)
    prob[12:18, 20:30] = 0.9   # 60 px, 30 of them inside the lungs: kept whole
    prob[32:36, 40:50] = 0.8   # 40 px, all outside: removed
    prob[20:22, 6:8] = 0.7     # 4 px inside
    prob[0, 0] = 0.3           # sub-threshold outside, far from any lesion: zeroed
    return prob, lungs


def test_lesions_reaching_into_the_lungs_are_kept_whole_the_others_removed():
    prob, lungs = _case()
    out, support, info = restrict_to_lungs(prob, lungs, halo=0, reach=1.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[12:18, 20:30], np.float32(0.9))
    assert out[32:36, 40:50].max() == 0.0 and out[0, 0] == 0.0
    np.testing.assert_array_equal(out[20:22, 6:8], np.float32(0.7))
    assert support.sum() == lungs.sum() + 30
    assert info == {"lesion_px": 104, "outside_px": 70, "removed_px": 40,
                    "outside_share": 70 / 104, "removed_share": 40 / 104}


def test_the_inside_share_decides():
    prob, lungs = _case()
    out, _, info = restrict_to_lungs(prob, lungs, min_inside=0.6, halo=0, reach=1.0)  # 30 / 60 inside < 0.6
    assert out[12:18, 25:30].max() == 0.0 and out[12:18, 20:25].min() == np.float32(0.9)
    assert info["removed_px"] == 40 + 30
    assert MIN_INSIDE == 0.25


def test_a_flood_touching_the_lungs_is_cut_back_to_their_reach():
    lungs = np.zeros((100, 100), bool)
    lungs[20:80, 20:80] = True  # 36 % of the flood lies in the lungs: kept, but only near them
    out, support, info = restrict_to_lungs(np.ones((100, 100), np.float32), lungs, reach=0.1)
    # kept: the lungs and 10 px (0.1 x sqrt(100 * 100)) around them
    assert support[10:90, 20:80].all() and not support[:9].any() and not support[:, 91:].any()
    assert info["removed_px"] == int((~support).sum()) > 0
    # a flood mostly outside the lungs is removed whole
    lungs[:] = False
    lungs[40:60, 40:60] = True
    out, support, _ = restrict_to_lungs(np.ones((100, 100), np.float32), lungs)
    assert np.array_equal(support, lungs) and out.sum() == 400


def test_the_halo_keeps_the_soft_edge_of_a_kept_lesion():
    prob, lungs = _case()
    prob[12:18, 30] = 0.2  # the soft edge just outside the kept lesion
    out, _, _ = restrict_to_lungs(prob, lungs, halo=2, reach=1.0)
    np.testing.assert_array_equal(out[12:18, 30], np.float32(0.2))


def test_nothing_predicted_and_bad_inputs():
    _, lungs = _case()
    out, support, info = restrict_to_lungs(np.zeros(lungs.shape), lungs)
    assert not out.any() and np.array_equal(support, lungs)
    assert info["lesion_px"] == 0 and np.isnan(info["outside_share"]) and np.isnan(info["removed_share"])
    with pytest.raises(ValueError, match="must be 2-D of one shape"):
        restrict_to_lungs(np.zeros((3, 3)), np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="min_inside must be in"):
        restrict_to_lungs(np.zeros((3, 3)), np.zeros((3, 3), bool), min_inside=1.5)


def test_lung_mask_at_a_reduced_size_agrees_with_the_full_size_one():
    s = synthetic_subset("test", 1, size=256)[0]
    small = lung_mask_for(s.image, side=128)
    full = segment_lungs(s.image)
    assert small.mask.shape == s.image.shape and small.labels.shape == s.image.shape
    dice = 2 * (small.mask & full.mask).sum() / (small.mask.sum() + full.mask.sum())
    assert dice > 0.95 and small.area_fraction == pytest.approx(small.mask.mean())
    assert set(np.unique(small.labels)) <= {0, 1, 2} and not (small.labels[~small.mask]).any()
    same = lung_mask_for(s.image, side=512)  # not scaled up
    np.testing.assert_array_equal(same.mask, full.mask)
    with pytest.raises(ValueError, match="2-D uint8"):
        lung_mask_for(s.image.astype(float))


def test_on_the_test_slices_the_restriction_cuts_little_true_lesion():
    """Ground truth as the prediction: the rule keeps >= 96 % of the lesion pixels, where a pixelwise
    cut at the lung mask keeps about 91 % (module docstring of severity/restrict.py)."""
    from ssinfnet.data.semiseg import read_semiseg

    real_root = real_data_root()
    if real_root is None:
        pytest.skip("no real data root (set SSINFNET_DATA)")

    kept = pixel = total = 0
    for s in read_semiseg(real_root, "test"):
        lm = lung_mask_for(s.image)
        out, _, _ = restrict_to_lungs(s.infection.astype(np.float32), lm.mask)
        kept += int(((out >= 0.5) & s.infection).sum())
        pixel += int((lm.mask & s.infection).sum())
        total += int(s.infection.sum())
    assert kept / total >= 0.96 and pixel / total < 0.93, (kept / total, pixel / total)


def test_severity_with_and_without_the_restriction_gives_the_same_ratios():
    from ssinfnet.severity.slices import severity_frame

    test = synthetic_subset("test", 3, size=96)
    flood = [np.clip(s.infection.astype(np.float32) + 0.6 * (s.image > 200), 0, 1) for s in test]  # + body wall
    on, _ = severity_frame(test, flood)
    off, _ = severity_frame(test, flood, restrict=False)
    for col in ("ratio_predicted", "ctss_predicted", "ratio_reference"):
        np.testing.assert_array_equal(on[col], off[col])
    assert (on.pred_outside_lung > 0.3).all() and (on.pred_removed > 0.3).all()
    assert (off.pred_removed == 0).all() and np.array_equal(on.pred_outside_lung, off.pred_outside_lung)
