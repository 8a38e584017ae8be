"""Reader of COVID-SemiSeg (the Inf-Net release of MedSeg slices; Fan et al., IEEE TMI 2020).

Layout below ``<root>/COVID-SemiSeg/Dataset`` (see :data:`ssinfnet.data.sources.SOURCES`):

==============  ===============================================================  =========================
subset          folders                                                          labels read
==============  ===============================================================  =========================
``train``       TrainingSet/LungInfection-Train/Doctor-label/{Imgs,GT,Edge}      infection, edge,
                + TrainingSet/MultiClassInfection-Train/{GT,Prior}               classes, prior
``test``        TestingSet/LungInfection-Test/{Imgs,GT}                          infection, classes
                + TestingSet/MultiClassInfection-Test/GT
``unlabelled``  TrainingSet/LungInfection-Train/Pseudo-label/{Imgs,GT}           pseudo_label (soft, not GT)
==============  ===============================================================  =========================

The multi-class images are byte-identical copies of the binary-task images, so each labelled slice
is read once and gets both its binary and its class labels. Consistency is checked, not assumed:
the binary infection mask must equal ``classes > 0`` exactly, or the reader raises.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .io import DataError, list_images, read_binary_mask, read_image, read_label_mask, read_soft_mask
from .sample import Sample

SOURCE_NAME = "covid-semiseg"
SUBSETS = ("train", "test", "unlabelled")

_TRAIN = Path("TrainingSet/LungInfection-Train/Doctor-label")
_MULTI_TRAIN = Path("TrainingSet/MultiClassInfection-Train")
_TEST = Path("TestingSet/LungInfection-Test")
_MULTI_TEST = Path("TestingSet/MultiClassInfection-Test")
_POOL = Path("TrainingSet/LungInfection-Train/Pseudo-label")
_VOLUME = re.compile(r"^Data-1_(?P<volume>.+)_(?P<slice>\d+)$")


def dataset_dir(root: Path | str) -> Path:
    """The ``Dataset`` folder of COVID-SemiSeg under a data root (accepts the folder itself too)."""
    root = Path(root)
    for cand in (root / "COVID-SemiSeg" / "Dataset", root / "Dataset", root):
        if (cand / "TrainingSet").is_dir() and (cand / "TestingSet").is_dir():
            return cand
    raise DataError(f"{root}: no COVID-SemiSeg Dataset folder (expected COVID-SemiSeg/Dataset/"
                    f"{{TrainingSet,TestingSet}} below it)")


def _match(folder: Path, stem: str, what: str) -> Path:
    for suffix in (".png", ".jpg", ".jpeg"):
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    raise DataError(f"{folder}: no {what} for image '{stem}'")


def _labelled(ds: Path, img_dir: Path, gt_dir: Path, multi_dir: Path, subset: str,
              edge_dir: Path | None, prior_dir: Path | None) -> list[Sample]:
    samples = []
    for img_path in list_images(ds / img_dir, "images"):
        stem = img_path.stem
        image = read_image(img_path)
        infection = read_binary_mask(_match(ds / gt_dir, stem, "ground truth"), image.shape)
        classes = read_label_mask(_match(ds / multi_dir / "GT", stem, "multi-class ground truth"),
                                  (0, 1, 2), image.shape)
        if not np.array_equal(infection, classes > 0):
            raise DataError(f"{img_path}: binary ground truth disagrees with multi-class ground truth "
                            f"on {int((infection != (classes > 0)).sum())} pixels")
        edge = read_binary_mask(_match(ds / edge_dir, stem, "edge map"), image.shape) if edge_dir else None
        prior = read_soft_mask(_match(ds / prior_dir, stem, "prior"), image.shape) if prior_dir else None
        samples.append(Sample(image=image, slice_id=stem, source=SOURCE_NAME, subset=subset,
                              path=str(img_path), infection=infection, classes=classes, edge=edge,
                              prior=prior, group_id=None))
    return samples


def read_semiseg(root: Path | str, subset: str, limit: int | None = None) -> list[Sample]:
    """Read one subset of COVID-SemiSeg as a list of :class:`Sample`.

    Parameters
    ----------
    root : path
        Data root holding ``COVID-SemiSeg/Dataset`` (or the Dataset folder itself).
    subset : {"train", "test", "unlabelled"}
        See the module docstring. The labelled slices carry no patient ids (``group_id`` None);
        unlabelled slices carry their CT volume name as ``group_id``.
    limit : int or None
        Read only the first ``limit`` files (natural order), for quick looks.

    Raises
    ------
    DataError
        Missing or empty folder, unreadable file, mask/image size mismatch, unexpected label values,
        binary and multi-class labels that disagree.
    """
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    ds = dataset_dir(root)
    if subset == "train":
        out = _labelled(ds, _TRAIN / "Imgs", _TRAIN / "GT", _MULTI_TRAIN, subset, _TRAIN / "Edge",
                        _MULTI_TRAIN / "Prior")
    elif subset == "test":
        out = _labelled(ds, _TEST / "Imgs", _TEST / "GT", _MULTI_TEST, subset, None, None)
    else:
        out = []
        for img_path in list_images(ds / _POOL / "Imgs", "unlabelled images")[:limit]:
            m = _VOLUME.match(img_path.stem)
            if m is None:
                raise DataError(f"{img_path}: unlabelled file name does not follow "
                                f"'Data-1_<volume>_<slice>'")
            image = read_image(img_path)
            pseudo = read_soft_mask(_match(ds / _POOL / "GT", img_path.stem, "pseudo label"), image.shape)
            out.append(Sample(image=image, slice_id=img_path.stem, source=SOURCE_NAME, subset=subset,
                              path=str(img_path), pseudo_label=pseudo, group_id=m["volume"],
                              meta={"slice_index": int(m["slice"])}))
    return out[:limit] if limit is not None else out
