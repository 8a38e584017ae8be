"""Chapter 5: every trained model scored once on the test slices, in the paper's and Inf-Net's protocols.

Reads the exported models of chapters 3 (single-class) and 4 (multi-class) through the artifact
contract; predicts every test slice; scores the maps in both protocols and builds the tables the
page shows (beside the published numbers), the recap of the cross-validation that chapters 3 and 4
recorded, and the compute cost of each network.

Failed trainings (:mod:`ssinfnet.segmentation.health`: the best validation Dice not above the floor,
or a loss that did not fall) are shown as failed: every table keeps their row with its ``status``
and NaN for its numbers, no plot shows them, and no later chapter reads their maps. The maps handed
on are those of the best model on the *validation* split (never the test split) among the InfNet
family that did not fail: the infection probabilities of the test slices (``test_predictions``, read
by chapter 6) and the class labels of the test slices (``test_class_maps``, read by chapter 7). When
every candidate failed, the file is not written and chapters 6 and 7 take their documented fallbacks.
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
from ...training import cost
from ...training.distributed import on_main
from .. import artifacts
from . import comparisons, shifts
from .variants import cost_models, predict_variant

STAGE = "05_evaluation"
#: The stage-1 model whose test maps are the multi models' priors (chapter 4 trained them on its
#: out-of-fold maps).
STAGE1 = "ssinfnet"
#: The networks whose models may hand their test maps on (the InfNet family), per task.
HANDOFF_NETWORKS = {"single": ("infnet",), "multi": ("infnet_multi",)}
#: The artifact each task's selected model writes, and the contract's condition for it (``Artifact.when``).
HANDOFF = {"single": "test_predictions", "multi": "test_class_maps"}
CONDITION = {"test_predictions": "usable_single", "test_class_maps": "usable_multi"}
#: (inpainting-initialised, from scratch) pairs compared in "Does the inpainting initialisation help?".
INIT_PAIRS = (("ssinfnet", "sinfnet"), ("ssinfnet_cutout40", "sinfnet_cutout40"),
              ("ssinfnet_cutout50", "sinfnet_cutout50"), ("ssinfnet_encoder", "sinfnet"))
MULTI_CLASSES = (CLASS_NAMES[GGO], CLASS_NAMES[CONSOLIDATION], "overall_with_background", "overall_without_background")
WORST_COLUMNS = ["image", "dice", "recall", "precision"]


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
    minus from-scratch pairs, NaN when either failed); ``worst`` (the three lowest-Dice slices of the
    single model handed on; empty when none is); ``cv_table`` (held-out Dice recorded by chapters 3
    and 4: chapter, variant, class, dice); ``cost_table``
    (:func:`ssinfnet.training.cost.cost_table`). ``comparison``: the paired comparisons of the claims over
    test images and fine-tuning seeds (:mod:`.comparisons`; also written as ``comparisons``). ``models``: one row per model (task, variant, label,
    network, val_dice, epochs_run, stop, status, failed); ``selected``: artifact name -> the variant
    whose maps it holds (None: not written, every candidate failed). Tables keep failed models' rows
    with NaN numbers; plots use :meth:`usable`. Paths: ``predictions_path``, ``class_maps_path``
    (None when not written).
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
    predictions_path: Path | None
    class_maps_path: Path | None
    models: pd.DataFrame
    selected: dict
    robustness: shifts.Robustness | None = None  # lung restriction and shift benchmark (book/stages/shifts.py)
    comparison: comparisons.SeedComparison | None = None  # the claims over seeds (book/stages/comparisons.py)

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

    def usable(self, maps: dict) -> dict:
        """The entries of ``maps`` (keyed by variant or label, e.g. ``single``) whose model did not fail."""
        ok = set(self.models.loc[~self.models.failed, "key"])
        return {k: v for k, v in maps.items() if k in ok}

    def failed(self) -> pd.DataFrame:
        """The failed trainings: task, variant, best validation Dice and why (empty when none failed)."""
        return self.models.loc[self.models.failed, ["task", "variant", "val_dice", "epochs_run", "status"]]

    def handoff(self) -> pd.DataFrame:
        """What chapters 6 and 7 read: per artifact, the model selected on validation and its Dice, or why
        nothing was written."""
        rows = []
        for task, name in HANDOFF.items():
            variant = self.selected.get(name)
            hit = self.models[(self.models.task == task) & (self.models.variant == variant)]
            rows.append({"artifact": name, "model": variant if variant else "none: not written",
                         "val_dice": hit.val_dice.iloc[0] if len(hit) else float("nan"),
                         "why": "best validation Dice of the InfNet family, not failed" if variant
                         else "every InfNet-family model failed its training checks"})
        return pd.DataFrame(rows)

    def single_beside_published(self, ctx) -> pd.DataFrame:
        """The single-class Inf-Net-protocol table, methods suffixed "(ours, <profile>)", above
        Inf-Net's published Table II."""
        ours = self.single_infnet_table.assign(method=lambda d: d.method + f" (ours, {ctx.profile.name})")
        return pd.concat([ours, tables.PUBLISHED_SINGLE], ignore_index=True)

    def multi_beside_published(self) -> pd.DataFrame:
        """The multi-class Inf-Net-protocol table above Inf-Net's published Table IV."""
        return pd.concat([self.multi_infnet_table, tables.PUBLISHED_MULTI], ignore_index=True)

    def per_image(self) -> pd.DataFrame:
        """Long table of the single-class per-image scores of the models that did not fail, with a
        ``model`` column (for distributions); empty when every one failed."""
        parts = [t.assign(model=name) for name, t in self.usable(self.single_scores).items()]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["image", "class", "model"])

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


def predict_test(ctx, test) -> tuple[dict, dict, pd.DataFrame]:
    """Predict ``test`` with every single variant (keyed by variant) and every multi variant (keyed by
    label, with SSInfNet's maps as priors). Returns (single, multi) maps and one row per model
    (:func:`model_row`); ValueError when the profile lacks SSInfNet (the multi models' prior)."""
    if STAGE1 not in ctx.profile.single_variants:
        raise ValueError(f"profile {ctx.profile.name!r} lacks {STAGE1!r} (single): chapter 5 predicts the multi "
                         "models' stage-1 priors of the test slices with it, as chapter 4 trained them")
    single, multi, rows = {}, {}, []
    for name in ctx.profile.single_variants:
        info, single[name] = predict_variant(ctx, STAGE, name, test)
        rows.append(model_row(name, name, info))
    for name in ctx.profile.multi_variants:
        info, maps = predict_variant(ctx, STAGE, name, test, priors=single[STAGE1])
        multi[info["label"]] = maps
        rows.append(model_row(name, info["label"], info))
    return single, multi, pd.DataFrame(rows)


def model_row(variant: str, key: str, info: dict) -> dict:
    """One row of the models table from what an exported model says of itself (``info``, see
    :func:`~ssinfnet.book.stages.variants.predict_variant`); ``key`` names it in the maps dicts. A model
    exported without a health record (before the checks existed) counts as failed: it cannot be judged."""
    health = info.get("health") or {"status": "failed: no health record (retrain it)", "failed": True}
    val = info.get("val_dice")
    return {"task": info["task"], "variant": variant, "key": key, "label": info.get("label", variant),
            "network": info["network"], "oracle": info.get("prior_source") == "ground_truth",
            "val_dice": float("nan") if val is None else float(val), "epochs_run": health.get("epochs_run"),
            "stop": health.get("stop"), "status": health["status"], "failed": bool(health["failed"])}


def select(models: pd.DataFrame, task: str) -> str | None:
    """The variant of ``task`` to hand on: the best validation Dice among InfNet-family models that did
    not fail and were not trained on the oracle prior (the first in profile order on a tie); None when
    there is none."""
    ok = models[(models.task == task) & models.network.isin(HANDOFF_NETWORKS[task]) & ~models.failed
                & ~models.oracle & models.val_dice.notna()]
    return None if ok.empty else str(ok.loc[ok.val_dice.idxmax(), "variant"])


def mark_failed(table: pd.DataFrame, status: dict, key=lambda method: method) -> pd.DataFrame:
    """``table`` (one row per ``method``) with a ``status`` column after ``method`` and NaN for every other
    column of the rows whose model failed; ``status`` maps ``key(method)`` to "ok" / "failed: ...",
    rows it does not know (e.g. published numbers) get no status."""
    out = table.copy()
    st = out.method.map(lambda m: status.get(key(m)))
    bad = st.fillna("").str.startswith("failed")
    out.loc[bad, [c for c in out.columns if c != "method"]] = np.nan
    out.insert(1, "status", st)
    return out


def run(ctx, progress: bool = True) -> EvaluationStage:
    """Score every model of chapters 3 and 4 on the test slices, build the page's tables (failed models
    marked), and write and record ``test_predictions`` (infection probabilities) and ``test_class_maps``
    (class labels), each from the model :func:`select` picks on validation; an artifact without a
    usable model is not written (and a stale copy is removed), and the record says so. Also scores
    every fine-tuning seed of the compared variants and writes ``comparisons`` (:mod:`.comparisons`,
    each claim's paired bootstrap over test images and seeds; its verdicts go to the manifest). Nothing is
    trained, so ``progress`` has no bar to show; it is accepted like every stage's.

    Raises :class:`ssinfnet.book.artifacts.MissingArtifact` naming the chapter whose model is missing.
    """
    test = ctx.samples("test")
    ids = [s.slice_id for s in test]
    gts = [s.infection for s in test]
    class_gts = [s.classes for s in test]
    single, multi, models = predict_test(ctx, test)
    status = dict(zip(models.key, models.status))

    single_scores = {name: metrics.paper_scores(maps, gts, image_ids=ids) for name, maps in single.items()}
    single_infnet = {name: tables.infnet_protocol(maps, gts) for name, maps in single.items()}
    multi_scores = {name: metrics.paper_scores(p, class_gts, image_ids=ids) for name, p in multi.items()}
    class_labels = {name: tables.class_maps(p) for name, p in multi.items()}
    effect = tables.init_effect(single_infnet, pairs=INIT_PAIRS)
    failed_pair = {f"{a} - {b}" for a, b in INIT_PAIRS if status.get(a, "ok") != "ok" or status.get(b, "ok") != "ok"}
    init_effect = pd.Series({k: np.nan if k in failed_pair else v for k, v in effect.items()},
                            name="meanDic(SSInfNet) - meanDic(SInfNet), Inf-Net protocol", dtype=float)
    suffix = f" (ours, {ctx.profile.name})"
    multi_infnet = mark_failed(tables.multi_infnet_table(multi, class_gts, suffix=suffix), status,
                               key=lambda m: m[: -len(suffix)] if m.endswith(suffix) else m)
    single_infnet_table = mark_failed(tables.infnet_table(single_infnet), status)
    cost_table = cost.cost_table(cost_models(ctx), size=ctx.profile.image_size, device=ctx.device,
                                 batch=2, repeats=2)

    selected = {HANDOFF[task]: select(models, task) for task in HANDOFF}
    paths = {"test_predictions": ctx.path("predictions", "test_ssinfnet.npz"),
             "test_class_maps": ctx.path("predictions", "test_multi_ssinfnet_classes.npz")}
    comparison = comparisons.run(ctx, STAGE, test, models, single, single_scores, multi_scores, STAGE1)
    table_path = ctx.path("05_evaluation", "comparisons.csv")
    on_main(comparison.table.to_csv, table_path, index=False)  # torchrun: process 0 writes
    key_of = dict(zip(models.variant, models.key))
    written = {}
    for name, variant in selected.items():
        if variant is None:
            paths[name].unlink(missing_ok=True)  # a previous run's file must not pass for this run's
            continue
        maps = single[variant] if name == "test_predictions" else class_labels[key_of[variant]]
        written[name] = save_maps(paths[name], test, maps)
    ok_single, ok_multi = (t[t.status.eq("ok")].drop(columns="status") for t in (single_infnet_table, multi_infnet))
    artifacts.record(ctx, STAGE, {**written, "comparisons": table_path}, selected=selected, status=status,
                     conditions=sorted(CONDITION[name] for name in written),
                     comparisons=dict(zip(comparison.table.claim + " [" + comparison.table["class"] + "]",
                                          comparison.table.verdict)),
                     infnet_single=ok_single.set_index("method").meanDic.round(4).to_dict(),
                     infnet_multi=ok_multi.set_index("method").round(4).to_dict())
    best = selected["test_predictions"]
    return EvaluationStage(
        test=test, single=single, single_scores=single_scores, single_infnet=single_infnet, multi=multi,
        multi_scores=multi_scores, class_labels=class_labels,
        single_paper=mark_failed(tables.paper_table(single_scores, classes=["infection"]), status),
        single_infnet_table=single_infnet_table, init_effect=init_effect,
        worst=tables.worst_images(single_scores[best], n=3) if best else pd.DataFrame(columns=WORST_COLUMNS),
        multi_paper=mark_failed(tables.paper_table(multi_scores, classes=list(MULTI_CLASSES), columns=("dice",)),
                                status),
        multi_infnet_table=multi_infnet, cv_table=cv_recap(ctx), cost_table=cost_table,
        predictions_path=written.get("test_predictions"), class_maps_path=written.get("test_class_maps"),
        models=models, selected=selected,
        robustness=shifts.run(ctx, test, STAGE, single, recommended=best or STAGE1), comparison=comparison)
