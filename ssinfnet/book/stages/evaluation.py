"""Chapter 5: every trained model scored once on the test slices, in the paper's and Inf-Net's protocols.

Reads the exported models of chapters 3 (single-class) and 4 (multi-class) through the artifact
contract; predicts every test slice; scores the maps in both protocols and builds the tables the
page shows (beside the published numbers), the recap of the cross-validation that chapters 3 and 4
recorded, and the compute cost of each network. Writes SSInfNet's infection probabilities of the
test slices (read by chapter 6) and multi SSInfNet's class labels of them (read by chapter 7).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...data.classes import CLASS_NAMES, CONSOLIDATION, GGO
from ...data.maps import save_maps
from ...evaluation import paper_metrics as metrics
from ...evaluation import tables
from ...segmentation.variants import variant_config
from ...training import cost
from .. import artifacts
from . import shifts
from .variants import cost_models, predict_variant, predict_with

STAGE = "05_evaluation"
#: The models whose test maps later chapters read: stage-1 probabilities and stage-2 class labels.
STAGE1, STAGE2 = "ssinfnet", "multi_ssinfnet"
#: (inpainting-initialised, from scratch) pairs compared in "Does the inpainting initialisation help?".
INIT_PAIRS = (("ssinfnet", "sinfnet"), ("ssinfnet_cutout40", "sinfnet_cutout40"),
              ("ssinfnet_cutout50", "sinfnet_cutout50"), ("ssinfnet_encoder", "sinfnet"))
MULTI_CLASSES = (CLASS_NAMES[GGO], CLASS_NAMES[CONSOLIDATION], "overall_with_background", "overall_without_background")


@dataclass
class EvaluationStage:
    """What chapter 5 shows.

    Maps and scores: ``test`` (the test slices); ``single`` (variant -> infection probability maps,
    float (H, W) at each slice's size); ``single_scores`` (variant -> per-image paper-protocol scores,
    :func:`ssinfnet.evaluation.paper_metrics.paper_scores`); ``single_infnet`` (variant -> Inf-Net
    protocol summary, :func:`ssinfnet.evaluation.tables.infnet_protocol`); ``multi`` (label -> (3, H, W)
    class probabilities; the stage-1 prior is SSInfNet's map, the oracle's the ground truth);
    ``multi_scores`` (label -> per-image scores); ``class_labels`` (label -> uint8 (H, W) argmax maps).

    Tables: ``single_paper`` / ``multi_paper`` ("mean ± 1.96 SE" per class and metric);
    ``single_infnet_table`` (one row per variant); ``multi_infnet_table`` (GGO / consolidation meanDic,
    methods suffixed "(ours, <profile>)"); ``init_effect`` (meanDic differences of inpainting-initialised
    minus from-scratch pairs); ``worst`` (SSInfNet's three lowest-Dice slices); ``cv_table``
    (held-out Dice recorded by chapters 3 and 4: chapter, variant, class, dice); ``cost_table``
    (:func:`ssinfnet.training.cost.cost_table`). Paths: ``predictions_path``, ``class_maps_path``.
    """

    test: list
    single: dict
    single_scores: dict
    single_infnet: dict
    multi: dict
    multi_scores: dict
    class_labels: dict
    single_paper: pd.DataFrame
    single_infnet_table: pd.DataFrame
    init_effect: pd.Series
    worst: pd.DataFrame
    multi_paper: pd.DataFrame
    multi_infnet_table: pd.DataFrame
    cv_table: pd.DataFrame
    cost_table: pd.DataFrame
    predictions_path: Path
    class_maps_path: Path
    robustness: shifts.Robustness | None = None  # lung restriction and shift benchmark (book/stages/shifts.py)

    @property
    def gts(self) -> list[np.ndarray]:
        """The infection masks of the test slices (bool (H, W))."""
        return [s.infection for s in self.test]

    @property
    def class_gts(self) -> list[np.ndarray]:
        """The class label maps of the test slices (0 background, 1 GGO, 2 consolidation)."""
        return [s.classes for s in self.test]

    def overview(self) -> pd.Series:
        """Test slices, models and empty masks, for the page."""
        return pd.Series({"test slices": len(self.test), "single-class models": len(self.single),
                          "empty ground truth": sum(not g.any() for g in self.gts)})

    def single_beside_published(self, ctx) -> pd.DataFrame:
        """The single-class Inf-Net-protocol table, methods suffixed "(ours, <profile>)", above
        Inf-Net's published Table II."""
        ours = self.single_infnet_table.assign(method=lambda d: d.method + f" (ours, {ctx.profile.name})")
        return pd.concat([ours, tables.PUBLISHED_SINGLE], ignore_index=True)

    def multi_beside_published(self) -> pd.DataFrame:
        """The multi-class Inf-Net-protocol table above Inf-Net's published Table IV."""
        return pd.concat([self.multi_infnet_table, tables.PUBLISHED_MULTI], ignore_index=True)

    def per_image(self) -> pd.DataFrame:
        """Long table of the single-class per-image scores with a ``model`` column (for distributions)."""
        return pd.concat([t.assign(model=name) for name, t in self.single_scores.items()], ignore_index=True)

    def worst_index(self) -> list[int]:
        """Positions in ``test`` of the slices of ``worst``."""
        ids = [s.slice_id for s in self.test]
        return [ids.index(i) for i in self.worst.image]


def cv_recap(ctx) -> pd.DataFrame:
    """Held-out Dice of the cross-validated variants, as chapters 3 and 4 recorded it in the run
    manifest (``cross_validation``): one row per chapter, variant and class; empty when none ran."""
    rows = []
    for stage, cls in (("03_single", "infection"), ("04_multi", None)):
        recorded = ctx.manifest().get("stages", {}).get(stage, {}).get("cross_validation") or {}
        for variant, value in recorded.items():
            per_class = value if isinstance(value, dict) else {cls: value}
            rows += [{"chapter": stage, "variant": variant, "class": c, "dice": d} for c, d in per_class.items()]
    return pd.DataFrame(rows, columns=["chapter", "variant", "class", "dice"])


def predict_test(ctx, test) -> tuple[dict, dict]:
    """Predict ``test`` with every single variant (keyed by variant) and every multi variant (keyed by
    label, with SSInfNet's maps as priors). Returns (single, multi) maps; ValueError when the profile
    lacks SSInfNet or multi SSInfNet."""
    if STAGE1 not in ctx.profile.single_variants or STAGE2 not in ctx.profile.multi_variants:
        raise ValueError(f"profile {ctx.profile.name!r} lacks {STAGE1!r} (single) or {STAGE2!r} (multi): chapter 5 "
                         "predicts the test slices with both (the stage-1 prior, the class maps of chapter 7)")
    single = {name: predict_with(artifacts.require(ctx, f"model:{name}", STAGE), test, ctx.device)
              for name in ctx.profile.single_variants}
    multi = dict(predict_variant(ctx, STAGE, name, test, priors=single[STAGE1])
                 for name in ctx.profile.multi_variants)
    return single, multi


def run(ctx, progress: bool = True) -> EvaluationStage:
    """Score every model of chapters 3 and 4 on the test slices, build the page's tables, and write and
    record ``test_predictions`` (SSInfNet probabilities) and ``test_class_maps`` (multi SSInfNet labels).
    Nothing is trained, so ``progress`` has no bar to show; it is accepted like every stage's.

    Raises :class:`ssinfnet.book.artifacts.MissingArtifact` naming the chapter whose model is missing.
    """
    test = ctx.samples("test")
    ids = [s.slice_id for s in test]
    gts = [s.infection for s in test]
    class_gts = [s.classes for s in test]
    single, multi = predict_test(ctx, test)

    single_scores = {name: metrics.paper_scores(maps, gts, image_ids=ids) for name, maps in single.items()}
    single_infnet = {name: tables.infnet_protocol(maps, gts) for name, maps in single.items()}
    multi_scores = {name: metrics.paper_scores(p, class_gts, image_ids=ids) for name, p in multi.items()}
    class_labels = {name: tables.class_maps(p) for name, p in multi.items()}
    init_effect = pd.Series(tables.init_effect(single_infnet, pairs=INIT_PAIRS),
                            name="meanDic(SSInfNet) - meanDic(SInfNet), Inf-Net protocol", dtype=float)
    multi_infnet = tables.multi_infnet_table(multi, class_gts, suffix=f" (ours, {ctx.profile.name})")
    cost_table = cost.cost_table(cost_models(ctx), size=ctx.profile.image_size, device=ctx.device,
                                 batch=2, repeats=2)

    stage2_label = _label_of(ctx, STAGE2, multi)
    predictions_path = save_maps(ctx.path("predictions", "test_ssinfnet.npz"), test, single[STAGE1])
    class_maps_path = save_maps(ctx.path("predictions", "test_multi_ssinfnet_classes.npz"), test,
                                class_labels[stage2_label])
    single_infnet_table = tables.infnet_table(single_infnet)
    artifacts.record(ctx, STAGE, {"test_predictions": predictions_path, "test_class_maps": class_maps_path},
                     infnet_single=single_infnet_table.set_index("method").meanDic.round(4).to_dict(),
                     infnet_multi=multi_infnet.set_index("method").round(4).to_dict())
    return EvaluationStage(
        test=test, single=single, single_scores=single_scores, single_infnet=single_infnet, multi=multi,
        multi_scores=multi_scores, class_labels=class_labels,
        single_paper=tables.paper_table(single_scores, classes=["infection"]),
        single_infnet_table=single_infnet_table, init_effect=init_effect,
        worst=tables.worst_images(single_scores[STAGE1], n=3),
        multi_paper=tables.paper_table(multi_scores, classes=list(MULTI_CLASSES), columns=("dice",)),
        multi_infnet_table=multi_infnet, cv_table=cv_recap(ctx), cost_table=cost_table,
        predictions_path=predictions_path, class_maps_path=class_maps_path,
        robustness=shifts.run(ctx, test, STAGE, single, recommended=STAGE1))


def _label_of(ctx, name: str, multi: dict) -> str:
    """The key under which variant ``name`` sits in ``multi`` (its label, as its exported model says)."""
    label = variant_config(name, ctx.profile).label
    return label if label in multi else name
