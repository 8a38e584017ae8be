"""The data layer: one place that knows each dataset's layout.

sources -> readers (one per source, all returning :class:`~ssinfnet.data.sample.Sample`) -> splits ->
transforms -> torch datasets.
"""

from .io import DataError
from .sample import BACKGROUND, CLASS_NAMES, CONSOLIDATION, GGO, Sample

__all__ = ["DataError", "Sample", "BACKGROUND", "GGO", "CONSOLIDATION", "CLASS_NAMES"]
