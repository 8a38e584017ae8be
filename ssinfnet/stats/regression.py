"""Regressions behind the mediation analysis: OLS and logistic fits, vectorised bootstraps, p-values.

:func:`ols` and :func:`logit` fit one design matrix (standardised internally, slopes returned on the
original scale; statsmodels' ``OLS`` / ``Logit`` give the same estimates); :func:`batched_ols` and
:func:`batched_logit` fit all bootstrap resamples at once from :func:`bootstrap_weights` (multinomial
resample counts as weights); :func:`bootstrap_pvalue` and :func:`adjust_pvalues` (Benjamini–Hochberg,
Bonferroni) turn them into tests. Used by :mod:`ssinfnet.stats.mediation`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


ADJUST = ("bh", "bonferroni", "none")


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
    """Least squares with t-test p-values.

    Parameters
    ----------
    X : ndarray (n, p), first column the intercept (ones)
    y : ndarray (n,)

    Returns
    -------
    beta, se, p : ndarray (p,) each; p two-sided from t with n - p degrees of freedom.
    """
    n, p = X.shape
    if n <= p:
        raise np.linalg.LinAlgError(f"{n} rows for {p} coefficients")
    Xs, mean, sd = _standardise(X)
    xtx_inv = np.linalg.inv(Xs.T @ Xs)
    beta_s = xtx_inv @ Xs.T @ y
    resid = y - Xs @ beta_s
    sigma2 = resid @ resid / (n - p)
    se_s = np.sqrt(sigma2 * np.diag(xtx_inv))
    beta = _unscale(beta_s, mean, sd)
    se = np.concatenate([[np.nan], se_s[1:] / sd])  # the intercept's se is not used here
    t = beta_s / se_s
    return beta, se, 2 * stats.t.sf(np.abs(t), n - p)


def logit(X: np.ndarray, y: np.ndarray, max_iter: int = 100, tol: float = 1e-10):
    """Maximum-likelihood logistic regression (Newton-Raphson) with Wald z p-values.

    Parameters
    ----------
    X : ndarray (n, p), first column the intercept
    y : ndarray (n,) of 0/1

    Returns
    -------
    beta, se, p : ndarray (p,) each (intercept se is NaN).

    Raises
    ------
    numpy.linalg.LinAlgError
        No convergence within ``max_iter`` steps (e.g. perfect separation).
    """
    Xs, mean, sd = _standardise(X)
    b = np.zeros(X.shape[1])
    for _ in range(max_iter):
        mu = 1.0 / (1.0 + np.exp(-(Xs @ b)))
        H = (Xs * (mu * (1 - mu))[:, None]).T @ Xs
        step = np.linalg.solve(H, Xs.T @ (y - mu))
        b = b + step
        if not np.all(np.isfinite(b)):
            break
        if np.max(np.abs(step)) < tol:
            break
    else:
        raise np.linalg.LinAlgError("logistic regression did not converge (separation?)")
    if not np.all(np.isfinite(b)) or np.max(np.abs(b[1:])) > 30:  # |slope| > 30 SD^-1: separated data
        raise np.linalg.LinAlgError("logistic regression did not converge (separation?)")
    mu = 1.0 / (1.0 + np.exp(-(Xs @ b)))
    cov = np.linalg.inv((Xs * (mu * (1 - mu))[:, None]).T @ Xs)
    se_s = np.sqrt(np.diag(cov))
    beta = _unscale(b, mean, sd)
    se = np.concatenate([[np.nan], se_s[1:] / sd])
    return beta, se, 2 * stats.norm.sf(np.abs(b / se_s))


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


# ---------------------------------------------------------------------------------------------------------
# multiple testing
def adjust_pvalues(p: Sequence[float], method: str = "bh") -> np.ndarray:
    """Adjust p-values for multiple testing; NaN entries stay NaN and do not count as tests.

    Parameters
    ----------
    p : array-like of float in [0, 1] (or NaN)
    method : {"bh", "bonferroni", "none"}
        ``"bh"``: Benjamini-Hochberg step-up, ``p_(i) * m / i`` made monotone from the top, capped at 1.

    Returns
    -------
    ndarray of the same length.
    """
    if method not in ADJUST:
        raise ValueError(f"adjust must be one of {ADJUST}, got {method!r}")
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    q = p[ok]
    if np.any((q < 0) | (q > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    m = q.size
    if m == 0 or method == "none":
        out[ok] = q
        return out
    if method == "bonferroni":
        out[ok] = np.minimum(1.0, q * m)
        return out
    order = np.argsort(q)
    scaled = q[order] * m / np.arange(1, m + 1)
    scaled = np.minimum.accumulate(scaled[::-1])[::-1]
    adj = np.empty(m)
    adj[order] = np.minimum(1.0, scaled)
    out[ok] = adj
    return out
