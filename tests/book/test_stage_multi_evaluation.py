"""Chapters 4 (multi) and 5 (evaluation) as one call each, on the smoke profile and the synthetic default.

Chapters 1 to 3 are prepared by their stage functions, each in a temporary run folder. Every artifact the contract expects
of a stage must exist and be recorded, a stage run before its inputs exist must name the chapter to
run, and the numbers must be the smoke reference the notebooks check.
"""
import shutil

import numpy as np
import pytest

from ssinfnet.book import artifacts, checks
from ssinfnet.book.context import RunContext
from ssinfnet.book.stages import evaluation, multi, run_stage, single
from ssinfnet.data.maps import load_maps
from ssinfnet.training.export import load_exported

pytestmark = pytest.mark.slow  # whole stages: run in the first CI round (default kernels), see .ci/run


def _open(run_dir):
    return RunContext.open("smoke", "synthetic", str(run_dir), device="cpu")


@pytest.fixture(scope="module")
def early(tmp_path_factory):
    """A run folder holding chapters 1 and 2 (their stage functions); tests must not write into it."""
    run = tmp_path_factory.mktemp("early") / "run"
    for number in ("01", "02"):
        run_stage(number, _open(run), progress=False)
    return run


@pytest.fixture(scope="module")
def single_done(early, tmp_path_factory):
    """A copy of ``early`` with chapter 3 run by its stage function; tests must not write into it."""
    run = tmp_path_factory.mktemp("single") / "run"
    shutil.copytree(early, run)
    single.run(_open(run), progress=False)
    return run


@pytest.fixture(scope="module")
def done(single_done, tmp_path_factory):
    """A copy of ``single_done`` with chapters 4 and 5 run: (ctx, MultiStage, EvaluationStage)."""
    run = tmp_path_factory.mktemp("done") / "run"
    shutil.copytree(single_done, run)
    ctx = _open(run)
    mstage = multi.run(ctx, progress=False)
    estage = evaluation.run(ctx, progress=False)
    return ctx, mstage, estage


def _assert_outputs_recorded(ctx, stage):
    expected = artifacts.expected_outputs(stage, ctx.profile)
    recorded = ctx.manifest()["stages"][stage]["artifacts"]
    assert recorded == expected
    for rel in expected.values():
        assert (ctx.run_dir / rel).is_file(), rel


def test_multi_without_chapter_3_names_it(early):
    with pytest.raises(artifacts.MissingArtifact, match=r"chapter 03_single .*python -m ssinfnet stage 03"):
        multi.run(_open(early), progress=False)


def test_evaluation_without_chapter_4_names_it(single_done):
    with pytest.raises(artifacts.MissingArtifact, match=r"'model:multi_ssinfnet' .*chapter 04_multi"):
        evaluation.run(_open(single_done), progress=False)


def test_multi_writes_and_records_its_artifacts(done):
    ctx, mstage, _ = done
    _assert_outputs_recorded(ctx, "04_multi")
    assert set(mstage.fits) == set(ctx.profile.multi_variants)
    for name in ("multi_inpainter", "multi_coach"):
        loaded = load_exported(ctx.run_dir / artifacts.expected_outputs("04_multi", ctx.profile)[name], "cpu",
                               expect_task=("inpainting", "coach"))
        assert loaded.in_chans == 2, name  # image and prior
    info = ctx.manifest()["stages"]["04_multi"]
    assert info["pool"] == mstage.pool_counts and info["cross_validation"] == {}  # smoke cross-validates no multi


def test_multi_uses_the_chapter_3_priors_and_the_configured_pool(done):
    ctx, mstage, _ = done
    train_all = ctx.samples("train")
    oof = load_maps(ctx.run_dir / "priors" / "train_oof_ssinfnet.npz", train_all, kind="probability")
    assert len(mstage.priors) == len(train_all) == len(mstage.train) + len(mstage.val)
    assert all(np.array_equal(a, b) for a, b in zip(mstage.priors, oof))
    assert mstage.pool_counts == {"unlabelled pool": 16, "labelled training images (labels removed)": 12, "total": 28}
    cfg = mstage.pretrain_config
    assert (cfg.with_prior, cfg.rotation, cfg.image_size, cfg.batch_size) == (True, 10.0, 64, 4)
    assert mstage.stage1_model == ctx.run_dir / "finetune" / "ssinfnet" / "model.pt"


def test_multi_numbers_are_the_smoke_reference(done):
    ctx, mstage, _ = done
    assert list(mstage.summary.variant) == list(ctx.profile.multi_variants)
    checks.expect_close(mstage.summary.set_index("variant").val_dice, {v: 0.0 for v in ctx.profile.multi_variants},
                        atol=checks.SCORE_ATOL, what="validation Dice of the selected epoch")
    assert set(mstage.pretrain_history.phase) == {"inpainter", "coach", "inpainter_adv_r1", "coach_adv_r1"}


def test_evaluation_writes_and_records_its_artifacts(done):
    ctx, _, estage = done
    _assert_outputs_recorded(ctx, "05_evaluation")
    test = ctx.samples("test")
    probs = load_maps(estage.predictions_path, test, kind="probability")
    assert all(np.allclose(p, m, atol=1e-3) for p, m in zip(probs, estage.single["ssinfnet"]))  # float16 on disk
    labels = load_maps(estage.class_maps_path, test, kind="labels")
    assert all(np.array_equal(a, b) for a, b in zip(labels, estage.class_labels["multi_ssinfnet"]))
    recorded = ctx.manifest()["stages"]["05_evaluation"]
    assert set(recorded["infnet_single"]) == set(ctx.profile.single_variants)


def test_evaluation_tables_are_the_smoke_reference(done):
    ctx, _, estage = done
    table = estage.single_infnet_table.set_index("method")
    checks.expect_close(table.meanDic, {"sinfnet": 0.038, "ssinfnet": 0.041, "unet": 0.001, "ssinfnet_encoder": 0.070},
                        atol=checks.TEST_DICE_ATOL, what="Inf-Net meanDic on the test slices")
    assert list(estage.multi_infnet_table.method) == [
        f"{m} (ours, smoke)" for m in ("multi_ssinfnet", "multi_sinfnet", "multi_fcn8s",
                                       "multi_ssinfnet_gt_prior (oracle prior)", "multi_ssinfnet_encoder")]
    assert len(estage.single_beside_published(ctx)) == len(ctx.profile.single_variants) + 4
    assert list(estage.init_effect.index) == ["ssinfnet - sinfnet", "ssinfnet_encoder - sinfnet"]
    assert len(estage.worst) == 3 and [estage.test[i].slice_id for i in estage.worst_index()] == list(estage.worst.image)
    cv = estage.cv_table
    assert cv[["chapter", "variant", "class"]].values.tolist() == [["03_single", "ssinfnet", "infection"]]
    assert cv.dice.iloc[0] == ctx.manifest()["stages"]["03_single"]["cross_validation"]["ssinfnet"]
    assert list(estage.cost_table.model) == ["InfNet (single)", "InfNet (multi)", "U-Net (single)",
                                             "U-Net (multi)", "FCN8s (multi)"]


def test_a_missing_variant_model_names_the_chapter_that_trains_it(tmp_path):
    ctx = _open(tmp_path / "run")
    with pytest.raises(artifacts.MissingArtifact, match="chapter 04_multi"):
        artifacts.require(ctx, "model:multi_ssinfnet", "05_evaluation")
    with pytest.raises(artifacts.MissingArtifact, match="chapter 03_single"):
        artifacts.require(ctx, "model:ssinfnet", "05_evaluation")


def test_evaluation_measures_the_lung_restriction_and_the_shifts(done):
    ctx, _, estage = done
    robust = estage.robustness
    assert robust.recommended == "ssinfnet"
    assert list(robust.lung_effect.model) == ["ssinfnet", "sinfnet"]
    # 19 conditions (clean and 6 shifts x 3 severities) x 2 models x 2 handlings
    assert len(robust.scores) == 19 * 2 * 2
    assert set(robust.scores.handling) == {"model only", "predict"}
    clean = robust.scores[(robust.scores["shift"] == "clean") & (robust.scores.handling == "model only")]
    # the clean "model only" Dice is the chapter's own per-image Dice of the same maps
    paper = estage.single_scores["ssinfnet"]
    assert clean.set_index("model").dice["ssinfnet"] == pytest.approx(paper[paper["class"] == "infection"].dice.mean())
    table = robust.table.set_index(["model", "handling"])
    assert list(table.columns[:8]) == ["clean", "window", "gamma", "resolution", "noise", "jpeg", "fov",
                                       "mean shifted"]
    assert robust.verdict().count("\n") == 1 and "bar 0.8 x clean" in robust.verdict()
