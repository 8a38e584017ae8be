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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torchvision import tv_tensors

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
