"""Where the tests find the real data, in one place.

``$SSINFNET_DATA`` (what CI sets) unless it is unset or ``synthetic``; otherwise the ``shared/data``
folder beside the checkout, when it exists. Tests that need real data skip when this is None.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def real_data_root() -> Path | None:
    """The real data root, or None (see the module docstring)."""
    env = os.environ.get("SSINFNET_DATA")
    if env == "synthetic":
        return None
    if env:
        return Path(env)
    return SHARED if SHARED.is_dir() else None
