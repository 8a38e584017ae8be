"""Numeric checks of the book's own runs: reference numbers with a stated tolerance.

The notebooks print tables whose numbers come out of training (losses, validation Dice, test scores).
Those numbers differ in their last digits between machines: PyTorch and oneDNN choose CPU kernels by
instruction set (AVX-512, AVX2, SSE4.1, plain C), each kernel sums in another order, and a few
optimiser steps amplify the difference. So such numbers are never compared as printed text. A hidden
cell of the notebook calls :func:`expect_close` with the reference numbers of the smoke run on the
embedded synthetic default and a tolerance. Whether the networks learn at all is tested where they
train long enough to learn (``tests/test_learning.py``).

The tolerances below are about three times the largest difference measured between kernel choices
and well below what a broken run changes: a network that does not learn, a
loss that is not applied, a metric on the wrong images or a wrong label all move these numbers by
more than the tolerance.

Outputs that are exact by construction (counts, shapes, data-derived values, statistics of fixed
inputs) are still checked exactly, as printed text, by nbval's ``NBVAL_CHECK_OUTPUT``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

__all__ = ["DRAWS_ATOL", "INITIAL_LOSS_ATOL", "LOSS_ATOL", "SCORE_ATOL", "TEST_DICE_ATOL", "expect_close",
           "flatten", "is_reference_run"]

# Tolerances. Beside each: the largest difference of a checked number between the three kernel
# choices (default, ATEN_CPU_CAPABILITY=default, ONEDNN_MAX_CPU_ISA=SSE41) on one AMD EPYC, 2026-11-30.
#: Loss before any optimiser step (the data, the network's initialisation and the loss alone): < 0.001.
INITIAL_LOSS_ATOL = 0.01
#: Mean training loss of a smoke pretraining phase (SGD at lr 0.1 amplifies summation order): 0.091.
LOSS_ATOL = 0.25
#: Validation Dice, multi-class test meanDic, erased fractions, severity differences: 0.012.
SCORE_ATOL = 0.03
#: Statistics from seeded random draws (chapter 7: quasi-Bayesian intervals, simulated cohorts). No
#: network is involved; the draws pass through OpenBLAS/LAPACK (covariance factorisations, regressions),
#: whose kernels differ by at most 2e-16 on these numbers (OPENBLAS_CORETYPE Haswell, Sandybridge,
#: Prescott against the default, 2026-11-30). A coverage or FDR is a share of 6 replicates in smoke, so
#: a real change moves it by 0.17; a changed draw moves an effect by far more than this tolerance.
DRAWS_ATOL = 1e-6
#: Single-class test meanDic of the smoke models (min-max normalised maps of barely trained
#: networks, whose near-constant outputs the normalisation stretches): 0.030.
TEST_DICE_ATOL = 0.08


def is_reference_run(ctx) -> bool:
    """True for the run the reference numbers belong to: profile ``smoke`` on the synthetic default.

    ``ctx`` is a :class:`ssinfnet.book.context.RunContext`. Other runs (real data, other profiles) have no
    reference numbers.
    """
    return ctx.profile.name == "smoke" and ctx.synthetic


def flatten(values) -> dict[str, float]:
    """``{key: float}`` from a mapping, a ``pd.Series`` or a ``pd.DataFrame`` (keys ``"row/column"``)."""
    if isinstance(values, pd.DataFrame):
        return {f"{r}/{c}": float(v) for r, row in values.iterrows() for c, v in row.items()}
    if isinstance(values, pd.Series):
        return {str(k): float(v) for k, v in values.items()}
    if isinstance(values, Mapping):
        out = {}
        for k, v in values.items():
            if isinstance(v, (Mapping, pd.Series)):
                out.update({f"{k}/{kk}": vv for kk, vv in flatten(v).items()})
            else:
                out[str(k)] = float(v)
        return out
    raise TypeError(f"values must be a mapping, Series or DataFrame, got {type(values).__name__}")


def expect_close(actual, expected, *, atol: float, what: str) -> None:
    """Assert that every number of ``actual`` is within ``atol`` of ``expected``; NaN must match NaN.

    Parameters
    ----------
    actual : mapping, pd.Series or pd.DataFrame
        The numbers obtained (flattened with :func:`flatten`).
    expected : mapping
        The reference numbers, same keys (nested mappings for DataFrames: ``{row: {column: value}}``).
        NaN in ``expected`` asks for NaN in ``actual``.
    atol : float
        Absolute tolerance, > 0.
    what : str
        What the numbers are, for the message.

    Raises
    ------
    AssertionError
        Listing every missing, extra or out-of-tolerance entry with its value and the reference.
    """
    if not (isinstance(atol, (int, float)) and atol > 0):
        raise ValueError(f"atol must be a positive number, got {atol!r}")
    got, want = flatten(actual), flatten(expected)
    problems = [f"missing {k!r} (reference {v})" for k, v in want.items() if k not in got]
    problems += [f"unexpected {k!r} = {v}" for k, v in got.items() if k not in want]
    for k in want.keys() & got.keys():
        a, e = got[k], want[k]
        if math.isnan(e):
            if not math.isnan(a):
                problems.append(f"{k}: {a:.4f}, reference NaN")
        elif not (math.isfinite(a) and abs(a - e) <= atol):
            problems.append(f"{k}: {a:.4f}, reference {e:.4f} (|difference| {abs(a - e):.4f} > {atol})")
    if problems:
        raise AssertionError(f"{what}: {len(problems)} number(s) off the reference (tolerance {atol}):\n  "
                             + "\n  ".join(sorted(problems)))

