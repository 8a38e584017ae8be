"""The one input path (slice_input): float resize, float prior, one normalisation; clear errors."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torchvision.transforms import v2

from ssinfnet.data.dataset import SliceDataset
from ssinfnet.data.inputs import batch_input, network_input, slice_input
from ssinfnet.data.sample import Sample
from ssinfnet.data.transforms import train_transform


def _slice(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A noisy uint8 image and a float prior whose values are not 8-bit levels."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w)).astype(np.uint8)
    prior = rng.random((h, w)).astype(np.float32)
    return image, prior


def _reference(a: np.ndarray, size: int, scale: float) -> torch.Tensor:
    """Independent reference: float bilinear antialiased resize of a / scale, then 2 x - 1."""
    t = torch.from_numpy(a.astype(np.float32))[None, None] / scale
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0] * 2 - 1


@pytest.mark.parametrize("shape, size", [((96, 80), 64), ((40, 60), 96), ((512, 512), 128)])
def test_resize_is_float_bilinear_and_the_prior_is_not_quantised(shape, size):
    image, prior = _slice(*shape, seed=sum(shape))
    item = slice_input(image, size, prior)
    assert item["image"].shape == item["prior"].shape == (1, size, size)
    assert item["image"].dtype == item["prior"].dtype == torch.float32
    # An 8-bit resize (or an 8-bit prior) is off by up to one grey level, 2 / 255 after normalisation.
    torch.testing.assert_close(item["image"], _reference(image, size, 255.0), atol=2e-6, rtol=0)
    torch.testing.assert_close(item["prior"], _reference(prior, size, 1.0), atol=2e-6, rtol=0)


def test_native_size_keeps_values_exactly():
    image, prior = _slice(48, 48, seed=0)
    item = slice_input(image, 48, prior, labels={"classes": (image > 128).astype(np.uint8) * 2})
    assert torch.equal(item["image"][0], torch.from_numpy(image).float() / 255 * 2 - 1)
    assert torch.equal(item["prior"][0], torch.from_numpy(prior) * 2 - 1)
    assert torch.equal(item["classes"][0], torch.from_numpy((image > 128).astype(np.uint8) * 2))
    assert type(item["image"]) is torch.Tensor  # plain tensors, not tv_tensors


def test_augmented_items_share_the_normalisation_and_the_float_prior():
    image, _ = _slice(64, 64, seed=1)
    prior = np.full((64, 64), 0.3337, np.float32)  # between the 8-bit levels 85 and 86
    s = Sample(image=image, slice_id="s", source="t", subset="train", infection=image > 128)
    torch.manual_seed(0)
    item = SliceDataset([s], 32, train_transform(32, rotation=0.0), priors=[prior])[0]
    want = torch.tensor(0.3337 * 2 - 1)
    torch.testing.assert_close(item["prior"], want.expand(1, 32, 32), atol=2e-6, rtol=0)
    assert -1 <= item["image"].min() and item["image"].max() <= 1


def test_rotation_fill_is_black_image_and_zero_prior():
    image = np.full((32, 32), 200, np.uint8)
    prior = np.full((32, 32), 0.75, np.float32)
    item = slice_input(image, 32, prior, transform=v2.RandomRotation((45, 45)))
    corner = (0, 0, 0)
    assert item["image"][corner] == -1.0 and item["prior"][corner] == -1.0
    assert item["image"][0, 16, 16] == pytest.approx(200 / 255 * 2 - 1, abs=1e-6)
    assert item["prior"][0, 16, 16] == pytest.approx(0.5, abs=1e-6)


def test_network_input_stacks_channels_of_items_and_batches():
    image, prior = _slice(40, 40, seed=2)
    item = slice_input(image, 32, prior)
    assert torch.equal(network_input(item, False), item["image"])
    x = network_input(item, True)
    assert x.shape == (2, 32, 32) and torch.equal(x[1], item["prior"][0])
    batch = {k: torch.stack([v, v]) for k, v in item.items()}
    assert network_input(batch, True).shape == (2, 2, 32, 32)
    with pytest.raises(ValueError, match="with_prior=True but the batch has no 'prior'"):
        network_input({"image": item["image"]}, True)


def test_batch_input_is_slice_input_stacked():
    shapes = [(40, 40), (30, 50), (64, 48)]
    slices = [_slice(*s, seed=k) for k, s in enumerate(shapes)]
    images, priors = [i for i, _ in slices], [p for _, p in slices]
    x = batch_input(images, 32, priors)
    assert x.shape == (3, 2, 32, 32)
    for k in range(3):
        assert torch.equal(x[k], network_input(slice_input(images[k], 32, priors[k]), True))
    assert batch_input(images, 32).shape == (3, 1, 32, 32)
    with pytest.raises(ValueError, match="priors has 2 maps for 3 images"):
        batch_input(images, 32, priors[:2])
    with pytest.raises(ValueError, match=r"image 7: prior shape \(30, 50\) differs from image \(40, 40\)"):
        batch_input(images[:1], 32, priors[1:2], first=7)


@pytest.mark.parametrize("image, message", [
    (np.zeros((8, 8), np.float32), r"s1: image must be a 2-D uint8 grey array, got float32 of shape \(8, 8\)"),
    (np.zeros((8, 8, 3), np.uint8), r"s1: image must be a 2-D uint8 grey array, got uint8 of shape \(8, 8, 3\)"),
])
def test_bad_images_are_refused(image, message):
    with pytest.raises(ValueError, match=message):
        slice_input(image, 8, name="s1")


@pytest.mark.parametrize("value, message", [
    (1.01, r"s2: prior must hold finite probabilities in \[0, 1\], got values in \[0, 1.01\]"),
    (-0.2, r"s2: prior must hold finite probabilities in \[0, 1\], got values in \[-0.2, 0\]"),
    (np.nan, r"s2: prior must hold finite probabilities in \[0, 1\].*non-finite"),
])
def test_priors_outside_probabilities_are_refused(value, message):
    # the old 8-bit path turned 1.01 into round(257.55) % 256 = 2 grey levels without a word
    prior = np.zeros((8, 8), np.float32)
    prior[3, 3] = value
    with pytest.raises(ValueError, match=message):
        slice_input(np.zeros((8, 8), np.uint8), 8, prior, name="s2")


def test_round_off_past_one_is_accepted():
    prior = np.full((8, 8), np.nextafter(np.float32(1), np.float32(2)), np.float32)
    assert slice_input(np.zeros((8, 8), np.uint8), 8, prior)["prior"].max() > 1.0


def test_label_shape_and_transform_size_are_checked():
    image = np.zeros((8, 8), np.uint8)
    with pytest.raises(ValueError, match=r"s3: infection shape \(4, 4\) differs from image \(8, 8\)"):
        slice_input(image, 8, labels={"infection": np.zeros((4, 4), bool)}, name="s3")
    with pytest.raises(ValueError, match="s3: the transform gave a 6 x 6 px image; the network input side is 8"):
        slice_input(image, 8, transform=v2.Resize((6, 6), antialias=True), name="s3")
