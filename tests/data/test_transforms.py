"""Joint transforms keep image and labels aligned; cutout touches the image only."""

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from ssinfnet.data.transforms import GreyCutout, denormalize, eval_transform, normalize, train_transform


def _aligned_pair(size=96, seed=0):
    """An image that is bright (220) exactly where the mask is 1 and dark (30) elsewhere."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.uint8)
    for _ in range(5):
        cy, cx, r = rng.integers(15, size - 15, 2).tolist() + [int(rng.integers(5, 14))]
        yy, xx = np.mgrid[:size, :size]
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    image = np.where(mask == 1, 220, 30).astype(np.uint8)
    return image, mask


def _item(image, mask):
    return {"image": tv_tensors.Image(torch.from_numpy(image)[None]),
            "infection": tv_tensors.Mask(torch.from_numpy(mask)[None]),
            "classes": tv_tensors.Mask(torch.from_numpy(mask * 2)[None]),
            "prior": tv_tensors.Image(torch.from_numpy(mask * 255)[None])}


@pytest.mark.parametrize("seed", range(6))
def test_train_transform_keeps_masks_aligned(seed):
    image, mask = _aligned_pair(seed=seed)
    torch.manual_seed(seed)
    out = train_transform(64, rotation=20.0, vflip=0.5)(_item(image, mask))
    img, inf = out["image"][0].numpy(), out["infection"][0].numpy()
    assert img.shape == inf.shape == (64, 64) and out["infection"].dtype == torch.uint8
    assert set(np.unique(inf)) <= {0, 1} and set(np.unique(out["classes"])) <= {0, 2}  # nearest for masks
    np.testing.assert_array_equal(out["classes"][0].numpy(), inf * 2)
    disagree = (img > 125) != (inf == 1)
    assert disagree.mean() < 0.03  # only at interpolated borders
    # and a misaligned mask would disagree a lot: the check has teeth
    assert ((img > 125) != (np.roll(inf, 6, 1) == 1)).mean() > 0.05
    assert (np.abs(out["prior"][0].numpy().astype(int) - inf * 255) > 128).mean() < 0.03


def test_train_transform_is_random_but_seeded():
    image, mask = _aligned_pair()
    t = train_transform(64)
    torch.manual_seed(1)
    a = t(_item(image, mask))["image"]
    torch.manual_seed(1)
    b = t(_item(image, mask))["image"]
    torch.manual_seed(2)
    c = t(_item(image, mask))["image"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_grey_cutout_changes_only_the_image():
    image, mask = _aligned_pair(80)
    item = _item(image, mask)
    torch.manual_seed(0)
    out = GreyCutout(0.4, p=1.0)(item)
    for key in ("infection", "classes", "prior"):
        assert torch.equal(out[key], item[key]), key
    changed = (out["image"] != item["image"])[0].numpy()
    erased = out["image"][0].numpy() == 127
    ys, xs = np.nonzero(erased)
    assert ys.max() - ys.min() + 1 == 32 and xs.max() - xs.min() + 1 == 32  # 0.4 * 80 px square
    assert erased.sum() == 32 * 32 and not (changed & ~erased).any()


def test_grey_cutout_probability_and_args():
    image, mask = _aligned_pair(40)
    item = _item(image, mask)
    assert torch.equal(GreyCutout(0.5, p=0.0)(item)["image"], item["image"])
    f = tv_tensors.Image(torch.full((1, 10, 10), 0.9))
    torch.manual_seed(0)
    out = GreyCutout(0.5, p=1.0, value=0.5)(f)
    assert (out == 0.5).sum() == 25 and isinstance(out, tv_tensors.Image)
    with pytest.raises(ValueError, match="fraction must be in"):
        GreyCutout(1.5)


def test_train_transform_with_cutout_runs():
    image, mask = _aligned_pair()
    torch.manual_seed(0)
    out = train_transform(48, cutout=0.5)(_item(image, mask))
    assert out["image"].shape == (1, 48, 48) and out["infection"].shape == (1, 48, 48)


def test_eval_transform_resizes():
    image, mask = _aligned_pair(96)
    out = eval_transform(32)(_item(image[:, :80], mask[:, :80]))
    assert out["image"].shape == (1, 32, 32) and out["infection"].shape == (1, 32, 32)
    assert set(np.unique(out["infection"])) <= {0, 1}
    again = eval_transform(32)(_item(image[:, :80], mask[:, :80]))
    assert torch.equal(out["image"], again["image"])  # deterministic


def test_normalize_round_trip():
    x = torch.tensor([0.0, 0.25, 1.0])
    torch.testing.assert_close(normalize(x), torch.tensor([-1.0, -0.5, 1.0]))
    torch.testing.assert_close(denormalize(normalize(x)), x)
