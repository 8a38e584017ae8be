"""Validation by simulation: cohorts with planted mediation effects, coverage, false positives, power.

A simulated cohort has the clinical covariates of the study (age, male, n_diseases), mediators
("radiomic phenotypes") with planted *a paths* (x -> m) and *b paths* (m -> severity), *null* mediators,
and a binary severity drawn from a latent model::

    m_j      = sum_x a[j][x] * (x - mean(x)) + e_j + c_j U_j,   e ~ N(0, mediator_sd^2 R), U_j ~ N(0, 1)
    eta      = intercept + sum_x direct[x] * (x - mean(x)) + sum_j b[j] * m_j + sum_j g_j U_j
    latent   = eta + u,   u ~ Logistic(0, 1) (noise="logistic") or N(0, 1) (noise="normal")
    severity = 1[latent > 0]

so ``P(severity = 1) = sigmoid(eta)`` (logistic) or ``Phi(eta)`` (probit). Paths are in raw units
(per year of age, per disease, male vs female). ``R`` is the correlation matrix of the mediators' errors
(``mediator_corr``; identity by default), as radiomic features are correlated; ``U_j`` is an unmeasured
confounder of mediator ``j`` and the outcome (``confounders = {j: (c_j, g_j)}``), never in the table. With one planted mediator and no other influence on
the outcome, the univariate regressions are correctly specified and the true indirect effect is exactly
``a * b`` (log-odds scale for the logistic outcome, latent scale for ``severity_latent`` with OLS);
with several mediators, logistic slopes are attenuated by the omitted ones (non-collapsibility).

Everything returned here is synthetic (``df.attrs["synthetic"] = True``), even when the covariates are
resampled from the real iCTCF table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .mediation import univariate_mediation

COVARIATES = ("age", "male", "n_diseases")


class FrozenMatrix:
    """A read-only matrix kept in ``DataFrame.attrs``: pandas deep-copies ``attrs`` on every operation,
    which for a 204 x 204 nested list made each column selection cost 0.1 s; this one is shared instead.
    ``np.asarray(frozen)`` gives the matrix; equality compares values (pandas compares attrs on concat)."""

    def __init__(self, values):
        self._values = np.array(values, dtype=float)
        self._values.setflags(write=False)

    def __array__(self, dtype=None, copy=None):
        return self._values if dtype is None else self._values.astype(dtype)

    def __len__(self) -> int:
        return len(self._values)

    def __deepcopy__(self, memo):
        return self

    def __eq__(self, other) -> bool:
        return isinstance(other, FrozenMatrix) and np.array_equal(self._values, other._values)

    __hash__ = None

    def __repr__(self) -> str:
        return f"FrozenMatrix(shape={self._values.shape})"
NOISES = ("logistic", "normal")


def synthetic_covariates(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Draw age, male and n_diseases from documented synthetic distributions.

    age ~ N(55, 16^2) years clipped to [18, 95] (iCTCF: mean 54.8); male ~ Bernoulli(0.5);
    n_diseases ~ Poisson(0.6 * exp(0.03 * (age - 55))), so older patients have more diseases.
    Returns a DataFrame (n, 3) with float age and int male, n_diseases.
    """
    age = np.clip(rng.normal(55.0, 16.0, n), 18.0, 95.0)
    male = rng.binomial(1, 0.5, n)
    n_dis = rng.poisson(0.6 * np.exp(0.03 * (age - 55.0)))
    return pd.DataFrame({"age": age, "male": male, "n_diseases": n_dis})


def _resampled_covariates(clinical: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    missing = [c for c in COVARIATES if c not in clinical.columns]
    if missing:
        raise ValueError(f"clinical: missing column(s) {missing}")
    pool = clinical[list(COVARIATES)].dropna()
    if pool.empty:
        raise ValueError("clinical: no row has age, male and n_diseases all present")
    rows = pool.iloc[rng.integers(0, len(pool), n)].reset_index(drop=True)
    return rows.astype({"age": float, "male": int, "n_diseases": int})


def simulate_cohort(
    clinical: pd.DataFrame | None = None,
    n: int = 500,
    a_paths: Mapping[str, Mapping[str, float]] | None = None,
    b_paths: Mapping[str, float] | None = None,
    n_null: int = 0,
    direct: Mapping[str, float] | None = None,
    seed: int = 0,
    intercept: float = 0.0,
    noise: str = "logistic",
    mediator_sd: float = 1.0,
    mediator_corr: float | np.ndarray = 0.0,
    confounders: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """Simulate one cohort with planted mediation (model in the module docstring).

    Parameters
    ----------
    clinical : DataFrame or None
        A clinical table with ``age``, ``male``, ``n_diseases``: its complete rows are resampled with
        replacement. None: :func:`synthetic_covariates`.
    n : int, default=500
        Patients.
    a_paths : mapping mediator -> {covariate: coefficient}, optional
        Planted x -> m paths (mediator units per year / per disease / male).
    b_paths : mapping mediator -> coefficient, optional
        Planted m -> latent severity paths (log-odds per mediator unit for the logistic noise).
    n_null : int, default=0
        Extra mediators ``null_1 ... null_k``, pure N(0, mediator_sd^2) noise.
    direct : mapping covariate -> coefficient, optional
        Direct covariate -> latent severity effects.
    seed : int, default=0
    intercept : float, default=0.0
        Latent intercept (0: about half severe).
    noise : {"logistic", "normal"}, default="logistic"
    mediator_sd : float > 0, default=1.0
    mediator_corr : float in (-1, 1) or ndarray (k, k), default=0.0
        Correlation of the mediators' errors: one value for every pair (exchangeable), or the full
        matrix over the mediators in column order (a/b-path ones, then nulls).
    confounders : mapping mediator -> (c, g), optional
        An unmeasured N(0, 1) confounder per listed mediator, added with loading ``c`` to the mediator
        and ``g`` to the latent severity (violates sequential ignorability on purpose).

    Returns
    -------
    pandas.DataFrame
        ``patient_id`` (1..n), ``age``, ``male``, ``gender``, ``n_diseases``, the mediators (a/b-path ones
        first, then nulls), ``severity_latent`` (float) and ``severity_binary`` (0/1). ``attrs`` holds the
        planted truth (``a_paths``, ``b_paths``, ``direct``), ``covariates_from`` and ``synthetic=True``.
    """
    a_paths = {k: dict(v) for k, v in (a_paths or {}).items()}
    b_paths = dict(b_paths or {})
    direct = dict(direct or {})
    if int(n) < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if int(n_null) < 0:
        raise ValueError(f"n_null must be >= 0, got {n_null}")
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    if not mediator_sd > 0:
        raise ValueError(f"mediator_sd must be > 0, got {mediator_sd}")
    for m, paths in a_paths.items():
        bad = [x for x in paths if x not in COVARIATES]
        if bad:
            raise ValueError(f"a_paths[{m!r}]: unknown covariate(s) {bad}; choose from {COVARIATES}")
    bad = [x for x in direct if x not in COVARIATES]
    if bad:
        raise ValueError(f"direct: unknown covariate(s) {bad}; choose from {COVARIATES}")
    mediators = list(dict.fromkeys([*a_paths, *b_paths]))
    nulls = [f"null_{i + 1}" for i in range(int(n_null))]
    clash = set(mediators) & set(nulls) | set(mediators) & {*COVARIATES, "severity_latent", "severity_binary"}
    if clash:
        raise ValueError(f"a_paths/b_paths: mediator names {sorted(clash)} clash with reserved columns")
    if clinical is not None and not isinstance(clinical, pd.DataFrame):
        raise ValueError(f"clinical must be a DataFrame or None, got {type(clinical).__name__}")

    confounders = {k: (float(v[0]), float(v[1])) for k, v in (confounders or {}).items()}
    unknown = [m for m in confounders if m not in mediators]
    if unknown:
        raise ValueError(f"confounders: {unknown} are not mediators with planted paths")
    k = len(mediators) + int(n_null)
    corr = np.asarray(mediator_corr, float)
    corr = np.full((k, k), float(corr)) + (1 - float(corr)) * np.eye(k) if corr.ndim == 0 else corr
    if corr.shape != (k, k) or not np.allclose(corr, corr.T) or not np.allclose(np.diag(corr), 1):
        raise ValueError(f"mediator_corr must be a value or a symmetric ({k}, {k}) matrix with unit diagonal")
    try:
        chol = np.linalg.cholesky(corr)
    except np.linalg.LinAlgError:
        raise ValueError("mediator_corr is not positive definite") from None

    rng = np.random.default_rng(seed)
    n = int(n)
    cov = synthetic_covariates(n, rng) if clinical is None else _resampled_covariates(clinical, n, rng)
    centred = {x: cov[x].to_numpy(float) - cov[x].to_numpy(float).mean() for x in COVARIATES}
    out = cov.copy()
    out.insert(0, "patient_id", np.arange(1, n + 1))
    out.insert(3, "gender", np.where(cov["male"] == 1, "Male", "Female"))
    eta = np.full(n, float(intercept))
    for x, d in direct.items():
        eta += d * centred[x]
    # independent errors draw column by column (the stream of earlier versions); correlated ones at once
    if np.allclose(corr, np.eye(k)):
        errors = np.column_stack([rng.normal(0.0, mediator_sd, n) for _ in range(k)]) if k else np.empty((n, 0))
    else:
        errors = mediator_sd * rng.standard_normal((n, k)) @ chol.T
    crng = np.random.default_rng([int(seed), 2])  # confounders: their own stream
    columns = {}
    for j, m in enumerate(mediators):
        values = errors[:, j].copy()
        for x, a in a_paths.get(m, {}).items():
            values += a * centred[x]
        if m in confounders:
            u = crng.standard_normal(n)
            values += confounders[m][0] * u
            eta += confounders[m][1] * u
        columns[m] = values
        eta += b_paths.get(m, 0.0) * values
    for j, m in enumerate(nulls):
        columns[m] = errors[:, len(mediators) + j]
    u = rng.logistic(0.0, 1.0, n) if noise == "logistic" else rng.normal(0.0, 1.0, n)
    columns["severity_latent"] = eta + u
    columns["severity_binary"] = (columns["severity_latent"] > 0).astype(int)
    out = pd.concat([out, pd.DataFrame(columns, index=out.index)], axis=1)  # one concat: hundreds of columns
    out.attrs.update(a_paths=a_paths, b_paths=b_paths, direct=direct, noise=noise, synthetic=True,
                     intercept=float(intercept), mediator_corr=FrozenMatrix(corr), confounders=confounders,
                     mediator_sd=float(mediator_sd),
                     covariates_from="synthetic distributions" if clinical is None else "resampled clinical rows")
    return out


#: The planted design of :func:`phenotype_cohort` (paths in raw units: per year of age, per disease).
PHENOTYPE_DESIGN = {
    "a_paths": {"m_common": {"age": 0.03, "n_diseases": 0.5}, "m_age": {"age": 0.03},
                "m_disease": {"n_diseases": 0.5}},
    "b_paths": {"m_common": 0.6, "m_age": 0.5, "m_disease": 0.5},
    "direct": {"age": 0.01, "n_diseases": 0.1, "male": 0.2},
    "intercept": 0.5,
    "twins": {"m_common_twin": "m_common"},
}


def phenotype_cohort(
    clinical: pd.DataFrame | None = None,
    n: int = 1521,
    n_null: int = 10,
    twin_sd: float = 0.4,
    seed: int = 0,
    design: Mapping | None = None,
) -> pd.DataFrame:
    """A simulated cohort shaped like SSInfNet's question: phenotypes mediating age and disease.

    Mediators (:data:`PHENOTYPE_DESIGN`): ``m_common`` depends on age and on the number of underlying
    diseases, ``m_age`` on age only, ``m_disease`` on diseases only, each raising severity (b paths);
    ``m_common_twin`` is ``m_common`` plus N(0, twin_sd^2) noise, a redundant copy (|r| > 0.8) with no
    effect of its own, for the correlation filter to remove; ``null_*`` are pure noise. Gender has a
    direct effect only, so it has no true mediator.

    Parameters
    ----------
    clinical : DataFrame or None
        Covariates are resampled from its complete rows (``age``, ``male``, ``n_diseases``); None: synthetic.
    n : int, default=1521
        Patients (default: the size of the iCTCF clinical table).
    n_null : int, default=10
    twin_sd : float > 0, default=0.4
        Noise added to each twin (mediator units).
    seed : int, default=0
    design : mapping, optional
        Replaces :data:`PHENOTYPE_DESIGN` (same keys).

    Returns
    -------
    pandas.DataFrame from :func:`simulate_cohort` plus the twin columns; ``attrs["design"]`` holds the design.
    """
    design = dict(PHENOTYPE_DESIGN if design is None else design)
    if not twin_sd > 0:
        raise ValueError(f"twin_sd must be > 0, got {twin_sd}")
    n = int(n)
    df = simulate_cohort(clinical, n, design["a_paths"], design["b_paths"], n_null, design.get("direct"),
                         seed=seed, intercept=float(design.get("intercept", 0.0)))
    rng = np.random.default_rng([int(seed), 1])  # its own stream: twins do not shift the cohort's draws
    position = df.columns.get_loc("severity_latent")
    for i, (twin, of) in enumerate(design.get("twins", {}).items()):
        if of not in df.columns:
            raise ValueError(f"design['twins']: {twin!r} copies unknown mediator {of!r}")
        df.insert(position + i, twin, df[of].to_numpy() + rng.normal(0.0, twin_sd, n))
    df.attrs["design"] = design
    return df


def with_truth(results: pd.DataFrame, design: Mapping | None = None) -> pd.DataFrame:
    """Add the planted indirect effect ``truth`` (``a[m][x] * b[m]``; 0 for twins and nulls) to results.

    ``results`` needs columns ``x`` and ``mediator`` (e.g. stacked :func:`univariate_mediation` outputs);
    ``design`` defaults to :data:`PHENOTYPE_DESIGN`. Returns a copy with a float ``truth`` column.
    """
    design = PHENOTYPE_DESIGN if design is None else design
    missing = [c for c in ("x", "mediator") if c not in results.columns]
    if missing:
        raise ValueError(f"results: missing column(s) {missing}")
    out = results.copy()
    out["truth"] = [true_indirect(design["a_paths"], design["b_paths"], x).get(m, 0.0)
                    for x, m in zip(out["x"], out["mediator"])]
    return out


def true_indirect(a_paths: Mapping[str, Mapping[str, float]], b_paths: Mapping[str, float], x: str) -> dict:
    """Planted indirect effect ``a[m][x] * b[m]`` of every mediator (0 where a path is absent)."""
    names = list(dict.fromkeys([*a_paths, *b_paths]))
    return {m: a_paths.get(m, {}).get(x, 0.0) * b_paths.get(m, 0.0) for m in names}


def _rep_seeds(seed: int, n_rep: int) -> np.ndarray:
    if int(n_rep) < 1:
        raise ValueError(f"n_rep must be >= 1, got {n_rep}")
    return np.random.default_rng(seed).integers(0, 2**31 - 1, int(n_rep))


def _y_for(outcome: str) -> str:
    if outcome not in ("linear", "logistic"):
        raise ValueError(f"outcome must be 'linear' or 'logistic', got {outcome!r}")
    return "severity_latent" if outcome == "linear" else "severity_binary"


def coverage_study(
    n_rep: int = 200,
    n: int = 300,
    a: float = 0.03,
    b: float = 0.8,
    x: str = "age",
    direct: float = 0.02,
    outcome: str = "linear",
    n_boot: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
    clinical: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Coverage of the percentile-bootstrap interval of one planted indirect effect ``a * b``.

    One mediator ``m`` (``m ~ a * x``, ``severity ~ b * m + direct * x``), no other paths, so the truth is
    exactly ``a * b`` for ``outcome="linear"`` (OLS on ``severity_latent``) and ``outcome="logistic"``
    (Logit on ``severity_binary``).

    Returns
    -------
    pandas.DataFrame
        One row per replicate: ``rep``, ``n``, ``truth``, ``indirect``, ``ci_low``, ``ci_high``, ``covered``
        (bool), ``significant`` (bootstrap interval excludes 0). Coverage is ``covered.mean()``.

    Notes
    -----
    Measured with 1,000 replicates (n = 300, 1,000 resamples, seed 7): linear 0.946 (MC SE 0.007),
    the misses lopsided (4.0 % of intervals below the truth, 1.4 % above: the product's sampling
    distribution is skewed); logistic 0.937 (0.008; 2.8 % and 3.5 %). An earlier 0.92 from 200
    replicates (MC SE 0.015) was within two SE of these.
    """
    y = _y_for(outcome)
    rows = []
    for rep, s in enumerate(_rep_seeds(seed, n_rep)):
        df = simulate_cohort(clinical, n, {"m": {x: a}}, {"m": b}, 0, {x: direct}, seed=int(s))
        r = univariate_mediation(df, x, ["m"], y, n_boot=n_boot, seed=int(s), outcome=outcome, alpha=alpha).iloc[0]
        rows.append({"rep": rep, "n": n, "truth": a * b, "indirect": r.indirect, "ci_low": r.ci_low,
                     "ci_high": r.ci_high, "covered": bool(r.ci_low <= a * b <= r.ci_high),
                     "significant": bool(r.ci_low > 0 or r.ci_high < 0)})
    return pd.DataFrame(rows)


def null_false_positive_rate(
    n_rep: int = 100,
    n: int = 300,
    n_null: int = 20,
    a_null: float = 0.03,
    x: str = "age",
    direct: float = 0.04,
    outcome: str = "logistic",
    rule: str = "paper",
    n_boot: int = 0,
    alpha: float = 0.05,
    seed: int = 0,
    clinical: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """How often null mediators are called significant (after adjustment across them).

    Half of the ``n_null`` mediators (``a_only_*``) depend on ``x`` (slope ``a_null``) but not on the
    outcome — the hard case, since their a path is real — the others (``null_*``) on nothing; ``x`` has a
    direct effect so the paper rule's ``y ~ x`` test is passed. Every significant call is a false positive.

    Returns
    -------
    pandas.DataFrame
        One row per replicate: ``rep``, ``n_tests``, ``n_false_positive``, ``any_false_positive`` (bool,
        the family-wise error), ``fp_rate`` (n_false_positive / n_tests).
    """
    y = _y_for(outcome)
    if int(n_null) < 1:
        raise ValueError(f"n_null must be >= 1, got {n_null}")
    if rule == "bootstrap" and int(n_boot) < 1:
        raise ValueError("n_boot must be >= 1 for rule='bootstrap'")
    n_a = int(n_null) // 2
    a_paths = {f"a_only_{i + 1}": {x: a_null} for i in range(n_a)}
    rows = []
    for rep, s in enumerate(_rep_seeds(seed, n_rep)):
        df = simulate_cohort(clinical, n, a_paths, {}, int(n_null) - n_a, {x: direct}, seed=int(s))
        meds = [c for c in df.columns if c.startswith(("a_only_", "null_"))]
        r = univariate_mediation(df, x, meds, y, n_boot=n_boot, seed=int(s), outcome=outcome, alpha=alpha,
                                 rule=rule)
        k = int(r["significant"].sum())
        rows.append({"rep": rep, "n_tests": len(meds), "n_false_positive": k, "any_false_positive": k > 0,
                     "fp_rate": k / len(meds)})
    return pd.DataFrame(rows)


def power_curve(
    sample_sizes: Sequence[int],
    n_rep: int = 100,
    a: float = 0.03,
    b: float = 0.8,
    n_null: int = 10,
    x: str = "age",
    direct: float = 0.02,
    outcome: str = "logistic",
    rule: str = "paper",
    n_boot: int = 0,
    alpha: float = 0.05,
    seed: int = 0,
    clinical: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Probability of detecting one planted mediator among ``n_null`` null ones, per sample size.

    Returns
    -------
    pandas.DataFrame
        One row per sample size: ``n``, ``power`` (fraction of replicates calling the planted mediator
        significant), ``se`` (binomial standard error), ``fp_rate`` (mean fraction of nulls called),
        ``n_rep``, ``rule``.
    """
    y = _y_for(outcome)
    sizes = [int(s) for s in sample_sizes]
    if not sizes or min(sizes) < 10:
        raise ValueError(f"sample_sizes must be non-empty, each >= 10, got {list(sample_sizes)}")
    if rule == "bootstrap" and int(n_boot) < 1:
        raise ValueError("n_boot must be >= 1 for rule='bootstrap'")
    rows = []
    for i, size in enumerate(sizes):
        hits, fps = [], []
        for s in _rep_seeds(seed + 7919 * i, n_rep):
            df = simulate_cohort(clinical, size, {"m": {x: a}}, {"m": b}, n_null, {x: direct}, seed=int(s))
            meds = ["m"] + [f"null_{j + 1}" for j in range(n_null)]
            r = univariate_mediation(df, x, meds, y, n_boot=n_boot, seed=int(s), outcome=outcome, alpha=alpha,
                                     rule=rule).set_index("mediator")
            hits.append(bool(r.loc["m", "significant"]))
            fps.append(float(r.loc[meds[1:], "significant"].mean()) if n_null else np.nan)
        p = float(np.mean(hits))
        rows.append({"n": size, "power": p, "se": float(np.sqrt(p * (1 - p) / len(hits))),
                     "fp_rate": float(np.mean(fps)), "n_rep": len(hits), "rule": rule})
    return pd.DataFrame(rows)
