"""Chapters 4 (multi) and 5 (evaluation) as one call each, on the smoke profile and the synthetic default.

Chapters 1 to 3 are prepared by their stage functions, each in a temporary run folder. Every artifact the contract expects
of a stage must exist and be recorded, a stage run before its inputs exist must name the chapter to
run, and the numbers must be the smoke reference the notebooks check.
"""
import shutil

import numpy as np
import pandas as pd
import pytest

from ssinfnet.book import artifacts, checks
from ssinfnet.book.context import RunContext
from ssinfnet.book.stages import evaluation, multi, run_stage, shifts, single
from ssinfnet.data.maps import load_maps
from ssinfnet.evaluation.comparison import TABLE_COLUMNS
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
    conditions = ctx.manifest()["stages"][stage].get("conditions", ())
    expected = artifacts.expected_outputs(stage, ctx.profile, conditions)
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
    assert info["cross_validation_status"] == {}
    # chapter 4 records which of its priors came from folds chapter 3 recorded as failed
    folds = ctx.manifest()["stages"]["03_single"]["cross_validation_status"]["ssinfnet"]
    assert info["prior_folds_failed"] == [f"ssinfnet/{k} {v}" for k, v in folds.items() if v.startswith("failed")]


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
    # no smoke multi model beats the floor (0.05 or a constant map's Dice): every one is shown as failed
    assert mstage.summary.status.str.startswith("failed: best val_dice").all(), mstage.summary.status
    assert (mstage.summary.epochs_run == 2).all() and (mstage.summary.stop == "cap").all()  # patience 2, 2 epochs
    assert ctx.manifest()["stages"]["04_multi"]["status"] == dict(zip(mstage.summary.label, mstage.summary.status))
    assert set(mstage.pretrain_history.phase) == {"inpainter", "coach", "inpainter_adv_r1", "coach_adv_r1"}


def test_evaluation_writes_and_records_its_artifacts(done):
    ctx, _, estage = done
    _assert_outputs_recorded(ctx, "05_evaluation")
    test = ctx.samples("test")
    recorded = ctx.manifest()["stages"]["05_evaluation"]
    assert recorded["selected"] == estage.selected
    chosen = estage.selected["test_predictions"]
    assert chosen == evaluation.select(estage.models, "single")
    if chosen is not None:  # the smoke SSInfNet beats its floor by a few thousandths: machine-dependent
        probs = load_maps(estage.predictions_path, test, kind="probability")
        assert all(np.allclose(p, m, atol=1e-3) for p, m in zip(probs, estage.single[chosen]))  # float16 on disk
    # every smoke multi model failed: no class maps are handed on, and the page says so
    assert estage.selected["test_class_maps"] is None and estage.class_maps_path is None
    assert not (ctx.run_dir / "predictions" / "test_multi_ssinfnet_classes.npz").exists()
    assert "test_class_maps" not in recorded["artifacts"] and "usable_multi" not in recorded["conditions"]
    assert estage.handoff().set_index("artifact").loc["test_class_maps", "model"] == "none: not written"
    ok = estage.models[~estage.models.failed]
    assert set(recorded["infnet_single"]) == set(ok[ok.task == "single"].variant)
    assert all(v == {} for v in recorded["infnet_multi"].values())
    assert recorded["status"] == dict(zip(estage.models.key, estage.models.status))


def test_evaluation_tables_are_the_smoke_reference(done):
    ctx, _, estage = done
    raw = {name: r["meanDic"] for name, r in estage.single_infnet.items()}  # every model, failed or not
    checks.expect_close(raw, {"sinfnet": 0.038, "ssinfnet": 0.041, "unet": 0.001, "ssinfnet_encoder": 0.070},
                        atol=checks.TEST_DICE_ATOL, what="Inf-Net meanDic on the test slices")
    table = estage.single_infnet_table.set_index("method")
    failed = table.status.str.startswith("failed")
    assert table.loc[failed].drop(columns="status").isna().all().all()
    assert (table.loc[~failed, "meanDic"] == pd.Series(raw)[~failed]).all()
    # sinfnet, unet and the encoder transfer predict lesion everywhere: their validation Dice is the all-lesion map's
    assert set(table.index[failed]) >= {"sinfnet", "unet", "ssinfnet_encoder"}
    assert estage.multi_infnet_table.status.str.startswith("failed").all()
    assert estage.multi_infnet_table.drop(columns=["method", "status"]).isna().all().all()
    assert list(estage.multi_infnet_table.method) == [
        f"{m} (ours, smoke)" for m in ("multi_ssinfnet", "multi_sinfnet", "multi_fcn8s",
                                       "multi_ssinfnet_gt_prior (oracle prior)", "multi_ssinfnet_encoder")]
    assert len(estage.single_beside_published(ctx)) == len(ctx.profile.single_variants) + 4
    assert list(estage.init_effect.index) == ["ssinfnet - sinfnet", "ssinfnet_encoder - sinfnet"]
    assert len(estage.worst) == (3 if estage.selected["test_predictions"] else 0)
    assert [estage.test[i].slice_id for i in estage.worst_index()] == list(estage.worst.image)
    assert np.isnan(estage.init_effect["ssinfnet_encoder - sinfnet"])  # both failed: no difference to show
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


def test_the_shift_benchmark_always_includes_the_recommended_model(done):
    # chapter 5 hands on the best model on validation, which need not be one of SHIFT_MODELS; the bar
    # is judged on it, so it is benchmarked too (first), and a model the profile does not train is refused
    ctx, _, estage = done
    robust = shifts.run(ctx, estage.test, "05_evaluation", recommended="ssinfnet_encoder")
    assert list(robust.lung_effect.model) == ["ssinfnet_encoder", "ssinfnet", "sinfnet"]
    assert len(robust.scores) == 19 * 3 * 2
    assert robust.verdict().count("ssinfnet_encoder (") == 2
    with pytest.raises(ValueError, match="sinfnet_cutout40.*not a single-class variant of profile 'smoke'"):
        shifts.run(ctx, estage.test, "05_evaluation", recommended="sinfnet_cutout40")

def _models_table(rows):
    base = {"task": "single", "network": "infnet", "oracle": False, "failed": False}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_selection_skips_failed_oracle_and_other_networks():
    models = _models_table([
        {"variant": "ssinfnet", "val_dice": 0.8, "failed": True},
        {"variant": "unet", "network": "unet", "val_dice": 0.9},
        {"variant": "sinfnet", "val_dice": 0.5},
        {"variant": "ssinfnet_encoder", "val_dice": 0.6},
        {"variant": "multi_ssinfnet_gt_prior", "task": "multi", "network": "infnet_multi", "oracle": True,
         "val_dice": 0.9},
        {"variant": "multi_ssinfnet", "task": "multi", "network": "infnet_multi", "val_dice": 0.3},
        {"variant": "multi_fcn8s", "task": "multi", "network": "fcn8s", "val_dice": 0.4},
    ])
    assert evaluation.select(models, "single") == "ssinfnet_encoder"
    assert evaluation.select(models, "multi") == "multi_ssinfnet"
    assert evaluation.select(models.assign(failed=True), "single") is None


def test_a_failed_model_is_never_handed_on(done, tmp_path, monkeypatch):
    """Mark SSInfNet failed and SInfNet usable: chapter 5 hands on SInfNet's maps. Then mark every single
    model failed: no file (a stale one is removed), and the record and the page say why."""
    ctx0, _, _ = done
    run = tmp_path / "run"
    shutil.copytree(ctx0.run_dir, run)
    original = evaluation.predict_variant

    def patched(verdicts):
        def predict(ctx, reader, name, samples, priors=None):
            info, maps = original(ctx, reader, name, samples, priors)
            if name in verdicts:
                failed, val = verdicts[name]
                info = {**info, "val_dice": val, "health": {"status": "failed: test" if failed else "ok",
                                                             "failed": failed, "epochs_run": 2, "stop": "cap"}}
            return info, maps
        return predict

    monkeypatch.setattr(evaluation, "predict_variant", patched({"ssinfnet": (True, 0.9), "sinfnet": (False, 0.2),
                                                                "ssinfnet_encoder": (True, 0.5)}))
    ctx = _open(run)
    estage = evaluation.run(ctx, progress=False)
    assert estage.selected["test_predictions"] == "sinfnet"
    probs = load_maps(estage.predictions_path, ctx.samples("test"), kind="probability")
    assert all(np.allclose(p, m, atol=1e-3) for p, m in zip(probs, estage.single["sinfnet"]))
    row = estage.single_infnet_table.set_index("method").loc["ssinfnet"]
    assert row.status == "failed: test" and np.isnan(row.meanDic)
    assert {"ssinfnet", "ssinfnet_encoder"} <= set(estage.failed().variant) and "sinfnet" not in set(estage.failed().variant)

    monkeypatch.setattr(evaluation, "predict_variant", patched({v: (True, 0.5) for v in ctx.profile.single_variants}))
    estage = evaluation.run(_open(run), progress=False)
    assert estage.selected == {"test_predictions": None, "test_class_maps": None}
    assert estage.predictions_path is None and not (run / "predictions" / "test_ssinfnet.npz").exists()
    recorded = _open(run).manifest()["stages"]["05_evaluation"]
    assert recorded["artifacts"] == {"comparisons": "05_evaluation/comparisons.csv"}  # written whatever failed
    assert recorded["conditions"] == [] and recorded["infnet_single"] == {}
    assert artifacts.optional(_open(run), "test_predictions", "06_severity") is None  # chapter 6 falls back
    assert list(estage.handoff().model) == ["none: not written"] * 2 and len(estage.worst) == 0


# ------------------------------------------------------------------ the comparison's fine-tuning seeds

def test_extra_seeds_are_trained_recorded_and_judged(done):
    ctx, mstage, _ = done
    stages = ctx.manifest()["stages"]
    single_seeds = stages["03_single"]["seeds"]
    assert single_seeds["n_seeds"] == 2 and single_seeds["training_seeds"] == [0, 1]
    assert "run once" in single_seeds["pretraining"]
    assert set(single_seeds["status"]) == set(ctx.profile.single_seed_variants)
    assert set(stages["04_multi"]["seeds"]["status"]) == {"multi_ssinfnet", "multi_sinfnet"}
    for variant in (*ctx.profile.single_seed_variants, *ctx.profile.multi_seed_variants):
        loaded = load_exported(ctx.run_dir / "finetune" / variant / "seed1" / "model.pt", "cpu",
                               expect_task=("single", "multi"))
        assert loaded.extra["seed"] == 1 and loaded.extra["variant"] == variant
        assert loaded.extra["health"]["status"] in (single_seeds["status"].get(variant, {}).get("seed1"),
                                                    stages["04_multi"]["seeds"]["status"].get(variant, {}).get("seed1"))
    assert list(mstage.seeds.columns[:4]) == ["variant", "label", "seed", "training_seed"]
    assert set(zip(mstage.seeds.variant, mstage.seeds.seed)) == {("multi_ssinfnet", 1), ("multi_sinfnet", 1)}
    # the extra seed starts from the same pretrained inpainter as seed 0: pretraining is not re-run
    cfg0 = mstage.fits["multi_ssinfnet"].config
    assert mstage.seed_fits[("multi_ssinfnet", 1)].config.init_weights == cfg0.init_weights


def test_a_rerun_loads_every_seed_instead_of_training_it(done, tmp_path):
    ctx0, _, _ = done
    run = tmp_path / "run"
    shutil.copytree(ctx0.run_dir, run)
    seed_history = run / "finetune" / "sinfnet" / "seed1" / "history.csv"
    before = seed_history.read_bytes()
    ctx = _open(run)
    sstage = single.run(ctx, progress=False)
    multi.run(ctx, progress=False)
    stages = ctx.manifest()["stages"]
    for stage in ("03_single", "04_multi"):
        assert stages[stage]["trained"] == [], stage
    assert {"finetune/sinfnet/seed1", "finetune/multi_sinfnet/seed1"} <= set(stages["03_single"]["reused"]) | set(
        stages["04_multi"]["reused"])
    assert seed_history.read_bytes() == before
    assert sstage.seeds.status.tolist() == [stages["03_single"]["seeds"]["status"][v]["seed1"]
                                           for v in sstage.seeds.variant]


def test_evaluation_without_a_seed_model_names_chapter_3(done, tmp_path):
    ctx0, _, _ = done
    run = tmp_path / "run"
    shutil.copytree(ctx0.run_dir, run)
    (run / "finetune" / "unet" / "seed1" / "model.pt").unlink()
    with pytest.raises(artifacts.MissingArtifact, match=r"'model:unet@seed1' .*chapter 03_single"):
        evaluation.run(_open(run), progress=False)


def test_smoke_comparisons_are_written_and_not_estimable_where_trainings_failed(done):
    from ssinfnet.book.stages.comparisons import CLAIMS

    ctx, _, estage = done
    table = estage.comparison.table
    on_disk = pd.read_csv(ctx.run_dir / "05_evaluation" / "comparisons.csv", keep_default_na=False, na_values=[""])
    assert list(on_disk.columns) == list(TABLE_COLUMNS)
    trained = set(ctx.profile.single_variants) | set(ctx.profile.multi_variants)
    expected = [(c.claim, cls, c.metric) for c in CLAIMS if {c.a, c.b} <= trained for cls in c.classes]
    assert list(zip(table.claim, table["class"], table.metric)) == expected and len(expected) == 14
    assert list(on_disk.metric) == list(table.metric) and (table.metric == "auc").sum() == 2
    assert list(on_disk.verdict) == list(table.verdict)
    status = ctx.manifest()["stages"]["05_evaluation"]["comparisons"]
    assert set(status.values()) == set(table.verdict)
    seeds = estage.comparison.seeds
    compared = {v for c in CLAIMS for v in (c.a, c.b)} & trained
    extra = set(ctx.profile.single_seed_variants) | set(ctx.profile.multi_seed_variants)
    assert len(seeds) == len(compared) + len(extra)  # seed 0 of each, seed 1 of the seed variants
    for row in table.itertuples():
        both = (0, 1) if {row.model_a, row.model_b} <= extra else (0,)
        failed = {f"{v}@seed{k}" for v, k, f in zip(seeds.variant, seeds.seed, seeds.failed) if f}
        named = set() if row.seeds_failed == "none" else set(row.seeds_failed.split("; "))
        assert named == failed & {f"{v}@seed{k}" for v in (row.model_a, row.model_b) for k in both}
        if row.verdict.startswith("not estimable"):
            assert np.isnan(row.estimate) and row.n_seeds == 0
        else:  # a pair of seeds that passed their checks: whether one does is machine-dependent on smoke
            assert row.verdict in ("helps", "hurts", "no detectable difference") and row.n_seeds >= 1


def test_the_comparison_pools_the_seeds_as_paired_bootstrap_does(done, tmp_path, monkeypatch):
    """Every model passes its checks except SSInfNet's seed 1: the pooled numbers are paired_bootstrap's of
    the per-image Dice of the exported models, scored here independently."""
    from ssinfnet.book.stages import comparisons
    from ssinfnet.book.stages.variants import predict_with
    from ssinfnet.evaluation.comparison import paired_bootstrap
    from ssinfnet.evaluation.paper_metrics import paper_scores

    ctx0, _, _ = done
    run = tmp_path / "run"
    shutil.copytree(ctx0.run_dir, run)

    def healthy(original):
        def predict(ctx, reader, name, samples, priors=None):
            info, maps = original(ctx, reader, name, samples, priors)
            failed = name == "ssinfnet@seed1"
            return {**info, "health": {"status": "failed: test" if failed else "ok", "failed": failed}}, maps
        return predict

    monkeypatch.setattr(evaluation, "predict_variant", healthy(evaluation.predict_variant))
    monkeypatch.setattr(comparisons, "predict_variant", healthy(comparisons.predict_variant))
    ctx = _open(run)
    table = evaluation.run(ctx, progress=False).comparison.table.set_index("claim")
    test = ctx.samples("test")
    ids, gts = [s.slice_id for s in test], [s.infection for s in test]

    assert ctx.profile.test_time_flip  # the smoke profile scores flip-averaged maps, as cpu and gpu do

    def dice(path):
        scores = paper_scores(predict_with(run / path, test, "cpu", flip=True), gts, image_ids=ids)
        return scores[scores["class"] == "infection"].set_index("image").dice.reindex(ids).to_numpy()

    unet = [dice("finetune/unet/model.pt"), dice("finetune/unet/seed1/model.pt")]
    sinfnet = [dice("finetune/sinfnet/model.pt"), dice("finetune/sinfnet/seed1/model.pt")]
    both = paired_bootstrap(np.stack(unet), np.stack(sinfnet), n_boot=100, seed=ctx.seed)
    row = table.loc["InfNet beats U-Net from scratch (single)"]
    assert (row.n_seeds, row.seeds_failed, row.n_images) == (2, "none", both.n_images)
    assert row.estimate == pytest.approx(both.estimate, abs=1e-9)
    assert (row.ci_low, row.ci_high) == pytest.approx((both.ci_low, both.ci_high), abs=1e-9)
    assert row.seed_means == ";".join(f"{m:.4f}" for m in both.seed_means) and row.verdict == both.verdict
    ssinfnet0 = dice("finetune/ssinfnet/model.pt")
    one = paired_bootstrap(sinfnet[:1], ssinfnet0[None], n_boot=100, seed=ctx.seed)
    row = table.loc["inpainting pretraining helps (single)"]
    assert (row.n_seeds, row.seeds_failed) == (1, "ssinfnet@seed1")  # left out, and named
    assert row.estimate == pytest.approx(one.estimate, abs=1e-9) and row.ci_low == pytest.approx(one.ci_low, abs=1e-9)


def _fit_folders(run, stage_dirs=("finetune", "cv")):
    return sorted(p.parent.relative_to(run).as_posix() for d in stage_dirs for p in (run / d).rglob("model.pt"))


def test_the_parallel_pass_lists_exactly_the_fits_chapters_3_and_4_make(done, tmp_path, monkeypatch):
    from ssinfnet.book.stages import variants

    ctx0, _, _ = done
    run = tmp_path / "run"
    shutil.copytree(ctx0.run_dir, run)
    listed = []
    monkeypatch.setattr(variants, "train_jobs", lambda jobs, **kw: listed.extend(jobs) or {})
    ctx = RunContext.open("smoke", "synthetic", str(run), device="cpu", fit_workers=2)
    single.run(ctx, progress=False)
    multi.run(ctx, progress=False)
    folders = [j.run_dir.relative_to(ctx.run_dir).as_posix() for j in listed]
    assert len(folders) == len(set(folders))
    assert sorted(folders) == _fit_folders(ctx.run_dir)  # every fit of both chapters, and nothing else


def test_chapter_3_with_two_fit_workers_trains_every_fit_in_them_and_records_it_as_trained(early, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(early, run)
    ctx = RunContext.open("smoke", "synthetic", str(run), device="cpu", fit_workers=2)
    stage = single.run(ctx, progress=False)
    entry = ctx.manifest()["stages"]["03_single"]
    assert entry["trained"] == _fit_folders(ctx.run_dir) and entry["reused"] == {}
    assert "cv/ssinfnet/fold0" in entry["trained"] and "finetune/sinfnet/seed1" in entry["trained"]
    assert set(stage.fits) == set(ctx.profile.single_variants)
    # each fold's health, as the fold's own fit judged it (the smoke folds train too briefly to pass)
    folds = stage.cv_results["ssinfnet"].fits
    assert entry["cross_validation_status"] == {"ssinfnet": {f"fold{f}": st for f, st in zip(folds.fold, folds.status)}}
    # the audit finds each recorded fold's history under the key its health is recorded by
    from ssinfnet.book.audit import fold_histories
    from ssinfnet.book.verdict import training_statuses

    m = ctx.manifest()
    assert set(fold_histories(m, ctx.run_dir)) == {k for k in training_statuses(m) if "/" in k} == {
        f"ssinfnet/fold{f}" for f in range(ctx.profile.cv_folds)}
    assert all(p.is_file() for p in fold_histories(m, ctx.run_dir).values())
    assert len(folds) == ctx.profile.cv_folds and folds.status.str.match(r"^(ok|failed: .+)$").all()
    assert ctx.manifest()["parameters"]["fit_workers"] == 2


def test_predict_variant_flip_averages_as_the_profile_says(done):
    """predict_variant scores what predict_with gives with the profile's test_time_flip: the smoke
    profile's (True) and, for the same model, an override to False; the two differ."""
    from dataclasses import replace

    from ssinfnet.book.stages.variants import predict_variant, predict_with

    ctx, _, _ = done
    test = ctx.samples("test")
    path = ctx.run_dir / "finetune" / "sinfnet" / "model.pt"
    _, flipped = predict_variant(ctx, evaluation.STAGE, "sinfnet", test)
    plain_ctx = replace(ctx, profile=ctx.profile.with_overrides(test_time_flip=False))
    _, plain = predict_variant(plain_ctx, evaluation.STAGE, "sinfnet", test)
    for got, want in ((flipped, predict_with(path, test, "cpu", flip=True)), (plain, predict_with(path, test, "cpu"))):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, atol=1e-6)
    assert max(float(np.abs(a - b).max()) for a, b in zip(flipped, plain)) > 1e-4
