"""The shift augmentations (data/transforms.py) and their settings in SegConfig: what each does to the
image, that nothing else moves, and that with them off training's transform and its draws are as before."""

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from ssinfnet.data.inputs import slice_input
from ssinfnet.data.transforms import (GreyCutout, RandomGamma, RandomJPEG, RandomNoise, RandomResolution,
                                      RandomWindow, train_transform)
from ssinfnet.segmentation.variants import ROBUST_AUGMENTATION, variant_config


def _item(h=48, w=40, seed=0):
    rng = np.random.default_rng(seed)
    image = torch.from_numpy(rng.random((1, h, w)).astype(np.float32))
    prior = torch.from_numpy(rng.random((1, h, w)).astype(np.float32))
    mask = torch.from_numpy((rng.random((1, h, w)) > 0.7).astype(np.uint8))
    return {"image": tv_tensors.Image(image), "prior": tv_tensors.Image(prior), "infection": tv_tensors.Mask(mask)}


def test_with_the_shifts_off_the_transform_and_its_draws_are_the_old_ones():
    new = train_transform(32, cutout=0.4, rotation=10.0, scale=(0.7, 1.0), hflip=0.5)
    old = v2.Compose([v2.RandomResizedCrop(32, scale=(0.7, 1.0), ratio=(0.85, 1.15), antialias=True),
                      v2.RandomHorizontalFlip(0.5), v2.RandomRotation(10.0), GreyCutout(0.4)])
    assert [type(t) for t in new.transforms] == [type(t) for t in old.transforms]
    torch.manual_seed(5)
    a = new(_item())
    torch.manual_seed(5)
    b = old(_item())
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("shift", [RandomWindow(0.5, p=1.0), RandomGamma((0.5, 2.0), p=1.0),
                                   RandomResolution((8, 16), p=1.0), RandomNoise(0.05, p=1.0),
                                   RandomJPEG((5, 10), p=1.0)], ids=lambda t: type(t).__name__)
def test_each_shift_changes_the_image_only_and_stays_in_range(shift):
    item = _item()
    torch.manual_seed(0)
    out = shift(item)
    assert not torch.equal(out["image"], item["image"])
    assert out["image"].shape == item["image"].shape and 0 <= out["image"].min() and out["image"].max() <= 1
    assert torch.equal(out["prior"], item["prior"]) and torch.equal(out["infection"], item["infection"])
    assert type(out["image"]) is tv_tensors.Image


def test_probability_zero_is_the_identity():
    item = _item()
    for shift in (RandomWindow(0.5, p=0.0), RandomNoise(0.1, p=0.0), RandomJPEG((5, 5), p=0.0)):
        assert torch.equal(shift(item)["image"], item["image"])


def test_the_formulas():
    x = torch.tensor([[[0.0, 0.25, 0.5, 1.0]]])
    np.testing.assert_allclose(RandomWindow(0.5).shift(x.clone(), {"w": 2.0, "d": 0.1}).clamp(0, 1)[0, 0].numpy(),
                               [0.3, 0.425, 0.55, 0.8], atol=1e-6)
    np.testing.assert_allclose(RandomGamma((2.0, 2.0)).shift(x.clone(), {"g": 2.0})[0, 0].numpy(),
                               [0.0, 0.0625, 0.25, 1.0], atol=1e-7)
    big = torch.rand(1, 20, 30)
    assert torch.equal(RandomResolution((8, 64)).shift(big, {"side": 40}), big)  # not smaller: unchanged
    assert RandomResolution((8, 64)).shift(big, {"side": 10}).shape == big.shape
    grey = torch.full((1, 16, 16), 100 / 255)
    np.testing.assert_allclose(RandomJPEG((90, 90)).shift(grey, {"q": 90}).numpy(), 100 / 255, atol=2 / 255)


def test_zoom_out_pads_image_prior_and_masks_together():
    image = np.full((40, 40), 200, np.uint8)
    mask = np.ones((40, 40), bool)
    t = train_transform(40, rotation=0.0, scale=(1.0, 1.0), hflip=0.0, zoom_out=2.0, shift_p=1.0)
    torch.manual_seed(1)
    out = slice_input(image, 40, np.ones((40, 40), np.float32), {"infection": mask}, t)
    air = out["infection"][0] == 0
    assert air.any()  # the padding is air: no lesion there ...
    assert (out["image"][0][air] < -0.9).float().mean() > 0.9  # ... and black (grey 0 -> -1) in the image
    assert (out["prior"][0][air] < -0.9).float().mean() > 0.9


def test_settings_are_checked_and_the_robust_preset_builds_every_shift():
    cfg = variant_config("sinfnet", image_size=64, **ROBUST_AUGMENTATION)
    kinds = [type(t).__name__ for t in cfg.augmentation().transforms]
    assert kinds[:6] == ["RandomZoomOut", "RandomWindow", "RandomGamma", "RandomResolution", "RandomNoise",
                         "RandomJPEG"]
    assert kinds[6:] == [type(t).__name__ for t in variant_config("sinfnet", image_size=64).augmentation().transforms]
    assert cfg.to_dict()["jpeg_quality"] == [15, 95]
    for bad, match in [({"zoom_out": 0.5}, "zoom_out must be >= 1"), ({"gamma_range": (0.0, 1.0)}, "gamma_range"),
                       ({"jpeg_quality": (0, 50)}, "quality"), ({"resolution": (4, 8)}, "sides"),
                       ({"noise_std": -1.0}, "std"), ({"shift_p": 2.0}, "p must be in")]:
        with pytest.raises(ValueError, match=match):
            variant_config("sinfnet", **{"noise_std": 0.01, **bad} if "shift_p" in bad else bad)
