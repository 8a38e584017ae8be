"""Chapter 7: total effects, mediation by CT phenotypes, radiomics of the labelled slices, validation by simulation.

Reads the clinical table of the data root (the synthetic clinical cohort without it) and, when chapter 5
wrote them, the multi SSInfNet class maps of the test slices (artifact ``test_class_maps``). Writes the
univariate mediation results (``mediation``), the per-slice radiomic features (``slice_features``) and
the SEM path estimates (``sem_estimates``).

The mediation cohort has one branch today: ``cohort_source == "simulated"``, phenotypes with planted
paths on covariates resampled from the clinical table. Per-patient phenotypes from iCTCF CT images and
their predicted masks (image -> prediction -> radiomics) are a later issue; :func:`mediation_cohort` is
where that branch goes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ...data.classes import CLASS_NAMES, GGO
from ...data import ictcf
from ...data.maps import load_maps, map_ids
from ...stats import mediation, phenotypes, sem, simulation
from ...stats.radiomics import feature_columns
from .. import artifacts

STAGE = "07_radiomics_mediation"

#: The exposures of every mediation test: age (years), gender (male 1), number of underlying diseases.
EXPOSURES = ["age", "male", "n_diseases"]

#: The SEM's exogenous exposures (gender has no mediator in the paper's model).
SEM_EXPOSURES = ("age", "n_diseases")

#: Correlation filter threshold on |Pearson r| (the paper's).
CORRELATION_LIMIT = 0.8

#: cohort_source -> what the page says about the mediation cohort.
COHORT_SOURCES = {
    "simulated": "SIMULATED phenotypes with planted paths, covariates resampled from the {clinical}",
}


@dataclass
class StatisticsStage:
    """What chapter 7 shows.

    Clinical: ``clinical`` (one row per patient, :func:`ssinfnet.data.ictcf.load_clinical` columns),
    ``clinical_label``; ``totals``: total effects of each exposure on binary severity, one exposure at a
    time and mutually adjusted (column ``model``).
    Mediation: ``cohort_source`` (the branch that ran, see :data:`COHORT_SOURCES`), ``cohort_note`` (why),
    ``cohort`` (one row per patient with ``mediators`` columns), ``med`` (univariate results adjusted for
    the other exposures, with bootstrap intervals), ``unadjusted`` (one exposure at a time, no bootstrap),
    ``kept`` / ``dropped`` (correlation filter), ``fit`` (the multiple-mediator SEM).
    Radiomics: ``slices`` (one row per slice and region, column ``set`` = subset and mask source),
    ``masks_used``, ``ggo_features`` (non-constant GGO features of the ground truth) and ``ggo_survivors``.
    Validation: ``coverage`` (outcome -> replicates), ``null``, ``power``.
    ``paths``: artifact name -> written file.
    """

    clinical: pd.DataFrame
    clinical_label: str
    totals: pd.DataFrame
    cohort_source: str
    cohort_note: str
    cohort: pd.DataFrame
    mediators: list
    med: pd.DataFrame
    unadjusted: pd.DataFrame
    kept: list
    dropped: pd.DataFrame
    fit: object
    slices: pd.DataFrame
    masks_used: str
    ggo_features: list
    ggo_survivors: list
    coverage: dict
    null: pd.DataFrame
    power: pd.DataFrame
    paths: dict

    @property
    def simulated(self) -> bool:
        """True when the mediation cohort is simulated (planted paths), not measured."""
        return self.cohort_source == "simulated"

    @property
    def cohort_label(self) -> str:
        """The mediation cohort in a few words, for captions."""
        return COHORT_SOURCES[self.cohort_source].format(clinical=self.clinical_label)

    def cohort_line(self) -> str:
        """The branch that ran, in plain words, for the top of the page."""
        return (f"Mediation cohort: {self.cohort_label}; {len(self.cohort)} patients, "
                f"{len(self.mediators)} candidate mediators.\nWhy: {self.cohort_note}")

    def significant_counts(self) -> pd.DataFrame:
        """Significant mediators per exposure, adjusted for the other exposures and one at a time."""
        return pd.DataFrame({
            "adjusted for the other exposures": self.med.groupby("x", sort=False).significant.sum(),
            "one exposure at a time (paper)": self.unadjusted.groupby("x", sort=False).significant.sum()})

    def forest(self) -> pd.DataFrame:
        """``med`` with the planted indirect effect (column ``truth``) when the cohort is simulated."""
        return simulation.with_truth(self.med) if self.simulated else self.med

    def region_summary(self) -> pd.DataFrame:
        """Rows, valid rows and medians of the paper's retained feature types per set and region."""
        return phenotypes.region_summary(self.slices, phenotypes.PAPER_FEATURES, by=("set", "region"))

    def ggo(self) -> pd.DataFrame:
        """The radiomic rows of the ground-truth GGO regions."""
        return ground_truth_ggo(self.slices)


def clinical_table(ctx) -> tuple[pd.DataFrame, str]:
    """The iCTCF clinical table of the data root, or the synthetic clinical cohort; with its label."""
    if ctx.data.has("ictcf-clinical"):
        return ictcf.load_clinical(ctx.data.path), "real iCTCF clinical table"
    return ictcf.synthetic_clinical(seed=ctx.seed), "synthetic clinical cohort"


def total_effects(clinical: pd.DataFrame) -> pd.DataFrame:
    """Total effects of :data:`EXPOSURES` on ``severity_binary`` (age per 10 years), linear and logistic,
    one exposure at a time and mutually adjusted (column ``model``)."""
    per = {"age": 10}
    return pd.concat([
        mediation.total_effects(clinical, EXPOSURES, "severity_binary", per=per).assign(model="one exposure"),
        mediation.total_effects(clinical, EXPOSURES, "severity_binary", per=per, covariates=EXPOSURES)
        .assign(model="mutually adjusted")], ignore_index=True)


def mediation_cohort(ctx, clinical: pd.DataFrame) -> tuple[pd.DataFrame, list[str], str, str]:
    """The per-patient table the mediation tests run on: ``(cohort, mediators, cohort_source, note)``.

    Today always the simulated cohort (:func:`ssinfnet.stats.simulation.phenotype_cohort`, 1,521
    patients, covariates resampled from ``clinical``). The iCTCF branch (CT images under
    ``<data root>/ictcf-images``, segmented by the trained models, radiomics averaged per patient with
    :func:`ssinfnet.stats.phenotypes.patient_phenotypes`) is not wired yet; it will set
    ``cohort_source = "ictcf"``.
    """
    if phenotypes.ictcf_image_root(ctx.data.path) is not None:
        note = ("iCTCF CT images are present under the data root, but no chapter predicts their masks yet "
                "(image -> prediction -> radiomics is a later issue), so the phenotypes are simulated")
    else:
        note = "the data root holds no iCTCF CT images, so the phenotypes are simulated"
    cohort = simulation.phenotype_cohort(clinical, seed=ctx.seed)
    mediators = [c for c in cohort.columns if c.startswith(("m_", "null_"))]
    return cohort, mediators, "simulated", note


def slice_features(ctx) -> tuple[pd.DataFrame, str]:
    """Radiomics of the test and train slices in their ground-truth masks, plus the test slices in the
    predicted class maps of chapter 5 (``test_class_maps``) when present; ``radiomics_slice_limit``
    slices per subset. Returns (one row per slice and region with a ``set`` column, masks used)."""
    limit = ctx.profile.radiomics_slice_limit
    cache = ctx.path("radiomics_cache")
    samples = {s: ctx.samples(s) for s in ("test", "train")}
    parts = [phenotypes.slice_radiomics(samples[s], limit=limit, cache_dir=cache) for s in samples]
    predicted = predicted_class_maps(ctx, samples["test"][:limit] if limit else samples["test"])
    if predicted is not None:
        parts.append(phenotypes.slice_radiomics(samples["test"], predicted, limit=limit))
    masks_used = "ground truth and predicted" if predicted is not None else "ground truth only"
    slices = pd.concat(parts, ignore_index=True).assign(set=lambda t: t.subset + ", " + t.mask_source)
    return slices, masks_used


def ground_truth_ggo(slices: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`slice_features`' table for the GGO regions of the ground-truth masks."""
    return slices[(slices.region == CLASS_NAMES[GGO]) & (slices.mask_source == "ground truth")]


def predicted_class_maps(ctx, samples: list) -> dict | None:
    """Chapter 5's class maps (slice id -> uint8 (H, W) labels) of ``samples``, or None when chapter 5
    has not written them or wrote them for other slices (another data root in this run folder).

    A file holding some but not all of these slices, or a malformed map, raises ValueError naming the
    file (:func:`ssinfnet.data.maps.load_maps`).
    """
    path = artifacts.optional(ctx, "test_class_maps", STAGE)
    if path is None or not any(s.slice_id in map_ids(path) for s in samples):
        return None
    return dict(zip((s.slice_id for s in samples), load_maps(path, samples, kind="labels")))


def run(ctx, progress: bool = True) -> StatisticsStage:
    """Run the statistics of chapter 7 on ``ctx`` and record ``mediation``, ``slice_features`` and
    ``sem_estimates``. Sizes come from the profile: ``n_boot`` bootstrap resamples for every interval,
    ``simulation_replicates`` replicates per simulation study. ``progress`` is accepted for the common
    stage signature; this stage prints nothing."""
    n_boot, n_rep, seed = ctx.profile.n_boot, ctx.profile.simulation_replicates, ctx.seed
    clinical, clinical_label = clinical_table(ctx)
    totals = total_effects(clinical)

    cohort, mediators, cohort_source, cohort_note = mediation_cohort(ctx, clinical)
    med = mediation.mediation_by_exposure(cohort, EXPOSURES, mediators, "severity_binary", n_boot=n_boot, seed=seed)
    unadjusted = mediation.mediation_by_exposure(cohort, EXPOSURES, mediators, "severity_binary",
                                                 adjust_for_others=False, n_boot=0)
    scores = med[med.significant].groupby("mediator").indirect.apply(lambda v: v.abs().max())
    kept, dropped = mediation.correlation_filter(cohort, list(scores.index), CORRELATION_LIMIT, "larger_indirect",
                                                 scores=scores)
    common, specific = sem.mediator_groups(med, exposures=SEM_EXPOSURES, kept=kept)
    fit = sem.fit_mediation_sem(cohort, common, specific, n_boot=n_boot, seed=seed)

    slices, masks_used = slice_features(ctx)
    ggo = ground_truth_ggo(slices)
    ggo_features = [c for c in feature_columns(ggo) if ggo[c].std() > 0]
    ggo_survivors, _ = mediation.correlation_filter(ggo, ggo_features, CORRELATION_LIMIT, keep="first")

    coverage = {o: simulation.coverage_study(n_rep=n_rep, n=300, outcome=o, n_boot=n_boot, seed=seed,
                                             clinical=clinical) for o in ("linear", "logistic")}
    null = simulation.null_false_positive_rate(n_rep=n_rep, n=300, n_null=10, seed=seed, clinical=clinical)
    power = simulation.power_curve([50, 100, 200, 400], n_rep=n_rep, n_null=10, seed=seed, clinical=clinical)

    paths = {"mediation": ctx.path(STAGE, "mediation.csv"),
             "slice_features": ctx.path(STAGE, "semiseg_slice_features.csv"),
             "sem_estimates": ctx.path(STAGE, "sem_estimates.csv")}
    med.to_csv(paths["mediation"], index=False)
    slices.drop(columns=["set"]).to_csv(paths["slice_features"], index=False)
    fit.estimates.to_csv(paths["sem_estimates"], index=False)
    stage = StatisticsStage(clinical, clinical_label, totals, cohort_source, cohort_note, cohort, mediators, med,
                            unadjusted, kept, dropped, fit, slices, masks_used, ggo_features, ggo_survivors,
                            coverage, null, power, paths)
    artifacts.record(ctx, STAGE, paths, phenotypes=stage.cohort_label, cohort_source=cohort_source,
                     clinical=clinical_label, masks=masks_used, kept_mediators=kept,
                     totals=totals.round(4).to_dict("records"),
                     coverage={o: float(c.covered.mean()) for o, c in coverage.items()},
                     null_fp_share=float(null.fp_rate.mean()), power=dict(zip(power.n.astype(int), power.power)))
    return stage
