"""Shared fixtures of the data-layer tests: a tiny fake COVID-SemiSeg tree written with PIL, and the
real data root when this machine has one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from realdata import real_data_root  # noqa: F401  (re-exported for the data tests)
import pytest
from PIL import Image

SEMISEG = Path("COVID-SemiSeg/Dataset")
TRAIN = SEMISEG / "TrainingSet/LungInfection-Train/Doctor-label"
MULTI_TRAIN = SEMISEG / "TrainingSet/MultiClassInfection-Train"
TEST = SEMISEG / "TestingSet/LungInfection-Test"
MULTI_TEST = SEMISEG / "TestingSet/MultiClassInfection-Test"
POOL = SEMISEG / "TrainingSet/LungInfection-Train/Pseudo-label"

#: The fake tree: train ids, test ids, unlabelled names (two volumes), image size (H, W).
FAKE_TRAIN = ("1", "2", "10")
FAKE_TEST = ("3", "4")
FAKE_POOL = ("Data-1_coronacases_org_001_7", "Data-1_coronacases_org_001_12", "Data-1_radiopaedia_org_x_3")
FAKE_SHAPE = (36, 44)
PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9)


def fake_classes(k: int, shape=FAKE_SHAPE) -> np.ndarray:
    """A 0/1/2 label map that differs per ``k``: a GGO rectangle, a consolidation square inside it."""
    c = np.zeros(shape, np.uint8)
    c[4 + k % 5: 20 + k % 5, 6 + k % 7: 30] = 1
    c[8 + k % 5: 14 + k % 5, 10: 16 + k % 3] = 2
    return c


def fake_image(k: int, shape=FAKE_SHAPE) -> np.ndarray:
    rng = np.random.default_rng(k)
    return rng.integers(0, 256, shape).astype(np.uint8)


def save_grey(arr: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, np.uint8)).save(path)
    return path


def save_palette(classes: np.ndarray, path: Path) -> Path:
    """A mode-P PNG holding the class codes as palette indices (as the release's multi-class GT)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(classes, np.uint8))
    img.putpalette(PALETTE)
    assert img.mode == "P"
    img.save(path)
    return path


def write_semiseg_tree(root: Path) -> Path:
    """Write a tiny COVID-SemiSeg tree below ``root`` in the release's folder layout; returns ``root``."""
    from ssinfnet.data.phantoms import edge_of

    for k, stem in enumerate(FAKE_TRAIN):
        classes = fake_classes(k)
        inf = classes > 0
        save_grey(fake_image(k), root / TRAIN / "Imgs" / f"{stem}.jpg")
        save_grey(inf * 255, root / TRAIN / "GT" / f"{stem}.png")
        save_grey(edge_of(inf) * 255, root / TRAIN / "Edge" / f"{stem}.png")
        save_grey(fake_image(k), root / MULTI_TRAIN / "Imgs" / f"{stem}.jpg")
        save_palette(classes, root / MULTI_TRAIN / "GT" / f"{stem}.png")
        save_grey(inf * 255, root / MULTI_TRAIN / "Prior" / f"{stem}.png")
    for k, stem in enumerate(FAKE_TEST, start=10):
        classes = fake_classes(k)
        save_grey(fake_image(k), root / TEST / "Imgs" / f"{stem}.jpg")
        save_grey((classes > 0) * 255, root / TEST / "GT" / f"{stem}.png")
        save_grey(fake_image(k), root / MULTI_TEST / "Imgs" / f"{stem}.jpg")
        save_palette(classes, root / MULTI_TEST / "GT" / f"{stem}.png")
    for k, stem in enumerate(FAKE_POOL, start=20):
        save_grey(fake_image(k), root / POOL / "Imgs" / f"{stem}.jpg")
        save_grey(np.linspace(0, 255, FAKE_SHAPE[0] * FAKE_SHAPE[1]).reshape(FAKE_SHAPE), root / POOL / "GT" / f"{stem}.png")
    return root


def truncate(path: Path, fraction: float = 0.5) -> Path:
    """Cut a file to ``fraction`` of its bytes (a download that stopped half way)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@pytest.fixture
def semiseg_root(tmp_path) -> Path:
    """A data root holding the fake COVID-SemiSeg tree."""
    return write_semiseg_tree(tmp_path / "root")


@pytest.fixture(scope="session")
def real_root() -> Path:
    root = real_data_root()
    if root is None:
        pytest.skip("no real data root (set SSINFNET_DATA)")
    return root
