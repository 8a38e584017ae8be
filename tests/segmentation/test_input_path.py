"""One input path: a slice reaches the network as the same tensor, bit for bit, through training-time
code (SliceDataset without augmentation, a DataLoader, network_input) and inference-time code
(predict_samples / predict_probabilities, which validation in fit uses, and the predict command)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ssinfnet.data.dataset import SliceDataset
from ssinfnet.data.inputs import network_input
from ssinfnet.data.io import read_image
from ssinfnet.data.sample import Sample
from ssinfnet.models.registry import build_model
from ssinfnet.segmentation.folders import predict_folder
from ssinfnet.segmentation.pipeline import MODEL_ONLY
from ssinfnet.segmentation.predict import predict_probabilities, predict_samples
from ssinfnet.training.export import LoadedModel

TINY = {"base_width": 4, "depth": 2}
SHAPES = [(96, 80), (512, 512), (48, 48), (37, 61)]  # (H, W) of the slices: down-, up- and no resize


def _samples() -> tuple[list[Sample], list[np.ndarray]]:
    """Noisy slices of several sizes with float priors whose values are not 8-bit grey levels."""
    rng = np.random.default_rng(0)
    samples, priors = [], []
    for k, (h, w) in enumerate(SHAPES):
        image = rng.integers(0, 256, (h, w)).astype(np.uint8)
        samples.append(Sample(image=image, slice_id=f"s{k}", source="t", subset="test"))
        priors.append(rng.random((h, w)).astype(np.float32))
    return samples, priors


def _seen_by(model: torch.nn.Module, run) -> list[torch.Tensor]:
    """Every input ``model`` receives while ``run()`` runs (a forward pre-hook)."""
    seen: list[torch.Tensor] = []
    handle = model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    try:
        run()
    finally:
        handle.remove()
    return seen


def _training_input(samples, size: int, priors=None) -> torch.Tensor:
    """What the training loop feeds the network for these slices: SliceDataset (eval) batches."""
    ds = SliceDataset(samples, size, priors=priors)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=False)
    return torch.cat([network_input(batch, priors is not None) for batch in loader])


@pytest.mark.parametrize("size", [64, 96])
@pytest.mark.parametrize("task", ["single", "multi"])
def test_training_and_inference_feed_the_same_tensor(task, size):
    samples, priors = _samples()
    priors = priors if task == "multi" else None
    torch.manual_seed(0)
    model = build_model("unet" if task == "single" else "unet_multi", **TINY).eval()
    seen = _seen_by(model, lambda: predict_samples(model, samples, size, "cpu", priors, batch_size=2))
    inferred = torch.cat(seen)
    trained = _training_input(samples, size, priors)
    assert inferred.shape == trained.shape == (len(SHAPES), 1 if priors is None else 2, size, size)
    assert inferred.dtype == trained.dtype == torch.float32
    assert torch.equal(inferred, trained)


def test_the_predict_command_feeds_the_same_tensor(tmp_path):
    """predict_folder (the ``predict`` command): PNG slices read back, the single model's map as the
    multi model's prior; both networks see what SliceDataset gives for those slices and priors. The
    input steps and the lung restriction are off here (MODEL_ONLY): with them on, the network sees the
    prepared slice through the same path (tests/segmentation/test_pipeline.py)."""
    samples, _ = _samples()
    folder = tmp_path / "in"
    folder.mkdir()
    for s in samples:
        Image.fromarray(s.image).save(folder / f"{s.slice_id}.png")
    torch.manual_seed(0)
    single = LoadedModel(build_model("unet", **TINY).eval(), "unet", 64, TINY, {})
    multi = LoadedModel(build_model("unet_multi", **TINY).eval(), "unet_multi", 96, TINY, {})
    seen_single: list[torch.Tensor] = []
    seen_multi: list[torch.Tensor] = []
    hooks = [single.model.register_forward_pre_hook(lambda _m, a: seen_single.append(a[0].clone())),
             multi.model.register_forward_pre_hook(lambda _m, a: seen_multi.append(a[0].clone()))]
    try:
        predict_folder(single, folder, tmp_path / "out", multi, batch_size=8, progress=False, options=MODEL_ONLY)
    finally:
        for h in hooks:
            h.remove()
    # the first call of each model is predict's check on a blank image; then one batch per file
    read = [Sample(image=read_image(folder / f"{s.slice_id}.png"), slice_id=s.slice_id, source="t", subset="test")
            for s in samples]
    assert torch.equal(torch.cat(seen_single[1:]), _training_input(read, 64))
    # predict reads one slice per PNG file, so the single model ran on batches of one
    priors = [p for s in read for p in predict_samples(single.model, [s], 64, "cpu")]
    assert torch.equal(torch.cat(seen_multi[1:]), _training_input(read, 96, priors))


class _Ramp(torch.nn.Module):
    """Logits = input x a weight that grows left to right (one map per class): not mirror-symmetric,
    so a left-right flip changes its output in a way that can be written down."""

    def __init__(self, classes: int, weight: torch.Tensor | None = None):
        super().__init__()
        self.classes = classes
        self.weight = weight

    def forward(self, x):
        w = self.weight if self.weight is not None else torch.linspace(-2.0, 3.0, x.shape[-1])
        return torch.cat([x[:, :1] * w * (c + 1) for c in range(self.classes)], dim=1)


@pytest.mark.parametrize("classes", [1, 3])
def test_flip_averages_the_logits_of_the_slice_and_its_mirror(classes):
    """flip=True gives what the network with the left-right-averaged weight gives unflipped:
    (x * w + flip(flip(x) * w)) / 2 = x * (w + flip(w)) / 2, before the sigmoid / softmax."""
    samples, _ = _samples()
    images, size = [s.image for s in samples], 64
    plain = predict_probabilities(_Ramp(classes), images, size)
    flipped = predict_probabilities(_Ramp(classes), images, size, flip=True)
    w = torch.linspace(-2.0, 3.0, size)
    symmetric = predict_probabilities(_Ramp(classes, (w + torch.flip(w, [0])) / 2), images, size)
    for p, f, s, img in zip(plain, flipped, symmetric, images):
        assert f.shape == p.shape == ((classes,) if classes > 1 else ()) + img.shape
        np.testing.assert_allclose(f, s, atol=1e-6)
        assert np.abs(f - p).max() > 0.05  # the flip changed the map of this asymmetric network


def test_flip_is_a_no_op_for_a_mirror_symmetric_network():
    samples, _ = _samples()
    images = [s.image for s in samples]
    sym = _Ramp(1, torch.ones(64))
    for a, b in zip(predict_probabilities(sym, images, 64), predict_probabilities(sym, images, 64, flip=True)):
        np.testing.assert_allclose(a, b, atol=1e-7)


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_flip_must_be_a_bool(bad):
    samples, _ = _samples()
    with pytest.raises(ValueError, match="flip must be True or False"):
        predict_probabilities(_Ramp(1), [samples[0].image], 64, flip=bad)


def test_predict_samples_passes_flip_on():
    samples, _ = _samples()
    model = _Ramp(1)
    for a, b in zip(predict_samples(model, samples, 64, flip=True),
                    predict_probabilities(model, [s.image for s in samples], 64, flip=True)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="flip must be True or False"):
        predict_samples(model, samples, 64, flip="yes")
