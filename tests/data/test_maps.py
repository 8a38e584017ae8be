"""The one map format between chapters: round trip, alignment and errors naming file and slice."""
import numpy as np
import pytest

from ssinfnet.data.maps import load_maps, map_ids, save_maps
from ssinfnet.data.sample import Sample


def _samples(shapes, ids=None):
    ids = ids or [f"s{i}" for i in range(len(shapes))]
    return [Sample(image=np.zeros(s, np.uint8), slice_id=k, source="t", subset="test") for k, s in zip(ids, shapes)]


def test_round_trip_keeps_order_shape_and_dtype(tmp_path):
    samples = _samples([(4, 5), (3, 3)])
    probs = [np.full((4, 5), 0.25, np.float32), np.linspace(0, 1, 9, dtype=np.float32).reshape(3, 3)]
    p = save_maps(tmp_path / "p.npz", samples, probs)
    back = load_maps(p, samples[::-1], kind="probability")
    assert back[0].dtype == np.float32 and back[0].shape == (3, 3)
    np.testing.assert_allclose(back[1], 0.25)
    np.testing.assert_allclose(back[0], probs[1], atol=1e-3)  # float16 storage
    labels = [np.array([[0, 1, 2, 1, 0]] * 4), np.zeros((3, 3), int)]
    lp = save_maps(tmp_path / "l.npz", samples, labels)
    assert load_maps(lp, samples)[0].dtype == np.uint8
    everything = load_maps(lp, kind="labels")
    assert set(everything) == {"s0", "s1"} == map_ids(lp)
    assert everything["s0"].tolist()[0] == [0, 1, 2, 1, 0]


def test_extra_slices_in_the_file_are_ignored(tmp_path):
    np.savez(tmp_path / "p.npz", b=np.full((4, 6), 0.75), a=np.full((4, 6), 0.25), extra=np.zeros((2, 2)))
    out = load_maps(tmp_path / "p.npz", _samples([(4, 6), (4, 6)], ["a", "b"]), kind="probability")
    assert [float(m[0, 0]) for m in out] == [0.25, 0.75]


@pytest.mark.parametrize("arrays, kind, message", [
    ({"s0": np.zeros((4, 5))}, "any", r"no map for 1 slice.*'s1'"),
    ({"s0": np.zeros((4, 5)), "s1": np.zeros((4, 4))}, "any", r"'s1' has shape \(4, 4\), slice \(3, 3\)"),
    ({"s0": np.zeros((4, 5)), "s1": np.full((3, 3), 2.0)}, "probability", r"'s1' outside \[0, 1\]"),
    ({"s0": np.zeros((4, 5)), "s1": np.full((3, 3), np.nan)}, "probability", "NaN"),
    ({"s0": np.zeros((4, 5), np.uint8), "s1": np.full((3, 3), 3, np.uint8)}, "labels", r"labels \[3\] outside"),
    ({"s0": np.zeros((4, 5), np.uint8), "s1": np.full((3, 3), 0.5)}, "labels", "not class labels"),
    ({"s0": np.zeros((4, 5, 1)), "s1": np.zeros((3, 3))}, "any", "must be 2-D"),
])
def test_bad_maps_name_the_file_and_slice(tmp_path, arrays, kind, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message) as err:
        load_maps(tmp_path / "bad.npz", _samples([(4, 5), (3, 3)]), kind=kind)
    assert "bad.npz" in str(err.value)


def test_missing_unreadable_and_miscounted(tmp_path):
    with pytest.raises(ValueError, match="nope.npz: map file not found"):
        load_maps(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read"):
        load_maps(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="cannot read"):
        map_ids(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="1 samples but 0 maps"):
        save_maps(tmp_path / "x.npz", _samples([(2, 2)]), [])
    with pytest.raises(ValueError, match="kind"):
        load_maps(tmp_path / "junk.npz", kind="probabilities")
