"""Device-held data: the batched augmentation (ssinfnet.data.batch_transforms) and DeviceLoader (ssinfnet.data.held)."""

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from ssinfnet.data.batch_transforms import BatchAugment
from ssinfnet.data.dataset import SliceDataset
from ssinfnet.data.epochs import EpochSampler
from ssinfnet.data.held import DeviceLoader, HeldSlices
from ssinfnet.data.phantoms import synthetic_subset
from ssinfnet.data.transforms import denormalize, eval_transform, train_transform

SIZE = 32


def _gens(seed=0):
    return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)


def _batch(b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(b, 1, SIZE, SIZE, generator=g)
    masks = (torch.rand(b, 2, SIZE, SIZE, generator=g) > 0.6).to(torch.uint8)
    return image, image.clone() * 0.5, masks


@pytest.fixture(scope="module")
def samples():
    return synthetic_subset("train", n=6, size=48, seed=0)


def test_identity_settings_leave_the_batch_unchanged():
    image, prior, masks = _batch()
    aug = BatchAugment(SIZE, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0)
    out, p, m = aug(image, prior, masks, *_gens())
    assert torch.allclose(out, image, atol=1e-5) and torch.allclose(p, prior, atol=1e-5)
    assert torch.equal(m, masks) and m.dtype == torch.uint8


def test_flips_are_exact_and_move_image_prior_and_masks_together():
    image, prior, masks = _batch()
    aug = BatchAugment(SIZE, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=1.0, vflip=1.0)
    out, p, m = aug(image, prior, masks, *_gens())
    assert torch.allclose(out, image.flip(-1, -2), atol=1e-5) and torch.allclose(p, prior.flip(-1, -2), atol=1e-5)
    assert torch.equal(m, masks.flip(-1, -2))


def test_each_sample_draws_its_own_crop_and_masks_stay_labels():
    image = torch.linspace(0, 1, SIZE).view(1, 1, 1, SIZE).expand(4, 1, SIZE, SIZE).contiguous()
    masks = torch.zeros(4, 1, SIZE, SIZE, dtype=torch.uint8)
    masks[..., 8:24, 8:24] = 2
    out, _, m = BatchAugment(SIZE, rotation=15.0)(image, None, masks, *_gens(3))
    assert not torch.allclose(out[0], out[1])  # per-sample parameters
    assert set(m.unique().tolist()) <= {0, 2}
    area = (m > 0).float().mean((1, 2, 3))
    assert ((area > 0.2) & (area < 0.45)).all()  # 0.25 of the slice, enlarged by a crop of 80-100 % area


def test_cutout_erases_one_square_of_the_configured_side_to_mid_grey():
    image = torch.zeros(5, 1, SIZE, SIZE)
    aug = BatchAugment(SIZE, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, cutout=0.25, cutout_p=1.0)
    out, _, _ = aug(image, None, None, *_gens())
    side = round(0.25 * SIZE)
    assert ((out == 0.5).sum((1, 2, 3)) == side * side).all()


def test_shifts_change_the_image_only_and_keep_it_in_range():
    image, prior, masks = _batch()
    aug = BatchAugment(SIZE, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0,
                       shifts=(("window", 0.6, 1.0), ("gamma", (0.7, 1.5), 1.0), ("noise", 0.05, 1.0),
                               ("resolution", (8, 16), 1.0), ("jpeg", (20, 30), 1.0)))
    out, p, m = aug(image, prior, masks, *_gens())
    assert not torch.allclose(out, image, atol=1e-3) and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(p, prior, atol=1e-5) and torch.equal(m, masks)


def test_from_transform_reads_the_train_transform_and_refuses_unknown_steps():
    t = train_transform(SIZE, cutout=0.4, rotation=12.0, scale=(0.7, 1.0), vflip=0.3, zoom_out=1.5,
                        window_jitter=0.2, noise_std=0.01, shift_p=0.4)
    aug = BatchAugment.from_transform(t, SIZE)
    assert (aug.rotation, aug.scale, aug.vflip, aug.cutout, aug.zoom_out, aug.zoom_p) == (12.0, (0.7, 1.0), 0.3, 0.4,
                                                                                          1.5, 0.4)
    assert aug.shifts == (("window", 0.2, 0.4), ("noise", 0.01, 0.4))
    assert BatchAugment.from_transform(eval_transform(SIZE), SIZE) is None
    with pytest.raises(ValueError, match="ColorJitter"):
        BatchAugment.from_transform(v2.Compose([v2.ColorJitter(0.1)]), SIZE)
    with pytest.raises(ValueError, match="crops to"):
        BatchAugment.from_transform(train_transform(SIZE), 2 * SIZE)


def test_held_slices_are_the_one_input_path_rounded_to_uint8(samples):
    ds = SliceDataset(samples, SIZE, eval_transform(SIZE))
    held = HeldSlices(ds)
    assert held.images.shape == (6, 1, SIZE, SIZE) and held.images.dtype == torch.uint8
    assert held.mask_keys == ("infection", "classes") and held.priors.dtype == torch.float32
    ref = torch.stack([denormalize(ds[i]["image"]) * 255 for i in range(6)])
    assert (held.images.float() - ref).abs().max() <= 0.5 + 1e-4
    assert held.nbytes == 6 * SIZE * SIZE * (1 + 2 + 4)


def test_held_slices_refuse_labels_on_some_slices_only(samples):
    from dataclasses import replace

    mixed = [replace(samples[0], infection=None, classes=None)] + list(samples[1:])
    with pytest.raises(ValueError, match=f"{samples[0].slice_id}: has no infection"):
        HeldSlices(SliceDataset(mixed, SIZE))


def test_device_loader_batches_look_like_the_dataloader_and_repeat_per_epoch(samples):
    ds = SliceDataset(samples, SIZE, train_transform(SIZE, cutout=0.4), require=("infection",))
    loader = DeviceLoader(ds, 4, seed=7)
    batches = list(loader)
    assert len(loader) == len(batches) == 2 and batches[1]["image"].shape == (2, 1, SIZE, SIZE)
    ref = ds[0]
    for key, value in batches[0].items():
        assert value.dtype == ref[key].dtype and value.shape[1:] == ref[key].shape, key
    assert sorted(torch.cat([b["index"] for b in batches]).tolist()) == list(range(6))
    assert batches[0]["image"].min() >= -1 and batches[0]["image"].max() <= 1
    loader.sampler.set_epoch(0)
    again = list(loader)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(batches, again) for k in a)
    other = list(loader)  # epoch 1: another order and other draws
    assert not torch.equal(other[0]["image"], batches[0]["image"])


def test_static_shapes_complete_the_last_batch_and_shards_split_the_epoch(samples):
    ds = SliceDataset(samples, SIZE, train_transform(SIZE))
    full = DeviceLoader(ds, 4, seed=1, static_shapes=True)
    assert [len(b["index"]) for b in full] == [4, 4]
    loader = DeviceLoader(ds, 4, seed=1)
    parts = [loader.shard(r, 2) for r in range(2)]
    seen = [torch.cat([b["index"] for b in p]).tolist() for p in parts]
    assert sorted(seen[0] + seen[1]) == list(range(6)) and parts[0].batch_size == 2
    with pytest.raises(ValueError, match="divide"):
        loader.shard(0, 3)


def test_epoch_sampler_orders_by_epoch_not_by_history():
    s = EpochSampler(10, True, seed=3)
    first = [i for _, i in s]
    second = [i for _, i in s]
    s.set_epoch(1)
    assert [i for _, i in s] == second != first
    assert sorted(first) == list(range(10))
    assert [k for k, _ in EpochSampler(3, False, 0)] == [0, 0, 0]
    shards = [list(EpochSampler(5, True, 3, rank=r, size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 3
    with pytest.raises(ValueError, match="n must be"):
        EpochSampler(0, True, 0)
    assert np.unique([i for _, i in shards[0] + shards[1]]).size == 5
