"""One function per chapter: ``run(ctx)`` computes a chapter's results and records its artifacts.

The notebooks call these (narrative + one call + figures); so does the command line,
``python -m ssinfnet stage 03``. Each stage module holds one chapter; :mod:`.variants` holds what the
training stages share, :mod:`.shifts` chapter 5's lung-restriction and shift benchmark. What a stage reads and writes is declared in :mod:`ssinfnet.book.artifacts`.
"""
from __future__ import annotations

import importlib

from ..artifacts import STAGE_NAMES

#: Chapter number -> module of this package holding its ``run(ctx, progress=True)``.
STAGE_MODULES = {"01": "data", "02": "pretraining", "03": "single", "04": "multi", "05": "evaluation",
                 "06": "severity", "07": "statistics"}


def stage_number(key: str) -> str:
    """"03", "3", "03_single" or "single" -> "03"; ValueError listing the stages otherwise."""
    key = str(key).strip()
    for number, name in STAGE_NAMES.items():
        if key in (number, number.lstrip("0"), name, name[3:], STAGE_MODULES[number]):
            return number
    raise ValueError(f"unknown stage {key!r}; stages: "
                     + ", ".join(f"{n} ({STAGE_MODULES[n]})" for n in STAGE_MODULES))


def stage_function(key: str):
    """The ``run`` function of a chapter (see :func:`stage_number` for the accepted keys)."""
    module = importlib.import_module(f".{STAGE_MODULES[stage_number(key)]}", __name__)
    return module.run


def run_stage(key: str, ctx, progress: bool = True):
    """Run one chapter's stage in ``ctx`` and return its result object."""
    return stage_function(key)(ctx, progress=progress)
