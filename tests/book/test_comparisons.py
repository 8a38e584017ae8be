"""Chapter 5's comparison table over seeds: pooled numbers as paired_bootstrap gives them, failed seeds left out
and named, claims that cannot be estimated say why, bad input names what is wrong."""
import numpy as np
import pandas as pd
import pytest

from ssinfnet.book.stages.comparisons import CLAIMS, Claim, SeedComparison, comparison_table, per_image_scores
from ssinfnet.evaluation.comparison import TABLE_COLUMNS, paired_bootstrap
from ssinfnet.evaluation.paper_metrics import paper_scores

PAIR = (Claim("pretraining helps", "single", "sinfnet", "ssinfnet"),)


def _scores(n_seeds=3, n_images=12, shift=0.1, seed=0):
    """Per-image Dice of sinfnet and ssinfnet; ssinfnet better by about ``shift``."""
    rng = np.random.default_rng(seed)
    a = {k: rng.uniform(0.2, 0.7, n_images) for k in range(n_seeds)}
    b = {k: np.clip(a[k] + shift + rng.normal(0, 0.05, n_images), 0, 1) for k in range(n_seeds)}
    return {("sinfnet", "infection"): a, ("ssinfnet", "infection"): b}


def test_pooled_numbers_are_paired_bootstraps_over_the_usable_seeds():
    scores = _scores()
    table = comparison_table(PAIR, scores, {"ssinfnet": {1}}, n_boot=300, seed=7, note="protocol")
    assert list(table.columns) == list(TABLE_COLUMNS)
    row = table.iloc[0]
    a = np.stack([scores[("sinfnet", "infection")][k] for k in (0, 2)])
    b = np.stack([scores[("ssinfnet", "infection")][k] for k in (0, 2)])
    want = paired_bootstrap(a, b, n_boot=300, seed=7)
    assert (row.estimate, row.ci_low, row.ci_high, row.p_not_better) == (want.estimate, want.ci_low, want.ci_high,
                                                                         want.p_not_better)
    assert row.estimate == pytest.approx(float((b - a).mean()))
    assert (row.n_seeds, row.n_images, row.level) == (2, 12, 0.95)
    assert row.seeds_failed == "ssinfnet@seed1"  # left out and reported
    assert row.seed_means == ";".join(f"{m:.4f}" for m in want.seed_means)
    assert row.verdict == "helps" and row.note == "seeds 0, 2; protocol"


def test_every_seed_usable_and_a_hurting_model():
    scores = _scores(n_seeds=2, shift=-0.2)
    row = comparison_table(PAIR, scores, {}, n_boot=200, seed=0).iloc[0]
    assert (row.n_seeds, row.seeds_failed, row.verdict) == (2, "none", "hurts")
    assert row.ci_high < 0 and row.p_not_better == 1.0


def test_small_n_boot_is_raised_to_the_bootstraps_minimum():
    scores = _scores()
    row = comparison_table(PAIR, scores, {}, n_boot=50, seed=1).iloc[0]  # the smoke profile's 50
    a, b = (np.stack([scores[(v, "infection")][k] for k in range(3)]) for v in ("sinfnet", "ssinfnet"))
    assert row.ci_low == paired_bootstrap(a, b, n_boot=100, seed=1).ci_low


def test_not_estimable_says_why_and_variants_not_trained_get_no_row():
    scores = _scores(n_seeds=2)
    failed = {"sinfnet": {0}, "ssinfnet": {1}}
    table = comparison_table(CLAIMS, scores, failed, n_boot=100, seed=0)
    assert list(table.claim) == ["inpainting pretraining helps (single)"]  # unet, multi...: not trained here
    first = table.iloc[0]
    assert first.verdict == ("not estimable: no seed at which both trainings passed their checks "
                             "(seeds_failed names the failed ones)")
    assert first.seeds_failed == "sinfnet@seed0; ssinfnet@seed1"
    assert first.n_seeds == 0 and pd.isna(first.n_images) and np.isnan(first.estimate) and first.seed_means == ""
    # fewer than 2 images scored by both models (NaN: empty ground truth)
    sparse = _scores(n_seeds=1, n_images=3)
    sparse[("sinfnet", "infection")][0][:2] = np.nan
    row = comparison_table(PAIR, sparse, {}, n_boot=100, seed=0).iloc[0]
    assert row.verdict == "not estimable: need at least 2 images scored by both models, got 1"


def test_a_variant_without_extra_seeds_is_compared_at_seed_0():
    scores = _scores(n_seeds=3)
    scores[("unet", "infection")] = {0: scores[("sinfnet", "infection")][0] - 0.3}  # an ablation: one seed
    table = comparison_table(CLAIMS, scores, {}, n_boot=100, seed=2).set_index("claim")
    row = table.loc["InfNet beats U-Net from scratch (single)"]
    want = paired_bootstrap(scores[("unet", "infection")][0], scores[("sinfnet", "infection")][0], n_boot=100, seed=2)
    assert (row.n_seeds, row.estimate, row.ci_low) == (1, want.estimate, want.ci_low)
    assert row.estimate == pytest.approx(0.3) and row.verdict == "helps"
    assert row.note == "seed 0 only (no extra seeds)" and row.seed_means == "0.3000"
    assert table.loc["inpainting pretraining helps (single)"].n_seeds == 3


def test_multi_claims_are_scored_per_class():
    rng = np.random.default_rng(3)
    classes = ("ggo", "consolidation", "overall_without_background")
    scores = {(v, c): {0: rng.uniform(0, 1, 8)} for v in ("multi_sinfnet", "multi_ssinfnet") for c in classes}
    table = comparison_table(CLAIMS, scores, {}, n_boot=100, seed=0)
    assert list(table["class"]) == list(classes) and set(table.task) == {"multi"}


def test_the_csv_keeps_integer_counts(tmp_path):
    table = comparison_table(PAIR, _scores(n_seeds=2), {}, n_boot=100, seed=0)
    table.to_csv(tmp_path / "c.csv", index=False)
    back = pd.read_csv(tmp_path / "c.csv")
    assert list(back.columns) == list(TABLE_COLUMNS)
    assert back.n_images.iloc[0] == 12 and "12.0" not in (tmp_path / "c.csv").read_text()
    summary = SeedComparison(table, pd.DataFrame()).summary()
    assert list(summary.columns) == ["claim", "class", "metric", "B - A", "95% CI", "seeds used", "failed seeds", "images",
                                     "verdict"]


def test_bad_input_names_the_variant_and_seed():
    scores = _scores(n_seeds=2)
    del scores[("sinfnet", "infection")][0]
    with pytest.raises(ValueError, match=r"scores of sinfnet \(infection\) lack seed 0 \(seeds given: \[1\]\)"):
        comparison_table(PAIR, scores, {}, n_boot=100, seed=0)
    scores = _scores(n_seeds=2)
    scores[("ssinfnet", "infection")][1] = np.zeros(5)
    with pytest.raises(ValueError, match=r"scores of ssinfnet \(infection\) must be 1-d and of one length"):
        comparison_table(PAIR, scores, {}, n_boot=100, seed=0)


def test_per_image_scores_follow_the_image_order():
    gts = [np.eye(4, dtype=bool), np.zeros((4, 4), bool), np.ones((4, 4), bool)]
    probs = [np.eye(4), np.zeros((4, 4)), np.zeros((4, 4))]
    table = paper_scores(probs, gts, image_ids=["a", "empty", "c"])
    got = per_image_scores(table, "infection", ["c", "a", "empty"])
    assert got[0] == 0.0 and got[1] == 1.0 and np.isnan(got[2])  # an empty ground truth is not scored
    # AUC: a perfect ranking on "a"; undefined where the ground truth is all one class ("empty", "c")
    auc = per_image_scores(table, "infection", ["a", "empty", "c"], metric="auc")
    assert auc[0] == 1.0 and np.isnan(auc[1:]).all()
    with pytest.raises(ValueError, match="no class 'ggo'"):
        per_image_scores(table, "ggo", ["a"])
    with pytest.raises(ValueError, match=r"lack 1 images \(first: zz\)"):
        per_image_scores(table, "infection", ["a", "zz"])
    with pytest.raises(ValueError, match=r"metric must be one of \('dice', 'auc'\), got 'f1'"):
        per_image_scores(table, "infection", ["a"], metric="f1")


def test_the_u_net_claims_are_also_compared_on_auc():
    """The paper's single claim against U-Net is about AUC: those pairs get an AUC row, read from the
    (variant, class, "auc") scores, beside their Dice row."""
    scores = _scores(n_seeds=1)
    rng = np.random.default_rng(3)
    scores[("unet", "infection")] = {0: scores[("sinfnet", "infection")][0] + 0.2}  # U-Net better in Dice
    auc = {v: {0: rng.uniform(0.90, 0.95, 12)} for v in ("unet", "sinfnet", "ssinfnet")}
    auc["sinfnet"][0] = auc["unet"][0] + 0.03  # ... but worse than SInfNet in AUC
    scores.update({(v, "infection", "auc"): s for v, s in auc.items()})
    table = comparison_table(CLAIMS, scores, {}, n_boot=100, seed=0,
                             note=lambda metric: f"scored by {metric}").set_index("claim")
    dice, by_auc = table.loc["InfNet beats U-Net from scratch (single)"], table.loc[
        "InfNet beats U-Net from scratch in AUC (single)"]
    assert (dice.metric, dice.verdict, by_auc.metric, by_auc.verdict) == ("dice", "hurts", "auc", "helps")
    assert by_auc.estimate == pytest.approx(0.03) and by_auc.note.endswith("scored by auc")
    want = paired_bootstrap(auc["unet"][0], auc["ssinfnet"][0], n_boot=100, seed=0)
    assert table.loc["SSInfNet beats U-Net in AUC (single)"].ci_low == want.ci_low
    with pytest.raises(ValueError, match=r"claim 'x': metric must be one of \('dice', 'auc'\), got 'iou'"):
        Claim("x", "single", "a", "b", metric="iou")


def test_forest_plot_draws_one_row_per_comparison_and_rejects_other_tables():
    from ssinfnet.plots.evaluation import plot_comparisons

    scores = {**_scores(n_seeds=2), ("ssinfnet_encoder", "infection"): {0: np.full(12, 0.5), 1: np.full(12, 0.5)}}
    table = comparison_table(CLAIMS, scores, {"sinfnet": {0, 1}}, n_boot=100, seed=0)
    ax = plot_comparisons(table).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "inpainting pretraining helps (single) [infection]", "encoder-only transfer helps (single) [infection]",
        "transferring the decoder too helps (single) [infection]"]
    assert ax.get_xlabel().startswith("Dice difference B - A") and ax.get_ylabel() == "claim [class]"
    assert sum("not estimable" in t.get_text() for t in ax.texts) == 2  # sinfnet failed at both seeds
    estimated = table.iloc[2]
    lo, hi = ax.get_xlim()
    assert lo < estimated.ci_low and hi > estimated.ci_high and lo < 0 < hi
    with pytest.raises(ValueError, match=r"lacks columns \['seed_means'\]"):
        plot_comparisons(table.drop(columns="seed_means"))
