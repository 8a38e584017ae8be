"""The one input path: how a CT slice and its prior become the tensor the network sees.

Training (:class:`~ssinfnet.data.dataset.SliceDataset`, augmented or not), validation and inference
(:func:`ssinfnet.segmentation.predict.predict_probabilities`, hence the ``predict`` command) all build
their inputs with :func:`slice_input`, so a slice gives the same tensor at training time (without
augmentation) as at inference time, bit for bit. The steps, in order:

1. **Values.** The uint8 grey image becomes float32 ``g / 255`` in [0, 1]; the prior, a float
   probability map in [0, 1], stays float32 (it is not quantised to 8 bits: a stage-1 probability
   keeps its value). Both are ``tv_tensors.Image`` (1, H, W), the image first (the one
   :class:`~ssinfnet.data.transforms.GreyCutout` erases); label masks are ``tv_tensors.Mask``.
2. **Geometry.** One torchvision v2 transform moves image, prior and masks together; the default
   is :func:`~ssinfnet.data.transforms.eval_transform`, a resize to ``size`` x ``size``: bilinear
   with antialiasing for the image and the prior, nearest neighbour for masks. Resizing in float
   rather than on uint8 means no second rounding to 8 bits after the resize, the same kernel for
   image and prior, and it is no slower than the uint8 path under the training augmentation.
3. **Normalisation.** :func:`~ssinfnet.data.transforms.normalize` maps image and prior alike to
   [-1, 1].

:func:`network_input` stacks image and prior into the network's channels; :func:`batch_input` does
all of it for a list of slices, as a DataLoader over a SliceDataset would.

**Before step 1, for slices from outside the training data** (the ``predict`` command, the shift
benchmark of chapter 5), :func:`prepare_slice` turns what a user brings into a slice like the
training slices, and records every step it takes:

0a. **Hounsfield units** (DICOM, NIfTI) are windowed to the training window (the model's reference
    window when it records one, else the lung window, level -600 HU, width 1500 HU).
0b. **Field of view.** A slice whose body fills much less of the frame than in the training slices
    (a full-field scan with air around the body, where the training crops hold the body alone) is
    cropped around the body to the training's field of view (:func:`ssinfnet.data.signature.fov_box`).
0c. **Grey levels.** The slice's signature (lung and body grey medians, field of view, lung share;
    :mod:`ssinfnet.data.signature`) is compared with the training's; when the grey levels are far
    from it (another window or gamma) and re-windowing is on, they are mapped linearly so the lung and
    body medians meet the training's (:func:`ssinfnet.data.signature.rewindow`).

Training slices are never prepared: they are the reference. :class:`PreparedSlice` keeps the crop box,
so maps predicted on the prepared slice go back to the input's frame (:meth:`PreparedSlice.restore`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision import tv_tensors

from .phantoms import LUNG_WINDOW, window_hu
from .signature import Reference, Signature, fov_box, rough_masks, rewindow, signature
from .transforms import eval_transform, normalize

PRIOR_SLACK = 1e-5  # resampling round-off a probability map may carry past [0, 1]


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"{name}: image must be a 2-D uint8 grey array, got {image.dtype} of shape {image.shape}")
    return np.ascontiguousarray(image)


def _check_prior(prior, shape: tuple[int, ...], name: str) -> np.ndarray:
    p = np.ascontiguousarray(prior, dtype=np.float32)
    if p.shape != shape:
        raise ValueError(f"{name}: prior shape {p.shape} differs from image {shape}")
    if p.size and (not np.isfinite(p).all() or p.min() < -PRIOR_SLACK or p.max() > 1 + PRIOR_SLACK):
        raise ValueError(f"{name}: prior must hold finite probabilities in [0, 1], "
                         f"got values in [{np.nanmin(p):.4g}, {np.nanmax(p):.4g}]"
                         + ("" if np.isfinite(p).all() else " and non-finite values"))
    return p


def slice_input(image: np.ndarray, size: int, prior: np.ndarray | None = None,
                labels: Mapping[str, np.ndarray] | None = None, transform: Callable | None = None,
                name: str = "slice") -> dict[str, torch.Tensor]:
    """A slice (and its prior and labels) as the network's input at ``size`` x ``size`` pixels.

    Parameters
    ----------
    image : uint8 array (H, W)
        Grey CT slice, 0..255.
    size : int
        Network input side (pixels); the transform's output must have it.
    prior : float array (H, W) in [0, 1], optional
        Prior probability map (stage-1 infection probability), kept in float.
    labels : dict of name -> integer or bool array (H, W), optional
        Masks moved with the image (nearest neighbour), e.g. ``infection``, ``classes``.
    transform : callable, optional
        torchvision v2 transform on a dict of tv_tensors (e.g.
        :func:`~ssinfnet.data.transforms.train_transform`); default
        :func:`~ssinfnet.data.transforms.eval_transform` ``(size)``, the deterministic resize.
    name : str
        Names the slice in error messages.

    Returns
    -------
    dict of tensors
        ``image`` (1, S, S) float32 in [-1, 1]; ``prior`` (1, S, S) float32 in [-1, 1] when a prior
        is given; each label (1, S, S) as the transform leaves it (uint8 masks, labels as given).

    Raises ValueError, naming the slice, for a non-uint8 or non-2-D image, a prior of another
    shape or with values outside [0, 1], a label of another shape, or a transform whose output
    is not ``size`` x ``size``.
    """
    image = _check_image(image, name)
    item = {"image": tv_tensors.Image(torch.from_numpy(image)[None].float().div_(255.0))}
    if prior is not None:
        item["prior"] = tv_tensors.Image(torch.from_numpy(_check_prior(prior, image.shape, name))[None])
    for key, mask in (labels or {}).items():
        mask = np.asarray(mask)
        if mask.shape != image.shape:
            raise ValueError(f"{name}: {key} shape {mask.shape} differs from image {image.shape}")
        mask = mask.astype(np.uint8) if mask.dtype == bool else np.ascontiguousarray(mask)
        item[key] = tv_tensors.Mask(torch.from_numpy(mask)[None])
    item = (transform or eval_transform(size))(item)
    got = tuple(item["image"].shape[-2:])
    if got != (size, size):
        raise ValueError(f"{name}: the transform gave a {got[0]} x {got[1]} px image; the network input "
                         f"side is {size}")
    out = {key: value.as_subclass(torch.Tensor) for key, value in item.items()}
    out["image"] = normalize(out["image"])
    if "prior" in out:
        out["prior"] = normalize(out["prior"])
    return out


def network_input(batch: Mapping[str, torch.Tensor], with_prior: bool) -> torch.Tensor:
    """The tensor the network sees: the image, and the prior as a second channel when ``with_prior``.

    ``batch`` holds ``image`` (and ``prior``) as (1, S, S) for one slice (:func:`slice_input`) or
    (B, 1, S, S) for a batch (a DataLoader over :class:`~ssinfnet.data.dataset.SliceDataset`); the
    result is (C, S, S) or (B, C, S, S) with C = 1 or 2.
    """
    x = batch["image"]
    if with_prior:
        if "prior" not in batch:
            raise ValueError("with_prior=True but the batch has no 'prior'")
        x = torch.cat([x, batch["prior"]], dim=-3)
    return x


def batch_input(images: Sequence[np.ndarray], size: int, priors: Sequence[np.ndarray] | None = None,
                first: int = 0) -> torch.Tensor:
    """Network input of a list of slices: :func:`slice_input` then :func:`network_input`, stacked.

    ``images`` are uint8 (H, W) of any sizes, ``priors`` (optional) float (H, W) in [0, 1] aligned
    with them; returns float32 (B, C, size, size), C = 2 with priors, else 1. ``first`` is the
    position of ``images[0]`` in the caller's list, for error messages (``image 3: ...``).
    """
    if priors is not None and len(priors) != len(images):
        raise ValueError(f"priors has {len(priors)} maps for {len(images)} images")
    xs = [network_input(slice_input(img, size, None if priors is None else priors[j], name=f"image {first + j}"),
                        priors is not None)
          for j, img in enumerate(images)]
    return torch.stack(xs)


# ----------------------------------------------------------------------------- inputs from outside

#: Signature distance (:meth:`ssinfnet.data.signature.Reference.distance`) beyond which a slice is
#: "unlike the training slices": 1.5 half-ranges beyond the training's central 90 %. On the 48
#: COVID-SemiSeg test slices against the training reference the largest distance is 1.005.
FAR = 1.5

#: Grey-level fields the re-windowing acts on (the field of view is the crop's business).
GREY_FIELDS = ("lung_p50", "body_p50")


@dataclass(frozen=True)
class InputPolicy:
    """How :func:`prepare_slice` treats a slice from outside the training data.

    ``reference``: the training distribution (None: no comparison, no crop, no re-windowing; HU are
    still windowed); ``window``: (level, width) in HU for DICOM/NIfTI, default the reference's window
    or the lung window; ``crop``: restore the training's field of view; ``rewindow``: map grey levels
    that are far from the training's; ``far``: the distance called far (:data:`FAR`).
    """

    reference: Reference | None = None
    window: tuple[float, float] | None = None
    crop: bool = True
    rewindow: bool = True
    far: float = FAR

    def __post_init__(self):
        if self.window is not None and not self.window[1] > 0:
            raise ValueError(f"window width must be > 0, got {self.window}")
        if not self.far > 0:
            raise ValueError(f"far must be > 0, got {self.far}")

    @property
    def hu_window(self) -> tuple[float, float]:
        """The (level, width) that HU slices are windowed with."""
        if self.window is not None:
            return tuple(self.window)
        if self.reference is not None and self.reference.window is not None:
            return tuple(self.reference.window)
        return LUNG_WINDOW


@dataclass
class PreparedSlice:
    """A slice from outside the training data after :func:`prepare_slice`.

    ``image``: uint8 (h, w), what the network gets; ``shape``: (H, W) of the input; ``box``: (top,
    left, bottom, right) of ``image`` in the input (the whole input when not cropped); ``kind``:
    "uint8" or "hu"; ``steps``: what was done, in words, in order; ``signature_in`` / ``signature``:
    before and after the steps (None without a reference); ``distance_in`` / ``distance``: their
    distances from the reference (NaN without one); ``warnings``: what the user should know.
    """

    image: np.ndarray
    shape: tuple[int, int]
    box: tuple[int, int, int, int]
    kind: str
    steps: list = field(default_factory=list)
    signature_in: Signature | None = None
    signature: Signature | None = None
    distance_in: float = float("nan")
    distance: float = float("nan")
    warnings: list = field(default_factory=list)

    @property
    def cropped(self) -> bool:
        return self.box != (0, 0, *self.shape)

    def restore(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """A map (h, w) or (C, h, w) on ``image`` placed in the input's frame (H, W) or (C, H, W);
        pixels outside the crop get ``fill``."""
        values = np.asarray(values)
        if values.shape[-2:] != self.image.shape:
            raise ValueError(f"map of shape {values.shape} does not fit the prepared slice {self.image.shape}")
        if not self.cropped:
            return values
        out = np.full(values.shape[:-2] + tuple(self.shape), fill, dtype=values.dtype)
        t, left, b, r = self.box
        out[..., t:b, left:r] = values
        return out


def prepare_slice(raw: np.ndarray, kind: str = "uint8", policy: InputPolicy | None = None,
                  name: str = "slice") -> PreparedSlice:
    """Make a slice from outside the training data look like the training slices (steps 0a-0c of the
    module docstring), recording every step.

    Parameters
    ----------
    raw : array (H, W)
        ``kind="uint8"``: 8-bit grey (uint8); ``kind="hu"``: Hounsfield units (finite floats).
    kind : {"uint8", "hu"}
    policy : InputPolicy, optional
        Default ``InputPolicy()``: HU windowed with the lung window, nothing else (no reference).
    name : str
        Names the slice in errors and warnings.

    Returns
    -------
    PreparedSlice
        Its ``image`` goes to :func:`slice_input` like any slice; ``restore`` puts maps back.

    Raises ValueError, naming the slice, for an unknown ``kind``, a non-2-D input, a non-uint8
    8-bit input or non-finite HU values.
    """
    policy = InputPolicy() if policy is None else policy
    steps: list[str] = []
    if kind == "hu":
        hu = np.asarray(raw, dtype=np.float64)
        if hu.ndim != 2 or not np.isfinite(hu).all():
            raise ValueError(f"{name}: HU slice must be a finite 2-D array, got shape {hu.shape}")
        level, width = policy.hu_window
        image = window_hu(hu, level, width)
        steps.append(f"HU windowed to level {level:g}, width {width:g}")
    elif kind == "uint8":
        image = _check_image(raw, name)
    else:
        raise ValueError(f"{name}: kind must be 'uint8' or 'hu', got {kind!r}")
    shape = tuple(image.shape)
    out = PreparedSlice(image, shape, (0, 0, *shape), kind, steps)
    ref = policy.reference
    if ref is None or min(shape) < 8:
        return out
    masks = rough_masks(image, name)
    out.signature_in = sig = signature(image, masks, name)
    out.distance_in = ref.distance(sig)
    if out.distance_in > policy.far:
        out.warnings.append(f"input unlike the training slices (signature distance {out.distance_in:.1f}: "
                            f"{ref.describe(sig, 1.0)})")
    fill_lo = ref.quantiles["body_fill"][0]
    if policy.crop and masks.found and sig.body_fill < fill_lo and ref.field_distances(sig)["body_fill"] > 1.0:
        box = fov_box(shape, masks.box, ref.median("body_fill"))
        if box != (0, 0, *shape) and min(box[2] - box[0], box[3] - box[1]) >= 8:
            t, left, b, r = box
            out.image, out.box = np.ascontiguousarray(image[t:b, left:r]), box
            steps.append(f"cropped to the body: rows {t}-{b}, columns {left}-{r} of {shape[0]} x {shape[1]} "
                         f"(body filled {sig.body_fill:.2f} of the frame, training {ref.median('body_fill'):.2f})")
            sig = signature(out.image, name=name)
    if policy.rewindow and ref.distance(sig, GREY_FIELDS) > policy.far:
        mapped = rewindow(out.image, sig, ref)
        if mapped is None:
            out.warnings.append("grey levels not re-windowed: no lungs or body found to measure them")
        else:
            out.image = mapped
            new = signature(mapped, name=name)
            steps.append(f"re-windowed: lung median {sig.lung_p50:.0f} -> {new.lung_p50:.0f}, body median "
                         f"{sig.body_p50:.0f} -> {new.body_p50:.0f} (training {ref.median('lung_p50'):.0f}, "
                         f"{ref.median('body_p50'):.0f})")
            sig = new
    out.signature, out.distance = sig, ref.distance(sig)
    return out
