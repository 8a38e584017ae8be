"""Regressions behind the paper's mediation rule: OLS and logistic fits, vectorised bootstraps, p-values.

:func:`ols` and :func:`logit` are statsmodels' ``OLS`` / ``Logit`` on one design matrix, returning
(coefficients, standard errors, p-values) and raising ``LinAlgError`` on a fit that means nothing
(constant regressor, separation). statsmodels has no vectorised bootstrap, so :func:`batched_ols` and
:func:`batched_logit` fit all bootstrap resamples at once from :func:`bootstrap_weights` (multinomial
resample counts as weights; tested against statsmodels fits of the resampled rows), and
:func:`bootstrap_pvalue` turns them into a test. Multiple testing lives in
:mod:`ssinfnet.stats.multiplicity` (``adjust_pvalues`` is re-exported here for old callers).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import statsmodels.api as sm
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationError, PerfectSeparationWarning

from .multiplicity import METHODS, adjust_pvalues  # noqa: F401  (re-exported: the old home of adjust_pvalues)

ADJUST = tuple(METHODS)


# ---------------------------------------------------------------------------------------------------------
# regressions
def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre and scale the non-intercept columns (column 0 is the intercept); slopes are scale-free."""
    mean = X[:, 1:].mean(0)
    sd = X[:, 1:].std(0)
    if np.any(sd == 0):
        raise np.linalg.LinAlgError("a regressor is constant")
    Xs = X.copy()
    Xs[:, 1:] = (X[:, 1:] - mean) / sd
    return Xs, mean, sd


def _unscale(beta_s: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Coefficients of the original columns from those of the standardised ones; ``beta_s`` (..., p)."""
    slopes = beta_s[..., 1:] / sd
    intercept = beta_s[..., :1] - (slopes * mean).sum(-1, keepdims=True)
    return np.concatenate([intercept, slopes], -1)


def ols(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares (statsmodels ``OLS``) with t-test p-values.

    Parameters
    ----------
    X : ndarray (n, p), first column the intercept (ones)
    y : ndarray (n,)

    Returns
    -------
    beta, se, p : ndarray (p,) each; p two-sided from t with n - p degrees of freedom.

    Raises
    ------
    numpy.linalg.LinAlgError
        Fewer rows than coefficients, or a constant regressor besides the intercept.
    """
    n, p = X.shape
    if n <= p:
        raise np.linalg.LinAlgError(f"{n} rows for {p} coefficients")
    if np.any(np.ptp(X[:, 1:], axis=0) == 0):
        raise np.linalg.LinAlgError("a regressor is constant")
    fit = sm.OLS(y, X).fit()
    return np.asarray(fit.params), np.asarray(fit.bse), np.asarray(fit.pvalues)


LINKS = ("logit", "probit", "identity")


def fit_binary(X: np.ndarray, y: np.ndarray, link: str = "logit", max_iter: int = 100):
    """Fit a 0/1 outcome by statsmodels ``Logit``, ``Probit`` or ``OLS`` (``link="identity"``, a linear
    probability model) and return the results object (``params``, ``bse``, ``pvalues``, ``cov_params()``).

    Raises
    ------
    numpy.linalg.LinAlgError
        A constant regressor, no convergence within ``max_iter`` steps, or (quasi-)perfect separation:
        statsmodels only warns, and a separated fit's slopes and p-values mean nothing.
    """
    if link not in LINKS:
        raise ValueError(f"link must be one of {LINKS}, got {link!r}")
    if np.any(np.ptp(X[:, 1:], axis=0) == 0):
        raise np.linalg.LinAlgError("a regressor is constant")
    if link == "identity":
        return sm.OLS(y, X).fit()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = (sm.Logit if link == "logit" else sm.Probit)(y, X).fit(disp=0, maxiter=max_iter)
        except (np.linalg.LinAlgError, PerfectSeparationError) as err:
            raise np.linalg.LinAlgError(f"{link} regression failed: {err}") from None
    beta = np.asarray(fit.params)
    separated = any(issubclass(w.category, (PerfectSeparationWarning, ConvergenceWarning)) for w in caught)
    sd = X[:, 1:].std(0)
    if separated or not fit.mle_retvals["converged"] or not np.all(np.isfinite(beta)) \
            or np.max(np.abs(beta[1:] * sd)) > 30:  # |slope| > 30 per SD: separated data
        raise np.linalg.LinAlgError(f"{link} regression did not converge (separation?)")
    return fit


def logit(X: np.ndarray, y: np.ndarray, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum-likelihood logistic regression (statsmodels ``Logit``, Newton) with Wald z p-values.

    Parameters
    ----------
    X : ndarray (n, p), first column the intercept
    y : ndarray (n,) of 0/1

    Returns
    -------
    beta, se, p : ndarray (p,) each.

    Raises
    ------
    numpy.linalg.LinAlgError
        As :func:`fit_binary`.
    """
    fit = fit_binary(X, y, "logit", max_iter)
    return np.asarray(fit.params), np.asarray(fit.bse), np.asarray(fit.pvalues)


def _outer_rows(Xs: np.ndarray) -> np.ndarray:
    """(n, p*p) row-wise outer products, so weighted Gram matrices become one matrix product."""
    n, p = Xs.shape
    return (Xs[:, :, None] * Xs[:, None, :]).reshape(n, p * p)


def _solve_many(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve A[i] x[i] = b[i] for a stack (k, p, p), (k, p); NaN rows where A[i] is singular or non-finite."""
    out = np.full(b.shape, np.nan)
    fine = np.all(np.isfinite(A), axis=(1, 2)) & np.all(np.isfinite(b), axis=1)
    try:
        out[fine] = np.linalg.solve(A[fine], b[fine][..., None])[..., 0]
    except np.linalg.LinAlgError:  # rare (degenerate resample): fall back to one system at a time
        for i in np.flatnonzero(fine):
            try:
                out[i] = np.linalg.solve(A[i], b[i])
            except np.linalg.LinAlgError:
                pass
    return out


def batched_ols(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least squares for many weight vectors at once.

    A bootstrap resample is the original rows weighted by how often each was drawn, so ``w`` (B, n) of
    counts gives the B resample fits without copying rows. Returns coefficients (B, p) in X's units;
    NaN for a resample whose Gram matrix is singular.
    """
    Xs, mean, sd = _standardise(X)
    n, p = Xs.shape
    G = (w @ _outer_rows(Xs)).reshape(-1, p, p)
    r = w @ (Xs * y[:, None])
    return _unscale(_solve_many(G, r), mean, sd)


def batched_logit(X: np.ndarray, y: np.ndarray, w: np.ndarray, max_iter: int = 50, tol: float = 1e-6,
                  start: np.ndarray | None = None) -> np.ndarray:
    """Weighted logistic regressions for many weight vectors (B, n) at once; (B, p), NaN if not converged.

    ``start`` (p,), in X's units, is the Newton starting point of every fit (the full-data estimate saves
    iterations); zeros by default.
    """
    Xs, mean, sd = _standardise(X)
    n, p = Xs.shape
    B = w.shape[0]
    XX = _outer_rows(Xs)
    b = np.zeros((B, p))
    if start is not None:
        b[:] = np.concatenate([[start[0] + np.sum(start[1:] * mean)], start[1:] * sd])
    active = np.ones(B, bool)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        eta = b[idx] @ Xs.T
        mu = 1.0 / (1.0 + np.exp(-eta))
        wa = w[idx]
        H = ((wa * mu * (1 - mu)) @ XX).reshape(-1, p, p)
        g = (wa * (y - mu)) @ Xs
        step = _solve_many(H, g)
        b[idx] += step
        done = np.all(np.abs(step) < tol, axis=1) | ~np.all(np.isfinite(b[idx]), axis=1)
        active[idx[done]] = False
    bad = active | ~np.all(np.isfinite(b), axis=1) | (np.max(np.abs(b[:, 1:]), axis=1) > 30)
    b[bad] = np.nan
    return _unscale(b, mean, sd)


def bootstrap_weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) float counts of each row in n_boot resamples of n rows drawn with replacement."""
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = (idx + n * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n * n_boot).reshape(n_boot, n).astype(float)


def bootstrap_pvalue(theta: np.ndarray) -> float:
    """Two-sided percentile-bootstrap p-value of H0: theta = 0 (see the module docstring); NaN if empty."""
    theta = theta[np.isfinite(theta)]
    B = theta.size
    if B == 0:
        return np.nan
    lo = (1 + np.sum(theta <= 0)) / (B + 1)
    hi = (1 + np.sum(theta >= 0)) / (B + 1)
    return float(min(1.0, 2 * min(lo, hi)))


def sur(Y: np.ndarray, designs: Sequence[np.ndarray], max_iter: int = 500, tol: float = 1e-12):
    """Seemingly unrelated regressions by iterated feasible GLS, which converges to maximum likelihood.

    The mediator block of a recursive SEM with free residual covariances is exactly this model, so its
    semopy (ML) estimates equal these up to the optimiser's tolerance; the SEM bootstrap refits it here
    in milliseconds instead of semopy's ~1 s per refit. Equations with identical designs reduce to OLS.

    Parameters
    ----------
    Y : ndarray (n, k), one column per equation
    designs : sequence of k ndarrays (n, p_j), each with its own regressors (intercept included)

    Returns
    -------
    coefficients : list of k ndarrays (p_j,)
    residual_cov : ndarray (k, k), divisor n (the ML estimate)

    Raises
    ------
    numpy.linalg.LinAlgError
        A singular design or residual covariance.
    """
    Y = np.asarray(Y, float)
    n, k = Y.shape
    if len(designs) != k:
        raise ValueError(f"designs: {len(designs)} matrices for {k} equations")
    off = np.cumsum([0] + [X.shape[1] for X in designs])
    beta = [np.linalg.lstsq(X, Y[:, j], rcond=None)[0] for j, X in enumerate(designs)]
    cross = [[Xi.T @ Xj for Xj in designs] for Xi in designs]
    xy = [[Xi.T @ Y[:, j] for j in range(k)] for Xi in designs]
    for _ in range(max_iter):
        R = Y - np.column_stack([X @ b for X, b in zip(designs, beta)])
        W = np.linalg.inv(R.T @ R / n)
        A = np.zeros((off[-1], off[-1]))
        rhs = np.zeros(off[-1])
        for i in range(k):
            for j in range(k):
                A[off[i]:off[i + 1], off[j]:off[j + 1]] = W[i, j] * cross[i][j]
                rhs[off[i]:off[i + 1]] += W[i, j] * xy[i][j]
        flat = np.linalg.solve(A, rhs)
        new = [flat[off[j]:off[j + 1]] for j in range(k)]
        change = max(float(np.max(np.abs(u - v))) for u, v in zip(new, beta))
        beta = new
        if change < tol:
            break
    R = Y - np.column_stack([X @ b for X, b in zip(designs, beta)])
    return beta, R.T @ R / n
