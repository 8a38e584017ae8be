"""Chapter 6: severity of the test slices, from the model's predictions or a labelled simulated stand-in.

Reads the test slices' infection probabilities of the model chapter 5 selected on validation (artifact
``test_predictions`` of chapter 5) when that chapter ran on this data root in this run folder; otherwise every slice gets a *simulated*
prediction (the ground truth blurred with smooth noise), and the stage says so in ``prediction_source``,
``prediction_label`` and ``prediction_note``. Segments the lungs, scores reference against predicted
severity (ratio, bins, regional CT score) and writes the per-slice table ``test_severity``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ...evaluation import published as pub
from ...severity import agreement as sv_agreement
from ...severity import slices as sv_slices
from .. import artifacts

STAGE = "06_severity"

#: prediction_source -> (label, note) as the page and the captions print them.
PREDICTION_LABELS = {
    "model": ("{model} prediction", "single-class model chapter 5 selected on validation"),
    "simulated": ("SIMULATED prediction", "blurred ground truth, a stand-in for the model"),
}

#: Blur (pixels) of the simulated stand-in prediction.
SIMULATED_SIGMA = 2.0

#: Columns of the agreement table the page shows.
AGREEMENT_COLUMNS = ["n", "n_excluded", "micro_f1", "macro_f1", "kappa_quadratic", "spearman_rho", "mean_diff",
                     "loa_low", "loa_high"]


@dataclass
class SeverityStage:
    """What chapter 6 shows.

    ``test``: the test slices (Sample); ``predictions``: one float32 (H, W) map in [0, 1] per slice, as
    read (the frame scores them confined to the lungs unless the stage ran with ``lung_restrict=False``);
    ``prediction_source``: "model" (the probabilities of the model chapter 5 selected) or "simulated" (the stand-in);
    ``why_simulated``: why chapter 5's predictions were not used ("" when they were);
    ``frame``: one row per slice (:func:`ssinfnet.severity.slices.severity_frame`); ``masks``: slice id ->
    (automatic, reference) LungMask; ``results``: comparison name -> agreement dict
    (:func:`ssinfnet.severity.agreement.agreement_suite`); ``table``: one row per comparison;
    ``frame_path``: the written ``test_severity`` CSV.
    """

    test: list
    predictions: list
    prediction_source: str
    why_simulated: str
    frame: pd.DataFrame
    masks: dict
    results: dict
    table: pd.DataFrame
    frame_path: Path
    model: str | None = None  # the variant chapter 5 selected (None: simulated, or not recorded)

    @property
    def simulated(self) -> bool:
        """True when the predictions are the simulated stand-in, not a model's."""
        return self.prediction_source == "simulated"

    @property
    def prediction_label(self) -> str:
        """"<variant> prediction" (e.g. "sinfnet prediction", the model chapter 5 selected) or
        "SIMULATED prediction", for captions."""
        return PREDICTION_LABELS[self.prediction_source][0].format(model=self.model or "model")

    @property
    def prediction_note(self) -> str:
        """Where the predictions come from, in a few words."""
        return PREDICTION_LABELS[self.prediction_source][1]

    @property
    def included(self) -> pd.DataFrame:
        """The rows of ``frame`` whose automatic lung mask was not flagged."""
        return self.frame[self.frame.included]

    def predictions_line(self) -> str:
        """One line for the page: how many slices and which predictions (with the reason for a fallback)."""
        line = f"{len(self.test)} test slices; predictions: {self.prediction_label} ({self.prediction_note})"
        return line + (f"\nwhy: {self.why_simulated}" if self.why_simulated else "")

    def flagged(self) -> pd.DataFrame:
        """Slices whose automatic lung mask was flagged: ``slice_id`` and ``lung_flags``."""
        return self.frame.loc[~self.frame.included, ["slice_id", "lung_flags"]]

    def lung_quality(self) -> pd.DataFrame:
        """Count, mean, median and minimum of ``gt_coverage``, ``lung_dice`` and ``lung_fraction``."""
        cols = ["gt_coverage", "lung_dice", "lung_fraction"]
        return self.frame[cols].describe().loc[["count", "mean", "50%", "min"]]

    def table_vi(self) -> pd.DataFrame:
        """The paper's Table VI layout: our paper-bins agreement and the lung-mask-only row, then the draft's
        printed micro F1 per method (:data:`ssinfnet.evaluation.published.DRAFT_TABLE_VI`), labelled not
        like-for-like (clinical grades of iCTCF patients against our image-derived slice reference)."""
        printed = [p for p in pub.DRAFT_TABLE_VI if p.metric == "micro_f1"]
        return sv_agreement.table_vi_layout(
            {f"{self.prediction_label}, paper bins": self.results["ratio, paper bins"],
             "ground truth over the automatic lung mask": self.results["lung mask only, paper bins"]},
            reference="image-derived: ground-truth infection / lung area, per slice",
            published={p.method: p.mean for p in printed},
            published_reference="clinical severity grades of iCTCF patients",
            published_source=f"Fung et al. draft, {printed[0].table}")

    def examples(self) -> list[str]:
        """Slice ids of the included slices with the highest and the median reference ratio."""
        order = self.included.sort_values("ratio_reference").slice_id.tolist()
        return [order[-1], order[len(order) // 2]]


def load_predictions(ctx, test: list) -> tuple[list, str, str]:
    """The probabilities of the model chapter 5 selected of ``test``, or the simulated stand-in.

    Returns ``(predictions, source, why)``: ``source`` is "model" or "simulated"; ``why`` says why
    chapter 5's file was not used ("" when it was). A file that holds some but not all of these slices,
    or a malformed map, raises ValueError naming the file (see
    :func:`ssinfnet.severity.slices.find_predictions`): a broken artifact is an error, not a fallback.
    """
    path = artifacts.optional(ctx, "test_predictions", STAGE)
    preds, why = sv_slices.find_predictions(path, test)
    if preds is not None:
        return preds, "model", ""
    preds = [sv_slices.simulated_prediction(s.infection, sigma=SIMULATED_SIGMA, seed=ctx.seed + i)
             for i, s in enumerate(test)]
    return preds, "simulated", why


def selected_model(ctx) -> str | None:
    """The single-class variant whose probabilities chapter 5 wrote as ``test_predictions`` (its
    manifest record ``selected``), or None when the record does not name one."""
    return (artifacts.selection(ctx) or {}).get("test_predictions")


def run(ctx, progress: bool = True, lung_restrict: bool = True) -> SeverityStage:
    """Score the severity of the test slices of ``ctx`` and record ``test_severity``.

    Reads ``test_predictions`` (chapter 5) when present, else uses the simulated stand-in (see
    :func:`load_predictions`). With ``lung_restrict`` (default) each prediction is confined to its
    slice's automatic lung mask before it is scored (:func:`ssinfnet.severity.restrict.restrict_to_lungs`,
    as ``predict`` does; the ratios count lung pixels only, so they do not change, and the frame's
    ``pred_outside_lung`` / ``pred_removed`` say what lay outside and what was removed);
    ``predictions`` holds the maps as read. Writes ``06_severity/test_severity.csv`` (one row per test slice) and
    records it with the prediction source, the slice counts and the agreement numbers.
    ``progress`` is accepted for the common stage signature; this stage prints nothing.
    """
    test = ctx.samples("test")
    preds, source, why = load_predictions(ctx, test)
    frame, masks = sv_slices.severity_frame(test, preds, restrict=lung_restrict)
    results = sv_agreement.agreement_suite(frame)
    table = sv_agreement.agreement_table(results)
    frame_path = ctx.path("06_severity", "test_severity.csv")
    frame.to_csv(frame_path, index=False)
    model = selected_model(ctx) if source == "model" else None
    stage = SeverityStage(test, preds, source, why, frame, masks, results, table, frame_path, model)
    artifacts.record(ctx, STAGE, {"test_severity": frame_path}, predictions=stage.prediction_label,
                     lung_restricted=lung_restrict,
                     prediction_source=source, n_slices=len(frame), n_flagged=int((~frame.included).sum()),
                     agreement={k: {m: round(float(v[m]), 4)
                                    for m in ("micro_f1", "kappa_quadratic", "spearman_rho", "mean_diff")}
                                for k, v in results.items()})
    return stage
