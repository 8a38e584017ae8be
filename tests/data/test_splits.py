"""Grouped, deterministic splits and the split manifest (no sample disappears)."""

import numpy as np
import pandas as pd
import pytest

from ssinfnet.data.sample import Sample
from ssinfnet.data.splits import group_keys, grouped_kfold, save_manifest, split_manifest, validation_split


def _samples(groups):
    """One tiny sample per entry; ``None`` = no group id."""
    img = np.zeros((2, 2), np.uint8)
    return [Sample(image=img, slice_id=f"s{i}", source="t", subset="train", path=f"p{i}", group_id=g)
            for i, g in enumerate(groups)]


# 7 volumes of uneven size plus 5 slices without a group (each its own group)
GROUPS = ["v1"] * 6 + ["v2"] * 3 + ["v3"] * 5 + ["v4"] * 2 + ["v5"] * 4 + ["v6"] + ["v7"] * 3 + [None] * 5
SAMPLES = _samples(GROUPS)


def test_group_keys():
    assert group_keys(_samples(["a", None, "a"])) == ["a", "slice:s1", "a"]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_validation_split_disjoint_grouped_deterministic(seed):
    train, val = validation_split(SAMPLES, 0.25, seed)
    assert (train, val) == validation_split(SAMPLES, 0.25, seed)
    assert sorted(train + val) == list(range(len(SAMPLES))) and not set(train) & set(val)
    keys = group_keys(SAMPLES)
    assert not {keys[i] for i in train} & {keys[i] for i in val}  # no group on both sides
    target = round(0.25 * len(SAMPLES))  # 7 of 29
    assert target <= len(val) < target + 6  # stops at the first group reaching it (largest group: 6)


def test_validation_split_depends_on_seed():
    splits = {tuple(validation_split(SAMPLES, 0.3, seed)[1]) for seed in range(6)}
    assert len(splits) > 1


def test_validation_split_keeps_train_non_empty():
    train, val = validation_split(_samples(["a", "b"]), 0.9, 0)
    assert len(train) == 1 and len(val) == 1


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_validation_split_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction must be in"):
        validation_split(SAMPLES, fraction)


def test_validation_split_one_group():
    with pytest.raises(ValueError, match="need at least 2 groups"):
        validation_split(_samples(["a", "a", "a"]))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_grouped_kfold_covers_each_sample_once(k):
    folds = grouped_kfold(SAMPLES, k, seed=3)
    assert folds == grouped_kfold(SAMPLES, k, seed=3) and len(folds) == k
    keys = group_keys(SAMPLES)
    held_all = [i for _, held in folds for i in held]
    assert sorted(held_all) == list(range(len(SAMPLES)))  # every sample held out exactly once
    for train, held in folds:
        assert sorted(train + held) == list(range(len(SAMPLES)))
        assert not {keys[i] for i in train} & {keys[i] for i in held}
    sizes = [len(h) for _, h in folds]
    assert max(sizes) - min(sizes) <= 6  # largest group is 6: greedy dealing keeps folds balanced


def test_grouped_kfold_bad_args():
    with pytest.raises(ValueError, match="k must be >= 2"):
        grouped_kfold(SAMPLES, 1)
    with pytest.raises(ValueError, match="k=3 folds need at least 3 groups, got 2"):
        grouped_kfold(_samples(["a", "b", "a"]), 3)


def test_split_manifest_accounts_for_every_sample(tmp_path):
    train, val = validation_split(SAMPLES, 0.2, 0)
    assignment = {i: "train" for i in train[:-2]} | {i: "val" for i in val}
    df = split_manifest(SAMPLES, assignment)
    assert len(df) == len(SAMPLES)
    assert df.split.value_counts().to_dict() == {"train": len(train) - 2, "val": len(val), "excluded": 2}
    assert df.loc[train[-1], "split"] == "excluded" and df.loc[0, "slice_id"] == "s0"
    assert list(df.columns) == ["slice_id", "group", "source", "subset", "split", "path"]
    path = save_manifest(df, tmp_path / "a" / "b" / "split.csv")
    pd.testing.assert_frame_equal(pd.read_csv(path), df)


def test_load_split_round_trips_and_names_missing_slices(tmp_path):
    samples = _samples(["a", "a", None, "b", None, "c"])
    tr, va = validation_split(samples, fraction=0.3, seed=1)
    assignment = {**{i: "train" for i in tr}, **{i: "val" for i in va}}
    path = save_manifest(split_manifest(samples, assignment), tmp_path / "m.csv")
    from ssinfnet.data.splits import load_split

    assert load_split(samples, path) == (tr, va)
    extra = samples + _samples(["z"] * 7)[6:]
    with pytest.raises(ValueError, match="s6"):
        load_split(extra, path)
