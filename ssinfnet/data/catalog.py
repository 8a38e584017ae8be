"""One entry point from a resolved data root to samples: real data when present, phantoms otherwise."""

from __future__ import annotations

from .phantoms import synthetic_subset
from .sample import Sample
from .semiseg import read_semiseg
from .sources import DataRoot

SUBSETS = ("train", "test", "unlabelled")


def load_samples(root: DataRoot, subset: str, *, synthetic_n: int | None = None, synthetic_size: int = 128,
                 limit: int | None = None, seed: int = 0) -> list[Sample]:
    """Samples of ``subset`` ("train", "test" or "unlabelled") from COVID-SemiSeg below ``root``, or
    synthetic phantoms when ``root`` is the embedded default (``synthetic_n`` of ``synthetic_size`` px).

    ``limit`` keeps the first ``limit`` samples (natural order; reduced profiles say so on their pages).
    """
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    if root.synthetic:
        samples = synthetic_subset(subset, synthetic_n, synthetic_size, seed)
    else:
        if not root.has("covid-semiseg"):
            from .io import DataError

            raise DataError(f"{root.path}: COVID-SemiSeg not found below the data root "
                            f"(run `python -m ssinfnet data locate`)")
        samples = read_semiseg(root.path, subset, limit=limit if subset == "unlabelled" else None)
    return samples[:limit] if limit is not None else samples
