"""Where the paper's mediation rule and the natural-effect test disagree, and why.

The paper's rule (:mod:`ssinfnet.stats.mediation`) calls ``m`` a mediator of ``x`` when the adjusted
p-values of ``beta11`` (``y ~ x``), ``beta21`` (``m ~ x``) and ``beta32`` (``y ~ x + m``) are all below
alpha and ``|beta11| > |beta31|``. The natural-effect test (:mod:`ssinfnet.stats.natural_effects`) asks
only whether ``NIE = 0``, i.e. whether ``a = beta21`` or ``b = beta32`` is zero, through
``max(p_a, p_b)`` adjusted once over the family. Both use the same two regressions for ``a`` and ``b``
(with a logit link and the same covariates the p-values are identical), so they can disagree for three
reasons only:

* ``"no total effect"``: the paper also demands a significant total effect. Mediation does not: a direct
  effect of the opposite sign can cancel the indirect one (inconsistent mediation), and the total effect
  of a weak exposure can be undetectable while its indirect part is clear.
* ``"non-collapsible"``: ``|beta11| > |beta31|`` fails. Logistic coefficients are not collapsible: adding a
  predictor of ``y`` to the model makes the other slopes larger in absolute value even when it carries
  none of ``x``'s effect, so the comparison of ``beta11`` with ``beta31`` mixes mediation with a change of
  scale, and ``beta21 * beta32`` multiplies a mediator-scale slope by a log-odds slope.
* ``"multiplicity"``: the paper adjusts ``p21`` and ``p32`` separately (each over the family) and takes
  the larger; the natural test adjusts the larger of the raw p-values. Benjamini-Hochberg ranks differ
  between the two, so borderline mediators can fall on either side.

``"different models"`` flags rows whose covariates differ between the two tables (then the regressions
differ too and the comparison is not like for like).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REASONS = ("agree", "no total effect", "non-collapsible", "multiplicity", "different models")

COMPARE_COLUMNS = [
    "x", "mediator", "paper_significant", "natural_significant", "agree", "reason", "p11_adj", "beta11",
    "beta31", "p21_adj", "p32_adj", "p_nie_adj", "paper_indirect", "nie", "nie_low", "nie_high", "same_sign",
]


def compare_with_paper(paper: pd.DataFrame, natural: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Pair the paper's calls with the natural-effect calls, one row per (exposure, mediator), with a reason.

    Parameters
    ----------
    paper : DataFrame from :func:`ssinfnet.stats.mediation.mediation_by_exposure` (rule ``"paper"``)
    natural : DataFrame from :func:`ssinfnet.stats.natural_effects.natural_effects_by_exposure`
    alpha : float in (0, 1), default=0.05
        The level both tables were called at (used to attribute a disagreement).

    Returns
    -------
    pandas.DataFrame with ``COMPARE_COLUMNS``: both calls, ``reason`` (one of ``REASONS``), the
    quantities behind it, the paper's ``beta21 * beta32`` (mediator units x log-odds per exposure unit)
    beside the NIE (risk difference per contrast), and whether their signs agree. ``attrs["counts"]``
    tallies the reasons.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    need_p = ["x", "mediator", "significant", "p11_adj", "p21_adj", "p32_adj", "beta11", "beta31", "indirect"]
    need_n = ["x", "mediator", "significant", "p_nie_adj", "nie", "nie_low", "nie_high"]
    for table, need, arg in ((paper, need_p, "paper"), (natural, need_n, "natural")):
        missing = [c for c in need if c not in table.columns]
        if missing:
            raise ValueError(f"{arg}: missing column(s) {missing}")
    left = paper[need_p + (["covariates"] if "covariates" in paper else [])].rename(
        columns={"significant": "paper_significant", "indirect": "paper_indirect", "covariates": "cov_paper"})
    right = natural[need_n + (["covariates"] if "covariates" in natural else [])].rename(
        columns={"significant": "natural_significant", "covariates": "cov_natural"})
    both = left.merge(right, on=["x", "mediator"], how="inner", validate="one_to_one")
    if both.empty:
        raise ValueError("paper and natural share no (x, mediator) pair")
    both["agree"] = both["paper_significant"] == both["natural_significant"]

    def reason(r) -> str:
        if "cov_paper" in r and "cov_natural" in r and r["cov_paper"] != r["cov_natural"]:
            return "different models"
        if r["agree"]:
            return "agree"
        if r["natural_significant"]:
            if not r["p11_adj"] < alpha:
                return "no total effect"
            if not abs(r["beta11"]) > abs(r["beta31"]):
                return "non-collapsible"
        return "multiplicity"

    both["reason"] = [reason(r) for _, r in both.iterrows()]
    both["same_sign"] = np.sign(both["paper_indirect"]) == np.sign(both["nie"])
    out = both[COMPARE_COLUMNS].reset_index(drop=True)
    out.attrs["counts"] = {k: int((out["reason"] == k).sum()) for k in REASONS}
    return out
