"""A network that does not learn fails here: short real trainings on the synthetic phantoms.

The smoke notebooks train for a handful of steps, too few for their scores to mean anything (their
numbers are checked against references with a tolerance, see ``ssinfnet.book.checks``). These tests train
tiny networks through the same ``fit`` (loop, loss, input path, validation, selection) long enough to
learn, and check learning with margins that a broken loss, optimiser, input path or selection cannot
meet. Measured once (2-core CPU): U-Net train Dice 0.61 and best validation Dice 0.54 after 40 steps
against 0.06-0.07 for an all-lesion map; InfNet loss 7.27 -> 4.72 over 40 steps.
"""

import numpy as np
import pytest
import torch

from ssinfnet.data.phantoms import synthetic_subset
from ssinfnet.segmentation.fit import fit
from ssinfnet.segmentation.predict import predict_samples
from ssinfnet.segmentation.variants import variant_config

TINY_INFNET = {"backbone": "resnet18", "backbone_kwargs": {"channels": (8, 16, 32, 64), "stem_width": 8},
               "channels": 8, "edge_channels": 8, "ra_widths": (16, 8, 8)}


@pytest.fixture(scope="module")
def phantoms():
    return synthetic_subset("train", 16, size=64, seed=3)


def _dice(prob, gt):
    pred, gt = prob >= 0.5, np.asarray(gt, bool)
    return 2.0 * (pred & gt).sum() / max(pred.sum() + gt.sum(), 1)


def _fit(name, phantoms, tmp_path, epochs, **kwargs):
    torch.manual_seed(0)
    cfg = variant_config(name, epochs=epochs, batch_size=4, image_size=64, lr=1e-2, **kwargs)
    train = phantoms[1:5]  # one batch: every step sees the same four slices (augmented)
    return fit(cfg, train, phantoms[12:], device="cpu", seed=0, run_dir=tmp_path / name, progress=False), train


def test_unet_learns_the_phantom_lesions(phantoms, tmp_path):
    res, train = _fit("unet", phantoms, tmp_path, 40, model_kwargs={"base_width": 4, "depth": 3})
    trivial = np.mean([_dice(np.ones(s.infection.shape), s.infection) for s in train])
    learnt = np.mean([_dice(p, s.infection) for p, s in zip(predict_samples(res.model, train, 64), train)])
    assert trivial < 0.1 and learnt > 0.4, (trivial, learnt)
    # selection on validation picked a model far above the all-lesion map's Dice (about 0.07)
    assert res.best is not None and res.best[1] > 0.3, res.best


def test_infnet_training_loss_falls(phantoms, tmp_path):
    res, _ = _fit("sinfnet", phantoms, tmp_path, 15, model_kwargs=TINY_INFNET)
    loss = res.history.loc[res.history["kind"] == "epoch", "loss"].to_numpy()
    assert np.isfinite(loss).all()
    assert loss[-3:].mean() < 0.8 * loss[:3].mean(), loss.round(3)
