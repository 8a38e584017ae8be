"""Reader of the MedSeg COVID-19 NIfTI release (the source of the COVID-SemiSeg slices).

Layout below ``<root>/medseg``: ``tr_im.nii(.gz)`` + ``tr_mask.nii(.gz)`` (100 axial slices of ~40
patients, stacked along the last axis) and ``rp_im/<k>.nii(.gz)`` + ``rp_msk/<k>.nii(.gz)``
(9 Radiopaedia volumes). Masks: 0 background, 1 GGO, 2 consolidation, 3 pleural effusion.
Effusion is not lung infection: it is kept out of the infection mask and mapped to background in
``classes`` (its pixels are recorded in ``meta["effusion"]``).

Images are in Hounsfield units and are windowed to 8 bits (lung window by default).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import DataError
from .phantoms import LUNG_WINDOW, window_hu
from .sample import Sample

SOURCE_NAME = "medseg"
EFFUSION = 3


def load_nifti(path: Path) -> np.ndarray:
    """A NIfTI file as a float32 (X, Y, Z) volume (2-D images get Z = 1; a trailing 4th axis of 1 is
    dropped). DataError for an unreadable file, another shape, no slices, NaN or Inf."""
    import nibabel as nib

    try:
        arr = np.asarray(nib.load(str(path)).get_fdata(dtype=np.float32))
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise DataError(f"{path}: unreadable NIfTI ({exc.__class__.__name__}: {exc})") from exc
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise DataError(f"{path}: expected a 2-D or 3-D volume, got shape {arr.shape}")
    if arr.size == 0:
        raise DataError(f"{path}: NIfTI volume has no slices (shape {arr.shape})")
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: volume contains NaN or Inf")
    return arr if arr.ndim == 3 else arr[..., None]


def _find(folder: Path, stem: str) -> Path:
    for suffix in (".nii.gz", ".nii"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    raise DataError(f"{folder}: {stem}.nii(.gz) not found")


def read_volume_pair(image_path: Path, mask_path: Path, volume_id: str, subset: str,
                     window: tuple[float, float] = LUNG_WINDOW) -> list[Sample]:
    """Slice an image/mask NIfTI pair along its last (axial) axis into :class:`Sample` objects.

    Slices are transposed to (rows, columns) = (y, x) as radiologists view them; label values must be
    in {0, 1, 2, 3}.
    """
    img = load_nifti(Path(image_path))
    msk = load_nifti(Path(mask_path))
    if img.shape != msk.shape:
        raise DataError(f"{mask_path}: mask shape {msk.shape} differs from image {image_path} {img.shape}")
    labels = np.rint(msk)
    if not np.allclose(labels, msk) or not set(np.unique(labels).astype(int)) <= {0, 1, 2, 3}:
        bad = sorted(set(np.unique(msk).tolist()) - {0.0, 1.0, 2.0, 3.0})[:5]
        raise DataError(f"{mask_path}: label values {bad} outside the declared set [0, 1, 2, 3]")
    labels = labels.astype(np.uint8)
    samples = []
    for k in range(img.shape[2]):
        hu = img[:, :, k].T
        lab = labels[:, :, k].T
        classes = np.where(lab == EFFUSION, 0, lab).astype(np.uint8)
        samples.append(Sample(
            image=window_hu(hu, *window), slice_id=f"{volume_id}_{k:03d}", source=SOURCE_NAME,
            subset=subset, path=f"{image_path}#{k}", infection=classes > 0, classes=classes,
            group_id=volume_id,
            meta={"hu_window": tuple(window), "effusion": lab == EFFUSION, "slice_index": k},
        ))
    return samples


def read_medseg(root: Path | str, subset: str = "slices", window: tuple[float, float] = LUNG_WINDOW) -> list[Sample]:
    """Read MedSeg: ``subset="slices"`` (tr_im, 100 slices, no patient ids) or ``"volumes"`` (rp_im, volume id
    as group id). ``window`` is the (level, width) HU window mapped to 0..255."""
    base = Path(root) / "medseg" if (Path(root) / "medseg").is_dir() else Path(root)
    if subset == "slices":
        return read_volume_pair(_find(base, "tr_im"), _find(base, "tr_mask"), "tr", subset, window)
    if subset == "volumes":
        im_dir, msk_dir = base / "rp_im", base / "rp_msk"
        if not im_dir.is_dir():
            raise DataError(f"{im_dir}: folder of MedSeg volumes not found")
        stems = sorted({p.name.split(".")[0] for p in im_dir.iterdir() if p.name.endswith((".nii", ".nii.gz"))},
                       key=lambda s: (len(s), s))
        if not stems:
            raise DataError(f"{im_dir}: no NIfTI volumes found (empty folder)")
        out = []
        for stem in stems:
            out += read_volume_pair(_find(im_dir, stem), _find(msk_dir, stem), f"rp_{stem}", subset, window)
        return out
    raise ValueError(f"subset must be 'slices' or 'volumes', got {subset!r}")
