"""MATLAB-style bicubic imresize: hand-computed weights and invariants."""

import numpy as np
import pytest

from ssinfnet.evaluation.imresize import contributions, cubic, imresize


def test_cubic_kernel_values():
    # Keys a = -0.5: 1.5|x|^3 - 2.5|x|^2 + 1 inside 1, -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2 in (1, 2]
    x = np.array([0.0, 0.25, 0.75, 1.0, 1.25, 1.75, 2.0, 2.5, -0.25])
    want = [1.0, 0.8671875, 0.2265625, 0.0, -0.0703125, -0.0234375, 0.0, 0.0, 0.8671875]
    np.testing.assert_allclose(cubic(x), want, atol=1e-15)


def test_upscale_2x_of_two_pixels_by_hand():
    # scale 2: u = x/2 + 1/4 -> 0.75, 1.25, 1.75, 2.25. For u = 0.75 the taps are at 1-based
    # indices -1, 0, 1, 2 with weights c(1.75), c(0.75), c(0.25), c(1.25); mirroring sends -1 -> 2 and
    # 0 -> 1, so out[0] = (0.2265625 + 0.8671875) a + (-0.0234375 - 0.0703125) b = 1.09375 a - 0.09375 b.
    # For u = 1.25: indices 0, 1, 2, 3 -> 1, 1, 2, 2: 0.796875 a + 0.203125 b.
    col = np.array([[0.0], [1.0]])
    got = imresize(col, (4, 1))
    np.testing.assert_allclose(got[:, 0], [-0.09375, 0.203125, 0.796875, 1.09375], atol=1e-14)
    # Plain edge replication would give -0.0703125 at the first pixel: MATLAB mirrors.
    assert got[0, 0] != pytest.approx(-0.0703125)


def test_upscale_2x2_is_separable_outer_product():
    a = np.array([[0.0, 1.0], [1.0, 0.0]])
    w = np.array([[1.09375, -0.09375], [0.796875, 0.203125], [0.203125, 0.796875], [-0.09375, 1.09375]])
    np.testing.assert_allclose(imresize(a, (4, 4)), w @ a @ w.T, atol=1e-14)


def test_upscale_uint8_rounds_and_saturates():
    col = np.array([[0], [255]], dtype=np.uint8)
    got = imresize(col, (4, 1))
    assert got.dtype == np.uint8
    # 255 * [-0.09375, 0.203125, 0.796875, 1.09375] = [-23.9, 51.80, 203.20, 278.9]
    np.testing.assert_array_equal(got[:, 0], [0, 52, 203, 255])


def test_shrink_4_to_2_antialiased_by_hand():
    # scale 0.5: u = 2x - 0.5 -> 1.5, 3.5; kernel 0.5*c(0.5 d), taps at d = +-0.5, +-1.5, +-2.5, +-3.5
    # with weights 0.43359375, 0.11328125, -0.03515625, -0.01171875. For u = 1.5 the indices
    # -2..5 mirror to 3, 2, 1, 1, 2, 3, 4, 4: p1 0.546875, p2 0.3984375, p3 0.1015625, p4 -0.046875.
    w, idx = contributions(4, 2)
    dense = np.zeros((2, 4))
    np.add.at(dense, (np.repeat([0, 1], w.shape[1]), idx.ravel()), w.ravel())
    np.testing.assert_allclose(dense[0], [0.546875, 0.3984375, 0.1015625, -0.046875], atol=1e-15)
    np.testing.assert_allclose(dense[1], dense[0][::-1], atol=1e-15)
    got = imresize(np.array([[0.0, 0.0, 0.0, 1.0]]), (1, 2))
    np.testing.assert_allclose(got[0], [-0.046875, 0.546875], atol=1e-14)


def test_shrink_without_antialiasing_uses_narrow_kernel():
    w, _ = contributions(4, 2, antialiasing=False)
    assert w.shape[1] <= 6  # 4-tap kernel (+2 guard taps), not the widened 8
    np.testing.assert_allclose(w.sum(1), 1.0)


@pytest.mark.parametrize("shape_in,shape_out", [((3, 5), (7, 4)), ((9, 6), (4, 13)), ((5, 5), (2, 2))])
def test_constant_stays_constant(shape_in, shape_out):
    np.testing.assert_allclose(imresize(np.full(shape_in, 0.3), shape_out), 0.3, atol=1e-12)
    u8 = imresize(np.full(shape_in, 77, dtype=np.uint8), shape_out)
    assert u8.dtype == np.uint8 and (u8 == 77).all()


def test_identity_size_returns_copy():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = imresize(a, (3, 4))
    np.testing.assert_array_equal(out, a)
    out[0, 0] = 99
    assert a[0, 0] == 0


def test_weights_sum_to_one_and_indices_in_range():
    for n_in, n_out in [(5, 13), (13, 5), (1, 4), (7, 7)]:
        w, idx = contributions(n_in, n_out)
        np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
        assert idx.min() >= 0 and idx.max() < n_in


def test_bool_input_stays_bool():
    m = np.zeros((4, 4), dtype=bool)
    m[1:3, 1:3] = True
    out = imresize(m, (8, 8))
    assert out.dtype == bool and out[3:5, 3:5].all() and not out[0, 0]


@pytest.mark.parametrize("image,shape", [(np.zeros((2, 2, 3)), (4, 4)), (np.zeros((2, 2)), (0, 4)),
                                          (np.zeros((2, 2)), (4,)), (np.array([["a"]]), (2, 2))])
def test_bad_arguments(image, shape):
    with pytest.raises(ValueError):
        imresize(image, shape)
