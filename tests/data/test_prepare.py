"""Inputs from outside the training data (data/inputs.prepare_slice): HU windowing, the field-of-view
crop, re-windowing, the record of every step, and maps put back into the input's frame."""

import numpy as np
import pytest

from ssinfnet.data.inputs import FAR, InputPolicy, prepare_slice
from ssinfnet.data.phantoms import LUNG_WINDOW, make_phantom_hu, synthetic_subset, window_hu
from ssinfnet.data.signature import Reference, reference_record


@pytest.fixture(scope="module")
def phantom_ref():
    """The reference of phantom training slices (lung window, air around the body)."""
    return Reference.from_dict(reference_record(synthetic_subset("train", 12, size=96)))


def test_hu_is_windowed_with_the_lung_window_by_default():
    hu = np.array([[-1350.0, -600.0, 150.0, 400.0]] * 8 + [[-2000.0, 0.0, -1000.0, 100.0]] * 8).repeat(2, 1)
    p = prepare_slice(hu, "hu")
    np.testing.assert_array_equal(p.image, window_hu(hu, *LUNG_WINDOW))
    assert p.image[0, :8:2].tolist() == [0, 128, 255, 255]
    assert p.steps == ["HU windowed to level -600, width 1500"] and p.kind == "hu"
    assert np.isnan(p.distance) and p.signature is None  # no reference: nothing compared


def test_hu_window_comes_from_the_policy_then_the_reference(phantom_ref):
    hu = np.linspace(-1200, 300, 16 * 16).reshape(16, 16)
    assert prepare_slice(hu, "hu", InputPolicy(window=(-500.0, 1000.0))).steps[0] == \
        "HU windowed to level -500, width 1000"
    assert prepare_slice(hu, "hu", InputPolicy(reference=phantom_ref)).steps[0] == \
        "HU windowed to level -600, width 1500"  # the phantoms' recorded window


def test_a_training_like_slice_passes_unchanged(phantom_ref):
    s = synthetic_subset("test", 1, size=96)[0]
    p = prepare_slice(s.image, "uint8", InputPolicy(reference=phantom_ref))
    assert p.steps == [] and p.warnings == [] and not p.cropped
    assert p.image is s.image or np.array_equal(p.image, s.image)
    assert p.distance == p.distance_in < FAR


def test_a_full_field_slice_is_cropped_to_the_training_field_of_view(phantom_ref):
    s = synthetic_subset("test", 1, size=96)[0]
    wide = np.pad(s.image, 48, constant_values=60)  # three times the side, air all round (-1000 HU = 60)
    p = prepare_slice(wide, "uint8", InputPolicy(reference=phantom_ref))
    assert p.cropped and len(p.steps) == 1 and p.steps[0].startswith("cropped to the body: rows ")
    t, left, b, r = p.box
    assert 40 <= t <= 52 and 40 <= left <= 52 and 140 <= b <= 152 and 140 <= r <= 152  # about the original frame
    assert p.distance_in > FAR and p.distance <= FAR
    assert p.warnings and p.warnings[0].startswith("input unlike the training slices (signature distance")
    # a map on the crop goes back into the input's frame, zero outside
    back = p.restore(np.ones(p.image.shape, np.float32))
    assert back.shape == wide.shape and back.sum() == p.image.size and back[:t].sum() == 0
    classes = p.restore(np.ones((3,) + p.image.shape, np.float32))
    assert classes.shape == (3,) + wide.shape
    with pytest.raises(ValueError, match="does not fit the prepared slice"):
        p.restore(np.ones((5, 5)))


def test_crop_off_only_warns(phantom_ref):
    s = synthetic_subset("test", 1, size=96)[0]
    wide = np.pad(s.image, 48, constant_values=60)
    p = prepare_slice(wide, "uint8", InputPolicy(reference=phantom_ref, crop=False))
    assert not p.cropped and p.steps == [] and p.warnings and p.distance > FAR


def test_a_wide_window_is_re_windowed_to_the_training_grey_levels(phantom_ref):
    hu, _, _ = make_phantom_hu(3, 96, seed=10_000)
    p = prepare_slice(window_hu(hu, 0.0, 3500.0), "uint8", InputPolicy(reference=phantom_ref))
    assert len(p.steps) == 1 and p.steps[0].startswith("re-windowed: lung median ")
    assert abs(p.signature.lung_p50 - phantom_ref.median("lung_p50")) <= 2
    assert abs(p.signature.body_p50 - phantom_ref.median("body_p50")) <= 2
    assert p.distance_in > FAR >= p.distance
    # off: the grey levels stay, the slice is flagged far
    q = prepare_slice(window_hu(hu, 0.0, 3500.0), "uint8", InputPolicy(reference=phantom_ref, rewindow=False))
    assert q.steps == [] and q.distance > FAR and q.warnings


def test_hu_volume_slice_with_a_full_field_goes_through_every_step(phantom_ref):
    hu, _, _ = make_phantom_hu(5, 96, seed=10_000)
    full = np.pad(hu, 60, constant_values=-1000.0)
    p = prepare_slice(full, "hu", InputPolicy(reference=phantom_ref))
    assert [step.split(":")[0].split(" to ")[0] for step in p.steps] == ["HU windowed", "cropped"]


def test_bad_inputs_name_the_slice():
    with pytest.raises(ValueError, match="s1: kind must be 'uint8' or 'hu'"):
        prepare_slice(np.zeros((10, 10), np.uint8), "rgb", name="s1")
    with pytest.raises(ValueError, match="s2: HU slice must be a finite 2-D array"):
        prepare_slice(np.full((10, 10), np.nan), "hu", name="s2")
    with pytest.raises(ValueError, match="s3: image must be a 2-D uint8"):
        prepare_slice(np.zeros((10, 10), np.float32), "uint8", name="s3")
    with pytest.raises(ValueError, match="window width must be > 0"):
        InputPolicy(window=(0.0, 0.0))
