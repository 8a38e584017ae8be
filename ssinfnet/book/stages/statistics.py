"""Chapter 7: total effects, mediation by CT phenotypes, radiomics of the labelled slices, validation by simulation.

Reads the clinical table of the data root (the synthetic clinical cohort without it) and, when chapter 5
wrote them, the class maps of the test slices by the multi-class model it selected (``test_class_maps``).
Writes the paper's univariate mediation rule (``mediation``), the natural indirect and direct effects
(``natural_effects``), the two methods side by side (``method_comparison``), the sensitivity to
unmeasured confounding (``sensitivity``), the simulation validation (``validation``), the per-slice
radiomic features (``slice_features``) and the SEM path estimates (``sem_estimates``). The counterfactual
part is :mod:`.natural`.

The mediation cohort has two branches (:func:`mediation_cohort`; ``cohort_source`` names the one that ran
and the page's first line says it in words):

* ``"images"``: the data root holds iCTCF CT images (``ictcf-images/Patient <N>/*.jpg``) and the iCTCF
  clinical table, and chapter 5 selected on validation a single- and a multi-class model whose training
  did not fail: the images are segmented by those models and measured per patient (:mod:`.ictcf_images`,
  writing ``ictcf_class_maps`` and ``ictcf_phenotypes``);
* ``"simulated"``: otherwise, phenotypes with planted paths on covariates resampled from the clinical
  table, with the reason (no images; images but no clinical table or no usable model, naming the
  chapter to run; images whose features leave no candidate mediator).
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
from . import ictcf_images, natural

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
    "images": "MEASURED phenotypes (radiomics of iCTCF CT images inside the lesions predicted by stage 1 + "
              "multi SSInfNet within the lungs, averaged per patient), joined to the {clinical}",
}

#: Forest plots of measured phenotypes show the significant mediators and the largest |indirect|, up to this.
FOREST_ROWS = 25

#: Columns of the SEM estimates table (written empty when no SEM was fitted).
SEM_COLUMNS = ["lval", "rval", "estimate", "std_estimate", "se", "z", "p"]


@dataclass
class Cohort:
    """The mediation cohort (:func:`mediation_cohort`): ``table`` (one row per patient), ``mediators``,
    ``source`` (a key of :data:`COHORT_SOURCES`), ``note`` (why this branch), ``images`` (the image
    branch's :class:`~.ictcf_images.ImageCohort` when the images were segmented, even if the cohort then
    fell back to simulated phenotypes; else None)."""

    table: pd.DataFrame
    mediators: list
    source: str
    note: str
    images: ictcf_images.ImageCohort | None = None


@dataclass
class StatisticsStage:
    """What chapter 7 shows.

    Clinical: ``clinical`` (one row per patient, :func:`ssinfnet.data.ictcf.load_clinical` columns),
    ``clinical_label``; ``totals``: total effects of each exposure on binary severity, one exposure at a
    time and mutually adjusted (column ``model``).
    Mediation: ``cohort_source`` (the branch that ran, see :data:`COHORT_SOURCES`), ``cohort_note`` (why),
    ``cohort`` (one row per patient with ``mediators`` columns), ``med`` (the paper's rule, each exposure
    adjusted for the others, with bootstrap intervals), ``unadjusted`` (the paper's rule one exposure at a
    time, no bootstrap), ``nat`` (:class:`~.natural.NaturalMediation`: natural effects, the comparison with
    the paper's rule, sensitivity), ``kept`` / ``dropped`` (correlation filter of the mediators the
    natural-effect test reports), ``fit`` (the multiple-mediator SEM of the kept ones, None when none was
    kept or the model could not be fitted; ``sem_note`` says why), ``images`` (the image branch's
    :class:`~.ictcf_images.ImageCohort`, None when it did not run).
    Radiomics (COVID-SemiSeg): ``slices`` (one row per slice and region, column ``set`` = subset and mask source),
    ``masks_used``, ``ggo_features`` (non-constant GGO features of the ground truth) and ``ggo_survivors``.
    Validation: ``validation`` (:class:`~.natural.Validation`: coverage, FDR, FWER with Monte Carlo SE per
    scenario), ``power`` (the paper's rule against sample size).
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
    nat: natural.NaturalMediation
    validation: natural.Validation
    power: pd.DataFrame
    paths: dict
    sem_note: str = ""
    images: ictcf_images.ImageCohort | None = None

    @property
    def simulated(self) -> bool:
        """True when the mediation cohort is simulated (planted paths), not measured."""
        return self.cohort_source == "simulated"

    @property
    def cohort_label(self) -> str:
        """The mediation cohort in a few words, for captions."""
        return COHORT_SOURCES[self.cohort_source].format(clinical=self.clinical_label)

    def cohort_line(self) -> str:
        """The branch that ran, in plain words, for the top of the page (first line: the branch)."""
        line = (f"Mediation cohort: {self.cohort_label}; {len(self.cohort)} patients, "
                f"{len(self.mediators)} candidate mediators.\nWhy: {self.cohort_note}")
        if self.images is not None:
            line += f"\nCT images: {self.images.summary_line()}"
        return line + (f"\nSEM: {self.sem_note}" if self.sem_note else "")

    def significant_counts(self) -> pd.DataFrame:
        """Significant mediators per exposure: the paper's rule adjusted for the other exposures and one
        exposure at a time (as the paper did), and the natural-effect test (adjusted for the others)."""
        return pd.DataFrame({
            "paper's rule, adjusted for the other exposures": self.med.groupby("x", sort=False).significant.sum(),
            "paper's rule, one exposure at a time (as published)":
                self.unadjusted.groupby("x", sort=False).significant.sum(),
            "natural indirect effect, adjusted": self.nat.natural.groupby("x", sort=False).significant.sum()})

    def paper_beside_ours(self) -> pd.DataFrame:
        """The paper's mediation findings (iCTCF, SSInfNet masks) beside this run's counterparts, each row
        saying whether the comparison is like for like (never, on simulated phenotypes)."""
        nat, paper = self.nat.natural, self.unadjusted  # the paper tested each exposure alone
        same = ("not like-for-like: SIMULATED phenotypes (planted paths), not radiomic features"
                if self.simulated else "not like-for-like: our models, profile and the patients with images")
        sig = paper[paper.significant]
        rows = [("significant mediators, paper's rule (any exposure)", "37 GGO features", sig.mediator.nunique()),
                ("... of age", "27 (text; Fig. 4A's caption says 32)", (sig.x == "age").sum()),
                ("... of the number of diseases", "32 (text; Fig. 4B's caption says 27)", (sig.x == "n_diseases").sum()),
                ("significant mediators, natural indirect effect (any exposure)", "not computed",
                 nat[nat.significant].mediator.nunique()),
                ("kept after the |r| > 0.8 filter, entering the SEM",
                 "6 features (age 5, diseases 3; entropy and kurtosis both; Fig. 6)", len(self.kept))]
        rows = [(q, p, int(n)) for q, p, n in rows]
        return pd.DataFrame(rows, columns=["quantity", "Fung et al. 2021 (iCTCF images)", "this run"]).assign(
            comparison=same)

    def forest(self) -> pd.DataFrame:
        """``med`` with the planted indirect effect (column ``truth``) when the cohort is simulated; for
        measured phenotypes, per exposure the significant mediators and then the largest |indirect|, up
        to :data:`FOREST_ROWS` rows."""
        if self.simulated:
            return simulation.with_truth(self.med)
        return _top_rows(self.med, "indirect")

    def natural_forest(self) -> pd.DataFrame:
        """The natural effects to plot: every row on simulated phenotypes; for measured ones, per exposure
        the significant mediators and then the largest |NIE|, up to :data:`FOREST_ROWS` rows."""
        return self.nat.natural if self.simulated else _top_rows(self.nat.natural, "nie")

    def region_summary(self) -> pd.DataFrame:
        """Rows, valid rows and medians of the paper's retained feature types per set and region."""
        return phenotypes.region_summary(self.slices, phenotypes.PAPER_FEATURES, by=("set", "region"))

    def ggo(self) -> pd.DataFrame:
        """The radiomic rows of the ground-truth GGO regions."""
        return ground_truth_ggo(self.slices)


def _top_rows(results: pd.DataFrame, effect: str) -> pd.DataFrame:
    """Per exposure ``x``: the significant rows, then the largest |``effect``|, up to FOREST_ROWS rows."""
    order = results.assign(_s=~results.significant, _a=-results[effect].abs())
    order = order.sort_values(["_s", "_a"], kind="stable").groupby("x", sort=False).head(FOREST_ROWS)
    return order.drop(columns=["_s", "_a"]).sort_index()


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


def simulated_cohort(ctx, clinical: pd.DataFrame, note: str, images=None) -> Cohort:
    """The simulated cohort (:func:`ssinfnet.stats.simulation.phenotype_cohort`, 1,521 patients, covariates
    resampled from ``clinical``) with its planted and null mediators."""
    table = simulation.phenotype_cohort(clinical, seed=ctx.seed)
    mediators = [c for c in table.columns if c.startswith(("m_", "null_"))]
    return Cohort(table, mediators, "simulated", note, images)


def mediation_cohort(ctx, clinical: pd.DataFrame, progress: bool = False) -> Cohort:
    """The per-patient table the mediation tests run on (module docstring: the two branches).

    Measured phenotypes when the data root holds iCTCF CT images, the iCTCF clinical table (``clinical``
    is then that table) and this run folder the two trained models; otherwise the simulated cohort, with
    the reason in ``note``. A broken input (unreadable image, a patient without a clinical row, a model
    file of the wrong kind) raises: it is an error, not a reason to simulate.
    """
    root = phenotypes.ictcf_image_root(ctx.data.path)
    if root is None:
        return simulated_cohort(ctx, clinical, f"the data root holds no iCTCF CT images "
                                               f"({phenotypes.ICTCF_IMAGE_FOLDER}/Patient <N>/*.jpg), "
                                               "so the phenotypes are simulated")
    missing = ictcf_images.missing_inputs(ctx)
    if missing:
        return simulated_cohort(ctx, clinical, f"iCTCF CT images are present ({root}), but "
                                + "; and ".join(missing) + "; so the phenotypes are simulated")
    images = ictcf_images.image_cohort(ctx, clinical, progress=progress)
    if not images.mediators:
        return simulated_cohort(ctx, clinical, f"the iCTCF CT images were segmented, but no patient feature has "
                                               f"values in at least {ictcf_images.MIN_PATIENTS} patients with a "
                                               "spread, so there is nothing to test and the phenotypes are "
                                               "simulated", images)
    note = (f"the data root holds iCTCF CT images and the clinical table, and this run folder the trained "
            f"models, so the phenotypes are measured ({len(images.excluded)} patient features left out: too "
            f"few patients with a value, or constant)")
    return Cohort(images.phenotypes, images.mediators, "images", note, images)


def sem_fit(cohort: Cohort, med: pd.DataFrame, kept: list, n_boot: int, seed: int):
    """The multiple-mediator SEM of the kept significant mediators, or None; returns (fit, note).

    ``med``: stacked results with ``x``, ``mediator``, ``significant`` (the chapter passes the natural
    effects). None when no mediator is significant for the SEM's exposures, or, for measured phenotypes,
    when semopy cannot fit the model (the note gives its message); the simulated cohort's failures raise.
    """
    common, specific = sem.mediator_groups(med, exposures=SEM_EXPOSURES, kept=kept)
    if not common and not any(specific.values()):
        return None, (f"no mediator of {' or '.join(SEM_EXPOSURES)} passed the univariate tests and the "
                      "correlation filter, so no SEM was fitted")
    try:
        return sem.fit_mediation_sem(cohort.table, common, specific, n_boot=n_boot, seed=seed,
                                     n_jobs=natural.N_JOBS), ""
    except ValueError as err:
        if cohort.source == "simulated":
            raise
        return None, f"the SEM could not be fitted ({err})"


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
    """Run the statistics of chapter 7 on ``ctx`` and record its artifacts (module docstring). Sizes come
    from the profile: ``n_boot`` bootstrap resamples and quasi-Bayesian draws for every interval,
    ``simulation_replicates`` replicates per simulation scenario. With iCTCF CT images (module docstring)
    also ``ictcf_class_maps`` and ``ictcf_phenotypes``. ``progress`` shows a bar while the CT images'
    radiomics are extracted; nothing else is printed."""
    n_boot, n_rep, seed = ctx.profile.n_boot, ctx.profile.simulation_replicates, ctx.seed
    clinical, clinical_label = clinical_table(ctx)
    totals = total_effects(clinical)

    chosen = mediation_cohort(ctx, clinical, progress=progress)
    cohort, mediators = chosen.table, chosen.mediators
    med = mediation.mediation_by_exposure(cohort, EXPOSURES, mediators, "severity_binary", n_boot=n_boot, seed=seed,
                                          n_jobs=natural.N_JOBS)
    unadjusted = mediation.mediation_by_exposure(cohort, EXPOSURES, mediators, "severity_binary",
                                                 adjust_for_others=False, n_boot=0)
    nat = natural.analyse(cohort, EXPOSURES, mediators, med, n_rep=n_boot, seed=seed)
    reported = nat.natural[nat.natural.significant]
    scores = reported.groupby("mediator").nie.apply(lambda v: v.abs().max())
    kept, dropped = mediation.correlation_filter(cohort, list(scores.index), CORRELATION_LIMIT, "larger_indirect",
                                                 scores=scores)
    fit, sem_note = sem_fit(chosen, nat.natural, kept, n_boot, seed)

    slices, masks_used = slice_features(ctx)
    ggo = ground_truth_ggo(slices)
    ggo_features = [c for c in feature_columns(ggo) if ggo[c].std() > 0]
    ggo_survivors, _ = mediation.correlation_filter(ggo, ggo_features, CORRELATION_LIMIT, keep="first")

    val = natural.validate(n_rep, n_draws=n_boot, seed=seed, clinical=clinical)
    power = simulation.power_curve([50, 100, 200, 400], n_rep=n_rep, n_null=10, seed=seed, clinical=clinical)

    tables = {"mediation": (med, "mediation.csv"), "natural_effects": (nat.natural, "natural_effects.csv"),
              "method_comparison": (nat.comparison, "method_comparison.csv"),
              "sensitivity": (nat.sensitivity, "sensitivity.csv"), "validation": (val.summary, "validation.csv"),
              "slice_features": (slices.drop(columns=["set"]), "semiseg_slice_features.csv"),
              "sem_estimates": (fit.estimates if fit is not None else pd.DataFrame(columns=SEM_COLUMNS),
                                "sem_estimates.csv")}
    paths = {name: ctx.path(STAGE, file) for name, (_, file) in tables.items()}
    for name, (table, _) in tables.items():
        table.to_csv(paths[name], index=False)
    if chosen.images is not None:
        paths.update(chosen.images.paths)
    stage = StatisticsStage(clinical, clinical_label, totals, chosen.source, chosen.note, cohort, mediators, med,
                            unadjusted, kept, dropped, fit, slices, masks_used, ggo_features, ggo_survivors,
                            nat, val, power, paths, sem_note, chosen.images)
    artifacts.record(ctx, STAGE, paths, phenotypes=stage.cohort_label, cohort_source=chosen.source,
                     cohort_note=chosen.note, clinical=clinical_label, masks=masks_used, kept_mediators=kept,
                     sem=sem_note or "fitted", ictcf_images=image_record(chosen.images),
                     totals=totals.round(4).to_dict("records"), **natural.manifest_summary(nat, val),
                     power=dict(zip(power.n.astype(int), power.power)))
    return stage


def image_record(images) -> dict | None:
    """What the manifest says about the image branch (None when it did not run)."""
    if images is None:
        return None
    s = images.maps.slices
    return {"image_root": str(images.image_root), "patients": images.patients_used,
            "patients_found": images.patients_found, "slices": len(s), "lung_masks_flagged": images.maps.n_flagged,
            "ggo_pixels": int(s.ggo_pixels.sum()), "consolidation_pixels": int(s.consolidation_pixels.sum()),
            "candidate_mediators": len(images.mediators), "patient_features": len(images.features_all),
            "models": images.models}
