"""SliceDataset: shapes, dtypes and value ranges of the docstring table; clear errors."""

import numpy as np
import pytest
import torch

from ssinfnet.data.dataset import SliceDataset
from ssinfnet.data.phantoms import synthetic_subset
from ssinfnet.data.sample import Sample
from ssinfnet.data.transforms import train_transform


@pytest.fixture(scope="module")
def labelled():
    return synthetic_subset("train", 3, 48)


def test_item_table(labelled):
    ds = SliceDataset(labelled, 32)
    assert len(ds) == 3
    item = ds[1]
    assert set(item) == {"image", "infection", "edge", "classes", "prior", "index"}
    for key in ("image", "infection", "edge", "prior"):
        assert item[key].shape == (1, 32, 32) and item[key].dtype == torch.float32, key
    assert item["classes"].shape == (32, 32) and item["classes"].dtype == torch.int64
    assert item["index"].dtype == torch.int64 and int(item["index"]) == 1
    assert -1 <= item["image"].min() and item["image"].max() <= 1
    assert -1 <= item["prior"].min() and item["prior"].max() <= 1
    assert set(item["infection"].unique().tolist()) <= {0.0, 1.0}
    assert set(item["edge"].unique().tolist()) <= {0.0, 1.0}
    assert set(item["classes"].unique().tolist()) <= {0, 1, 2}


def test_values_match_the_sample_at_native_size(labelled):
    s = labelled[0]
    item = SliceDataset(labelled, 48)[0]
    torch.testing.assert_close(item["image"][0], torch.from_numpy(s.image).float() / 127.5 - 1)
    np.testing.assert_array_equal(item["infection"][0].numpy(), s.infection)
    np.testing.assert_array_equal(item["classes"].numpy(), s.classes)
    np.testing.assert_allclose(item["prior"][0].numpy(), s.prior * 2 - 1, atol=1e-6)  # float, not 8-bit


def test_unlabelled_has_image_only():
    item = SliceDataset(synthetic_subset("unlabelled", 2, 40), 32)[0]
    assert set(item) == {"image", "index"}


def test_edge_is_the_boundary_of_the_transformed_mask(labelled):
    from scipy import ndimage

    s = labelled[0]
    bare = Sample(image=s.image, slice_id="x", source="t", subset="train", infection=s.infection)
    item = SliceDataset([bare], 48)[0]
    m = item["infection"][0].numpy().astype(bool)
    square = np.ones((3, 3), bool)
    want = ndimage.binary_dilation(m, square) & ~ndimage.binary_erosion(m, square, border_value=1)
    np.testing.assert_array_equal(item["edge"][0].numpy().astype(bool), want)
    assert item["edge"].sum() > 0 and "classes" not in item and "prior" not in item
    # a resized edge stays one closed line per lesion instead of breaking into dots
    n_lesions = ndimage.label(m)[1]
    assert ndimage.label(want, np.ones((3, 3)))[1] <= n_lesions + 2


def test_priors_override_and_errors(labelled):
    priors = [np.full(s.shape, 1.0, np.float32) for s in labelled]
    assert torch.all(SliceDataset(labelled, 32, priors=priors)[2]["prior"] == 1.0)
    with pytest.raises(ValueError, match="priors has 2 maps for 3 samples"):
        SliceDataset(labelled, 32, priors=priors[:2])
    bad = [np.zeros((5, 5), np.float32)] * 3
    with pytest.raises(ValueError, match=r"phantom-train-0000: prior shape \(5, 5\) differs from image \(48, 48\)"):
        SliceDataset(labelled, 32, priors=bad)[0]


def test_require_names_the_sample(labelled):
    pool = synthetic_subset("unlabelled", 2, 40)
    with pytest.raises(ValueError, match=r"2 samples have no infection \(first: phantom-unlabelled-0000\)"):
        SliceDataset(list(labelled) + pool, 32, require=("infection",))
    assert len(SliceDataset(labelled, 32, require=("infection", "classes", "prior"))) == 3
    with pytest.raises(ValueError, match="samples must be non-empty"):
        SliceDataset([], 32)


def test_train_transform_and_loader(labelled):
    torch.manual_seed(0)
    ds = SliceDataset(labelled, 32, transform=train_transform(32, cutout=0.4))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 1, 32, 32) and batch["classes"].shape == (3, 32, 32)
    assert torch.equal(batch["infection"][:, 0] > 0, batch["classes"] > 0)  # same geometry for both masks
