"""Reading single image and mask files with validation that fails loudly.

Every function raises :class:`DataError` naming the file and the problem; nothing is repaired silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class DataError(ValueError):
    """A data file or folder is missing, unreadable or inconsistent. The message names it."""


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an image file in its own mode (DataError if missing, unreadable or truncated)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        img = Image.open(path)
        img.load()  # forces full decode: a truncated file fails here, not later
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable image ({exc})") from exc
    return img


def to_uint8_grey(arr: np.ndarray, path: Path | str = "") -> np.ndarray:
    """Convert a decoded image array to 2-D uint8 grey values.

    Accepts (H, W), (H, W, 3) and (H, W, 4) arrays of uint8 or 16-bit integers; colour is reduced
    to its first channel after checking the channels agree (CT exports are grey in RGB), 16-bit
    values are scaled by 255/65535. Raises :class:`DataError` for NaN/Inf or other shapes.
    """
    a = np.asarray(arr)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise DataError(f"{path}: image contains NaN or Inf")
    if a.ndim == 3 and a.shape[2] in (3, 4):
        a = a[..., :3]
        a = a[..., 0] if (a[..., 0] == a[..., 1]).all() and (a[..., 0] == a[..., 2]).all() \
            else np.asarray(Image.fromarray(a.astype(np.uint8)).convert("L"))
    if a.ndim != 2:
        raise DataError(f"{path}: expected a 2-D grey image, got shape {a.shape}")
    if a.dtype.kind == "i" and a.size and a.min() < 0:
        raise DataError(f"{path}: negative integer grey values (min {a.min()})")
    if a.dtype == np.uint8:
        return np.array(a)  # a writable copy (PIL hands out read-only buffers)
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if a.dtype.kind in "ui" and a.max(initial=0) > 255 or a.dtype == np.uint16:
        return np.clip(np.round(a.astype(np.float64) * 255.0 / 65535.0), 0, 255).astype(np.uint8)
    if a.dtype.kind in "ui":
        return a.astype(np.uint8)
    if a.dtype.kind == "f" and a.min() >= 0 and a.max() <= 1:
        return np.round(a * 255).astype(np.uint8)
    raise DataError(f"{path}: cannot convert {a.dtype} values in [{a.min()}, {a.max()}] to 8-bit grey")


def read_image(path: Path | str) -> np.ndarray:
    """Read an image file as a (H, W) uint8 grey array (L, RGB, RGBA, I;16 and 1-bit accepted).

    Float images (mode F) must hold finite values in [0, 1]; NaN/Inf or other ranges raise.
    """
    img = open_image(Path(path))
    if img.mode == "F":  # PIL's own conversion would clip NaN and fractions to 0 without a word
        return to_uint8_grey(np.asarray(img), path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img).astype(np.int64)
        if arr.min() < 0 or arr.max() > 65535:
            raise DataError(f"{path}: integer image values outside 0..65535")
        return to_uint8_grey(arr.astype(np.uint16), path)
    if img.mode == "P":
        img = img.convert("RGB")
    if img.mode not in ("L", "RGB", "RGBA", "1", "LA"):
        img = img.convert("RGB")
    if img.mode == "LA":
        img = img.convert("L")
    return to_uint8_grey(np.asarray(img), path)


def read_binary_mask(path: Path | str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a binary mask ({0, 255} 8-bit or 1-bit PNG) as a bool (H, W) array.

    Raises :class:`DataError` when the file holds other values (e.g. a 0/1/2 label PNG, which would
    silently become all background) or when ``shape`` is given and differs.
    """
    img = open_image(Path(path))
    if img.mode == "1":
        arr = np.asarray(img, dtype=bool)
    else:
        if img.mode == "P":
            raise DataError(f"{path}: palette (label-index) PNG given where a binary mask is expected")
        raw = np.asarray(img.convert("L") if img.mode not in ("L",) else img)
        values = np.unique(raw)
        if not set(values.tolist()) <= {0, 255}:
            if set(values.tolist()) <= {0, 1, 2, 3}:
                raise DataError(f"{path}: looks like a label-index mask (values {values.tolist()}), "
                                f"not a binary {{0, 255}} mask")
            raise DataError(f"{path}: binary mask expected (values 0 and 255), found {len(values)} "
                            f"distinct values in [{values.min()}, {values.max()}]")
        arr = raw > 128
    _check_shape(path, arr.shape, shape)
    return arr


def read_soft_mask(path: Path | str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a soft map (8-bit grey 0..255) as float32 (H, W) in [0, 1]."""
    raw = read_image(path)
    _check_shape(path, raw.shape, shape)
    return raw.astype(np.float32) / 255.0


def read_label_mask(path: Path | str, allowed: tuple[int, ...] = (0, 1, 2),
                    shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a label-index mask (palette or L PNG holding class codes) as uint8 (H, W).

    Raises :class:`DataError` when a value outside ``allowed`` occurs (a {0, 255} binary PNG included).
    """
    img = open_image(Path(path))
    if img.mode not in ("P", "L", "1"):
        raise DataError(f"{path}: label mask must be a palette or 8-bit grey PNG, got mode {img.mode}")
    arr = np.asarray(img).astype(np.uint8)
    bad = sorted(set(np.unique(arr).tolist()) - set(allowed))
    if bad:
        raise DataError(f"{path}: label values {bad} outside the declared set {list(allowed)}")
    _check_shape(path, arr.shape, shape)
    return arr


def _check_shape(path, got, want) -> None:
    if want is not None and tuple(got) != tuple(want):
        raise DataError(f"{path}: mask size {got[1]}x{got[0]} (WxH) differs from its image "
                        f"{want[1]}x{want[0]}")


def list_images(folder: Path | str, what: str = "images") -> list[Path]:
    """Image files in ``folder`` sorted naturally by stem; :class:`DataError` if missing or empty."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder of {what} not found")
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not files:
        raise DataError(f"{folder}: no {what} found (empty folder)")
    return sorted(files, key=lambda p: natural_key(p.stem))


def natural_key(text: str) -> tuple:
    """Sort key that orders 'img2' before 'img10'."""
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))
