"""The verdict page: rules (known intervals -> known verdicts) and the page from a fixture manifest + CSV."""
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssinfnet.book import verdict as v
from ssinfnet.book.profiles import PROFILES
from ssinfnet.book.results_page import results_markdown, write_results_page
from ssinfnet.book.verdict_recorded import mediation_row, severity_row

FIXTURE = Path(__file__).parent / "data" / "comparisons_fixture.csv"
CPU = PROFILES["cpu"]


@pytest.mark.parametrize("kind, ci, lo, hi, effect, want", [
    ("improves", "helps", 0.01, 0.05, None, v.REPRODUCED),
    ("improves", "hurts", -0.05, -0.01, 0.08, v.NOT_REPRODUCED),
    ("improves", "no detectable difference", -0.02, 0.05, 0.08, v.NOT_REPRODUCED),  # excludes the paper's +0.08
    ("improves", "no detectable difference", -0.02, 0.10, 0.08, v.INCONCLUSIVE),
    ("improves", "no detectable difference", -0.02, 0.01, None, v.INCONCLUSIVE),  # nothing printed to exclude
    ("comparable", "no detectable difference", -0.03, 0.04, -0.01, v.REPRODUCED),
    ("comparable", "helps", 0.01, 0.03, -0.01, v.REPRODUCED),  # detectable but inside the margin
    ("comparable", "no detectable difference", -0.08, 0.02, -0.01, v.INCONCLUSIVE),
    ("comparable", "hurts", -0.20, -0.06, -0.01, v.NOT_REPRODUCED),
    ("comparable", "helps", 0.06, 0.10, -0.01, v.NOT_REPRODUCED),
    ("improves", "not estimable: multi_ssinfnet failed on 3 of 3 seeds", float("nan"), float("nan"), None,
     v.NOT_ESTIMABLE),
    ("ours", "helps", 0.01, 0.02, None, "helps"),
])
def test_claim_verdict_rules(kind, ci, lo, hi, effect, want):
    assert v.claim_verdict(kind, ci, lo, hi, effect) == want


def test_claim_verdict_refuses_unknown_words():
    with pytest.raises(ValueError, match="unknown interval verdict 'better'"):
        v.claim_verdict("improves", "better", 0.1, 0.2)
    with pytest.raises(ValueError, match="unknown claim kind 'maybe'"):
        v.claim_verdict("maybe", "helps", 0.1, 0.2)


def test_value_verdict_and_wilson_interval():
    low, high = v.wilson_interval(0.5, 100)
    assert (round(low, 3), round(high, 3)) == (0.404, 0.596)
    assert v.value_verdict(0.60, 0.80, 0.55) == v.REPRODUCED
    assert v.value_verdict(0.30, 0.50, 0.55) == v.NOT_REPRODUCED
    assert v.value_verdict(0.45, 0.70, 0.55) == v.INCONCLUSIVE
    assert v.wilson_interval(0.5, 0) != v.wilson_interval(0.5, 0)  # NaNs


def test_a_row_written_the_other_way_round_is_flipped():
    table = v.read_comparisons(FIXTURE)
    claim = next(c for c in v.CLAIMS if c.key == "multi_ggo")
    row = v.match_comparison(table, claim)
    assert (row["estimate"], row["ci_low"], row["ci_high"], row["verdict"]) == (-0.02, -0.03, -0.01, "hurts")
    assert "sign flipped" in row["note"]


def test_a_comparisons_table_without_the_agreed_columns_names_the_file(tmp_path):
    bad = tmp_path / "comparisons.csv"
    pd.read_csv(FIXTURE).drop(columns=["seed_means"]).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"comparisons.csv: the comparisons table lacks column\(s\) \['seed_means'\]"):
        v.read_comparisons(bad)


def manifest(with_comparisons=True) -> dict:
    params = {k: list(x) if isinstance(x, tuple) else x for k, x in CPU.to_dict().items()}
    return {
        "profile": "cpu", "data_root": "/data (parameter)", "git_commit": "abcdef1234567890", "parameters": params,
        "stages": {
            "03_single": {"cross_validation": {"sinfnet": 0.52, "ssinfnet": 0.47}},
            "04_multi": {"cross_validation": {"multi_ssinfnet": {"ggo": 0.3, "consolidation": 0.1}}},
            "05_evaluation": {"artifacts": {"comparisons": "05_evaluation/comparisons.csv"} if with_comparisons else {}},
            "06_severity": {"prediction_source": "model", "n_slices": 48, "n_flagged": 2,
                            "agreement": {"ratio, paper bins": {"micro_f1": 0.8}}},
            "07_radiomics_mediation": {"cohort_source": "images", "kept_mediators": ["ggo_entropy"],
                                       "ictcf_images": {"patients": 100},
                                       "artifacts": {"mediation": "07/mediation.csv"}},
        }}


@pytest.fixture
def run_dir(tmp_path):
    (tmp_path / "05_evaluation").mkdir()
    shutil.copy(FIXTURE, tmp_path / "05_evaluation" / "comparisons.csv")
    (tmp_path / "07").mkdir()
    pd.DataFrame({"mediator": ["ggo_entropy", "ggo_entropy", "ggo_mean", "overall_area"],
                  "x": ["age", "n_diseases", "age", "male"], "significant": [True, True, False, True]}
                 ).to_csv(tmp_path / "07" / "mediation.csv", index=False)
    return tmp_path


def _row(page: str, claim: str) -> str:
    return next(line for line in page.splitlines() if line.startswith(f"| {claim} |"))


def test_the_page_from_a_fixture_manifest_and_comparisons(run_dir):
    page = results_markdown(manifest(), run_dir)
    assert page.startswith("# Verdict: the paper's claims, tested by this run")
    assert "Profile `cpu`: **a reduced schedule** — fine-tuning at most 60 (single) and 60 (multi) epochs vs the " \
           "paper's 500, pretraining 7 epochs vs 2,200" in page and "commit `abcdef1`" in page
    assert "| stage-1 epochs | 60 (paper: 500) |" in page
    assert "Pair comparisons: `05_evaluation/comparisons.csv` (10 rows)" in page
    single = _row(page, "Single: SSInfNet vs SInfNet")
    assert "-0.020 (95% CI -0.060 to +0.020) ‡" in single and "3 seeds × 48 images" in single
    assert "comparable: F1 0.38 vs 0.39" in single and "draft Table II" in single
    assert f"| {v.INCONCLUSIVE} |" in single and "seed means -0.010, -0.030, -0.020" in single
    multi = _row(page, "Multi: SSInfNet vs SInfNet, overall")
    assert "overall F1 0.63 vs 0.55 / 0.49" in multi and "J Transl Med abstract" in multi
    assert f"| {v.NOT_REPRODUCED} |" in multi
    assert f"| {v.NOT_REPRODUCED} |" in _row(page, "Multi: SSInfNet vs SInfNet, GGO")  # flipped row: hurts
    assert f"| {v.REPRODUCED} |" in _row(page, "Ablation: inpainting pretraining (multi)")
    look = _row(page, "Ablation: Lookahead vs plain SGD (multi)")
    assert f"| {v.NOT_ESTIMABLE} |" in look and "failed on 2 of 3 seeds" in look
    assert f"| {v.NOT_REPRODUCED} |" in _row(page, "Oracle prior (ground truth) vs stage-1 prior, GGO")
    assert "F1 0.86 vs 0.36" in page
    assert f"| {v.INCONCLUSIVE} |" in _row(page, "Multi: SSInfNet vs U-Net, overall")
    assert "no row in chapter 5's comparisons" in _row(page, "Multi: SSInfNet vs FCN8s, overall")
    assert "| ours only: helps |" in _row(page, "Ours: encoder-only transfer vs scratch, single")
    assert "failed: 1" in _row(page, "Ours: encoder-only transfer vs scratch, single")
    cv = _row(page, "Cross-validation consistency, single")
    assert "sinfnet 0.520, ssinfnet 0.470 (B − A -0.050; test -0.020)" in cv and f"| {v.REPRODUCED} |" in cv
    assert f"| {v.NOT_RUN} |" in _row(page, "Cross-validation consistency, multi")  # multi_sinfnet not in cv_variants
    sev = _row(page, "Severity from the segmentation (micro F1)")
    assert "0.800 (95% CI 0.663 to 0.890, Wilson) ‡" in sev and "micro F1 0.55" in sev
    assert "reproduced, not like-for-like" in sev and "draft Table VI" in sev
    med = _row(page, "Mediators found (age, underlying diseases → severity)")
    assert "age: 1, underlying diseases: 1 significant of 3 candidates (ggo: 1)" in med
    assert f"| {v.REPRODUCED} |" in med and "37 of 68 GGO phenotypes" in med
    assert "## How a verdict is reached" in page and f"±{v.EQUIVALENCE_MARGIN} Dice" in page
    assert "## The run" in page and "| git commit | `abcdef1234567890` |" in page


def test_the_page_says_when_the_comparisons_artifact_is_absent(run_dir):
    page = results_markdown(manifest(with_comparisons=False), run_dir)
    assert "**The `comparisons` artifact is absent from this run**" in page
    assert f"| {v.NOT_COMPARED} | no comparisons artifact in this run |" in _row(page, "Single: SSInfNet vs SInfNet")
    (run_dir / "05_evaluation" / "comparisons.csv").unlink()
    page = results_markdown(manifest(), run_dir)
    assert "recorded at `05_evaluation/comparisons.csv` but the file is not in the run folder" in page


def test_variants_the_profile_does_not_train_are_not_run(run_dir):
    m = manifest()
    m["parameters"]["multi_variants"] = ["multi_ssinfnet", "multi_sinfnet"]
    page = results_markdown(m, run_dir)
    row = _row(page, "Multi: SSInfNet vs FCN8s, overall")  # no row in the comparisons either
    assert f"| {v.NOT_RUN} |" in row and "does not train multi_fcn8s" in row


def test_write_results_page_reads_the_artifacts_of_the_run(run_dir):
    import json

    (run_dir / "manifest.json").write_text(json.dumps(manifest()))
    dest = write_results_page(run_dir, run_dir / "results.md")
    assert "(10 rows)" in dest.read_text()


def test_severity_from_a_simulated_stand_in_is_not_estimable_and_synthetic_data_is_flagged():
    m = manifest()
    m["stages"]["06_severity"]["prediction_source"] = "simulated"
    assert severity_row(m, reduced=True)["verdict"] == v.NOT_ESTIMABLE
    m["data_root"] = "embedded synthetic default (parameter = synthetic)"
    assert "**This run used the embedded synthetic phantoms**" in results_markdown(m)


def test_mediation_on_simulated_phenotypes_is_not_tested_and_none_found_is_inconclusive(run_dir):
    m = manifest()
    m["stages"]["07_radiomics_mediation"]["cohort_source"] = "simulated"
    row = mediation_row(m, run_dir)
    assert row["verdict"] == v.NOT_ON_DATA and "no iCTCF CT images in this run" in row["note"]
    m = manifest()
    pd.DataFrame({"mediator": ["ggo_entropy"], "x": ["age"], "significant": [False]}).to_csv(
        run_dir / "07" / "mediation.csv", index=False)
    assert mediation_row(m, run_dir)["verdict"] == v.INCONCLUSIVE  # 100 of the paper's 1,338 patients
    m["stages"]["07_radiomics_mediation"]["ictcf_images"]["patients"] = 1338
    assert mediation_row(m, run_dir)["verdict"] == v.NOT_REPRODUCED


def test_chapter_3_cross_validation_beside_the_paper():
    from ssinfnet.book.stages.single import SingleStage

    cv = pd.DataFrame({"variant": ["ssinfnet"] * 3, "class": ["infection"] * 3, "fold": [0, 1, "all"],
                       "dice": [0.4, 0.5, 0.45], "iou": [0.3, 0.4, 0.35], "recall": [0.5] * 3, "precision": [0.6] * 3})
    stage = SingleStage(train_all=list(range(50)), train=[], val=[], split_source="", pretrained=None, fits={},
                        summary=None, cv_results={}, cv_scores=None, cv_table=cv, priors_path=None)
    table = stage.cv_beside_published()
    assert len(table) == 1 and table.loc[0, "dice"] == 0.45 and "fold" not in table
    assert table.loc[0, "paper (J Transl Med Table S2)"] == "values not printed in the texts"
    assert table.loc[0, "like-for-like"] == "no: 50 labelled slices in 2 folds, not the paper's pooled images"
    assert "SSInfNet no improvement" in table.loc[0, "paper says"]


def test_without_comparisons_a_failed_training_is_not_estimable(run_dir):
    m = manifest(with_comparisons=False)
    m["stages"]["04_multi"]["status"] = {"multi_ssinfnet": "ok", "multi_sinfnet": "failed: best val_dice 0.000",
                                         "multi_ssinfnet_gt_prior (oracle prior)": "failed: flat loss"}
    assert v.failed_models(m) == {"multi_sinfnet": "failed: best val_dice 0.000", "multi_ssinfnet_gt_prior":
                                  "failed: flat loss"}
    page = results_markdown(m, run_dir)
    row = _row(page, "Multi: SSInfNet vs SInfNet, overall")
    assert f"| {v.NOT_ESTIMABLE} | multi_sinfnet failed: best val_dice 0.000 |" in row
    assert f"| {v.NOT_ESTIMABLE} |" in _row(page, "Oracle prior (ground truth) vs stage-1 prior, GGO")
    assert f"| {v.NOT_COMPARED} |" in _row(page, "Ablation: focal loss vs BCE (multi)")


def test_an_overall_without_background_is_flagged_and_not_rejected_by_the_papers_gap(run_dir):
    """The paper's overall averages background in (its gap 0.08 is on that scale): a row of ours without
    background says so, and a no-difference interval below 0.08 is inconclusive, not a rejection."""
    table = v.read_comparisons(FIXTURE)
    hit = (table["class"] == "overall_with_background") & (table.model_a == "multi_unet")
    table.loc[hit, ["estimate", "ci_low", "ci_high"]] = [0.01, -0.02, 0.04]  # no difference, below the paper's gap
    with_bg = {r["claim"]: r for r in v.pair_rows(manifest(), table, reduced=True)}
    assert with_bg["Multi: SSInfNet vs U-Net, overall"]["verdict"] == v.NOT_REPRODUCED
    assert v.WITHOUT_BACKGROUND not in with_bg["Multi: SSInfNet vs U-Net, overall"]["note"]
    table.loc[table["class"] == "overall_with_background", "class"] = "overall_without_background"
    rows = {r["claim"]: r for r in v.pair_rows(manifest(), table, reduced=True)}
    unet = rows["Multi: SSInfNet vs U-Net, overall"]
    assert unet["verdict"] == v.INCONCLUSIVE and unet["note"].endswith(v.WITHOUT_BACKGROUND)
    multi = rows["Multi: SSInfNet vs SInfNet, overall"]  # "hurts" rejects the claim on either scale
    assert multi["verdict"] == v.NOT_REPRODUCED and v.WITHOUT_BACKGROUND in multi["note"]
    assert v.WITHOUT_BACKGROUND not in rows["Multi: SSInfNet vs SInfNet, GGO"]["note"]


def test_severity_is_compared_with_the_papers_number_for_the_model_chapter_6_scored():
    m = manifest()
    m["stages"]["06_severity"]["predictions"] = "sinfnet_cutout40 prediction"
    row = severity_row(m, reduced=False)
    assert row["paper"] == "micro F1 0.61 for SInfNet + data aug(0.4) (SInfNet 0.28, SSInfNet 0.55)"
    assert row["note"].startswith("ours: sinfnet_cutout40's predicted")
    # 0.8 on 46 slices: Wilson 0.663 to 0.890, above 0.61
    assert row["ours"] == "0.800 (95% CI 0.663 to 0.890, Wilson)" and row["verdict"].startswith(v.REPRODUCED)
    m["stages"]["06_severity"]["predictions"] = "ssinfnet prediction"
    assert severity_row(m, reduced=False)["paper"] == "micro F1 0.55 for SSInfNet (SInfNet 0.28)"
    m["stages"]["06_severity"]["predictions"] = "unet prediction"  # Table VI prints no U-Net: SSInfNet's
    assert severity_row(m, reduced=False)["paper"] == "micro F1 0.55 for SSInfNet (SInfNet 0.28)"
    m["stages"]["06_severity"]["agreement"]["ratio, paper bins"]["micro_f1"] = 0.45  # 0.32 to 0.59
    m["stages"]["06_severity"]["predictions"] = "sinfnet_cutout40 prediction"
    assert severity_row(m, reduced=False)["verdict"].startswith(v.NOT_REPRODUCED)  # below 0.61, though not 0.55


def _unet_row(model_b, metric, estimate, low, high, verdict):
    return {"claim": "x", "task": "single", "class": "infection", "metric": metric, "model_a": "unet",
            "model_b": model_b, "estimate": estimate, "ci_low": low, "ci_high": high, "level": 0.95, "n_seeds": 3,
            "seeds_failed": "none", "n_images": 48, "seed_means": "", "p_not_better": 0.5, "verdict": verdict,
            "note": ""}


def test_the_single_u_net_claims_are_judged_on_auc_and_fall_back_to_dice_marked():
    """The paper says both single InfNets beat U-Net in AUC (Fig. S4): an AUC row decides; a run that compared
    Dice only shows its Dice row, marked not like-for-like; a run with neither says so."""
    dice = pd.DataFrame([_unet_row("ssinfnet", "dice", -0.03, -0.06, 0.00, "no detectable difference"),
                         _unet_row("sinfnet", "dice", -0.03, -0.05, -0.01, "hurts")])
    auc = pd.DataFrame([_unet_row("ssinfnet", "auc", 0.02, 0.01, 0.03, "helps"),
                        _unet_row("sinfnet", "auc", 0.01, -0.01, 0.03, "no detectable difference")])
    rows = {r["claim"]: r for r in v.pair_rows(manifest(), pd.concat([dice, auc]), reduced=False)}
    ss, s = rows["Single: SSInfNet vs U-Net (AUC)"], rows["Single: SInfNet vs U-Net (AUC)"]
    assert (ss["verdict"], s["verdict"]) == (v.REPRODUCED, v.INCONCLUSIVE)
    assert ss["ours"] == "+0.020 (95% CI +0.010 to +0.030)" and v.DICE_FOR_AUC not in ss["note"]
    assert ss["paper"].endswith("in overall AUC (values not printed)") and ss["source"].endswith("Fig. S4")
    rows = {r["claim"]: r for r in v.pair_rows(manifest(), dice.drop(columns="metric"), reduced=True)}
    ss, s = rows["Single: SSInfNet vs U-Net (AUC)"], rows["Single: SInfNet vs U-Net (AUC)"]
    assert ss["verdict"] == f"{v.INCONCLUSIVE}, not like-for-like" and ss["ours"].startswith("Dice -0.030 (95% CI")
    # a Dice "hurts" does not reject a claim on AUC: at most inconclusive
    assert s["verdict"] == f"{v.INCONCLUSIVE}, not like-for-like" and s["note"].endswith(v.DICE_FOR_AUC)
    assert "pixel AUC" in s["note"] and any("**A claim on AUC**" in r for r in v.RULES)
    rows = {r["claim"]: r for r in v.pair_rows(manifest(), auc.iloc[:0], reduced=True)}
    assert rows["Single: SInfNet vs U-Net (AUC)"]["verdict"] == v.NOT_COMPARED


def test_an_old_comparisons_csv_without_a_metric_column_reads_as_dice(tmp_path):
    table = v.read_comparisons(FIXTURE)  # written before the metric column existed
    assert list(table.columns[-1:]) == ["metric"] and set(table.metric) == {"dice"}
    assert v.match_comparison(table, next(c for c in v.CLAIMS if c.key == "single"))["estimate"] == -0.02
    assert v.match_comparison(table, next(c for c in v.CLAIMS if c.key == "single_unet")) is None


def test_a_failed_cross_validation_fold_makes_the_consistency_claim_not_estimable():
    from ssinfnet.book.verdict_recorded import cv_row

    m = manifest()
    m["stages"]["03_single"]["cross_validation_status"] = {"ssinfnet": {"fold0": "ok", "fold1": "failed: flat loss"},
                                                          "sinfnet": {"fold0": "ok"}}
    assert v.training_statuses(m)["ssinfnet/fold1"] == "failed: flat loss" and "ssinfnet/fold1" not in \
        v.failed_models(m)
    row = cv_row(m, v.read_comparisons(FIXTURE), "single")
    assert row["verdict"] == v.NOT_ESTIMABLE
    assert row["note"].startswith("a fold's training failed (ssinfnet/fold1 failed: flat loss): its held-out Dice")
    # the multi folds train on chapter 3's out-of-fold priors: a failed SSInfNet fold taints them too
    m["stages"]["04_multi"]["cross_validation"]["multi_sinfnet"] = {"ggo": 0.25, "consolidation": 0.1}
    multi = cv_row(m, v.read_comparisons(FIXTURE), "multi")
    assert multi["verdict"] == v.NOT_ESTIMABLE and "ssinfnet/fold1 failed: flat loss" in multi["note"]
    m["stages"]["03_single"]["cross_validation_status"]["ssinfnet"]["fold1"] = "ok"
    assert cv_row(m, v.read_comparisons(FIXTURE), "single")["verdict"] == v.REPRODUCED


def test_two_sided_bootstrap_p_values_by_hand():
    from ssinfnet.evaluation.comparison import two_sided_p

    got = two_sided_p([0.0, 1.0, 0.5, 0.982, float("nan")], 1000)
    want = [2 / 1001, 2 / 1001, 1.0, 2 * 19 / 1001]  # k = 0, 1000, 500 (capped at 1), 982 (18 above 0)
    assert got[:4] == pytest.approx(want) and np.isnan(got[4])
    with pytest.raises(ValueError, match="p_not_better must lie in"):
        two_sided_p([1.2], 1000)
    with pytest.raises(ValueError, match="n_boot must be >= 1"):
        two_sided_p([0.5], 0)


def test_holms_family_says_which_verdicts_hold_when_read_together(run_dir):
    from ssinfnet.book.verdict_family import family_markdown, family_table, resamples, resolvable

    t = pd.DataFrame({"claim": ["a", "b", "c", "d"], "class": ["infection"] * 4,
                      "model_a": ["unet", "sinfnet", "sinfnet", "sinfnet"],
                      "model_b": ["ssinfnet", "sinfnet_cutout40", "ssinfnet", "x"],
                      "p_not_better": [0.0, 0.982, 0.4, float("nan")],
                      "verdict": ["helps", "hurts", "no detectable difference", "not estimable: x"],
                      "estimate": [0.1, -0.02, 0.01, float("nan")]})
    fam = family_table(t, 1000)
    p = [2 / 1001, 38 / 1001, 2 * 401 / 1001]  # two-sided; Holm over 3 tests: 3p, 2p, p (monotone)
    assert list(fam.claim) == ["a", "b", "c"] and fam.p.tolist() == pytest.approx(p)
    assert fam.p_holm.tolist() == pytest.approx([3 * p[0], 2 * p[1], p[2]])
    assert fam.holds.tolist() == [True, False, None] and set(fam.metric) == {"dice"}  # 2 x 0.038 > 0.05
    text = "\n".join(family_markdown(manifest(), t.assign(note="1000 resamples")))
    # the summary names each comparison with its direction, as B vs A and its verdict
    assert "1 hold: ssinfnet vs unet [infection, dice]: helps." in text
    assert "These 1 do not: sinfnet_cutout40 vs sinfnet [infection, dice]: hurts;" in text
    assert "| ssinfnet vs unet | infection | dice | +0.100 | helps | 0.0020 | 0.0060 | yes |" in text
    # 100 resamples cannot resolve 3 tests at 5% (3 x 2/101 = 0.059): "cannot tell", never "lost"
    assert not resolvable(3, 100) and resolvable(3, 1000) and resolvable(25, 1000) and not resolvable(26, 1000)
    few = family_table(t, 100)
    assert few.holds.tolist() == [None, None, None]
    text = "\n".join(family_markdown(manifest(), t.assign(note="100 resamples")))
    assert "this run cannot tell which of its 2 detectable differences hold family-wise" in text
    assert "| sinfnet_cutout40 vs sinfnet | infection | dice | -0.020 | hurts |" in text and "cannot tell |" in text
    # the count: the notes' first (chapter 5 wrote them), else the run's parameter, else none
    m = manifest()
    assert resamples(m, t.assign(note="two-level bootstrap over seeds and images, 300 resamples")) == 300
    assert resamples(m, t) == CPU.n_boot
    del m["parameters"]["n_boot"]
    assert resamples(m, t.assign(note="")) is None
    assert "not adjusted for multiplicity here" in "\n".join(family_markdown(m, t.assign(note="")))
    assert family_markdown(manifest(), t.iloc[3:])[-1] == ("Chapter 5 could estimate none of its comparisons: "
                                                          "there is nothing to adjust.")
    page = results_markdown(manifest(), run_dir)
    assert "### Many claims at once" in page and "Holm's method over their two-sided bootstrap" in page
    assert page.index("### Many claims at once") < page.index("## How a verdict is reached")
