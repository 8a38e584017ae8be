"""MATLAB-compatible bicubic ``imresize`` for 2-D maps.

The Inf-Net evaluation tool resizes a prediction to its ground-truth size with MATLAB's
``imresize(resmap, size(gt))`` (bicubic by default). To reproduce its scores to the third decimal we
follow MATLAB's ``imresize.m`` rules, written here from its documented behaviour:

- scale per axis = output length / input length;
- output pixel ``u`` (1-based) samples input coordinate ``x = u / scale + 0.5 * (1 - 1 / scale)``;
- Keys' cubic kernel with ``a = -0.5``, support 4 pixels; when shrinking (scale < 1) the kernel is
  widened to ``4 / scale`` and scaled (``scale * cubic(scale * d)``), which is the antialiasing;
- weights of each output pixel are normalised to sum to 1;
- indices outside the image are mirrored (MATLAB's ``aux = [1:n, n:-1:1]``: index 0 -> 1,
  -1 -> 2, n+1 -> n), i.e. half-sample symmetric padding, not plain edge replication;
- the axis with the smaller scale is resized first;
- 8-bit input gives 8-bit output: MATLAB rounds (half away from zero) and saturates after each
  axis pass, so we do too.
"""

from __future__ import annotations

import numpy as np


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``), float64, support [-2, 2]."""
    ax = np.abs(np.asarray(x, dtype=np.float64))
    ax2, ax3 = ax * ax, ax * ax * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return inner + outer


def contributions(in_length: int, out_length: int, antialiasing: bool = True
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Weights and 0-based source indices of each output pixel along one axis.

    Parameters
    ----------
    in_length, out_length : int
        Input and output lengths in pixels (>= 1).
    antialiasing : bool, default=True
        Widen the kernel when shrinking, as MATLAB does by default.

    Returns
    -------
    weights : ndarray of shape (out_length, P), float64, rows summing to 1
    indices : ndarray of shape (out_length, P), int64, values in [0, in_length)
    """
    if in_length < 1 or out_length < 1:
        raise ValueError(f"in_length and out_length must be >= 1, got {in_length}, {out_length}")
    scale = out_length / in_length
    width = 4.0
    if scale < 1 and antialiasing:
        kernel = lambda d: scale * cubic(scale * d)  # noqa: E731
        width = width / scale
    else:
        kernel = cubic
    u = np.arange(1, out_length + 1, dtype=np.float64) / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based, may leave [1, in_length]
    weights = kernel(u[:, None] - idx)
    weights = weights / weights.sum(axis=1, keepdims=True)
    period = 2 * in_length
    m = np.mod(idx.astype(np.int64) - 1, period)
    idx0 = np.where(m < in_length, m, period - 1 - m)
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], idx0[:, keep]


def _round_uint8(a: np.ndarray) -> np.ndarray:
    # MATLAB rounds half away from zero and saturates when converting double -> uint8.
    return np.clip(np.floor(a + 0.5), 0, 255).astype(np.uint8)


def imresize(image: np.ndarray, output_shape: tuple[int, int], antialiasing: bool = True) -> np.ndarray:
    """Resize a 2-D array with MATLAB's bicubic ``imresize(image, output_shape)``.

    Parameters
    ----------
    image : ndarray of shape (H, W)
        uint8 (output uint8, rounded and saturated after each axis as MATLAB does), bool (resized
        as uint8 0/255 and thresholded at > 128) or any real dtype (output float64, no clipping,
        so bicubic over/undershoot is kept).
    output_shape : (int, int)
        Target (rows, columns) in pixels.
    antialiasing : bool, default=True
        Widen the kernel when shrinking (MATLAB's default for bicubic).

    Returns
    -------
    ndarray of shape ``output_shape``; a copy of ``image`` when the size is unchanged.
    """
    a = np.asarray(image)
    if a.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {a.shape}")
    if len(output_shape) != 2 or any(int(s) < 1 for s in output_shape):
        raise ValueError(f"output_shape must be two positive ints, got {output_shape}")
    out_shape = (int(output_shape[0]), int(output_shape[1]))
    if a.dtype == bool:
        return imresize(a.astype(np.uint8) * 255, out_shape, antialiasing) > 128
    if a.dtype.kind not in "uif":
        raise ValueError(f"image must hold numbers, got dtype {a.dtype}")
    is_uint8 = a.dtype == np.uint8
    if tuple(a.shape) == out_shape:
        return a.copy() if is_uint8 else a.astype(np.float64)
    scales = [out_shape[d] / a.shape[d] for d in (0, 1)]
    order = sorted((0, 1), key=lambda d: scales[d])  # stable: rows first on equal scales
    out = a
    for dim in order:
        if out.shape[dim] == out_shape[dim]:
            continue
        w, idx = contributions(out.shape[dim], out_shape[dim], antialiasing)
        src = np.moveaxis(out.astype(np.float64), dim, 0)  # (L, other)
        res = np.einsum("op,opk->ok", w, src[idx])
        res = np.moveaxis(res, 0, dim)
        out = _round_uint8(res) if is_uint8 else res
    return out
