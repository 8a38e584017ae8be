"""Chapter 1: the data every later chapter learns from and is scored on, and the validation split.

Reads the run's slices (``ctx.samples``: COVID-SemiSeg, or the profile's phantoms on the embedded
default) and the iCTCF clinical table (or the synthetic cohort); reads no earlier chapter. Writes the
validation split manifest (``split_manifest``), which chapters 3 and 4 train and select on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ...data import duplicates, ictcf, splits, summary
from .. import artifacts
from ..profiles import profile_table

STAGE = "01_data"

#: The subsets the chapter describes, in page order.
SUBSETS = ("train", "test", "unlabelled")

#: Thumbnail RMS distance (grey levels) at or below which a test slice counts as a near duplicate.
NEAR_RMS = 12.0


@dataclass
class DataStage:
    """What chapter 1 shows.

    ``subsets``: subset name -> list of :class:`~ssinfnet.data.sample.Sample`; ``counts``: one row per
    subset (slices, groups, labelled, empty infection); ``balance``: per labelled slice, the share of its
    pixels in each class; ``pixel_shares``: class -> share of all training-label pixels (0-1);
    ``sizes``: width and height (px) of every slice; ``pairs``: each test slice and its closest training
    slice (thumbnail RMS in grey levels, exact/near flags); ``duplicates``: the summary of ``pairs``;
    ``train_idx``/``val_idx``: indices into ``subsets["train"]``; ``split``: the manifest table written
    to ``split_path``; ``clinical``: one row per patient, ``clinical_label`` which table it is,
    ``clinical_tables``: the summaries of :func:`ssinfnet.data.summary.clinical_summary`.
    """

    profiles: pd.DataFrame
    sources: pd.DataFrame
    subsets: dict
    counts: pd.DataFrame
    balance: pd.DataFrame
    pixel_shares: pd.Series
    sizes: pd.DataFrame
    pairs: pd.DataFrame
    duplicates: dict
    train_idx: list
    val_idx: list
    split: pd.DataFrame
    split_path: Path
    clinical: pd.DataFrame
    clinical_label: str
    clinical_tables: dict

    def setup(self, ctx) -> pd.Series:
        """What this stage read and wrote, for the page."""
        return pd.Series({"slices": ctx.data_label, "clinical table": self.clinical_label,
                          "validation fraction": ctx.profile.val_fraction, "seed": ctx.seed,
                          "split manifest": str(self.split_path.relative_to(ctx.run_dir))})


def duplicate_summary(pairs: pd.DataFrame, near_rms: float = NEAR_RMS) -> dict:
    """Counts of exact and near duplicates and the closest / median RMS (grey levels, 1 decimal) of
    :func:`ssinfnet.data.duplicates.find_duplicates`'s table (one row per test slice)."""
    return {"test slices": len(pairs), "exact duplicates": int(pairs.exact.sum()),
            f"near duplicates (RMS <= {near_rms:g})": int(pairs.near.sum()),
            "closest pair RMS": round(float(pairs.rms.min()), 1),
            "median closest RMS": round(float(pairs.rms.median()), 1)}


def load_clinical(ctx) -> tuple[pd.DataFrame, str]:
    """The iCTCF clinical table when the data root has it, else the synthetic cohort (seeded by
    ``ctx.seed``): (one row per patient, "real iCTCF clinical table" or "synthetic clinical cohort")."""
    if ctx.data.has("ictcf-clinical"):
        return ictcf.load_clinical(ctx.data.path), "real iCTCF clinical table"
    return ictcf.synthetic_clinical(seed=ctx.seed), "synthetic clinical cohort"


def run(ctx, progress: bool = True) -> DataStage:
    """Describe the run's slices and clinical table, carve the grouped validation split from the training
    slices (``ctx.profile.val_fraction``, seeded by ``ctx.seed``), write its manifest to
    ``splits/train_val.csv`` and record it. Deterministic: running it again writes the same split.
    ``progress`` is accepted for the common stage signature; this stage has no progress bars."""
    subsets = {name: ctx.samples(name) for name in SUBSETS}
    counts = summary.subset_counts(subsets)
    labelled = subsets["train"] + subsets["test"]
    balance = summary.class_balance(labelled)
    shares = summary.pixel_shares(subsets["train"])
    sizes = summary.size_table(subsets)
    pairs = duplicates.find_duplicates(subsets["test"], subsets["train"], near_rms=NEAR_RMS)
    dup = duplicate_summary(pairs)

    train_idx, val_idx = splits.validation_split(subsets["train"], fraction=ctx.profile.val_fraction, seed=ctx.seed)
    assignment = {**{i: "train" for i in train_idx}, **{i: "val" for i in val_idx}}
    manifest = splits.split_manifest(subsets["train"], assignment)
    split_path = splits.save_manifest(manifest, ctx.path("splits", "train_val.csv"))

    clinical, clinical_label = load_clinical(ctx)
    tables = summary.clinical_summary(clinical)
    artifacts.record(ctx, STAGE, {"split_manifest": split_path},
                     counts=counts.set_index("subset").slices.to_dict(), duplicates=dup,
                     split=manifest.split.value_counts().to_dict(), clinical=clinical_label,
                     patients=len(clinical))
    return DataStage(profile_table(), summary.sources_table(), subsets, counts, balance, shares, sizes, pairs,
                     dup, train_idx, val_idx, manifest, split_path, clinical, clinical_label, tables)
