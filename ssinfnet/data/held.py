"""Device-held training data: every slice at the training side, on the device, augmented there a batch at a time.

With the per-slice path (:class:`~ssinfnet.data.dataset.SliceDataset` in a DataLoader) each step waits
for CPU workers to decode, augment, collate and copy a batch. :class:`DeviceLoader` instead holds the
whole training set on the device once, as uint8 at the training side (the 1,650-slice pretraining pool
at 352 px is about 200 MB; label masks uint8 as well; priors, which are probabilities and not quantised
elsewhere, float32), and builds each batch there: an index, a gather, the batched augmentation
(:class:`~ssinfnet.data.batch_transforms.BatchAugment`, read from the dataset's own transform), the one
normalisation and the edge maps. Batches are the dicts a DataLoader over the SliceDataset yields
(``image``, ``index``, ``infection``, ``edge``, ``classes``, ``prior``), on the device.

How the slices are held: each goes through :func:`~ssinfnet.data.inputs.slice_input` without
augmentation (the one input path: float resize to the training side, antialiased) and the grey image
is then rounded to uint8 (at most half a grey level from the float value).

Seeding: epoch ``e``'s order comes from ``(seed, e)`` (:class:`~ssinfnet.data.epochs.EpochSampler`) and
its augmentation from a device generator seeded with ``(seed, e, process)``, so a run resumed at an
epoch boundary (the training loop's ``set_epoch``) draws exactly what an uninterrupted one would,
with no loader state in the checkpoint.
"""

from __future__ import annotations

import copy

import torch

from .batch_transforms import BatchAugment
from .dataset import SliceDataset, mask_edge
from .epochs import EpochSampler, epoch_seed
from .inputs import slice_input
from .transforms import denormalize, eval_transform, normalize

LABEL_KEYS = ("infection", "classes")


class HeldSlices:
    """The slices of a :class:`~ssinfnet.data.dataset.SliceDataset` as stacked tensors at its side S.

    ``images`` uint8 (N, 1, S, S); ``masks`` uint8 (N, K, S, S) for the labels in ``mask_keys`` (those
    every sample has; None without labels); ``priors`` float32 (N, 1, S, S) in [0, 1] or None.
    Raises ValueError naming the first slice when only some samples have a label or a prior.
    """

    def __init__(self, dataset: SliceDataset):
        samples, size = dataset.samples, dataset.size
        has = {k: [getattr(s, k) is not None for s in samples] for k in LABEL_KEYS}
        priors = dataset.priors if dataset.priors is not None else [s.prior for s in samples]
        has["prior"] = [p is not None for p in priors]
        for key, flags in has.items():
            if any(flags) and not all(flags):
                first = samples[flags.index(False)].slice_id
                raise ValueError(f"{first}: has no {key}, other slices do; device-held data needs all or none")
        self.mask_keys = tuple(k for k in LABEL_KEYS if all(has[k]))
        resize = eval_transform(size)
        images, masks, held_priors = [], [], []
        for s, prior in zip(samples, priors):
            labels = {k: getattr(s, k) for k in self.mask_keys}
            item = slice_input(s.image, size, prior, labels, resize, name=s.slice_id)
            grey = denormalize(item["image"]).mul_(255.0).round_().clamp_(0, 255)
            images.append(grey.to(torch.uint8))
            if self.mask_keys:
                masks.append(torch.cat([item[k].to(torch.uint8) for k in self.mask_keys]))
            if prior is not None:
                held_priors.append(denormalize(item["prior"]).clamp_(0.0, 1.0))
        self.images = torch.stack(images)
        self.masks = torch.stack(masks) if masks else None
        self.priors = torch.stack(held_priors) if held_priors else None

    def to(self, device: torch.device) -> "HeldSlices":
        """Move the tensors to ``device`` (in place); returns self."""
        for name in ("images", "masks", "priors"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))
        return self

    @property
    def nbytes(self) -> int:
        """Bytes held (images, masks and priors)."""
        return sum(t.numel() * t.element_size() for t in (self.images, self.masks, self.priors) if t is not None)


class DeviceLoader:
    """A training loader over device-held slices: shuffled per epoch, augmented on the device.

    Parameters
    ----------
    dataset : SliceDataset
        Its samples, priors, side and transform (a ``train_transform`` or ``eval_transform``) define
        the data; it stays available as ``.dataset`` (provenance keys, spot checks).
    batch_size : int
        Samples per batch, >= 1.
    seed : int
        Seed of every epoch's order and augmentation.
    shuffle : bool, default True
    static_shapes : bool, default False
        Complete the last batch of an epoch with samples from the epoch's start, so that every batch
        has ``batch_size`` samples (shapes CUDA graphs can replay); else the last batch may be smaller.

    The data stay on the CPU until :meth:`place` (the training loop calls it with its device). One
    pass over the loader is one epoch; the loop's ``set_epoch`` (through ``.sampler``) says which.
    """

    def __init__(self, dataset: SliceDataset, batch_size: int, seed: int, shuffle: bool = True,
                 static_shapes: bool = False):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, int(seed)
        self.static_shapes, self.drop_last, self.generator = static_shapes, False, None
        self.augment = BatchAugment.from_transform(dataset.transform, dataset.size)
        self.sampler = EpochSampler(len(dataset), shuffle, self.seed)
        self.held = HeldSlices(dataset)
        self.device = torch.device("cpu")

    def place(self, device: str | torch.device) -> "DeviceLoader":
        """Hold the data on ``device`` from now on; returns self."""
        device = torch.device(device)
        if device != self.device:
            self.held.to(device)
            self.device = device
        return self

    def shard(self, rank: int, size: int) -> "DeviceLoader":
        """Process ``rank``'s share under torchrun: ``batch_size / size`` per batch, every ``size``-th
        sample of each epoch's order, its own augmentation draws. ValueError when the batch size does
        not divide by ``size``."""
        if self.batch_size % size:
            raise ValueError(f"batch size {self.batch_size} does not divide by {size} processes")
        out = copy.copy(self)
        out.batch_size = self.batch_size // size
        out.sampler = self.sampler.shard(rank, size)
        return out

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self):
        epoch = self.sampler.epoch
        self.sampler.epoch = epoch + 1  # the next epoch, unless set_epoch says otherwise
        order = self.sampler.order(epoch)
        if self.static_shapes and len(order) % self.batch_size:
            order = torch.cat([order, order[: self.batch_size - len(order) % self.batch_size]])
        order = order.to(self.device)
        keys = (epoch, self.sampler.rank)
        gen = torch.Generator(device=self.device).manual_seed(epoch_seed(self.seed, *keys))
        host = torch.Generator().manual_seed(epoch_seed(self.seed, *keys, 1))
        for start in range(0, len(order), self.batch_size):
            yield self.batch(order[start:start + self.batch_size], gen, host)

    def batch(self, index: torch.Tensor, generator: torch.Generator | None = None,
              host_generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The batch of samples ``index`` (int64 on the device), augmented with the generators given
        (not augmented when ``generator`` is None or the transform is a plain resize)."""
        h = self.held
        image = h.images[index].float().div_(255.0)
        prior = None if h.priors is None else h.priors[index]
        masks = None if h.masks is None else h.masks[index]
        if self.augment is not None and generator is not None:
            image, prior, masks = self.augment(image, prior, masks, generator, host_generator)
        out = {"image": normalize(image), "index": index}
        for k, key in enumerate(h.mask_keys):
            if key == "infection":
                out["infection"] = masks[:, k:k + 1].float()
                out["edge"] = mask_edge(out["infection"])
            else:
                out["classes"] = masks[:, k].long()
        if prior is not None:
            out["prior"] = normalize(prior)
        return out
