"""The numbers Fung et al. printed, each with its source (paper and table), for the pages to show beside ours.

Two texts (``../shared/paper/``): the published article, *J Transl Med* 19:318 (2021) (:data:`JTM`), and
its earlier draft "Predicting Severity of COVID-19 From Patients' Chest CT Images Using Self-Supervised
Image Segmentation Approaches" (:data:`DRAFT`). Only numbers printed in these texts are here.

What the texts print and what they do not:

* Draft Tables II (single, test split), III (multi, stage-1 prior), V (multi, ground-truth prior) and VI
  (severity) print values: :data:`DRAFT_TABLE_II`, :data:`DRAFT_TABLE_III`, :data:`DRAFT_TABLE_V`,
  :data:`DRAFT_TABLE_VI`. Draft Table IV repeats two rows of Table III and is not repeated here. In the
  text we have, the lower half of Table V (background and overall) is garbled; only the cells that can be
  read unambiguously are kept (the GGO and consolidation rows of every method, background and overall of
  SInfNet and of SInfNet + data aug(0.4)).
* The article's Fig. 3B/3D values are not in its text; its abstract prints the overall multi-class F1
  (:data:`JTM_ABSTRACT`). Its supplementary Tables S2 (3-fold cross-validation, single), S3 (the same,
  multi), S4 (FCN8s with pretrained weights) and S7 (ablations) are *not* in the texts: the article's
  text states only their direction (:data:`JTM_SUPPLEMENT_CLAIMS`). Table S8 (cost) is described by two
  ratios (:data:`JTM_TABLE_S8`). The mediation counts are in the article's Results (:data:`JTM_MEDIATION`).

The draft's multi-class "SSInfNet" is inpainting-initialised only (BCE, SGD): the focal loss and
Lookahead came with the article. The draft's "data aug(0.4)/(0.5)" is random cutout at that fraction (the
draft's Sect. V.C), with flips and random crops; "SSInfNet + data aug" does not say which cutout.
Errors are "± 1.96 SE" over test images, as printed. The Inf-Net paper's own numbers (Fan et al. 2020)
are :data:`ssinfnet.evaluation.tables.PUBLISHED_SINGLE` / ``PUBLISHED_MULTI``.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..data.classes import BACKGROUND, CLASS_NAMES, CONSOLIDATION, GGO

__all__ = ["JTM", "DRAFT", "Published", "DRAFT_TABLE_II", "DRAFT_TABLE_III", "DRAFT_TABLE_V", "DRAFT_TABLE_VI",
           "DRAFT_METHODS", "JTM_ABSTRACT", "JTM_TABLE_S8", "JTM_MEDIATION", "JTM_SUPPLEMENT_CLAIMS", "TABLE_COLUMNS",
           "published_table", "lookup"]

JTM = "Fung et al., J Transl Med 19:318 (2021)"
DRAFT = "Fung et al., draft 'Predicting Severity of COVID-19 ...'"

#: Columns of :func:`published_table`.
TABLE_COLUMNS = ["source", "table", "method", "class", "metric", "mean", "error", "ours", "note"]


@dataclass(frozen=True)
class Published:
    """One printed number. ``error``: the printed ± (1.96 SE over test images), None when none is printed;
    ``ours``: the variant of ours that corresponds (None: no counterpart); ``note``: what differs."""

    source: str
    table: str
    method: str
    cls: str
    metric: str
    mean: float
    error: float | None = None
    ours: str | None = None
    note: str = ""

    @property
    def citation(self) -> str:
        """e.g. "Fung et al., draft ..., Table II"."""
        return f"{self.source}, {self.table}"


#: Draft method name -> (our variant, what differs); single task.
DRAFT_METHODS = {
    "SInfNet": ("sinfnet", ""),
    "SInfNet + data aug(0.4)": ("sinfnet_cutout40", ""),
    "SInfNet + data aug(0.5)": ("sinfnet_cutout50", ""),
    "SSInfNet": ("ssinfnet", "the draft calls it Self-SInfNet"),
    "SSInfNet + data aug": (None, "cutout fraction not stated; ours: ssinfnet_cutout40 / ssinfnet_cutout50"),
}
_MULTI_OURS = {"SInfNet": ("multi_sinfnet", ""), "SSInfNet": (
    "multi_ssinfnet", "the draft's multi SSInfNet has no focal loss and no Lookahead; ours has both")}
_METRICS = ("f1", "iou", "recall", "precision", "auc")
_GGO, _CONS = CLASS_NAMES[GGO], CLASS_NAMES[CONSOLIDATION]


def _rows(source: str, table: str, text: str, classes: tuple, metrics: tuple, ours: dict, note: str = ""
          ) -> tuple[Published, ...]:
    """Parse a transcription: one line per method, ``method | m1 e1 m2 e2 ...`` over classes x metrics
    (``-`` for a cell that is not printed or not legible)."""
    out = []
    for line in text.strip().splitlines():
        method, cells = (s.strip() for s in line.split("|"))
        vals = cells.split()
        if len(vals) != 2 * len(classes) * len(metrics):
            raise ValueError(f"{table}, {method}: {len(vals)} cells, expected {2 * len(classes) * len(metrics)}")
        it = iter(vals)
        variant, why = ours.get(method, (None, ""))
        for cls in classes:
            for metric in metrics:
                m, e = next(it), next(it)
                if m != "-":
                    out.append(Published(source, table, method, cls, metric, float(m),
                                         None if e == "-" else float(e), variant, "; ".join(x for x in (why, note) if x)))
    return tuple(out)


#: Draft Table II: single segmentation on the draft's test set (117 images of 35 patients), threshold 0.5.
DRAFT_TABLE_II = _rows(DRAFT, "Table II", """
SInfNet                 | 0.39 0.059 0.29 0.053 0.83 0.069 0.33 0.057 0.9909 0.032
SInfNet + data aug(0.4) | 0.38 0.054 0.27 0.045 0.79 0.071 0.34 0.055 0.9903 0.017
SInfNet + data aug(0.5) | 0.37 0.054 0.26 0.045 0.81 0.072 0.32 0.050 0.9893 0.021
SSInfNet                | 0.38 0.056 0.27 0.049 0.75 0.077 0.33 0.053 0.9883 0.010
SSInfNet + data aug     | 0.30 0.050 0.20 0.039 0.72 0.085 0.28 0.045 0.9795 0.006
""", ("infection",), _METRICS, DRAFT_METHODS)

_MULTI_CLASSES = (_GGO, _CONS, CLASS_NAMES[BACKGROUND], "overall_with_background")

#: Draft Table III: multi segmentation, prior from the single model; "overall" averages GGO,
#: consolidation and background (the article's Fig. 3D says the same of its "Overall").
DRAFT_TABLE_III = _rows(DRAFT, "Table III", """
SInfNet                 | 0.38 0.054 0.27 0.042 0.58 0.065 0.41 0.058  0.29 0.078 0.22 0.068 0.61 0.099 0.31 0.084  1.0 0.002 0.99 0.003 0.99 0.002 1.0 0.002  0.55 0.044 0.5 0.038 0.73 0.055 0.57 0.048
SInfNet + data aug(0.4) | 0.35 0.056 0.25 0.043 0.58 0.072 0.38 0.058  0.3 0.08 0.23 0.069 0.62 0.102 0.32 0.084  0.99 0.002 0.99 0.003 0.99 0.002 1.0 0.002  0.55 0.046 0.49 0.038 0.73 0.059 0.56 0.048
SInfNet + data aug(0.5) | 0.34 0.055 0.24 0.042 0.59 0.072 0.35 0.057  0.4 0.098 0.32 0.087 0.55 0.115 0.49 0.106  1.0 0.002 0.99 0.003 0.99 0.002 1.0 0.002  0.58 0.052 0.52 0.044 0.71 0.063 0.61 0.055
SSInfNet                | 0.36 0.055 0.26 0.043 0.56 0.067 0.4 0.059  0.31 0.087 0.25 0.076 0.56 0.114 0.38 0.097  1.0 0.002 0.99 0.003 1.0 0.002 1.0 0.002  0.56 0.048 0.5 0.041 0.71 0.061 0.59 0.053
SSInfNet + data aug     | 0.34 0.054 0.24 0.042 0.56 0.068 0.37 0.056  0.18 0.059 0.14 0.051 0.5 0.117 0.24 0.071  1.0 0.002 0.99 0.003 1.0 0.002 1.0 0.002  0.51 0.038 0.46 0.032 0.68 0.062 0.53 0.043
""", _MULTI_CLASSES, _METRICS[:4], _MULTI_OURS)

#: Draft Table V: multi segmentation with the ground-truth infection as prior (an oracle); the garbled
#: lower half is kept only where legible (see the module docstring).
DRAFT_TABLE_V = _rows(DRAFT, "Table V", """
SInfNet                 | 0.87 0.041 0.81 0.049 0.87 0.043 0.9 0.042  0.47 0.102 0.39 0.093 0.68 0.103 0.55 0.111  1.0 0.0 1.0 0.0 1.0 0.0 1.0 0.0  0.78 0.047 0.73 0.048 0.85 0.049 0.82 0.051
SInfNet + data aug(0.4) | 0.86 0.048 0.81 0.058 0.87 0.052 0.91 0.04  0.58 0.096 0.47 0.092 0.64 0.108 0.74 0.095  - - - - - - - -  0.81 0.048 0.76 0.05 0.84 0.053 0.88 0.045
SInfNet + data aug(0.5) | 0.86 0.045 0.81 0.055 0.88 0.05 0.9 0.042  0.53 0.108 0.44 0.099 0.62 0.118 0.69 0.108  - - - - - - - -  - - - - - - - -
SSInfNet                | 0.86 0.041 0.8 0.051 0.87 0.044 0.89 0.039  0.55 0.106 0.46 0.101 0.67 0.116 0.68 0.108  - - - - - - - -  - - - - - - - -
SSInfNet + data aug     | 0.82 0.046 0.74 0.053 0.82 0.048 0.86 0.04  0.27 0.077 0.22 0.067 0.61 0.117 0.31 0.088  - - - - - - - -  - - - - - - - -
""", _MULTI_CLASSES, _METRICS[:4], {k: (f"{v[0]}_gt_prior", v[1]) for k, v in _MULTI_OURS.items()},
    note="prior: ground truth (oracle)")

#: Draft Table VI: severity classes from the predicted infection ratio against iCTCF's *clinical* grades
#: (Regular/Mild/Control 0, Severe 1, Critically ill 2), micro-averaged, so F1 = precision = recall.
DRAFT_TABLE_VI = tuple(
    Published(DRAFT, "Table VI", m, "severity", metric, v, None, ours,
              "clinical reference grades of iCTCF patients; our reference is image-derived")
    for m, v, ours in (("SInfNet", 0.28, "sinfnet"), ("SInfNet + data aug(0.4)", 0.61, "sinfnet_cutout40"),
                       ("SInfNet + data aug(0.5)", 0.42, "sinfnet_cutout50"), ("SSInfNet", 0.55, "ssinfnet"),
                       ("SSInfNet + data aug", 0.62, None))
    for metric in ("micro_f1", "micro_precision", "micro_recall"))

#: The article's abstract: overall multi-class F1 (background included, Fig. 3D) of multi SSInfNet and of
#: "the two related baseline models" (multi U-Net and multi SInfNet; the abstract does not say which is
#: which; the draft's Table III gives multi SInfNet 0.55).
JTM_ABSTRACT = (
    Published(JTM, "abstract (Fig. 3D)", "multi SSInfNet", "overall_with_background", "f1", 0.63, None, "multi_ssinfnet"),
    Published(JTM, "abstract (Fig. 3D)", "baseline (multi SInfNet or U-Net)", "overall_with_background", "f1", 0.55,
              None, None, "one of the two baselines; which one is not stated"),
    Published(JTM, "abstract (Fig. 3D)", "baseline (multi SInfNet or U-Net)", "overall_with_background", "f1", 0.49,
              None, None, "one of the two baselines; which one is not stated"),
)

#: Table S8 as the article's text describes it (the table itself is not in the texts): time per image.
JTM_TABLE_S8 = (
    Published(JTM, "Table S8 (text)", "multi SInfNet / multi SSInfNet", "", "time ratio", 1.06, None, None,
              "multi SInfNet takes 1.06 times the time of multi SSInfNet per image"),
    Published(JTM, "Table S8 (text)", "multi FCN8 / multi SInfNet", "", "time ratio", 0.74, None, None,
              "printed as '0.74 times shorter'; read here as a ratio of 0.74"),
)

#: Mediation on iCTCF (article, Results "Mediation analysis"): 204 phenotypes (68 per region), 1,338
#: patients; 37 of the 68 GGO phenotypes significant, none of consolidation; after the correlation filter
#: 5 mediators for age and 3 for underlying diseases. The text gives 32 mediators of disease and 27 of
#: age, its Fig. 4 caption the reverse.
JTM_MEDIATION = {
    "patients": Published(JTM, "Results, mediation", "multi SSInfNet", "", "patients", 1338),
    "phenotypes": Published(JTM, "Results, mediation", "multi SSInfNet", "", "phenotypes", 204),
    "significant_ggo": Published(JTM, "Results, mediation (Fig. 4)", "multi SSInfNet", _GGO, "significant mediators", 37,
                                 note="of 68 GGO phenotypes; 0 of the consolidation phenotypes"),
    "kept_age": Published(JTM, "Results, mediation (Fig. 6)", "multi SSInfNet", _GGO, "mediators kept, age", 5,
                          note="Mean, Area, Entropy, Kurtosis, IMC1"),
    "kept_diseases": Published(JTM, "Results, mediation (Fig. 6)", "multi SSInfNet", _GGO,
                               "mediators kept, underlying diseases", 3, note="Entropy, Kurtosis, Skewness"),
}

#: What the article's text says of the supplementary tables whose values are not in the texts.
JTM_SUPPLEMENT_CLAIMS = {
    "Table S2": "3-fold cross-validation, single: SInfNet best on most metrics; SSInfNet no improvement "
                "(folds over the pooled MedSeg images)",
    "Table S3": "3-fold cross-validation, multi: multi SSInfNet better than multi U-Net and multi SInfNet",
    "Table S4": "multi SSInfNet better than multi FCN8 (pretrained weights), multi U-Net and multi SInfNet",
    "Table S7": "ablations: each of inpainting, focal loss and Lookahead improves multi SSInfNet",
}

_ALL = DRAFT_TABLE_II + DRAFT_TABLE_III + DRAFT_TABLE_V + DRAFT_TABLE_VI + JTM_ABSTRACT + JTM_TABLE_S8 \
    + tuple(JTM_MEDIATION.values())


def published_table(table: str | None = None) -> pd.DataFrame:
    """Every printed number (or those of one ``table``, e.g. "Table III") as rows of :data:`TABLE_COLUMNS`."""
    rows = [p for p in _ALL if table is None or p.table == table]
    if not rows:
        raise ValueError(f"no published table {table!r}; tables: {sorted({p.table for p in _ALL})}")
    return pd.DataFrame([{"source": p.source, "table": p.table, "method": p.method, "class": p.cls,
                          "metric": p.metric, "mean": p.mean, "error": p.error, "ours": p.ours, "note": p.note}
                         for p in rows], columns=TABLE_COLUMNS)


def lookup(table: str, method: str, cls: str, metric: str = "f1") -> Published:
    """The one printed number of ``table`` for ``method``, ``cls`` and ``metric``; KeyError naming what
    is printed when it is not (never a guess)."""
    hits = [p for p in _ALL if (p.table, p.method, p.cls, p.metric) == (table, method, cls, metric)]
    if not hits:
        have = sorted({(p.method, p.cls) for p in _ALL if p.table == table})
        raise KeyError(f"{table} prints no {metric} for {method!r}, class {cls!r}; printed: {have}")
    return hits[0]
