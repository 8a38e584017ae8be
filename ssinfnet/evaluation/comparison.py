"""Is model B better than model A on these test images? Paired bootstrap over images, pooled over seeds.

The unit of the comparison is the test image: both models score the same images, so the difference is
taken per image (paired), averaged over training seeds, and its uncertainty comes from resampling images
(and, with several seeds, the seeds too: a second source of variation a single seed hides). The verdict
reads the interval: "helps" when it lies above zero, "hurts" below, otherwise "no detectable difference"
at this budget.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["MIN_BOOT", "TABLE_COLUMNS", "OPTIONAL_COLUMNS", "NOT_ESTIMABLE", "PairedComparison", "paired_bootstrap",
           "two_sided_p", "verdict", "with_optional_columns"]

#: The least number of bootstrap resamples :func:`paired_bootstrap` accepts.
MIN_BOOT = 100

#: The columns of a table of comparisons (chapter 5's ``comparisons`` artifact), in this order: what is
#: compared (claim, task, class, ``metric``: the per-image score compared, "dice" or "auc"; model_a, model_b:
#: the estimate is B - A), :class:`PairedComparison`'s numbers, which seeds failed, ``seed_means``
#: (';'-joined per-seed mean differences), the verdict and a note.
TABLE_COLUMNS = ("claim", "task", "class", "metric", "model_a", "model_b", "estimate", "ci_low", "ci_high", "level",
                 "n_seeds", "seeds_failed", "n_images", "seed_means", "p_not_better", "verdict", "note")
#: Columns a table written before they existed may lack, with the value they had then.
OPTIONAL_COLUMNS = {"metric": "dice"}

#: The verdict's prefix of a comparison that could not be made ("not estimable: <why>").
NOT_ESTIMABLE = "not estimable"


def with_optional_columns(table):
    """A copy of a comparisons table (pandas DataFrame) with every :data:`OPTIONAL_COLUMNS` column present and
    its missing cells filled with the value a table had before the column existed."""
    table = table.copy()
    for column, value in OPTIONAL_COLUMNS.items():
        table[column] = table[column].fillna(value) if column in table.columns else value
    return table


@dataclass(frozen=True)
class PairedComparison:
    """B - A: the pooled mean per-image difference, its bootstrap interval and the seed spread."""

    estimate: float
    ci_low: float
    ci_high: float
    level: float
    n_images: int
    n_seeds: int
    n_boot: int
    p_not_better: float          # bootstrap share of resamples with B - A <= 0
    seed_means: tuple            # mean difference of each seed
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self, name_a: str = "A", name_b: str = "B", digits: int = 3) -> str:
        """e.g. "SSInfNet - SInfNet = +0.021 (95% CI -0.010 to +0.052; 3 seeds x 48 images): no detectable difference"."""
        f = f"{{:+.{digits}f}}"
        return (f"{name_b} - {name_a} = {f.format(self.estimate)} ({self.level:.0%} CI {f.format(self.ci_low)} to "
                f"{f.format(self.ci_high)}; {self.n_seeds} seed{'s' if self.n_seeds != 1 else ''} x "
                f"{self.n_images} images): {self.verdict}")


def verdict(ci_low: float, ci_high: float) -> str:
    """"helps" (interval above 0), "hurts" (below 0) or "no detectable difference"."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "no estimate"
    if ci_low > 0:
        return "helps"
    if ci_high < 0:
        return "hurts"
    return "no detectable difference"


def paired_bootstrap(a, b, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
                     resample_seeds: bool = True) -> PairedComparison:
    """Paired bootstrap of mean(B - A) over images (and seeds).

    Parameters
    ----------
    a, b : array (n_images,) or (n_seeds, n_images)
        Per-image scores (e.g. Dice) of models A and B on the same images in the same order; row s of
        each is training seed s. NaN (an image a protocol does not score) is dropped pairwise per image
        (an image is used only where every seed of both models scored it).
    n_boot : resamples (>= 100).
    seed : seed of the resampling.
    level : interval coverage in (0, 1); percentile interval.
    resample_seeds : with several seeds, resample seeds as well as images (two-level bootstrap).

    Returns
    -------
    PairedComparison

    Raises
    ------
    ValueError for shapes that differ, fewer than 2 usable images, n_boot < 100 or level outside (0, 1).
    """
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"a and b must have the same shape (n_images,) or (n_seeds, n_images); got "
                         f"{np.shape(a)} and {np.shape(b)}")
    if n_boot < MIN_BOOT:
        raise ValueError(f"n_boot must be >= {MIN_BOOT}, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    keep = np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0)
    d = (b - a)[:, keep]
    n_seeds, n = d.shape
    if n < 2:
        raise ValueError(f"need at least 2 images scored by both models, got {n}")
    rng = np.random.default_rng(seed)
    img = rng.integers(0, n, size=(n_boot, n))
    if resample_seeds and n_seeds > 1:
        rows = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
        boots = np.array([d[r][:, i].mean() for r, i in zip(rows, img)])
    else:
        per_image = d.mean(axis=0)
        boots = per_image[img].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(boots, [tail, 1 - tail])
    return PairedComparison(estimate=float(d.mean()), ci_low=float(low), ci_high=float(high), level=level,
                            n_images=n, n_seeds=n_seeds, n_boot=n_boot, p_not_better=float(np.mean(boots <= 0)),
                            seed_means=tuple(float(x) for x in d.mean(axis=1)), verdict=verdict(low, high))


def two_sided_p(p_not_better, n_boot: int) -> np.ndarray:
    """Two-sided bootstrap p-value of "B - A = 0" from :class:`PairedComparison`'s ``p_not_better`` (the share
    of ``n_boot`` resamples at or below 0): 2 (min(k, n_boot - k) + 1) / (n_boot + 1), at most 1, where k is
    the count at or below 0. The +1 keeps it above 0: no finite bootstrap can say "p = 0", only "at most
    2 / (n_boot + 1)". NaN stays NaN. ``p_not_better``: float or array in [0, 1]; ``n_boot`` >= 1."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    p = np.asarray(p_not_better, dtype=float)
    if np.any((p[np.isfinite(p)] < 0) | (p[np.isfinite(p)] > 1)):
        raise ValueError("p_not_better must lie in [0, 1]")
    k = np.round(p * n_boot)
    return np.minimum(1.0, 2 * (np.minimum(k, n_boot - k) + 1) / (n_boot + 1))

