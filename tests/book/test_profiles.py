"""The profile table: names, sizes that grow from smoke to paper, overrides."""

import dataclasses

import pytest

from ssinfnet.book.profiles import PROFILES, Profile, get_profile


def test_four_profiles_and_the_papers_exact_schedule():
    assert list(PROFILES) == ["smoke", "cpu", "gpu", "paper"]
    paper = get_profile("paper")
    assert paper.image_size == 352 and paper.backbone == "res2net50_26w_4s" and paper.keep_fraction == 0.75
    # inpainter 200, coach 200, then 9 x (inpainter 100 + coach 100); fine-tuning 500 epochs
    assert (paper.pretrain_inpainter_epochs, paper.pretrain_coach_epochs) == (200, 200)
    assert (paper.pretrain_alternations, paper.pretrain_alternate_epochs) == (9, 100)
    assert (paper.finetune_epochs, paper.multi_epochs, paper.max_steps_per_epoch) == (500, 500, None)
    total = (paper.pretrain_inpainter_epochs + paper.pretrain_coach_epochs
             + 2 * paper.pretrain_alternations * paper.pretrain_alternate_epochs)
    assert total == 2200
    for name, p in PROFILES.items():
        assert p.name == name


def test_gpu_keeps_the_papers_network_and_says_what_it_cuts():
    from ssinfnet.book.profiles import reductions

    gpu, paper = get_profile("gpu"), get_profile("paper")
    assert (gpu.image_size, gpu.backbone, gpu.batch_size) == (paper.image_size, paper.backbone, paper.batch_size)
    cut = reductions(gpu)
    assert cut["stage-1 epochs"] == "60 (paper: 500)"
    assert cut["unlabelled slices used (single pretraining; multi: half the cap)"] == "400 (paper: all)"
    assert "input size (px)" not in cut and "InfNet encoder" not in cut
    assert reductions(paper) == {}


def test_sizes_grow_from_smoke_to_paper():
    s, c, p = (get_profile(n) for n in ("smoke", "cpu", "paper"))
    for field in ("image_size", "finetune_epochs", "multi_epochs", "n_boot", "simulation_replicates"):
        assert getattr(s, field) <= getattr(c, field) <= getattr(p, field), field
    assert s.max_steps_per_epoch is not None and p.max_steps_per_epoch is None


def test_get_profile_unknown_lists_choices():
    with pytest.raises(ValueError, match=r"unknown profile 'fast'; choose one of smoke, cpu, gpu, paper"):
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
    assert list(t.columns) == ["smoke", "cpu", "gpu", "paper"] and len(t) == len(SUMMARY_FIELDS)
    assert t.loc["input size (px)", "paper"] == 352 and t.loc["unlabelled slices used (single pretraining; multi: half the cap)", "paper"] == "all"


def test_cpu_fine_tuning_rate_reaches_the_variants():
    """The cpu profile's faster single-class rate and its 10x drop at 75 % of the cap reach SegConfig;
    multi keeps its SGD rate but gets the drop; the paper profile keeps the paper's constant rates."""
    from ssinfnet.segmentation.variants import variant_config

    cpu, paper = get_profile("cpu"), get_profile("paper")
    single, multi = variant_config("sinfnet", cpu), variant_config("multi_ssinfnet", cpu)
    assert single.lr == 5e-4 and single.lr_factors == {45: 0.1} and single.epochs == 60
    assert multi.lr is None and multi.lr_factors == {45: 0.1}
    short = variant_config("sinfnet", get_profile("cpu", finetune_epochs=10))
    assert short.lr_factors == {8: 0.1}  # round(0.75 * 10)
    p = variant_config("sinfnet", paper)
    assert p.lr is None and p.lr_factors == {}
    from ssinfnet.book.profiles import reductions

    cut = reductions(cpu)
    assert cut["stage-1 Adam rate"] == "0.0005 (paper: 1e-4)"
    assert cut["fine-tuning: 10x rate drop at this fraction of the cap"] == "0.75 (paper: none (constant rate))"


def test_fine_tuning_seeds_of_the_comparison():
    assert {n: p.n_seeds for n, p in PROFILES.items()} == {"smoke": 2, "cpu": 3, "gpu": 5, "paper": 5}
    cpu = get_profile("cpu")
    assert cpu.extra_seeds == (1, 2)
    assert cpu.single_seed_variants == ("sinfnet", "ssinfnet", "unet", "ssinfnet_encoder")
    assert cpu.multi_seed_variants == ("multi_ssinfnet", "multi_sinfnet")
    assert get_profile("cpu", n_seeds=1).extra_seeds == ()  # overridable like every field
    for bad in (0, 2.0, "3"):
        with pytest.raises(ValueError, match="profile 'smoke': n_seeds must be an integer >= 1"):
            get_profile("smoke", n_seeds=bad)


def test_shift_augmentations_follow_the_profile():
    """cpu and gpu fine-tune with the shift augmentations; smoke and the paper's exact profile do not;
    an explicit override still wins."""
    from ssinfnet.segmentation.variants import ROBUST_AUGMENTATION, SegConfig, variant_config

    for name, on in (("smoke", False), ("cpu", True), ("gpu", True), ("paper", False)):
        cfg = variant_config("multi_ssinfnet", get_profile(name))
        want = ROBUST_AUGMENTATION if on else {k: getattr(SegConfig(), k) for k in ROBUST_AUGMENTATION}
        assert {k: getattr(cfg, k) for k in ROBUST_AUGMENTATION} == want, name
    assert variant_config("sinfnet", get_profile("cpu"), noise_std=0.0).noise_std == 0.0


def test_pretraining_rate_follows_the_profile():
    """The cpu and gpu profiles start the inpainter's ladder at 0.01; smoke and paper keep the paper's
    0.1; the page that states the reductions names the difference."""
    from ssinfnet.book.profiles import reductions
    from ssinfnet.pretraining.inpainting import PretrainConfig, config_from_profile

    assert PretrainConfig().inpainter_lr == 0.1
    assert {n: config_from_profile(get_profile(n)).inpainter_lr for n in ("smoke", "cpu", "gpu", "paper")} == \
        {"smoke": 0.1, "cpu": 0.01, "gpu": 0.01, "paper": 0.1}
    assert reductions(get_profile("cpu"))["pretraining: inpainter's starting SGD rate"] == "0.01 (paper: 0.1)"
    assert "pretraining: inpainter's starting SGD rate" not in reductions(get_profile("smoke"))


def test_test_time_flip_follows_the_profile():
    """smoke, cpu and gpu score flip-averaged maps, the paper's profile plain ones; the reductions page
    names the difference; anything but a bool is refused."""
    from ssinfnet.book.profiles import reductions

    assert {n: get_profile(n).test_time_flip for n in ("smoke", "cpu", "gpu", "paper")} == \
        {"smoke": True, "cpu": True, "gpu": True, "paper": False}
    assert reductions(get_profile("cpu"))["inference: left-right flip averaging (ours)"] == "True (paper: False)"
    assert "inference: left-right flip averaging (ours)" not in reductions(get_profile("cpu", test_time_flip=False))
    # a setting a run did not record gets a row even where today's value is the paper's
    assert reductions(get_profile("paper"), unrecorded=["test_time_flip"]) == {
        "inference: left-right flip averaging (ours)": "not recorded: the run predates this setting "
                                                       "(the profile today: False; paper: False)"}
    for bad in (1, "yes", None):
        with pytest.raises(ValueError, match="profile 'cpu': test_time_flip must be True or False"):
            get_profile("cpu", test_time_flip=bad)


def test_settings_the_paper_does_not_print_are_labelled_as_the_paper_profiles():
    """Patience, seeds and resampling counts of the ``paper`` profile are our choices: the page must not
    present them as the paper's."""
    from ssinfnet.book.profiles import NOT_PRINTED, reductions

    cut = reductions(get_profile("cpu"))
    assert cut["fine-tuning: early-stopping patience (epochs)"] == "25 (paper profile: 50; the paper prints none)"
    assert cut["fine-tuning seeds of the comparison"] == "3 (paper profile: 5; the paper prints none)"
    assert cut["bootstrap resamples"] == "1000 (paper profile: 5000; the paper prints none)"
    assert cut["stage-1 epochs"] == "60 (paper: 500)"  # printed by the paper: its own label
    assert set(NOT_PRINTED) == {"patience", "n_seeds", "n_boot", "simulation_replicates"}


def test_gpu_and_paper_cross_validate_both_members_of_each_consistency_claim():
    from ssinfnet.book.verdict_recorded import _CV_PAIRS

    pairs = [(a, b) for _, _, a, b, _ in _CV_PAIRS]
    assert pairs == [("sinfnet", "ssinfnet"), ("multi_sinfnet", "multi_ssinfnet")]
    for name in ("gpu", "paper"):
        p = get_profile(name)
        for a, b in pairs:
            assert {a, b} <= set(p.cv_variants), (name, a, b)
            assert {a, b} <= set(p.single_variants) | set(p.multi_variants), (name, a, b)


def test_cross_validation_gives_pretrained_weights_only_to_inpainting_variants():
    from types import SimpleNamespace

    from ssinfnet.book.stages.variants import _cv_setup

    ctx = SimpleNamespace(profile=get_profile("smoke"))
    scratch, priors = _cv_setup(ctx, "sinfnet", "pretrain/single/inpainter.pt", None)
    assert scratch.init == "scratch" and scratch.init_weights is None and priors is None
    transfer, _ = _cv_setup(ctx, "ssinfnet", "pretrain/single/inpainter.pt", None)
    assert transfer.init == "inpainting" and transfer.init_weights == "pretrain/single/inpainter.pt"
    multi, multi_priors = _cv_setup(ctx, "multi_sinfnet", "pretrain/multi/inpainter.pt", ["prior"])
    assert multi.init_weights is None and multi_priors == ["prior"]
