"""COVID-SemiSeg reader on a fake tree (every corruption named) and, when present, on the real release."""

import shutil

import numpy as np
import pytest

from ssinfnet.data.catalog import load_samples
from ssinfnet.data.io import DataError
from ssinfnet.data.phantoms import edge_of
from ssinfnet.data.semiseg import dataset_dir, read_semiseg
from ssinfnet.data.sources import DataRoot

from .conftest import (
    FAKE_POOL, FAKE_SHAPE, FAKE_TEST, FAKE_TRAIN, MULTI_TEST, MULTI_TRAIN, POOL, SEMISEG, TEST, TRAIN,
    fake_classes, save_grey, save_palette, truncate,
)

H, W = FAKE_SHAPE


def test_train_reads_every_file_with_all_labels(semiseg_root):
    samples = read_semiseg(semiseg_root, "train")
    assert [s.slice_id for s in samples] == ["1", "2", "10"]  # natural order, one per image file
    for k, s in enumerate(samples):
        assert s.subset == "train" and s.source == "covid-semiseg" and s.group_id is None
        assert s.image.shape == FAKE_SHAPE and s.image.dtype == np.uint8
        np.testing.assert_array_equal(s.classes, fake_classes(k))
        np.testing.assert_array_equal(s.infection, fake_classes(k) > 0)
        assert s.edge.dtype == bool
        np.testing.assert_array_equal(s.edge, edge_of(s.infection))  # what the fixture wrote
        assert s.prior.dtype == np.float32 and set(np.unique(s.prior)) == {0.0, 1.0}
        assert s.path.endswith(f"Doctor-label/Imgs/{s.slice_id}.jpg")


def test_test_subset_has_infection_and_classes(semiseg_root):
    samples = read_semiseg(semiseg_root, "test")
    assert [s.slice_id for s in samples] == list(FAKE_TEST)
    for k, s in enumerate(samples, start=10):
        np.testing.assert_array_equal(s.classes, fake_classes(k))
        assert s.edge is None and s.prior is None and s.pseudo_label is None


def test_unlabelled_groups_by_volume(semiseg_root):
    samples = read_semiseg(semiseg_root, "unlabelled")
    assert len(samples) == len(FAKE_POOL)
    assert [s.slice_id for s in samples] == ["Data-1_coronacases_org_001_7", "Data-1_coronacases_org_001_12",
                                             "Data-1_radiopaedia_org_x_3"]
    assert [s.group_id for s in samples] == ["coronacases_org_001", "coronacases_org_001", "radiopaedia_org_x"]
    assert [s.meta["slice_index"] for s in samples] == [7, 12, 3]
    s = samples[0]
    assert s.infection is None and s.classes is None
    assert s.pseudo_label.dtype == np.float32 and s.pseudo_label.min() == 0.0 and s.pseudo_label.max() == 1.0
    assert len(read_semiseg(semiseg_root, "unlabelled", limit=2)) == 2


def test_root_variants_and_bad_subset(semiseg_root, tmp_path):
    ds = semiseg_root / SEMISEG
    assert dataset_dir(semiseg_root) == dataset_dir(ds) == dataset_dir(ds.parent) == ds
    with pytest.raises(ValueError, match="subset must be one of"):
        read_semiseg(semiseg_root, "val")
    with pytest.raises(DataError, match="no COVID-SemiSeg Dataset folder"):
        read_semiseg(tmp_path / "elsewhere", "train")


# ----------------------------------------------------------------------------- corruptions, one per row
def _gt_wrong_size(root):
    return save_grey(np.zeros((H + 3, W), np.uint8), root / TRAIN / "GT" / "2.png")


def _edge_wrong_size(root):
    return save_grey(np.zeros((H, W - 1), np.uint8), root / TRAIN / "Edge" / "2.png")


def _prior_wrong_size(root):
    return save_grey(np.zeros((H, W + 5), np.uint8), root / MULTI_TRAIN / "Prior" / "2.png")


def _multi_wrong_size(root):
    return save_palette(np.zeros((H - 2, W), np.uint8), root / MULTI_TEST / "GT" / "4.png")


def _binary_gt_is_label_png(root):  # 0/1/2 label PNG given as binary GT
    return save_grey(fake_classes(0), root / TRAIN / "GT" / "1.png")


def _label_gt_is_binary_png(root):  # 0/255 PNG given as label mask
    return save_grey((fake_classes(10) > 0) * 255, root / MULTI_TEST / "GT" / "3.png")


def _label_value_5(root):
    c = fake_classes(1)
    c[0, 0] = 5
    return save_palette(c, root / MULTI_TRAIN / "GT" / "2.png")


def _truncated_image(root):
    return truncate(root / TEST / "Imgs" / "4.jpg")


def _truncated_gt(root):
    path = root / TRAIN / "GT" / "10.png"
    rng = np.random.default_rng(0)  # noisy so that the PNG is long enough to cut in half
    save_grey((rng.uniform(size=FAKE_SHAPE) > 0.5) * 255, path)
    return truncate(path)


def _binary_disagrees(root):
    c = fake_classes(1)
    c[30, 40] = 1  # one pixel more in the multi-class GT than in the binary GT
    save_palette(c, root / MULTI_TRAIN / "GT" / "2.png")
    return root / TRAIN / "Imgs" / "2.jpg"  # the message names the slice


def _missing_gt(root):
    (root / TEST / "GT" / "4.png").unlink()
    return root / TEST / "GT"


def _pseudo_wrong_size(root):
    return save_grey(np.zeros((H, W + 1), np.uint8), root / POOL / "GT" / f"{FAKE_POOL[1]}.png")


def _unlabelled_bad_name(root):
    return save_grey(np.zeros(FAKE_SHAPE, np.uint8), root / POOL / "Imgs" / "scan_5.jpg")


def _empty_images(root):
    folder = root / TEST / "Imgs"
    shutil.rmtree(folder)
    folder.mkdir()
    return folder


def _missing_images(root):
    shutil.rmtree(root / TRAIN / "Imgs")
    return root / TRAIN / "Imgs"


def _missing_multiclass_folder(root):
    shutil.rmtree(root / MULTI_TEST / "GT")
    return root / MULTI_TEST / "GT"


CORRUPTIONS = [
    ("train", _gt_wrong_size, "mask size 44x39 (WxH) differs from its image 44x36"),
    ("train", _edge_wrong_size, "differs from its image"),
    ("train", _prior_wrong_size, "differs from its image"),
    ("test", _multi_wrong_size, "differs from its image"),
    ("train", _binary_gt_is_label_png, "looks like a label-index mask"),
    ("test", _label_gt_is_binary_png, "label values [255] outside the declared set [0, 1, 2]"),
    ("train", _label_value_5, "label values [5] outside the declared set"),
    ("test", _truncated_image, "unreadable image"),
    ("train", _truncated_gt, "unreadable image"),
    ("train", _binary_disagrees, "binary ground truth disagrees with multi-class ground truth on 1 pixels"),
    ("test", _missing_gt, "no ground truth for image '4'"),
    ("unlabelled", _pseudo_wrong_size, "differs from its image"),
    ("unlabelled", _unlabelled_bad_name, "does not follow 'Data-1_<volume>_<slice>'"),
    ("test", _empty_images, "no images found (empty folder)"),
    ("train", _missing_images, "folder of images not found"),
    ("test", _missing_multiclass_folder, "no multi-class ground truth for image '3'"),
]


@pytest.mark.parametrize("subset, corrupt, phrase", CORRUPTIONS, ids=[c[1].__name__[1:] for c in CORRUPTIONS])
def test_corrupted_tree_is_rejected_naming_the_file(semiseg_root, subset, corrupt, phrase):
    culprit = corrupt(semiseg_root)
    with pytest.raises(DataError) as exc:
        read_semiseg(semiseg_root, subset)
    msg = str(exc.value)
    assert msg.startswith(str(culprit)), msg
    assert phrase in msg


def test_other_subsets_unaffected_by_a_corrupt_test_file(semiseg_root):
    _truncated_image(semiseg_root)
    assert len(read_semiseg(semiseg_root, "train")) == len(FAKE_TRAIN)


# ----------------------------------------------------------------------------- catalog on the fake tree

def test_catalog_reads_real_layout_and_limits(semiseg_root):
    root = DataRoot(semiseg_root, "parameter")
    assert len(load_samples(root, "train")) == 3
    assert [s.slice_id for s in load_samples(root, "unlabelled", limit=1)] == [FAKE_POOL[0]]
    with pytest.raises(ValueError, match="subset must be one of"):
        load_samples(root, "validation")


def test_catalog_missing_source_and_synthetic(tmp_path):
    with pytest.raises(DataError, match="COVID-SemiSeg not found below the data root"):
        load_samples(DataRoot(tmp_path, "parameter"), "train")
    samples = load_samples(DataRoot(None, "embedded default"), "test", synthetic_n=3, synthetic_size=48)
    assert len(samples) == 3 and all(s.source == "synthetic" and s.shape == (48, 48) for s in samples)


# ----------------------------------------------------------------------------- the real release

@pytest.fixture(scope="module")
def real_semiseg(real_root):
    if not (real_root / "COVID-SemiSeg").is_dir():
        pytest.skip("COVID-SemiSeg not below the real data root")
    return real_root


def test_real_labelled_counts_and_labels(real_semiseg):
    train = read_semiseg(real_semiseg, "train")
    test = read_semiseg(real_semiseg, "test")
    assert len(train) == 50 and len(test) == 48
    # no slice disappears: one sample per image file
    assert len(train) == len(list((real_semiseg / TRAIN / "Imgs").glob("*.jpg")))
    assert len(test) == len(list((real_semiseg / TEST / "Imgs").glob("*.jpg")))
    assert not {s.slice_id for s in train} & {s.slice_id for s in test}
    for s in train:
        assert s.infection is not None and s.edge is not None and s.classes is not None and s.prior is not None
        assert set(np.unique(s.classes)) <= {0, 1, 2}
    for s in test:
        assert s.infection is not None and s.classes is not None
        np.testing.assert_array_equal(s.infection, s.classes > 0)


def test_real_unlabelled_full_1600_slice_read_20_volumes(real_semiseg):
    """Reads the full unlabelled pool (about 5 s)."""
    pool = read_semiseg(real_semiseg, "unlabelled")
    assert len(pool) == 1600 == len(list((real_semiseg / POOL / "Imgs").glob("*.jpg")))
    assert len({s.group_id for s in pool}) == 20
    assert all(s.pseudo_label is not None and s.infection is None for s in pool)
