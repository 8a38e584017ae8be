"""Single-file readers of ssinfnet.data.io: values, conversions, and loud errors naming the file."""

import numpy as np
import pytest
from PIL import Image

from ssinfnet.data.io import (DataError, list_images, natural_key, read_binary_mask, read_image, read_label_mask,
                              read_soft_mask, to_uint8_grey)

from .conftest import save_grey, save_palette, truncate


def _noise(shape=(64, 80), seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


# ----------------------------------------------------------------------------- read_image

def test_read_image_grey_png_round_trip(tmp_path):
    a = _noise()
    got = read_image(save_grey(a, tmp_path / "a.png"))
    assert got.dtype == np.uint8 and got.shape == (64, 80)
    np.testing.assert_array_equal(got, a)
    got[0, 0] = 7  # writable copy, not PIL's read-only buffer


def test_read_image_rgb_grey_takes_first_channel(tmp_path):
    a = _noise()
    Image.fromarray(np.stack([a, a, a], -1)).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), a)


def test_read_image_16bit_scaled(tmp_path):
    a = np.array([[0, 65535], [257, 32896]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "i16.png")
    np.testing.assert_array_equal(read_image(tmp_path / "i16.png"), [[0, 255], [1, 128]])


def test_read_image_float_in_unit_range(tmp_path):
    a = np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)
    Image.fromarray(a).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif"), [[0, 128], [255, 64]])


@pytest.mark.parametrize("bad, phrase", [(np.nan, "NaN or Inf"), (np.inf, "NaN or Inf"), (3.0, "cannot convert")])
def test_read_image_float_bad_values(tmp_path, bad, phrase):
    a = np.full((4, 5), 0.5, dtype=np.float32)
    a[1, 2] = bad
    path = tmp_path / "f.tif"
    Image.fromarray(a).save(path)
    with pytest.raises(DataError, match=phrase) as exc:
        read_image(path)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_read_image_truncated(tmp_path, suffix):
    path = truncate(save_grey(_noise((128, 128)), tmp_path / f"cut{suffix}"))
    with pytest.raises(DataError, match="unreadable image") as exc:
        read_image(path)
    assert str(path) in str(exc.value)


def test_read_image_not_an_image(tmp_path):
    path = tmp_path / "x.png"
    path.write_text("not a png")
    with pytest.raises(DataError, match=r"x\.png: unreadable image"):
        read_image(path)


def test_read_image_missing(tmp_path):
    with pytest.raises(DataError, match=r"nope\.png: file not found"):
        read_image(tmp_path / "nope.png")


# ----------------------------------------------------------------------------- to_uint8_grey

def test_to_uint8_grey_conversions():
    np.testing.assert_array_equal(to_uint8_grey(np.array([[True, False]])), [[255, 0]])
    np.testing.assert_array_equal(to_uint8_grey(np.array([[0, 200]], dtype=np.int32)), [[0, 200]])
    np.testing.assert_array_equal(to_uint8_grey(np.array([[0, 1000]], dtype=np.int32)), [[0, 4]])  # 1000*255/65535


@pytest.mark.parametrize("arr, phrase", [
    (np.array([[0.1, np.nan]]), "NaN or Inf"),
    (np.array([[-3, 10]], dtype=np.int16), "negative"),
    (np.zeros((2, 3, 5), np.uint8), "2-D grey"),
    (np.array([[-0.5, 2.0]]), "cannot convert"),
])
def test_to_uint8_grey_rejects(arr, phrase):
    with pytest.raises(DataError, match=phrase) as exc:
        to_uint8_grey(arr, "some/file.png")
    assert "some/file.png" in str(exc.value)


# ----------------------------------------------------------------------------- masks

def test_read_binary_mask_8bit_and_1bit(tmp_path):
    m = np.zeros((10, 12), bool)
    m[2:5, 3:9] = True
    np.testing.assert_array_equal(read_binary_mask(save_grey(m * 255, tmp_path / "m.png"), (10, 12)), m)
    Image.fromarray(m).convert("1").save(tmp_path / "one.png")
    assert Image.open(tmp_path / "one.png").mode == "1"
    np.testing.assert_array_equal(read_binary_mask(tmp_path / "one.png"), m)


@pytest.mark.parametrize("values, phrase", [
    ((0, 1, 2), "looks like a label-index mask"),
    ((0, 255, 128), "binary mask expected"),
])
def test_read_binary_mask_wrong_values(tmp_path, values, phrase):
    a = np.array(values * 10, np.uint8).reshape(5, -1)
    path = save_grey(a, tmp_path / "gt.png")
    with pytest.raises(DataError, match=phrase) as exc:
        read_binary_mask(path)
    assert str(path) in str(exc.value)


def test_read_binary_mask_palette_refused(tmp_path):
    path = save_palette(np.array([[0, 1], [2, 0]], np.uint8), tmp_path / "p.png")
    with pytest.raises(DataError, match="palette"):
        read_binary_mask(path)


def test_read_binary_mask_size_mismatch(tmp_path):
    path = save_grey(np.zeros((10, 12), np.uint8), tmp_path / "gt.png")
    with pytest.raises(DataError, match=r"gt\.png: mask size 12x10 \(WxH\) differs from its image 12x11"):
        read_binary_mask(path, (11, 12))


def test_read_label_mask_palette_and_grey(tmp_path):
    c = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    np.testing.assert_array_equal(read_label_mask(save_palette(c, tmp_path / "p.png"), shape=(2, 3)), c)
    np.testing.assert_array_equal(read_label_mask(save_grey(c, tmp_path / "l.png")), c)


@pytest.mark.parametrize("values, bad", [((0, 255), [255]), ((0, 1, 5), [5]), ((0, 3), [3])])
def test_read_label_mask_values_outside_set(tmp_path, values, bad):
    path = save_grey(np.array(values * 4, np.uint8).reshape(4, -1), tmp_path / "gt.png")
    with pytest.raises(DataError, match="outside the declared set") as exc:
        read_label_mask(path)
    assert str(path) in str(exc.value) and str(bad) in str(exc.value)


def test_read_label_mask_allows_declared_extra(tmp_path):
    path = save_grey(np.array([[0, 3]], np.uint8), tmp_path / "gt.png")
    np.testing.assert_array_equal(read_label_mask(path, allowed=(0, 1, 2, 3)), [[0, 3]])


def test_read_label_mask_rgb_refused(tmp_path):
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match="mode RGB"):
        read_label_mask(tmp_path / "rgb.png")


def test_read_label_mask_size_mismatch(tmp_path):
    path = save_palette(np.zeros((4, 6), np.uint8), tmp_path / "p.png")
    with pytest.raises(DataError, match="differs from its image"):
        read_label_mask(path, shape=(6, 4))


def test_read_soft_mask(tmp_path):
    a = np.array([[0, 51, 255]], np.uint8)
    got = read_soft_mask(save_grey(a, tmp_path / "s.png"), (1, 3))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [[0.0, 0.2, 1.0]], atol=1e-7)
    with pytest.raises(DataError, match="differs"):
        read_soft_mask(tmp_path / "s.png", (3, 1))


# ----------------------------------------------------------------------------- folders

def test_list_images_natural_order_and_filter(tmp_path):
    for stem in ("10", "2", "1"):
        save_grey(np.zeros((2, 2)), tmp_path / f"{stem}.png")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["1.png", "2.png", "10.png"]


def test_list_images_empty_and_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    with pytest.raises(DataError, match=r"empty: no images found \(empty folder\)"):
        list_images(tmp_path / "empty")
    with pytest.raises(DataError, match=r"gone: folder of masks not found"):
        list_images(tmp_path / "gone", "masks")


def test_natural_key():
    assert sorted(["img10", "img2", "img1"], key=natural_key) == ["img1", "img2", "img10"]
