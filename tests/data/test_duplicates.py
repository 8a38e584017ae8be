"""Exact and near duplicates across splits."""

import numpy as np
import pytest

from ssinfnet.data.duplicates import content_hash, find_duplicates, thumbnail
from ssinfnet.data.sample import Sample


def _s(img, sid):
    return Sample(image=img, slice_id=sid, source="t", subset="x")


def _ct_like(seed, shape=(96, 80)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = rng.uniform(20, 60, 2)
    return np.clip(60 + 150 * (((yy - cy) ** 2 + (xx - cx) ** 2) < 400) + rng.normal(0, 10, shape), 0, 255).astype(np.uint8)


def test_exact_near_and_unrelated():
    base = _ct_like(0)
    noisy = np.clip(base + np.random.default_rng(9).normal(0, 4, base.shape), 0, 255).astype(np.uint8)
    a = [_s(base.copy(), "a-copy"), _s(noisy, "a-noisy"), _s(_ct_like(5), "a-other")]
    b = [_s(base, "b-base"), _s(_ct_like(1), "b-1"), _s(_ct_like(2), "b-2")]
    df = find_duplicates(a, b).set_index("a_id")
    assert df.loc["a-copy", "b_id"] == "b-base" and df.loc["a-copy", "rms"] == pytest.approx(0, abs=1e-6)
    assert df.loc["a-copy", "exact"] and df.loc["a-copy", "near"]
    assert df.loc["a-noisy", "b_id"] == "b-base" and not df.loc["a-noisy", "exact"]
    assert 0 < df.loc["a-noisy", "rms"] < 3 and df.loc["a-noisy", "near"]
    assert df.loc["a-other", "rms"] > 12 and not df.loc["a-other", "near"] and not df.loc["a-other", "exact"]
    rows = find_duplicates(a, b)
    assert len(rows) == 3 and rows.rms.is_monotonic_increasing  # one row per slice of a, sorted


def test_same_thumbnail_different_size_is_not_exact():
    img = np.full((32, 32), 100, np.uint8)
    df = find_duplicates([_s(img, "a")], [_s(np.full((64, 64), 100, np.uint8), "b")])
    assert df.rms[0] == 0 and not df.exact[0] and df.near[0]


def test_thumbnail_and_hash():
    img = np.zeros((32, 32), np.uint8)
    img[:16] = 200
    t = thumbnail(img, 4)
    assert t.shape == (4, 4) and t.dtype == np.float64
    np.testing.assert_array_equal(t, [[200] * 4] * 2 + [[0] * 4] * 2)  # box average of 8x8 blocks
    assert content_hash(img) == content_hash(img.copy())
    assert content_hash(img) != content_hash(img.reshape(16, 64))  # shape is part of the hash
    with pytest.raises(ValueError, match="non-empty"):
        find_duplicates([], [_s(img, "x")])
