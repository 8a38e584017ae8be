"""Sensitivity of a natural indirect effect to unmeasured mediator-outcome confounding (the rho of Imai et al.).

Sequential ignorability cannot be tested: a factor that raises both a lesion phenotype and the risk of
severity (disease duration at the scan, viral load, treatment) would create an "indirect effect" out of
nothing. Imai, Keele & Yamamoto (2010, Statistical Science 25:51-71) measure how strong it would have to
be by the correlation ``rho`` between the errors of the mediator model and of the (latent) outcome
model, which sequential ignorability sets to zero. For a normal linear mediator and a probit outcome:

    m  = alpha2 + a z + xi2'C + e2,          e2 ~ N(0, sigma2^2)
    y* = alpha3 + d z + g m + xi3'C + e3,    e3 ~ N(0, 1),   y = 1[y* > 0],   corr(e2, e3) = rho

Given ``rho``, the observed probit slopes (tilde) identify the structural ones: with ``s = sqrt(1 - rho^2)``,
``g = s g~ - rho / sigma2``, ``d = s d~ + rho a / sigma2`` (and likewise intercept and covariates), and

    NIE(rho) = mean_i [ Phi(mu_i(1, 1) / v) - Phi(mu_i(1, 0) / v) ],   v = sqrt(g^2 sigma2^2 + 2 rho g sigma2 + 1)

with ``mu_i(t, t') = alpha3 + d t + g (alpha2 + a t' + xi2'C_i) + xi3'C_i``. At ``rho = 0`` this is the
probit natural indirect effect of :mod:`ssinfnet.stats.natural_effects`. The NIE vanishes where
``g = 0``, at ``rho_zero = sigma2 g~ / sqrt(1 + sigma2^2 g~^2)``; ``rho_zero^2`` is the product of the
shares of the two residual variances an unmeasured confounder would have to explain (Imai et al.'s
``R2*_M R2*_Y``). ``rho_ci`` is where the ``1 - alpha`` interval first includes zero: a draw's NIE changes
sign exactly at its own ``rho_zero``, so this needs no grid of refits.

The analysis is on the probit scale whatever link the main analysis used (logit and probit natural
effects agree closely; the rho parameterisation needs normal errors).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import special

from .natural_effects import _tasks, _validate
from .regression import fit_binary

SENSITIVITY_COLUMNS = ["x", "mediator", "x0", "x1", "nie_probit", "rho_zero", "r2_product", "rho_ci", "note"]


def _fits(df, x, mediator, y, covariates, contrast):
    (head, (z, mv, yv, C, _)), = _tasks(df, x, [mediator], y, list(covariates), contrast)
    n = len(z)
    Xm = np.column_stack([np.ones(n), z, C])
    med = sm.OLS(mv, Xm).fit()
    out = fit_binary(np.column_stack([np.ones(n), z, mv, C]), yv, "probit")
    return head, C, med, out


def _draws(med, out, n_rep, seed):
    rng = np.random.default_rng(seed)
    if n_rep == 0:
        return np.asarray(out.params)[None], np.asarray(med.params)[None]
    theta = rng.multivariate_normal(np.asarray(out.params), np.asarray(out.cov_params()), size=n_rep)
    alpha = rng.multivariate_normal(np.asarray(med.params), np.asarray(med.cov_params()), size=n_rep)
    return theta, alpha


def nie_at_rho(theta: np.ndarray, alpha: np.ndarray, sigma: float, C: np.ndarray, rho: float) -> np.ndarray:
    """NIE (risk difference) under error correlation ``rho`` for each draw.

    Parameters
    ----------
    theta : (R, 3 + k) observed probit coefficients [1, z, m, C]
    alpha : (R, 2 + k) mediator coefficients [1, z, C]
    sigma : residual SD of the mediator model
    C : (n, k) covariates of the patients
    rho : float in (-1, 1)

    Returns
    -------
    ndarray (R,)
    """
    if not -1 < rho < 1:
        raise ValueError(f"rho must be in (-1, 1), got {rho}")
    s = np.sqrt(1 - rho**2)
    g = s * theta[:, [2]] - rho / sigma
    d = s * theta[:, [1]] + rho * alpha[:, [1]] / sigma
    base = s * (theta[:, [0]] + theta[:, 3:] @ C.T) + rho * (alpha[:, [0]] + alpha[:, 2:] @ C.T) / sigma
    m0 = alpha[:, [0]] + alpha[:, 2:] @ C.T
    v = np.sqrt(g**2 * sigma**2 + 2 * rho * g * sigma + 1)
    # base already holds alpha3 + xi3'C (structural); add the mediator's mean at t' = 1 and 0
    mu11 = base + d + g * (m0 + alpha[:, [1]])
    mu10 = base + d + g * m0
    return (special.ndtr(mu11 / v) - special.ndtr(mu10 / v)).mean(1)


def rho_curve(
    df: pd.DataFrame,
    x: str,
    mediator: str,
    y: str,
    covariates: Sequence[str] = (),
    contrast: tuple[float, float] | None = None,
    rhos: Sequence[float] = tuple(np.round(np.linspace(-0.9, 0.9, 37), 2)),
    n_rep: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """NIE of ``x`` through ``mediator`` as a function of the error correlation ``rho`` (for a plot).

    Parameters
    ----------
    df, x, mediator, y, covariates, contrast
        As in :func:`ssinfnet.stats.natural_effects.natural_effects`.
    rhos : sequence of float in (-1, 1), default -0.9 ... 0.9 by 0.05
    n_rep : int >= 10, default=1000
        Quasi-Bayesian parameter draws for the intervals.
    seed : int, default=0
    alpha : float in (0, 1), default=0.05

    Returns
    -------
    pandas.DataFrame with ``rho``, ``nie`` (at the estimates), ``nie_low``, ``nie_high``;
    ``attrs`` holds ``rho_zero`` and ``rho_ci`` (see the module docstring).
    """
    if int(n_rep) < 10:
        raise ValueError(f"n_rep must be >= 10, got {n_rep}")
    _validate(df, x, [mediator], y, list(covariates), "probit", "quasi-bayes", n_rep, alpha)
    rhos = np.asarray(rhos, float)
    if rhos.ndim != 1 or rhos.size == 0 or np.any(np.abs(rhos) >= 1):
        raise ValueError("rhos must be a non-empty sequence of values in (-1, 1)")
    head, C, med, out = _fits(df, x, mediator, y, covariates, contrast)
    sigma = float(np.sqrt(med.scale))
    theta, alpha_ = _draws(med, out, int(n_rep), seed)
    point_t, point_a = np.asarray(out.params)[None], np.asarray(med.params)[None]
    rows = []
    for r in rhos:
        draws = nie_at_rho(theta, alpha_, sigma, C, float(r))
        lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
        rows.append({"rho": float(r), "nie": float(nie_at_rho(point_t, point_a, sigma, C, float(r))[0]),
                     "nie_low": lo, "nie_high": hi})
    res = pd.DataFrame(rows)
    res.attrs.update(_rho_summary(med, out, theta, alpha_, alpha), x=x, mediator=mediator)
    return res


def _rho_zero(g_tilde, sigma):
    return sigma * g_tilde / np.sqrt(1 + sigma**2 * g_tilde**2)


def _rho_summary(med, out, theta, alpha_draws, alpha) -> dict:
    sigma = float(np.sqrt(med.scale))
    rho0 = float(_rho_zero(out.params[2], sigma))
    # each draw's NIE has the sign of a_r * g_r(rho), and g_r(rho) > 0 exactly when rho < rho0_r
    r0 = _rho_zero(theta[:, 2], sigma)
    a_pos = alpha_draws[:, 1] > 0
    grid = np.linspace(0, np.sign(rho0) * 0.999, 1000) if rho0 != 0 else np.zeros(1)
    pos = (a_pos[:, None] & (grid[None] < r0[:, None])) | (~a_pos[:, None] & (grid[None] > r0[:, None]))
    share = pos.mean(0)
    includes = (share >= alpha / 2) & (share <= 1 - alpha / 2)
    rho_ci = float(grid[np.argmax(includes)]) if includes.any() else float(np.sign(rho0))
    return {"rho_zero": rho0, "r2_product": rho0**2, "rho_ci": rho_ci}


def sensitivity_table(
    df: pd.DataFrame,
    results: pd.DataFrame,
    y: str,
    only_significant: bool = True,
    n_rep: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """``rho_zero`` and ``rho_ci`` for every reported mediator of a natural-effects table.

    Parameters
    ----------
    df : the patient table the results came from
    results : DataFrame from :func:`ssinfnet.stats.natural_effects.natural_effects_by_exposure` (columns
        ``x``, ``mediator``, ``x0``, ``x1``, ``covariates``, ``significant``)
    y : str, the 0/1 outcome column
    only_significant : bool, default=True
        Analyse the significant rows only (those the chapter reports).
    n_rep, seed, alpha
        As in :func:`rho_curve`.

    Returns
    -------
    pandas.DataFrame with ``SENSITIVITY_COLUMNS``: ``nie_probit`` (the probit NIE at rho = 0),
    ``rho_zero`` (NIE = 0), ``r2_product`` (= rho_zero^2), ``rho_ci`` (the interval first includes
    zero; 0 when it already does), ``note`` (failed fits).
    """
    need = ["x", "mediator", "x0", "x1", "covariates", "significant"]
    missing = [c for c in need if c not in results.columns]
    if missing:
        raise ValueError(f"results: missing column(s) {missing}")
    if int(n_rep) < 10:
        raise ValueError(f"n_rep must be >= 10, got {n_rep}")
    rows = []
    todo = results[results["significant"].astype(bool)] if only_significant else results
    for r in todo.itertuples(index=False):
        cov = [c for c in str(r.covariates).split("+") if c]
        row = {"x": r.x, "mediator": r.mediator, "x0": r.x0, "x1": r.x1, "note": ""}
        try:
            _validate(df, r.x, [r.mediator], y, cov, "probit", "quasi-bayes", n_rep, alpha)
            head, C, med, out = _fits(df, r.x, r.mediator, y, cov, (r.x0, r.x1))
        except np.linalg.LinAlgError as err:
            rows.append({**row, "note": f"fit failed: {err}"})
            continue
        theta, alpha_ = _draws(med, out, int(n_rep), seed)
        sigma = float(np.sqrt(med.scale))
        nie0 = nie_at_rho(np.asarray(out.params)[None], np.asarray(med.params)[None], sigma, C, 0.0)[0]
        rows.append({**row, "nie_probit": float(nie0), **_rho_summary(med, out, theta, alpha_, alpha)})
    return pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS)
