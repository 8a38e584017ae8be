"""The input signature: rough masks, the four numbers, the reference and its distance, re-windowing, the
field-of-view box; known inputs give known outputs."""

import numpy as np
import pytest

from ssinfnet.data.phantoms import LUNG_WINDOW, synthetic_subset
from ssinfnet.data.signature import (SEMISEG_REFERENCE, SEMISEG_REFERENCE_DICT, SIGNATURE_FIELDS, Reference,
                                     fov_box, reference_from_images, reference_record, rewindow, rough_masks,
                                     signature)


def chest(h=120, w=160, body=(10, 20, 110, 140), lung_grey=50, body_grey=200, air_grey=0) -> np.ndarray:
    """A drawn slice: air around a rectangular body (``body`` = top, left, bottom, right) holding two
    rectangular lungs; each part one grey level."""
    img = np.full((h, w), air_grey, np.uint8)
    t, left, b, r = body
    img[t:b, left:r] = body_grey
    bh, bw = b - t, r - left
    for x0 in (left + bw // 10, left + bw // 2 + bw // 10):
        img[t + bh // 5: b - bh // 5, x0: x0 + int(bw * 0.3)] = lung_grey
    return img


def test_signature_of_a_drawn_slice():
    img = chest()
    sig = signature(img)
    assert (sig.lung_p50, sig.body_p50) == (50.0, 200.0)
    assert sig.body_fill == pytest.approx(100 * 120 / (120 * 160))  # the body's box in the frame
    lungs = 2 * (100 - 2 * 20) * int(120 * 0.3)
    assert sig.lung_share == pytest.approx(lungs / (100 * 120), abs=0.01)
    m = rough_masks(img)
    assert m.found and m.box == (10, 20, 110, 140)


def test_a_large_slice_is_measured_scaled_down_with_the_box_in_full_size():
    img = chest(480, 640, body=(40, 80, 440, 560))
    m = rough_masks(img)
    assert m.body.shape == img.shape
    assert np.abs(np.subtract(m.box, (40, 80, 440, 560))).max() <= 4
    sig = signature(img, m)
    assert (sig.lung_p50, sig.body_p50) == (50.0, 200.0)


def test_constant_and_tiny_images():
    sig = signature(np.full((20, 20), 90, np.uint8))
    assert all(np.isnan(getattr(sig, f)) for f in SIGNATURE_FIELDS)
    with pytest.raises(ValueError, match="tiny: image must be a 2-D uint8 array of at least 8 x 8"):
        signature(np.zeros((4, 30), np.uint8), name="tiny")
    with pytest.raises(ValueError, match="uint8"):
        signature(np.zeros((30, 30), np.float32))


def _ref():
    return Reference({"lung_p50": (40, 50, 70), "body_p50": (190, 200, 240), "body_fill": (0.9, 1.0, 1.0),
                      "lung_share": (0.3, 0.5, 0.6)}, n=10, source="test")


def test_distance_is_zero_inside_and_counts_half_ranges_outside():
    ref = _ref()
    inside = signature(chest(body=(0, 0, 120, 160)))
    assert ref.field_distances(inside)["lung_p50"] == 0.0
    # lung 50 -> inside; body 200 inside; fill 1.0 inside
    sig = type(inside)(lung_p50=10.0, body_p50=250.0, body_fill=0.5, lung_share=0.5)
    d = ref.field_distances(sig)
    assert d["lung_p50"] == pytest.approx((40 - 10) / 12)  # spread max(50 - 40, 12) = 12
    assert d["body_p50"] == pytest.approx((250 - 240) / 40)
    assert d["body_fill"] == pytest.approx((0.9 - 0.5) / 0.1)
    assert d["lung_share"] == 0.0
    assert ref.distance(sig) == pytest.approx(4.0)
    assert ref.distance(sig, ("lung_p50", "body_p50")) == pytest.approx(2.5)
    assert ref.describe(sig, 1.0) == "lung_p50 10 (training 40-70); body_fill 0.50 (training 0.90-1.00)"
    nan = type(inside)(*(float("nan"),) * 4)
    assert ref.distance(nan) == float("inf")


def test_reference_round_trip_and_bad_records():
    ref = _ref()
    assert Reference.from_dict(ref.to_dict()) == ref
    with pytest.raises(ValueError, match="lacks the signature fields"):
        Reference({"lung_p50": (1, 2, 3)}, 1)
    with pytest.raises(ValueError, match="finite and ordered"):
        Reference({**ref.quantiles, "body_p50": (200, 190, 240)}, 1)
    with pytest.raises(ValueError, match="malformed input reference"):
        Reference.from_dict({"quantiles": {}, "n": 3})


def test_rewindow_puts_the_medians_on_the_training_medians():
    ref = _ref()
    wide = chest(lung_grey=10, body_grey=90, air_grey=0)  # a wide window: dark lungs, grey body
    mapped = rewindow(wide, signature(wide), ref)
    assert (mapped[wide == 10] == 50).all() and (mapped[wide == 90] == 200).all()
    # a linear map: air (0) lands at 50 - 10 * 150 / 80
    assert (mapped[wide == 0] == round(50 - 10 * 150 / 80)).all()
    flat = type(signature(wide))(lung_p50=100.0, body_p50=101.0, body_fill=1.0, lung_share=0.4)
    assert rewindow(wide, flat, ref) is None  # no contrast between lungs and body: nothing safe to do


def test_fov_box_restores_the_fill_and_stays_in_the_image():
    assert fov_box((200, 200), (50, 50, 150, 150), 1.0) == (50, 50, 150, 150)
    t, left, b, r = fov_box((200, 200), (50, 50, 150, 150), 0.25)  # box fills a quarter: twice the side
    assert (t, left, b, r) == (0, 0, 200, 200)
    # a 100 px box filling 0.64: 125 px around its centre (150, 200), rounded outwards
    assert fov_box((400, 400), (100, 150, 200, 250), 0.64) == (87, 137, 213, 263)


def test_phantom_reference_records_the_window_and_differs_from_semiseg():
    phantoms = synthetic_subset("train", 6, size=96)
    rec = reference_record(phantoms)
    assert rec["window"] == list(LUNG_WINDOW) and rec["n"] == 6 and rec["source"] == "synthetic train slices"
    ref = Reference.from_dict(rec)
    assert all(ref.distance(signature(s.image)) == 0.0 for s in phantoms[:3]) or \
        max(ref.distance(signature(s.image)) for s in phantoms) < 1.5
    # phantoms carry air around the body, the COVID-SemiSeg crops do not
    assert ref.median("body_fill") < 0.85 and SEMISEG_REFERENCE.median("body_fill") == 1.0
    assert reference_record([]) is None


def test_semiseg_reference_is_what_the_training_slices_give(real_root):
    from ssinfnet.data.semiseg import read_semiseg

    train = read_semiseg(real_root, "train")
    got = reference_from_images([s.image for s in train]).to_dict()
    assert got["n"] == SEMISEG_REFERENCE_DICT["n"] == 50
    for f in SIGNATURE_FIELDS:
        np.testing.assert_allclose(got["quantiles"][f], SEMISEG_REFERENCE_DICT["quantiles"][f], atol=1e-3)
    # every test slice lies near the training slices (the far limit is 1.5)
    test = read_semiseg(real_root, "test")
    assert max(SEMISEG_REFERENCE.distance(signature(s.image)) for s in test) < 1.01
