"""Chapters 6 and 7 as one call: severity.run and statistics.run on the smoke profile, synthetic phantoms,
in a temporary run folder. Chapter 5 is stood in for by writing its declared artifacts directly."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ssinfnet.book import artifacts
from ssinfnet.book.context import RunContext
from ssinfnet.book.stages import severity, stage_function, statistics
from ssinfnet.data.maps import save_maps
from ssinfnet.severity.slices import simulated_prediction

pytestmark = pytest.mark.slow  # whole stages: run in the first CI round (default kernels), see .ci/run


@pytest.fixture
def ctx(tmp_path):
    return RunContext.open("smoke", "synthetic", str(tmp_path / "run"))


def written_and_recorded(ctx, stage: str) -> dict:
    """Every artifact the contract expects of ``stage``: exists, and the manifest records it at its path."""
    expected = artifacts.expected_outputs(stage, ctx.profile)
    recorded = ctx.manifest()["stages"][stage]["artifacts"]
    assert recorded == expected
    for rel in expected.values():
        assert (ctx.run_dir / rel).is_file(), rel
    return ctx.manifest()["stages"][stage]


def write_chapter5(ctx, name: str, samples, maps, selected: str = "sinfnet"):
    """Write and record one of chapter 5's artifacts, as that chapter does (naming ``selected`` as the
    model it came from)."""
    art, _ = artifacts.declared(name, writer="05_evaluation")
    path = save_maps(ctx.run_dir / art.path, samples, maps)
    artifacts.record(ctx, "05_evaluation", {name: path}, selected={name: selected})
    return path


def test_the_registry_runs_these_modules():
    assert stage_function("06") is severity.run
    assert stage_function("07_radiomics_mediation") is statistics.run


# ----------------------------------------------------------------------------- chapter 6

def test_severity_falls_back_to_labelled_simulated_predictions(ctx):
    stage = severity.run(ctx, progress=False)
    test = ctx.samples("test")
    assert stage.simulated and stage.prediction_source == "simulated"
    assert stage.prediction_label == "SIMULATED prediction"
    assert "no predictions recorded by the evaluation stage" in stage.why_simulated
    assert "SIMULATED prediction" in stage.predictions_line() and "why:" in stage.predictions_line()
    np.testing.assert_array_equal(stage.predictions[1], simulated_prediction(test[1].infection, sigma=2.0,
                                                                             seed=ctx.seed + 1))
    entry = written_and_recorded(ctx, "06_severity")
    assert entry["predictions"] == "SIMULATED prediction" and entry["prediction_source"] == "simulated"
    assert entry["n_slices"] == len(test) == ctx.profile.synthetic_counts["test"]
    table = pd.read_csv(ctx.run_dir / "06_severity/test_severity.csv")
    assert table.slice_id.tolist() == [s.slice_id for s in test]
    assert set(stage.table.index) == {"ratio, paper bins", "ratio, CT bins", "lung mask only, paper bins",
                                      "CT-SS total"}
    assert set(stage.examples()) <= set(stage.included.slice_id)


def test_severity_reads_chapter5_predictions(ctx):
    test = ctx.samples("test")
    # the ground truth as the "prediction": the predicted ratio is then the ground truth over the automatic
    # lung mask, a column the stage computes independently
    write_chapter5(ctx, "test_predictions", test, [s.infection.astype(np.float32) for s in test])
    stage = severity.run(ctx, progress=False)
    assert stage.prediction_source == "model" and stage.why_simulated == ""
    assert stage.prediction_label == "sinfnet prediction" and stage.model == "sinfnet"  # chapter 5's choice
    inc = stage.included
    assert len(inc) > 0
    np.testing.assert_allclose(inc.ratio_predicted, inc.ratio_gt_auto, rtol=1e-6)
    assert written_and_recorded(ctx, "06_severity")["prediction_source"] == "model"


def test_severity_predictions_of_other_slices_fall_back_but_a_partial_file_is_an_error(ctx):
    test = ctx.samples("test")
    others = [SimpleNamespace(slice_id=f"other_{i}") for i in range(2)]
    write_chapter5(ctx, "test_predictions", others, [np.zeros((4, 4), np.float32)] * 2)
    stage = severity.run(ctx, progress=False)
    assert stage.simulated and "holds none of these" in stage.why_simulated

    path = write_chapter5(ctx, "test_predictions", test[:2], [np.zeros(s.image.shape, np.float32) for s in test[:2]])
    with pytest.raises(ValueError, match=rf"{path.name}.*no map for {len(test) - 2} slice"):
        severity.run(ctx, progress=False)


# ----------------------------------------------------------------------------- chapter 7

def test_statistics_runs_on_ground_truth_only_and_says_which_cohort(ctx):
    stage = statistics.run(ctx, progress=False)
    assert stage.cohort_source == "simulated" and stage.simulated
    assert stage.clinical_label == "synthetic clinical cohort"
    line = stage.cohort_line()
    assert line.startswith("Mediation cohort: SIMULATED phenotypes") and "synthetic clinical cohort" in line
    assert "no iCTCF CT images" in line
    assert stage.masks_used == "ground truth only"
    assert set(stage.slices.mask_source) == {"ground truth"}
    limit = ctx.profile.radiomics_slice_limit
    assert stage.slices.groupby("subset").slice_id.nunique().to_dict() == {"test": limit, "train": limit}
    # the planted design: 3 exposures x (3 mediators, 1 twin, 10 nulls); noise never passes
    assert len(stage.mediators) == 14 and len(stage.med) == 3 * 14
    assert not stage.med[stage.med.mediator.str.startswith("null_")].significant.any()
    assert "m_common_twin" in set(stage.dropped.dropped) and "m_common_twin" not in stage.kept
    assert set(stage.forest().columns) >= {"truth"}
    # natural effects: the same 42 tests in one family; the planted mediators of age and diseases are found
    nat = stage.nat.natural
    assert len(nat) == 42 and stage.nat.family_size == 42
    assert {"m_common", "m_age"} <= set(nat[nat.significant & (nat.x == "age")].mediator)
    assert {"m_common", "m_disease"} <= set(nat[nat.significant & (nat.x == "n_diseases")].mediator)
    assert not nat[nat.mediator.str.startswith("null_")].significant.any()
    planted = nat.significant & nat.x.isin(["age", "n_diseases"])
    assert (nat.loc[planted, "nie_low"] > 0).all()  # the planted paths raise severity
    assert len(stage.nat.comparison) == 42 and len(stage.nat.sensitivity) == nat.significant.sum()
    assert 0 < len(stage.nat.curves) <= 6
    # the SEM takes the natural-effect mediators, the twin removed by the filter
    assert set(stage.kept) == {"m_common", "m_age", "m_disease"} and "m_common_twin" in set(stage.dropped.dropped)
    val = stage.validation
    assert val.n_rep == ctx.profile.simulation_replicates and val.n_draws == ctx.profile.n_boot
    assert set(val.study.scenario) == {"independent", "correlated", "confounded"}
    assert val.study.groupby("scenario").rep.nunique().tolist() == [val.n_rep] * 3
    assert val.value("correlated", "fwer") == (1.0, 0.0)  # correlated null mediators fool every replicate
    # the paper's numbers beside ours: its rule one exposure at a time; never like for like on simulated data
    beside = stage.paper_beside_ours()
    assert beside["this run"].tolist() == [4, 4, 4, 4, 3]  # m_common, m_age, m_disease and the twin; 3 kept
    assert beside["Fung et al. 2021 (iCTCF images)"].iloc[0] == "37 GGO features"
    assert set(beside.comparison) == {"not like-for-like: SIMULATED phenotypes (planted paths), not radiomic features"}

    entry = written_and_recorded(ctx, "07_radiomics_mediation")
    assert entry["cohort_source"] == "simulated" and entry["masks"] == "ground truth only"
    assert entry["family_size"] == 42 and entry["validation_replicates"] == val.n_rep
    med = pd.read_csv(ctx.run_dir / "07_radiomics_mediation/mediation.csv")
    assert len(med) == len(stage.med) and set(med.x) == set(statistics.EXPOSURES)
    saved = pd.read_csv(ctx.run_dir / "07_radiomics_mediation/natural_effects.csv")
    np.testing.assert_allclose(saved.nie, nat.nie)
    assert len(pd.read_csv(ctx.run_dir / "07_radiomics_mediation/validation.csv")) == len(val.summary)
    features = pd.read_csv(ctx.run_dir / "07_radiomics_mediation/semiseg_slice_features.csv")
    assert len(features) == len(stage.slices) and "set" not in features.columns
    sem = pd.read_csv(ctx.run_dir / "07_radiomics_mediation/sem_estimates.csv")
    assert len(sem) == len(stage.fit.estimates)


def test_statistics_adds_the_predicted_class_maps_of_chapter5(ctx):
    test = ctx.samples("test")
    # predicted maps equal to the ground truth: their features must equal the ground-truth rows
    write_chapter5(ctx, "test_class_maps", test, [s.classes for s in test])
    slices, masks_used = statistics.slice_features(ctx)
    assert masks_used == "ground truth and predicted"
    cols = ["firstorder_Mean", "mask_pixels"]
    gt = slices[(slices.subset == "test") & (slices.mask_source == "ground truth")]
    pred = slices[slices.mask_source == "predicted"]
    assert len(pred) == len(gt) == 3 * ctx.profile.radiomics_slice_limit
    pd.testing.assert_frame_equal(gt[["slice_id", "region", *cols]].reset_index(drop=True),
                                  pred[["slice_id", "region", *cols]].reset_index(drop=True))


def test_statistics_rejects_class_maps_that_are_not_labels(ctx):
    test = ctx.samples("test")
    path = write_chapter5(ctx, "test_class_maps", test, [np.full(s.image.shape, 0.5, np.float32) for s in test])
    with pytest.raises(ValueError, match=rf"{path.name}.*not class labels"):
        statistics.slice_features(ctx)


def test_the_simulated_cohort_resamples_the_clinical_covariates():
    # the image branch and its fallbacks: tests/book/test_stage_statistics_images.py
    fake = SimpleNamespace(seed=0)
    clinical = pd.DataFrame({"age": [40.0, 60.0, 70.0], "male": [0, 1, 1], "n_diseases": [0, 1, 2]})
    cohort = statistics.simulated_cohort(fake, clinical, "why")
    assert cohort.source == "simulated" and cohort.note == "why" and cohort.images is None
    assert len(cohort.table) == 1521 and set(cohort.table.age) <= {40.0, 60.0, 70.0}
    assert set(cohort.mediators) == {"m_common", "m_age", "m_disease", "m_common_twin",
                                     *(f"null_{i}" for i in range(1, 11))}
