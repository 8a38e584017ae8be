"""What a CT slice looks like to the network, in four numbers: its *input signature*.

A model sees 8-bit grey slices; it has learnt the grey levels and the field of view of its training
slices. A user's slice may come with another window (lungs nearly black and the body mid-grey under a
wide window), another gamma, or the whole field of view with air around the body where the training
crops hold the body alone. The signature measures exactly those, from two rough masks found without
any model (:func:`rough_masks`):

=============  ======================================================================
field          meaning
=============  ======================================================================
lung_p50       median grey (0..255) of the lungs: dark pixels inside the body's hull
body_p50       median grey of the body: bright pixels inside the hull (soft tissue, bone)
body_fill      area of the body's bounding box / area of the image (field of view)
lung_share     lung pixels / hull pixels (how much of the body is lung)
=============  ======================================================================

:class:`Reference` holds the training distribution of each field (5 %, 50 % and 95 % quantiles over
the training slices, :func:`reference_from_images`) and measures how far a slice lies from it
(:meth:`Reference.distance`: 0 inside the training's central 90 %, 1 one such half-range beyond it).
:func:`rewindow` maps grey levels so that the lung and body medians meet the training's, and
:func:`fov_box` gives the crop that restores the training's field of view. The input path that uses
them is :func:`ssinfnet.data.inputs.prepare_slice`.

The masks are deliberately simple (Otsu on the smoothed slice, the convex hull of the bright
components); they serve the signature and the crop, not severity scoring, which has its own lung
segmentation (:func:`ssinfnet.severity.lungs.segment_lungs`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, morphology

SIGNATURE_FIELDS = ("lung_p50", "body_p50", "body_fill", "lung_share")

#: Longest side (pixels) at which :func:`rough_masks` looks for the body and lungs.
MASK_SIDE = 192

#: Smallest bright component (share of the image) that counts as body: small enough to keep a thin
#: chest wall above lungs that reach the edge of a crop, large enough to drop noise.
MIN_BRIGHT = 0.002

#: Smallest spread (half-range) per field used by :meth:`Reference.distance`, so that a training set
#: of near-identical slices (the synthetic phantoms) does not call every small difference far.
MIN_SPREAD = {"lung_p50": 12.0, "body_p50": 12.0, "body_fill": 0.08, "lung_share": 0.08}


@dataclass(frozen=True)
class Signature:
    """The four numbers of a slice (see the module docstring); NaN where a mask is empty."""

    lung_p50: float
    body_p50: float
    body_fill: float
    lung_share: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


@dataclass
class RoughMasks:
    """Masks of :func:`rough_masks`: ``body`` (bright pixels inside the hull), ``lungs`` (dark pixels
    inside the hull), ``hull`` (convex hull of the bright components), ``box`` (top, left, bottom,
    right) of the hull, bottom/right exclusive; ``box`` is the whole image when no body is found."""

    body: np.ndarray
    lungs: np.ndarray
    hull: np.ndarray
    box: tuple[int, int, int, int]

    @property
    def found(self) -> bool:
        """True when a body was found."""
        return bool(self.hull.any())


def _check(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8 or min(image.shape) < 8:
        raise ValueError(f"{name}: image must be a 2-D uint8 array of at least 8 x 8 pixels, "
                         f"got {image.dtype} of shape {image.shape}")
    return image


def rough_masks(image: np.ndarray, name: str = "slice") -> RoughMasks:
    """Body, lungs and field of view of an 8-bit slice, without a model.

    Smooth (Gaussian, 1 px), threshold with Otsu, keep bright components of at least
    :data:`MIN_BRIGHT` of the image after a 1-px opening (this drops noise), take their convex hull
    as the body's outline (a scanner bed below the body may widen it a little). Dark pixels inside the hull are lungs (and airways), bright ones body.
    A constant image, or one without a bright component, gives empty masks. A slice larger than
    :data:`MASK_SIDE` pixels is measured scaled down to that side (bilinear), the masks brought back
    by nearest neighbour and the box scaled.
    """
    image = _check(image, name)
    h, w = image.shape
    f = MASK_SIDE / max(h, w)
    if f < 1 and min(h, w) * f >= 8:
        from PIL import Image

        small = np.asarray(Image.fromarray(image).resize((round(w * f), round(h * f)), Image.BILINEAR))
        m = _rough_masks(small)
        rows = np.minimum((np.arange(h) + 0.5) * small.shape[0] / h, small.shape[0] - 1).astype(int)
        cols = np.minimum((np.arange(w) + 0.5) * small.shape[1] / w, small.shape[1] - 1).astype(int)
        up = (lambda a: a[np.ix_(rows, cols)])
        t, left, b, r = m.box
        sy, sx = h / small.shape[0], w / small.shape[1]
        box = (int(np.floor(t * sy)), int(np.floor(left * sx)), min(h, int(np.ceil(b * sy))), min(w, int(np.ceil(r * sx))))
        return RoughMasks(up(m.body), up(m.lungs), up(m.hull), box if m.found else (0, 0, h, w))
    return _rough_masks(image)


def _rough_masks(image: np.ndarray) -> RoughMasks:
    h, w = image.shape
    empty = np.zeros((h, w), bool)
    nothing = RoughMasks(empty, empty, empty, (0, 0, h, w))
    sm = ndi.gaussian_filter(image.astype(np.float64), 1.0)
    if sm.max() - sm.min() < 1.0:
        return nothing
    dark = sm < filters.threshold_otsu(sm)
    radius = 1
    bright = ndi.binary_opening(~dark, morphology.disk(radius))
    lab, n = ndi.label(bright)
    if n == 0:
        return nothing
    sizes = np.bincount(lab.ravel())[1:]
    keep = np.flatnonzero(sizes >= MIN_BRIGHT * h * w) + 1
    if keep.size == 0:
        return nothing
    hull = morphology.convex_hull_image(np.isin(lab, keep))
    rows, cols = np.flatnonzero(hull.any(1)), np.flatnonzero(hull.any(0))
    box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    return RoughMasks(~dark & hull, dark & hull, hull, box)


def signature(image: np.ndarray, masks: RoughMasks | None = None, name: str = "slice") -> Signature:
    """The :class:`Signature` of a uint8 (H, W) slice (``masks`` from :func:`rough_masks` if given)."""
    image = _check(image, name)
    m = rough_masks(image, name) if masks is None else masks
    med = (lambda sel: float(np.median(image[sel])) if sel.any() else float("nan"))
    t, left, b, r = m.box
    hull_n = int(m.hull.sum())
    return Signature(lung_p50=med(m.lungs), body_p50=med(m.body),
                     body_fill=(b - t) * (r - left) / image.size if m.found else float("nan"),
                     lung_share=float(m.lungs.sum()) / hull_n if hull_n else float("nan"))


@dataclass(frozen=True)
class Reference:
    """The training distribution of the signature.

    ``quantiles``: field -> (q05, q50, q95) over the training slices; ``n``: slices measured;
    ``source``: where they came from (for messages); ``window``: the (level, width) in HU that
    turned the training slices into 8 bits, when known (the synthetic phantoms), else None.
    """

    quantiles: dict
    n: int
    source: str = ""
    window: tuple[float, float] | None = None

    def __post_init__(self):
        missing = [f for f in SIGNATURE_FIELDS if f not in self.quantiles]
        if missing:
            raise ValueError(f"reference lacks the signature fields {missing}")
        for f in SIGNATURE_FIELDS:
            lo, mid, hi = (float(v) for v in self.quantiles[f])
            if not (np.isfinite([lo, mid, hi]).all() and lo <= mid <= hi):
                raise ValueError(f"reference quantiles of {f} must be finite and ordered, got {self.quantiles[f]}")

    def median(self, field: str) -> float:
        return float(self.quantiles[field][1])

    def field_distances(self, sig: Signature) -> dict[str, float]:
        """Per field: 0 inside [q05, q95]; beyond it, the excess in units of the half-range
        ``q50 - q05`` (below) or ``q95 - q50`` (above), each at least :data:`MIN_SPREAD`. NaN when the
        slice's value is NaN (no lungs or body found)."""
        out = {}
        for f in SIGNATURE_FIELDS:
            lo, mid, hi = (float(v) for v in self.quantiles[f])
            x = float(getattr(sig, f))
            if not np.isfinite(x):
                out[f] = float("nan")
            elif x < lo:
                out[f] = (lo - x) / max(mid - lo, MIN_SPREAD[f])
            elif x > hi:
                out[f] = (x - hi) / max(hi - mid, MIN_SPREAD[f])
            else:
                out[f] = 0.0
        return out

    def distance(self, sig: Signature, fields=SIGNATURE_FIELDS) -> float:
        """Largest field distance over ``fields`` (inf when none could be measured)."""
        d = [v for k, v in self.field_distances(sig).items() if k in fields and np.isfinite(v)]
        return max(d) if d else float("inf")

    def describe(self, sig: Signature, limit: float = 0.0) -> str:
        """The fields farther than ``limit``, e.g. ``"lung_p50 12 (training 30-61)"``; "" if none."""
        parts = []
        for f, d in self.field_distances(sig).items():
            if np.isfinite(d) and d > limit:
                lo, _, hi = self.quantiles[f]
                fmt = "{:.0f}" if f.endswith("p50") else "{:.2f}"
                parts.append(f"{f} {fmt.format(getattr(sig, f))} (training {fmt.format(lo)}-{fmt.format(hi)})")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        """Plain JSON-able form (stored in exported models)."""
        return {"quantiles": {f: [round(float(v), 4) for v in self.quantiles[f]] for f in SIGNATURE_FIELDS},
                "n": int(self.n), "source": self.source,
                "window": None if self.window is None else [float(v) for v in self.window]}

    @classmethod
    def from_dict(cls, d: dict) -> "Reference":
        """Inverse of :meth:`to_dict`; ValueError for a malformed dict."""
        try:
            window = d.get("window")
            return cls({f: tuple(float(v) for v in d["quantiles"][f]) for f in SIGNATURE_FIELDS}, int(d["n"]),
                       str(d.get("source", "")), None if window is None else (float(window[0]), float(window[1])))
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"malformed input reference ({exc.__class__.__name__}: {exc})") from exc


#: The training distribution of the book's real runs: the 50 COVID-SemiSeg training slices
#: (``Doctor-label/Imgs``), measured with :func:`reference_from_images` (``tests/data/test_signature.py``
#: recomputes it when the data is there). Their crops hold the body alone (``body_fill`` 1.0); their
#: window is not recorded. Models that carry their own reference (``extra["input_reference"]``, written
#: by fine-tuning) use that one instead.
SEMISEG_REFERENCE_DICT = {"quantiles": {"lung_p50": [33.45, 56.0, 106.4], "body_p50": [189.8, 211.5, 241.45],
                                        "body_fill": [1.0, 1.0, 1.0], "lung_share": [0.289, 0.5351, 0.6316]},
                          "n": 50, "source": "COVID-SemiSeg training slices", "window": None}


def reference_from_images(images, source: str = "", window: tuple[float, float] | None = None) -> Reference:
    """The :class:`Reference` of uint8 (H, W) training slices (slices without lungs or body are left
    out of the fields they lack). ValueError when no slice gives every field."""
    sigs = [signature(img, name=f"image {k}") for k, img in enumerate(images)]
    quantiles = {}
    for f in SIGNATURE_FIELDS:
        v = np.array([getattr(s, f) for s in sigs], float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            raise ValueError(f"no training slice gives {f} (no body or lungs found in {len(sigs)} slices)")
        quantiles[f] = tuple(float(q) for q in np.quantile(v, [0.05, 0.5, 0.95]))
    return Reference(quantiles, len(sigs), source, window)


SEMISEG_REFERENCE = Reference.from_dict(SEMISEG_REFERENCE_DICT)


def reference_record(samples) -> dict | None:
    """The reference of training samples as a plain dict (for an exported model's ``extra``), or None
    when none of them shows a body and lungs. Its ``window`` is the samples' ``meta["hu_window"]`` when
    they all share one (the phantoms), its ``source`` their source and subset."""
    samples = list(samples)
    windows = {tuple(s.meta.get("hu_window") or ()) for s in samples}
    window = next(iter(windows)) if len(windows) == 1 and () not in windows else None
    kinds = sorted({f"{s.source} {s.subset}" for s in samples})
    try:
        ref = reference_from_images([s.image for s in samples], f"{', '.join(kinds)} slices", window)
    except ValueError:
        return None
    return ref.to_dict()


def rewindow(image: np.ndarray, sig: Signature, ref: Reference) -> np.ndarray | None:
    """Grey levels mapped linearly so the lung and body medians of ``sig`` land on the training's.

    ``g' = lung_ref + (g - lung) * (body_ref - lung_ref) / (body - lung)``, rounded and clipped to
    0..255: a change of window (level and width) is such a linear map of the grey levels. Returns None
    (nothing to do safely) when either median is missing or the body is not brighter than the lungs.
    """
    lung, body = sig.lung_p50, sig.body_p50
    if not (np.isfinite(lung) and np.isfinite(body)) or body - lung < 4:
        return None
    lung_ref, body_ref = ref.median("lung_p50"), ref.median("body_p50")
    g = lung_ref + (image.astype(np.float64) - lung) * (body_ref - lung_ref) / (body - lung)
    return np.clip(np.round(g), 0, 255).astype(np.uint8)


def fov_box(shape: tuple[int, int], box: tuple[int, int, int, int], target_fill: float) -> tuple[int, int, int, int]:
    """The crop (top, left, bottom, right) around the body ``box`` in which the box fills about
    ``target_fill`` of the area (each side widened by the same factor, clipped to the image)."""
    h, w = shape
    t, left, b, r = box
    grow = 1.0 / np.sqrt(min(max(target_fill, 1e-3), 1.0))
    bh, bw = (b - t) * grow, (r - left) * grow
    cy, cx = (t + b) / 2.0, (left + r) / 2.0
    top, bottom = max(0, int(np.floor(cy - bh / 2))), min(h, int(np.ceil(cy + bh / 2)))
    lft, rgt = max(0, int(np.floor(cx - bw / 2))), min(w, int(np.ceil(cx + bw / 2)))
    return top, lft, bottom, rgt
