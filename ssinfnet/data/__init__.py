"""The data layer: one place that knows each dataset's layout.

sources -> readers (one per source, all returning :class:`~ssinfnet.data.sample.Sample`) -> splits ->
transforms -> torch datasets.
"""

from .io import DataError
from .classes import BACKGROUND, CLASS_LABELS, CLASS_NAMES, CONSOLIDATION, GGO
from .sample import Sample

__all__ = ["DataError", "Sample", "BACKGROUND", "GGO", "CONSOLIDATION", "CLASS_NAMES", "CLASS_LABELS"]
