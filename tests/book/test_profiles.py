"""The profile table: names, sizes that grow from smoke to paper, overrides."""

import dataclasses

import pytest

from ssinfnet.book.profiles import PROFILES, Profile, get_profile


def test_three_profiles_and_paper_settings():
    assert list(PROFILES) == ["smoke", "cpu", "paper"]
    paper = get_profile("paper")
    assert paper.image_size == 352 and paper.backbone == "res2net50_26w_4s" and paper.keep_fraction == 0.75
    assert paper.pretrain_inpainter_epochs == 200 and paper.pretrain_coach_epochs == 200
    for name, p in PROFILES.items():
        assert p.name == name


def test_sizes_grow_from_smoke_to_paper():
    s, c, p = (get_profile(n) for n in ("smoke", "cpu", "paper"))
    for field in ("image_size", "finetune_epochs", "multi_epochs", "n_boot", "simulation_replicates"):
        assert getattr(s, field) <= getattr(c, field) <= getattr(p, field), field
    assert s.max_steps_per_epoch is not None and p.max_steps_per_epoch is None


def test_get_profile_unknown_lists_choices():
    with pytest.raises(ValueError, match=r"unknown profile 'fast'; choose one of smoke, cpu, paper"):
        get_profile("fast")


def test_overrides_copy_not_mutate():
    p = get_profile("smoke", image_size=32, seed=3)
    assert p.image_size == 32 and p.seed == 3 and p.name == "smoke"
    assert get_profile("smoke").image_size == 64  # the table is untouched
    assert get_profile("cpu") is PROFILES["cpu"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.image_size = 1  # type: ignore[misc]


def test_with_overrides_unknown_field():
    with pytest.raises(ValueError, match=r"unknown profile fields \['epochs', 'img_size'\]; valid: \[") as exc:
        get_profile("smoke").with_overrides(img_size=32, epochs=1)
    assert "'image_size'" in str(exc.value)
    with pytest.raises(ValueError, match="unknown profile fields"):
        get_profile("cpu", lr=0.1)


def test_to_dict_round_trip():
    p = get_profile("cpu")
    d = p.to_dict()
    assert d["name"] == "cpu" and d["synthetic_counts"] == {"train": 24, "test": 12, "unlabelled": 48}
    assert Profile(**d) == p


def test_infnet_kwargs_include_backbone():
    for p in PROFILES.values():
        kw = p.infnet_kwargs()
        assert kw["backbone"] == p.backbone and {k: v for k, v in kw.items() if k != "backbone"} == p.model_kwargs


def test_profile_table_lists_every_profile_and_summary_field():
    from ssinfnet.book.profiles import SUMMARY_FIELDS, profile_table

    t = profile_table()
    assert list(t.columns) == ["smoke", "cpu", "paper"] and len(t) == len(SUMMARY_FIELDS)
    assert t.loc["input size (px)", "paper"] == 352 and t.loc["unlabelled slices used", "paper"] == "all"
