"""Chapter 5's robustness section: the lung restriction on the test slices, and the shift benchmark.

:func:`run` takes the test slices, the single-class model chapter 5 hands on, and the models of
:data:`SHIFT_MODELS` that the profile trains, and measures

* **the lung restriction** (:func:`ssinfnet.severity.restrict.restrict_to_lungs`, what ``predict``
  does by default) on the clean test slices: Dice with and without it, how much of the ground-truth
  lesion lies outside the automatic lung mask (chapter 6's coverage, turned around) and how much
  true lesion the restriction removes;
* **the shift benchmark** (:mod:`ssinfnet.evaluation.shifts`): every test slice under six shifts at
  three severities, predicted by the model alone ("model only") and through ``predict``'s pipeline
  (input steps and lung restriction, :mod:`ssinfnet.segmentation.pipeline`; "predict"), scored in
  the paper's protocol against the (shifted) masks.

Cost: (1 + 18) x the test slices x models x 2 predictions, plus one preparation (signature, lungs) of
each shifted slice shared by the models.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ...evaluation import shifts as sh
from ...segmentation.pipeline import MODEL_ONLY, PredictOptions, model_reference, predict_prepared, prepare_slices
from ...segmentation.predict import predict_probabilities
from ...severity.restrict import lung_mask_for, restrict_to_lungs
from ...training.export import load_exported
from .. import artifacts

#: The models the benchmark predicts besides the recommended one, when the profile trains them:
#: SSInfNet and SInfNet, its from-scratch twin.
SHIFT_MODELS = ("ssinfnet", "sinfnet")

#: handling -> what is done besides the model (the column ``handling`` of the tables).
HANDLINGS = {"model only": MODEL_ONLY, "predict": PredictOptions()}


@dataclass
class Robustness:
    """What the robustness section shows.

    ``recommended``: the model the bar is for; ``lung_effect``: one row per model (Dice without and
    with the lung restriction, ground-truth lesion outside the lung mask, true lesion removed);
    ``scores``: long table (model, handling, shift, level, severity, dice; shift "clean" = level 0);
    ``table``: :func:`ssinfnet.evaluation.shifts.shift_table` of ``scores``; ``seconds``: time taken.
    """

    recommended: str
    lung_effect: pd.DataFrame
    scores: pd.DataFrame
    table: pd.DataFrame
    seconds: float

    def by_severity(self) -> pd.DataFrame:
        """Dice per shift and severity (rows) for each model and handling (columns)."""
        shifted = self.scores[self.scores["shift"] != "clean"]
        return shifted.pivot_table(index=["shift", "level", "severity"], columns=["model", "handling"],
                                   values="dice", sort=False)

    def verdict(self) -> str:
        """One line per handling: the recommended model's mean shifted / clean Dice against the bar."""
        rows = self.table[self.table.model == self.recommended]
        if rows.empty:
            return f"{self.recommended}: not in the shift benchmark, no verdict"
        return "\n".join(f"{self.recommended} ({r['handling']}): mean shifted Dice {r['mean shifted']:.3f} = "
                         f"{r['ratio']:.2f} x clean {r['clean']:.3f}; bar {sh.BAR:g} x clean: "
                         f"{'met' if r['meets bar'] else 'NOT met'}" for _, r in rows.iterrows())


def _lung_effect(name: str, maps, test, lungs) -> dict:
    gts = [np.asarray(s.infection, bool) for s in test]
    restricted = [restrict_to_lungs(p, lm.mask) for p, lm in zip(maps, lungs)]
    gt_px = sum(int(g.sum()) for g in gts)
    outside = [float((g & ~lm.mask).sum() / g.sum()) for g, lm in zip(gts, lungs) if g.any()]
    tp_before = sum(int(((p >= 0.5) & g).sum()) for p, g in zip(maps, gts))
    tp_removed = sum(int(((p >= 0.5) & g & ~sup).sum()) for p, g, (_, sup, _) in zip(maps, gts, restricted))
    perfect = [restrict_to_lungs(g.astype(np.float32), lm.mask)[2]["removed_px"] for g, lm in zip(gts, lungs)]
    removed = [info["removed_px"] for _, _, info in restricted]
    lesion = [info["lesion_px"] for _, _, info in restricted]
    return {"model": name, "dice": sh.mean_dice(maps, gts), "dice (lungs)": sh.mean_dice([r[0] for r in restricted], gts),
            "GT outside lung mask (mean over slices)": float(np.mean(outside)) if outside else float("nan"),
            "GT outside lung mask (pooled)": sum(int((g & ~lm.mask).sum()) for g, lm in zip(gts, lungs)) / max(gt_px, 1),
            "GT cut if predicted exactly": sum(perfect) / max(gt_px, 1),
            "true lesion removed": tp_removed / tp_before if tp_before else float("nan"),
            "predicted lesion removed": sum(removed) / sum(lesion) if sum(lesion) else float("nan")}


def run(ctx, test, reader: str, clean_maps: dict | None = None, recommended: str = SHIFT_MODELS[0],
        models=SHIFT_MODELS) -> Robustness:
    """Lung restriction and shift benchmark of ``recommended`` and ``models`` (those the profile trains) on ``test``.

    ``recommended`` (the model chapter 5 hands on, whose mean shifted Dice the bar judges) is always
    benchmarked, first, whether or not it is among ``models``.

    ``reader`` is the stage that reads the models (``model:<name>`` through the artifact contract);
    ``clean_maps`` (model -> maps on ``test``) saves predicting the clean slices again.
    """
    start = time.perf_counter()
    if recommended not in ctx.profile.single_variants:
        raise ValueError(f"the recommended model {recommended!r} is not a single-class variant of profile "
                         f"{ctx.profile.name!r} ({', '.join(ctx.profile.single_variants)})")
    # the recommended model first (the bar is for it), then the others the profile trains
    names = list(dict.fromkeys([recommended] + [m for m in models if m in ctx.profile.single_variants]))
    loaded = {m: load_exported(artifacts.require(ctx, f"model:{m}", reader), ctx.device, expect_task="single")
              for m in names}
    reference = model_reference(loaded[recommended])
    images, gts = [s.image for s in test], [np.asarray(s.infection, bool) for s in test]
    flip = ctx.profile.test_time_flip  # the same inference as chapter 5's clean maps
    piped_options = replace(HANDLINGS["predict"], flip=flip)
    clean = {m: (clean_maps or {}).get(m) or predict_probabilities(loaded[m].model, images, loaded[m].image_size,
                                                                   ctx.device, flip=flip) for m in names}
    lungs = [lung_mask_for(img) for img in images]
    lung_effect = pd.DataFrame([_lung_effect(m, clean[m], test, lungs) for m in names])

    rows = []
    conds = [("clean", 0, None)] + sh.conditions()
    for shift, level, sev in conds:
        imgs, masks = (images, gts) if shift == "clean" else sh.shifted_set(images, gts, shift, sev, seed=ctx.seed)
        label = "none" if shift == "clean" else sh.severity_label(shift, sev)
        prepared = prepare_slices([(a, "uint8") for a in imgs], HANDLINGS["predict"], reference)
        for m in names:
            lm = loaded[m]
            raw = clean[m] if shift == "clean" else predict_probabilities(lm.model, imgs, lm.image_size, ctx.device,
                                                                          flip=flip)
            same = [None if prep.steps else p for (prep, _), p in zip(prepared, raw)]  # unchanged input: same map
            piped = [r.prob for r in predict_prepared(lm, prepared, piped_options, ctx.device, known=same)]
            for handling, maps in (("model only", raw), ("predict", piped)):
                rows.append({"model": m, "handling": handling, "shift": shift, "level": level, "severity": label,
                             "dice": sh.mean_dice(maps, masks)})
    scores = pd.DataFrame(rows)
    return Robustness(recommended, lung_effect, scores, sh.shift_table(scores), time.perf_counter() - start)
