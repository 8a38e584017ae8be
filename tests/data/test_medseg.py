"""MedSeg NIfTI reader: HU windowing, axial slicing with transposition, volume ids, effusion, errors."""

import nibabel as nib
import numpy as np
import pytest

from ssinfnet.data.io import DataError
from ssinfnet.data.medseg import read_medseg, read_volume_pair

X, Y = 6, 5  # NIfTI axes (x, y, z): slices come out as (rows=y, cols=x)


def _save(arr, path, dtype=np.float32):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(arr, dtype=dtype), np.eye(4)), str(path))
    return path


def _volume(n_slices, seed):
    """HU volume (X, Y, n) with known values at fixed voxels, and a label volume with 0..3."""
    rng = np.random.default_rng(seed)
    hu = rng.uniform(-1000, 100, (X, Y, n_slices))
    hu[0, 0, :], hu[1, 0, :], hu[0, 1, :], hu[2, 3, :] = -600, -1350, 150, -2000
    lab = np.zeros((X, Y, n_slices))
    lab[3, 1, :] = 1
    lab[4, 2, :] = 2
    lab[5, 4, :] = 3
    return hu, lab


@pytest.fixture
def medseg_root(tmp_path):
    base = tmp_path / "medseg"
    hu, lab = _volume(3, 0)
    _save(hu, base / "tr_im.nii.gz")
    _save(lab, base / "tr_mask.nii.gz", np.uint8)
    for k, n in ((1, 2), (2, 2)):
        hu, lab = _volume(n, k)
        _save(hu, base / "rp_im" / f"{k}.nii.gz")
        _save(lab, base / "rp_msk" / f"{k}.nii")  # plain .nii accepted too
    return tmp_path


def test_slices_windowed_and_transposed(medseg_root):
    samples = read_medseg(medseg_root, "slices")
    assert len(samples) == 3  # one sample per axial slice
    hu = np.asarray(nib.load(str(medseg_root / "medseg/tr_im.nii.gz")).get_fdata())
    for k, s in enumerate(samples):
        assert s.image.shape == (Y, X) and s.image.dtype == np.uint8
        assert s.slice_id == f"tr_{k:03d}" and s.group_id == "tr" and s.meta["slice_index"] == k
        # default lung window (level -600, width 1500): [-1350, 150] HU -> [0, 255]
        assert s.image[0, 0] == 128  # -600 HU (127.5 rounds half to even)
        assert s.image[0, 1] == 0    # -1350 HU, the window's lower edge
        assert s.image[1, 0] == 255  # +150 HU, its upper edge
        assert s.image[3, 2] == 0    # -2000 HU clipped
        x, y = 4, 3
        assert s.image[y, x] == np.clip(np.round((hu[x, y, k] + 1350) / 1500 * 255), 0, 255)
        assert s.classes[1, 3] == 1 and s.classes[2, 4] == 2  # transposed: [y, x]
        assert s.meta["hu_window"] == (-600.0, 1500.0)


def test_effusion_is_not_infection(medseg_root):
    s = read_medseg(medseg_root, "slices")[0]
    assert s.meta["effusion"][4, 5] and s.meta["effusion"].sum() == 1
    assert s.classes[4, 5] == 0 and not s.infection[4, 5]
    np.testing.assert_array_equal(s.infection, s.classes > 0)
    assert s.infection.sum() == 2 and set(np.unique(s.classes)) == {0, 1, 2}


def test_volumes_carry_volume_ids(medseg_root):
    samples = read_medseg(medseg_root, "volumes")
    assert len(samples) == 4
    assert [s.group_id for s in samples] == ["rp_1", "rp_1", "rp_2", "rp_2"]
    assert [s.slice_id for s in samples] == ["rp_1_000", "rp_1_001", "rp_2_000", "rp_2_001"]
    assert all(s.subset == "volumes" and s.source == "medseg" for s in samples)


def test_volume_order_is_numeric(tmp_path):
    for k in (10, 2):
        hu, lab = _volume(1, k)
        _save(hu, tmp_path / "rp_im" / f"{k}.nii.gz")
        _save(lab, tmp_path / "rp_msk" / f"{k}.nii.gz")
    assert [s.group_id for s in read_medseg(tmp_path, "volumes")] == ["rp_2", "rp_10"]  # root = medseg folder itself


def test_custom_window(medseg_root):
    s = read_medseg(medseg_root, "slices", window=(40.0, 400.0))[0]  # mediastinal: [-160, 240] HU
    assert s.image[0, 0] == 0 and s.image[1, 0] == np.round((150 + 160) / 400 * 255)


def test_two_d_pair_is_one_slice(tmp_path):
    hu, lab = _volume(1, 3)
    samples = read_volume_pair(_save(hu[..., 0], tmp_path / "a.nii"), _save(lab[..., 0], tmp_path / "m.nii"),
                               "v", "slices")
    assert len(samples) == 1 and samples[0].image.shape == (Y, X)


@pytest.mark.parametrize("bad, shown", [(5, "[5.0]"), (0.5, "[0.5]"), (-1, "[-1.0]")])
def test_bad_labels_rejected(tmp_path, bad, shown):
    hu, lab = _volume(2, 0)
    lab[1, 1, 1] = bad
    msk = _save(lab, tmp_path / "m.nii.gz")
    with pytest.raises(DataError, match="outside the declared set") as exc:
        read_volume_pair(_save(hu, tmp_path / "i.nii.gz"), msk, "v", "slices")
    assert str(exc.value).startswith(str(msk)) and shown in str(exc.value)


def test_shape_mismatch_rejected(tmp_path):
    hu, lab = _volume(3, 0)
    msk = _save(lab[:, :, :2], tmp_path / "m.nii.gz")
    with pytest.raises(DataError, match=r"mask shape \(6, 5, 2\) differs from image .*\(6, 5, 3\)") as exc:
        read_volume_pair(_save(hu, tmp_path / "i.nii.gz"), msk, "v", "slices")
    assert str(exc.value).startswith(str(msk))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_hu_rejected(tmp_path, bad):
    hu, lab = _volume(2, 0)
    hu[2, 2, 1] = bad
    img = _save(hu, tmp_path / "i.nii.gz")
    with pytest.raises(DataError, match="volume contains NaN or Inf") as exc:
        read_volume_pair(img, _save(lab, tmp_path / "m.nii.gz"), "v", "slices")
    assert str(exc.value).startswith(str(img))


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_unreadable_nifti(tmp_path, how):
    hu, lab = _volume(2, 0)
    img = _save(hu, tmp_path / "i.nii")
    if how == "garbage":
        img.write_bytes(b"this is not a NIfTI file at all" * 20)
    else:
        img.write_bytes(img.read_bytes()[: len(img.read_bytes()) // 2])
    with pytest.raises(DataError, match="unreadable NIfTI") as exc:
        read_volume_pair(img, _save(lab, tmp_path / "m.nii"), "v", "slices")
    assert str(exc.value).startswith(str(img))


def test_four_d_rejected(tmp_path):
    img = _save(np.zeros((3, 3, 2, 2)), tmp_path / "i.nii")
    with pytest.raises(DataError, match="expected a 2-D or 3-D volume"):
        read_volume_pair(img, img, "v", "slices")


def test_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match=r"tr_im\.nii\(\.gz\) not found"):
        read_medseg(tmp_path, "slices")
    with pytest.raises(DataError, match=r"rp_im: folder of MedSeg volumes not found"):
        read_medseg(tmp_path, "volumes")
    (tmp_path / "rp_im").mkdir()
    with pytest.raises(DataError, match=r"rp_im: no NIfTI volumes found \(empty folder\)"):
        read_medseg(tmp_path, "volumes")
    hu, _ = _volume(1, 0)
    _save(hu, tmp_path / "rp_im" / "1.nii.gz")
    with pytest.raises(DataError, match=r"rp_msk: 1\.nii\(\.gz\) not found"):
        read_medseg(tmp_path, "volumes")
    with pytest.raises(ValueError, match="subset must be 'slices' or 'volumes'"):
        read_medseg(tmp_path, "train")
