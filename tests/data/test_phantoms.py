"""Synthetic phantoms: documented labels and HU values, reproducibility, label consistency."""

import numpy as np
import pytest
from scipy import ndimage

from ssinfnet.data.phantoms import (DEFAULT_COUNTS, LUNG_WINDOW, edge_of, make_phantom, make_phantom_hu,
                                    synthetic_subset, window_hu)


@pytest.mark.parametrize("hu, grey", [(-600, 128), (-1350, 0), (150, 255), (-2000, 0), (3000, 255), (-975, 64)])
def test_window_hu_lung_window(hu, grey):
    assert LUNG_WINDOW == (-600.0, 1500.0)
    assert window_hu(np.array([hu]))[0] == grey  # (hu + 1350) / 1500 * 255, rounded, clipped


def test_window_hu_custom_and_bad_width():
    np.testing.assert_array_equal(window_hu(np.array([-160.0, 40.0, 240.0]), 40, 400), [0, 128, 255])
    with pytest.raises(ValueError, match="width must be positive"):
        window_hu(np.zeros(2), -600, 0)


def test_labels_and_consistency():
    for i in range(6):
        s = make_phantom(i, 64, seed=0)
        assert s.image.dtype == np.uint8 and s.image.shape == (64, 64)
        assert set(np.unique(s.classes)) <= {0, 1, 2} and s.classes.dtype == np.uint8
        np.testing.assert_array_equal(s.infection, s.classes > 0)
        np.testing.assert_array_equal(s.edge, edge_of(s.infection))
        assert not (s.infection & ~s.meta["lungs"]).any()  # lesions lie inside the lungs
        assert s.prior.dtype == np.float32 and 0 <= s.prior.min() and s.prior.max() <= 1
        assert s.source == "synthetic" and s.meta["synthetic"] and s.path.startswith("synthetic://")
    shares = np.mean([make_phantom(i, 64).infection.any() for i in range(12)])
    assert 0.5 < shares < 1  # most slices have lesions, some are clean


def test_reproducible_and_distinct():
    a, b = make_phantom(3, 64, seed=5), make_phantom(3, 64, seed=5)
    for key in ("image", "classes", "edge", "prior"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert not np.array_equal(a.image, make_phantom(4, 64, seed=5).image)
    assert not np.array_equal(a.image, make_phantom(3, 64, seed=6).image)
    train, test = synthetic_subset("train", 4, 48), synthetic_subset("test", 4, 48)
    assert all(not np.array_equal(x.image, y.image) for x in train for y in test)


def test_subsets_and_groups():
    assert len(synthetic_subset("test")) == DEFAULT_COUNTS["test"]
    pool = synthetic_subset("unlabelled", 10, 48)
    assert all(s.infection is None and s.classes is None and s.prior is None for s in pool)
    assert [s.group_id for s in pool] == ["phantom-volume-unlabelled-000"] * 8 + ["phantom-volume-unlabelled-001"] * 2
    assert len({s.slice_id for s in pool}) == 10
    with pytest.raises(ValueError, match="subset must be one of"):
        synthetic_subset("val")
    with pytest.raises(ValueError, match="n must be >= 1"):
        synthetic_subset("train", 0)
    with pytest.raises(ValueError, match="size must be >= 32 pixels"):
        make_phantom_hu(0, 16)


def test_edge_of():
    m = np.zeros((9, 9), bool)
    m[3:6, 3:6] = True
    e = edge_of(m)
    assert e[2, 4] and e[3, 4] and not e[4, 4] and not e[0, 0]  # one pixel out, one in, centre not
    assert e.sum() == (9 + 4 * 3) - 1  # square dilated by a cross (9 + four arms of 3) minus its eroded centre
    assert not edge_of(np.zeros((4, 4), bool)).any()


def test_hu_values_of_the_docstring_table():
    lung, cons, ggo, body, air = [], [], [], [], []
    for i in range(8):
        hu, classes, lungs = make_phantom_hu(i, 128, seed=0)
        lesions = ndimage.binary_dilation(classes > 0, iterations=3)
        lung.append(hu[ndimage.binary_erosion(lungs, iterations=3) & ~lesions])
        cons.append(hu[ndimage.binary_erosion(classes == 2)])
        ggo.append(hu[ndimage.binary_erosion(classes == 1)])
        body.append(hu[ndimage.binary_erosion((hu > -300) & ~ndimage.binary_dilation(lungs, iterations=4), iterations=2)])
        air.append(hu[:3, :3].ravel())
    # medians are robust to the thin vessels (+30 HU) that cross the parenchyma
    assert abs(np.median(np.concatenate(lung)) - (-860)) < 15
    assert abs(np.median(np.concatenate(cons)) - 20) < 15
    assert abs(np.median(np.concatenate(ggo)) - (-480)) < 25
    assert abs(np.median(np.concatenate(body)) - 40) < 15
    np.testing.assert_allclose(np.concatenate(air), -1000, atol=1e-3)


def test_lesion_load_zero_is_clean():
    hu, classes, lungs = make_phantom_hu(2, 64, seed=0, lesion_load=0.0)
    assert classes.max() == 0 and lungs.any()
