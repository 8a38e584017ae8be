"""The shift benchmark's shifts and tables (evaluation/shifts.py): known inputs, known outputs."""

import numpy as np
import pandas as pd
import pytest

from ssinfnet.evaluation import shifts as sh


def _image(h=40, w=50):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx * 255) // (w - 1)).astype(np.uint8), (yy > h // 2) & (xx > w // 2)


def test_every_shift_has_three_severities_and_a_label():
    assert list(sh.SHIFTS) == ["window", "gamma", "resolution", "noise", "jpeg", "fov"]
    assert all(len(v) == 3 for v in sh.SHIFTS.values())
    assert len(sh.conditions()) == 18 and sh.conditions()[0] == ("window", 1, (-500.0, 2000.0))
    assert [sh.severity_label(s, v) for s, _, v in sh.conditions()[::3]] == [
        "level -500, width 2000", "gamma 1.3", "1/2 of the side", "SD 4 grey levels", "quality 50", "1.25 x the side"]
    assert sh.severity_label("resolution", 1 / 3) == "1/3 of the side"


def test_window_is_a_linear_map_from_the_lung_window():
    img = np.array([[0, 51, 102, 153, 204, 255]] * 8, np.uint8)
    out, _ = sh.shift_slice(img, None, "window", (0.0, 3500.0))
    # grey g under (-600, 1500) is HU -1350 + g / 255 * 1500; under (0, 3500) it is (HU + 1750) / 3500 * 255
    hu = -1350 + img[0] / 255 * 1500
    np.testing.assert_array_equal(out[0], np.round((hu + 1750) / 3500 * 255).astype(np.uint8))
    same, _ = sh.shift_slice(img, None, "window", sh.SOURCE_WINDOW)
    np.testing.assert_array_equal(same, img)


def test_gamma_noise_jpeg_resolution_keep_shape_and_mask():
    img, mask = _image()
    g, m = sh.shift_slice(img, mask, "gamma", 2.0)
    assert m is mask and g[0, -1] == 255 and g[0, 0] == 0
    assert g[0, 25] == round(255 * (img[0, 25] / 255) ** 2)
    n1, _ = sh.shift_slice(img, mask, "noise", 8.0, seed=3)
    n2, _ = sh.shift_slice(img, mask, "noise", 8.0, seed=3)
    np.testing.assert_array_equal(n1, n2)  # seeded
    inner = (n1.astype(float) - img)[:, 5:-5]
    assert 6 < inner.std() < 10
    j, _ = sh.shift_slice(img, mask, "jpeg", 10)
    assert j.shape == img.shape and j.dtype == np.uint8 and not np.array_equal(j, img)
    r, _ = sh.shift_slice(img, mask, "resolution", 0.25)
    assert r.shape == img.shape and np.abs(r.astype(int) - img).max() > 0


def test_fov_pads_image_and_mask_with_air():
    img, mask = _image()
    out, m = sh.shift_slice(img, mask, "fov", 2.0)
    assert out.shape == m.shape == (80, 100)
    np.testing.assert_array_equal(out[20:60, 25:75], img)
    assert out[:20].max() == 0 and m.sum() == mask.sum() and np.array_equal(m[20:60, 25:75], mask)


def test_bad_shift_and_image():
    img, mask = _image()
    with pytest.raises(ValueError, match="unknown shift 'blur'"):
        sh.shift_slice(img, mask, "blur", 1)
    with pytest.raises(ValueError, match="2-D uint8"):
        sh.shift_slice(img.astype(float), mask, "gamma", 1)


def test_mean_dice_leaves_empty_masks_out():
    gt = np.zeros((10, 10), bool)
    gt[:5] = True
    half = np.zeros((10, 10))
    half[:5, :5] = 1.0  # Dice 2 * 25 / (25 + 50) = 2 / 3
    assert sh.mean_dice([gt.astype(float), half, half], [gt, gt, np.zeros((10, 10), bool)]) == pytest.approx(5 / 6)
    assert np.isnan(sh.mean_dice([half], [np.zeros((10, 10), bool)]))
    with pytest.raises(ValueError, match="2 maps for 1 masks"):
        sh.mean_dice([half, half], [gt])


def test_shift_table_means_over_severities_then_shifts():
    rows = [{"model": "a", "handling": "model only", "shift": "clean", "level": 0, "dice": 0.8}]
    for shift, level, _ in sh.conditions():
        rows.append({"model": "a", "handling": "model only", "shift": shift, "level": level,
                     "dice": 0.8 if shift != "fov" else 0.8 - 0.1 * level})  # fov: 0.7, 0.6, 0.5
    table = sh.shift_table(pd.DataFrame(rows))
    row = table.iloc[0]
    assert row["clean"] == 0.8 and row["fov"] == pytest.approx(0.6) and row["window"] == pytest.approx(0.8)
    assert row["mean shifted"] == pytest.approx((5 * 0.8 + 0.6) / 6)
    assert row["ratio"] == pytest.approx(row["mean shifted"] / 0.8) and bool(row["meets bar"])
    with pytest.raises(ValueError, match="lack columns"):
        sh.shift_table(pd.DataFrame({"model": []}))
