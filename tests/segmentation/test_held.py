"""Fine-tuning on device-held data: the device validation equals the host one, and fit trains and resumes on it."""

import pandas as pd
import pytest
import torch

from ssinfnet.book.profiles import get_profile
from ssinfnet.data.held import DeviceLoader
from ssinfnet.data.phantoms import synthetic_subset
from ssinfnet.models.registry import build_model
from ssinfnet.segmentation.fit import fit, oracle_priors, validation_scores
from ssinfnet.segmentation.held import HeldValidation, training_loader, use_device_data
from ssinfnet.segmentation.predict import predict_probabilities
from ssinfnet.segmentation.variants import variant_config

SMOKE = get_profile("smoke")


@pytest.fixture(scope="module")
def samples():
    return synthetic_subset("train", n=9, size=80, seed=1)


@pytest.mark.parametrize("task", ["single", "multi"])
def test_device_validation_equals_the_host_path(samples, task):
    cfg = variant_config("sinfnet" if task == "single" else "multi_sinfnet", SMOKE)
    torch.manual_seed(0)
    model = build_model(cfg.network, **cfg.network_kwargs()).eval()
    priors = oracle_priors(samples) if task == "multi" else None
    with torch.no_grad():
        probs = predict_probabilities(model, [s.image for s in samples], 64, "cpu", 4, priors)
    host = validation_scores(task, probs, samples)
    held = HeldValidation(task, samples, 64, priors)(model, "cpu", 4)
    assert held.keys() == host.keys()
    assert all(held[k] == host[k] or (held[k] != held[k] and host[k] != host[k]) for k in host), (held, host)


def test_device_validation_names_a_slice_without_labels(samples):
    from dataclasses import replace

    with pytest.raises(ValueError, match=f"first: {samples[0].slice_id}"):
        HeldValidation("single", [replace(samples[0], infection=None)], 64)


def test_device_data_setting(samples):
    assert not use_device_data(variant_config("sinfnet", SMOKE), "cpu")
    assert use_device_data(variant_config("sinfnet", SMOKE), "cuda")
    cfg = variant_config("sinfnet", SMOKE, device_data=True)
    from ssinfnet.data.dataset import SliceDataset

    loader = training_loader(cfg, SliceDataset(samples, 64, cfg.augmentation()), torch.device("cpu"), 0)
    assert isinstance(loader, DeviceLoader) and loader.augment is not None
    with pytest.raises(ValueError, match="device_data"):
        variant_config("sinfnet", SMOKE, device_data="yes")
    with pytest.raises(ValueError, match="compile"):
        variant_config("sinfnet", SMOKE, compile="fast")


def test_fit_on_device_held_data_is_reproducible_and_reused(tmp_path, samples):
    cfg = variant_config("sinfnet", SMOKE, epochs=3, patience=None, device_data=True)
    full = fit(cfg, samples[:6], samples[6:], device="cpu", seed=0, run_dir=tmp_path / "full", progress=False)
    short = variant_config("sinfnet", SMOKE, epochs=3, patience=None, device_data=True)
    fit(short, samples[:6], samples[6:], device="cpu", seed=0, run_dir=tmp_path / "part", progress=False)
    # the same folder, trained again: a finished run is reused, not retrained
    again = fit(short, samples[:6], samples[6:], device="cpu", seed=0, run_dir=tmp_path / "part", progress=False)
    pd.testing.assert_frame_equal(full.history.drop(columns="wall_s"), again.history.drop(columns="wall_s"))
    assert full.history["val_dice"].notna().sum() == 3
