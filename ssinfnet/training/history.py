"""Per-epoch training history (``history.csv``) kept by the training loop."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd


# --------------------------------------------------------------------------------------------- helpers


class History:
    """Rows of the run's history, written as CSV atomically (temp file + ``os.replace``)."""

    _BASE = ["phase", "phase_index", "kind", "epoch", "step", "global_step", "loss", "lr", "wall_s"]

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []  # of a loaded history: kept even when every value is empty (e.g. val_dice NaN)

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, **row: Any) -> None:
        self.rows.append(row)

    def load(self, n_rows: int) -> None:
        if n_rows == 0:
            self.rows = []
            return
        if not self.path.is_file():
            raise ValueError(f"cannot resume: history {self.path} is missing (checkpoint expects {n_rows} rows)")
        frame = pd.read_csv(self.path, float_precision="round_trip")
        if len(frame) < n_rows:
            raise ValueError(f"cannot resume: history {self.path} has {len(frame)} rows, checkpoint expects {n_rows}")
        # Rows after the checkpoint belong to epochs that will be run again.
        self.columns = list(frame.columns)
        self.rows = [
            {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
            for row in frame.iloc[:n_rows].to_dict("records")
        ]

    def frame(self) -> pd.DataFrame:
        """The rows as a table: the base columns first, then the others (metrics, ``stop``) in first-seen
        order; a resumed history keeps every column it was loaded with, all-NaN ones included."""
        frame = pd.DataFrame(self.rows)
        if frame.empty:
            return pd.DataFrame(columns=self._BASE)
        for c in self.columns:
            if c not in frame.columns:
                frame[c] = math.nan
        extra = [c for c in frame.columns if c not in self._BASE]
        return frame[[c for c in self._BASE if c in frame.columns] + extra]

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.frame().to_csv(tmp, index=False)
        os.replace(tmp, self.path)
