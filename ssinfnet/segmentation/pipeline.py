"""Slices from outside the training data: prepare, predict, confine to the lungs, flag.

What ``predict`` does to every slice a user brings, and what chapter 5's shift benchmark measures
(:func:`predict_slices`):

1. :func:`ssinfnet.data.inputs.prepare_slice` windows HU, restores the training's field of view and,
   when the grey levels are far from the training's, re-windows them; every step is recorded;
2. the single (infection) model predicts the prepared slice through the one input path;
3. :func:`ssinfnet.severity.restrict.lung_mask_for` segments the lungs of the prepared slice, and
   :func:`ssinfnet.severity.restrict.restrict_to_lungs` removes predicted lesions lying mostly outside
   them (lesions reaching into the lungs are kept whole);
4. a multi model, when given, predicts classes with the confined map as its prior; outside the
   support every pixel is background;
5. maps go back to the input's frame (zero / background outside a crop), and the slice is flagged
   out of distribution (:func:`ood_reasons`) when its signature stays far from the training's, when no
   plausible lungs are found, or when the predicted lesion is implausible for a lung.

The training distribution a model is compared with is :func:`model_reference`: the reference the
model file records (fine-tuning writes ``extra["input_reference"]``), else the COVID-SemiSeg
training slices' (:data:`ssinfnet.data.signature.SEMISEG_REFERENCE`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..data.inputs import FAR, InputPolicy, PreparedSlice, prepare_slice
from ..data.signature import SEMISEG_REFERENCE, Reference
from ..severity.lungs import LungMask
from ..severity.restrict import lung_mask_for, restrict_to_lungs
from ..training.export import LoadedModel
from .predict import predict_probabilities

#: A predicted lesion (probability >= 0.5) covering more of the lung mask than this is implausible
#: (ground truth over the automatic lung mask on the 98 COVID-SemiSeg slices: median 0.20, 95th
#: percentile 0.76).
LESION_LUNG_MAX = 0.9

#: ... or more of the slice than this (COVID-SemiSeg training slices: at most 0.39).
LESION_SLICE_MAX = 0.45

#: Without the lung restriction, a prediction with more than this share of its lesion outside the
#: lungs (and lesion on at least 1 % of the slice) is flagged.
OUTSIDE_MAX = 0.5

#: Lung-mask flags that do not make a slice implausible (apex and base slices show one lung).
BENIGN_LUNG_FLAGS = ("only one lung",)


@dataclass(frozen=True)
class PredictOptions:
    """What :func:`predict_slices` does besides predicting: ``lung_mask`` (confine maps to the lungs),
    ``crop`` and ``rewindow`` (input steps, :class:`ssinfnet.data.inputs.InputPolicy`), ``far``
    (the signature distance called far), ``reference`` (default: :func:`model_reference`), ``flip``
    (average each network's logits with its left-right mirror's, ``predict_probabilities(flip=True)``)."""

    lung_mask: bool = True
    crop: bool = True
    rewindow: bool = True
    far: float = FAR
    reference: Reference | None = None
    flip: bool = False

    def policy(self, reference: Reference) -> InputPolicy:
        return InputPolicy(reference=reference, crop=self.crop, rewindow=self.rewindow, far=self.far)


#: Everything off: the model alone on the slice as given (HU still windowed).
MODEL_ONLY = PredictOptions(lung_mask=False, crop=False, rewindow=False)


def model_reference(loaded: LoadedModel) -> Reference:
    """The training distribution of ``loaded``: its recorded ``extra["input_reference"]``, else the
    COVID-SemiSeg training slices' reference. ValueError naming the model for a malformed record."""
    record = (loaded.extra or {}).get("input_reference")
    if record is None:
        return SEMISEG_REFERENCE
    try:
        return Reference.from_dict(record)
    except ValueError as exc:
        raise ValueError(f"{loaded.path or loaded.name}: {exc}") from None


@dataclass
class SliceResult:
    """One slice through :func:`predict_slices`: ``prepared`` (the input steps), ``prob`` (H, W)
    infection probability in the input's frame, ``classes`` (3, H, W) class probabilities or None,
    ``lungs`` (LungMask on the prepared slice), ``restricted`` (the lung restriction was applied),
    ``restrict_info`` (:func:`~ssinfnet.severity.restrict.restrict_to_lungs`'s counts), ``ood``
    (reasons the slice is out of distribution; empty when it is not)."""

    prepared: PreparedSlice
    prob: np.ndarray
    classes: np.ndarray | None
    lungs: LungMask
    restricted: bool
    restrict_info: dict
    ood: list = field(default_factory=list)
    lesion_lung_fraction: float = float("nan")

    def record(self) -> dict:
        """The columns ``predict`` writes for this slice into ``lesions.csv`` (besides the file's).

        ``kind`` ("uint8" or "hu"); ``input_steps`` (the steps taken, " | "-separated; empty when none);
        ``signature_distance_in`` / ``signature_distance`` (from the training reference, before and after
        the steps); ``lung_fraction`` (lung mask / prepared slice); ``lung_restricted`` ("yes"/"no");
        ``lesion_outside_lung`` and ``lesion_removed`` (shares of the predicted lesion, probability
        >= 0.5, outside the lung mask and removed by the restriction; empty when nothing is predicted);
        ``infection_lung_fraction`` (predicted lesion in the lungs / lung area); ``ood`` ("yes"/"no")
        and ``ood_reason``; ``warnings`` (the input path's). Numbers rounded to 4 digits."""
        p = self.prepared
        fmt = (lambda v: "" if not np.isfinite(v) else round(float(v), 4))
        return {"kind": p.kind, "input_steps": " | ".join(p.steps),
                "signature_distance_in": fmt(p.distance_in), "signature_distance": fmt(p.distance),
                "lung_fraction": round(float(self.lungs.mask.mean()), 4),
                "lung_restricted": "yes" if self.restricted else "no",
                "lesion_outside_lung": fmt(self.restrict_info["outside_share"]),
                "lesion_removed": fmt(self.restrict_info["removed_share"]),
                "infection_lung_fraction": fmt(self.lesion_lung_fraction),
                "ood": "yes" if self.ood else "no", "ood_reason": "; ".join(self.ood),
                "warnings": "; ".join(p.warnings)}


def ood_reasons(prepared: PreparedSlice, lungs: LungMask, prob: np.ndarray, info: dict, restricted: bool,
                far: float) -> tuple[list[str], float]:
    """Why a slice is out of distribution, and its predicted lesion share of the lungs.

    ``prob`` is the (restricted) map on the prepared slice. Reasons: the signature after the input
    steps farther than ``far``; no lungs, or a lung mask flagged for another reason than a single
    lung; predicted lesion over more than :data:`LESION_LUNG_MAX` of the lungs or
    :data:`LESION_SLICE_MAX` of the slice; without restriction, more than :data:`OUTSIDE_MAX` of a
    lesion of at least 1 % of the slice outside the lungs.
    """
    reasons = []
    if np.isfinite(prepared.distance) and prepared.distance > far:
        reasons.append(f"input unlike the training slices after the input steps (signature distance "
                       f"{prepared.distance:.1f})")
    serious = [f for f in lungs.flags if not f.startswith(BENIGN_LUNG_FLAGS)]
    if not lungs.mask.any():
        reasons.append("no lungs found" + (f" ({'; '.join(serious)})" if serious else ""))
    elif serious:
        reasons.append(f"lung mask implausible ({'; '.join(serious)})")
    lesion = prob >= 0.5
    lung_area = int(lungs.mask.sum())
    share = float((lesion & lungs.mask).sum() / lung_area) if lung_area else float("nan")
    if np.isfinite(share) and share > LESION_LUNG_MAX:
        reasons.append(f"predicted lesion covers {share:.0%} of the lungs")
    if lesion.mean() > LESION_SLICE_MAX:
        reasons.append(f"predicted lesion covers {lesion.mean():.0%} of the slice")
    if (not restricted and lesion.mean() >= 0.01 and np.isfinite(info["outside_share"])
            and info["outside_share"] > OUTSIDE_MAX):
        reasons.append(f"{info['outside_share']:.0%} of the predicted lesion lies outside the lungs")
    return reasons, share


def prepare_slices(slices: Sequence[tuple[np.ndarray, str]], options: PredictOptions, reference: Reference,
                   names: Sequence[str] | None = None) -> list[tuple[PreparedSlice, LungMask]]:
    """Steps 1 and 3 without a model: each (array, kind) of ``slices`` prepared for the network
    (:func:`ssinfnet.data.inputs.prepare_slice` with ``options`` and ``reference``) and the lungs of
    the prepared slice (:func:`ssinfnet.severity.restrict.lung_mask_for`; an empty, flagged mask for a
    slice under 8 x 8 px). Shared by every model predicting the same slices."""
    policy = options.policy(reference)
    names = [f"slice {k}" for k in range(len(slices))] if names is None else list(names)
    out = []
    for (a, kind), name in zip(slices, names):
        prep = prepare_slice(a, kind, policy, name)
        img = prep.image
        lungs = (lung_mask_for(img) if min(img.shape) >= 8 else
                 LungMask(np.zeros(img.shape, bool), np.zeros(img.shape, np.int8), 1, 0.0, ["slice smaller than 8 x 8 px"]))
        out.append((prep, lungs))
    return out


def predict_prepared(single: LoadedModel, inputs: Sequence[tuple[PreparedSlice, LungMask]],
                     options: PredictOptions | None = None, device: str = "cpu", batch_size: int = 8,
                     multi: LoadedModel | None = None, known: Sequence[np.ndarray | None] | None = None
                     ) -> list[SliceResult]:
    """Steps 2-5 for slices from :func:`prepare_slices`: predict, confine to the lungs (when
    ``options.lung_mask``), classes with a multi model, maps back to the input's frame, flags.

    ``known`` (optional, aligned with ``inputs``) holds the single model's probability map of slices
    whose prepared image is the input unchanged (no input step), as the caller already predicted it;
    those slices are not predicted again (the shift benchmark's saving; the maps are the same)."""
    options = PredictOptions() if options is None else options
    images = [p.image for p, _ in inputs]
    known = [None] * len(images) if known is None else list(known)
    if len(known) != len(images):
        raise ValueError(f"known has {len(known)} maps for {len(images)} slices")
    for k, ((prep, _), p) in enumerate(zip(inputs, known)):
        if p is not None and (prep.steps or np.shape(p) != prep.image.shape):
            raise ValueError(f"slice {k}: a known map is only valid for a slice the input steps left unchanged")
    todo = [k for k, p in enumerate(known) if p is None]
    fresh = predict_probabilities(single.model, [images[k] for k in todo], single.image_size, device, batch_size,
                                  flip=options.flip) \
        if todo else []
    probs = list(known)
    for k, p in zip(todo, fresh):
        probs[k] = p
    confined, supports, infos = [], [], []
    for p, (_, lm) in zip(probs, inputs):
        out, support, info = restrict_to_lungs(p, lm.mask)
        use = options.lung_mask and lm.mask.any()
        confined.append(out if use else p)
        supports.append(support if use else None)
        infos.append(info if use else {**info, "removed_px": 0,
                                       "removed_share": 0.0 if info["lesion_px"] else float("nan")})
    classes = None
    if multi is not None:
        classes = predict_probabilities(multi.model, images, multi.image_size, device, batch_size, priors=confined,
                                        flip=options.flip)
        for c, support in zip(classes, supports):
            if support is not None:
                c[:, ~support] = 0.0
                c[0, ~support] = 1.0
    results = []
    for k, (prep, lm) in enumerate(inputs):
        restricted = supports[k] is not None
        reasons, share = ood_reasons(prep, lm, confined[k], infos[k], restricted, options.far)
        cls = None
        if classes is not None:
            cls = prep.restore(classes[k], 0.0)
            if prep.cropped:
                inside = prep.restore(np.ones(prep.image.shape, bool), False)
                cls[0, ~inside] = 1.0
        results.append(SliceResult(prep, prep.restore(confined[k], 0.0), cls, lm, restricted, infos[k], reasons,
                                   share))
    return results


def predict_slices(single: LoadedModel, slices: Sequence[tuple[np.ndarray, str]], options: PredictOptions | None = None,
                   device: str = "cpu", batch_size: int = 8, multi: LoadedModel | None = None,
                   names: Sequence[str] | None = None) -> list[SliceResult]:
    """Steps 1-5 of the module docstring for each (array, kind) of ``slices``.

    ``kind`` is "uint8" (8-bit grey, uint8 (H, W)) or "hu" (Hounsfield units, float (H, W)); ``names``
    name the slices in errors and warnings. The reference is ``options.reference`` or
    :func:`model_reference` of ``single``. Returns one :class:`SliceResult` per slice, maps in the
    input's frame (H, W).
    """
    options = PredictOptions() if options is None else options
    reference = options.reference if options.reference is not None else model_reference(single)
    return predict_prepared(single, prepare_slices(slices, options, reference, names), options, device, batch_size,
                            multi)
