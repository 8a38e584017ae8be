"""A loop that keeps the device busy: deferred host sync, per-epoch seeded loaders (workers, device-held
data) with exact resume, and guarded torch.compile."""

import math
import time
import warnings

import pandas as pd
import pytest
import torch
from torch import nn

from ssinfnet.data.dataset import SliceDataset
from ssinfnet.data.held import DeviceLoader
from ssinfnet.data.phantoms import synthetic_subset
from ssinfnet.data.transforms import train_transform
from ssinfnet.training import provenance
from ssinfnet.training.loader import SeededItems, make_loader
from ssinfnet.training.loop import NonFiniteLossError, train
from ssinfnet.training.optimisers import sgd
from ssinfnet.training.phases import Phase

SIZE = 32


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x)))


def loss_fn(models, batch, ctx):
    pred = models["net"](batch["image"])
    loss = nn.functional.binary_cross_entropy_with_logits(pred, batch["infection"])
    noise = torch.rand((), generator=ctx.generator, device=ctx.device)  # the context generator matters
    return loss + 1e-3 * noise, {"mean_pred": pred.mean(), "noise": noise}


def _phases(epochs, fn=loss_fn):
    return [Phase("net", epochs, ["net"], fn, make_optimizer=sgd(0.05, momentum=0.9), lr_factors={2: 0.5})]


def _net(seed=0):
    torch.manual_seed(seed)
    return {"net": Tiny()}


@pytest.fixture(scope="module")
def dataset():
    samples = synthetic_subset("train", n=10, size=48, seed=0)
    return SliceDataset(samples, SIZE, train_transform(SIZE, cutout=0.4), require=("infection",))


def _run(tmp, loader, epochs=3, models=None, fn=loss_fn, **kw):
    models = models or _net()
    res = train(_phases(epochs, fn), models, loader, device="cpu", seed=3, run_dir=tmp, progress=False, **kw)
    return res, models


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a["net"].state_dict().values(), b["net"].state_dict().values()))


def _no_wall(h):
    return h.drop(columns="wall_s")


# ------------------------------------------------------------------------------------ host sync

@pytest.mark.parametrize("sync_every", [2, None])
def test_deferred_sync_keeps_the_history_and_weights(tmp_path, dataset, sync_every):
    every, m1 = _run(tmp_path / "1", make_loader(dataset, 4, True, seed=1), sync_every=1)
    later, m2 = _run(tmp_path / "n", make_loader(dataset, 4, True, seed=1), sync_every=sync_every)
    pd.testing.assert_frame_equal(_no_wall(every.history), _no_wall(later.history))
    assert _same_weights(m1, m2) and (every.history.kind == "step").sum() == 9


def test_deferred_sync_stops_at_the_first_non_finite_step(tmp_path, dataset):
    def nan_at_4(models, batch, ctx):
        loss, logs = loss_fn(models, batch, ctx)
        return (loss * math.nan if ctx.global_step == 4 else loss), logs

    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 1 \(global step 4\)"):
        _run(tmp_path, make_loader(dataset, 4, True, seed=1), fn=nan_at_4, sync_every=None)
    hist = pd.read_csv(tmp_path / "history.csv")
    assert hist.kind.tolist() == ["step"] * 3 + ["epoch", "step", "diverged"]  # rows before it, then why


def test_sync_every_is_checked(tmp_path, dataset):
    with pytest.raises(ValueError, match="sync_every"):
        _run(tmp_path, make_loader(dataset, 4, True, seed=1), sync_every=0)


# ------------------------------------------------------------------------------------ seeded loaders

def test_seeded_items_do_not_depend_on_worker_count_and_workers_persist(dataset):
    def epochs(loader):
        out = []
        for e in range(2):
            loader.sampler.set_epoch(e)
            out.append([b["image"] for b in loader])
        return out

    ref = epochs(make_loader(dataset, 4, True, seed=2, seeded=True))
    for workers in (1, 2):
        loader = make_loader(dataset, 4, True, seed=2, num_workers=workers)
        assert loader.persistent_workers and isinstance(loader.dataset, SeededItems)
        got = epochs(loader)
        assert all(torch.equal(a, b) for ea, eb in zip(ref, got) for a, b in zip(ea, eb)), workers
    assert not torch.equal(ref[0][0], ref[1][0])  # another epoch, other batches
    assert not make_loader(dataset, 4, True, seed=2).persistent_workers  # no workers: the running-state path


def test_seeded_items_leave_the_global_generator_alone(dataset):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    SeededItems(dataset, 5)[(1, 2)]
    assert torch.equal(torch.rand(3), expected)


def test_provenance_tells_the_loaders_apart(dataset):
    keys = {provenance.loader_fingerprint(make_loader(dataset, 4, True, seed=0)),
            provenance.loader_fingerprint(make_loader(dataset, 4, True, seed=0, seeded=True)),
            provenance.loader_fingerprint(DeviceLoader(dataset, 4, seed=0))}
    assert None not in keys and len(keys) == 3


@pytest.mark.parametrize("kind", ["device", "seeded", "workers"])
def test_resume_is_bitwise_exact_with_per_epoch_seeding(tmp_path, dataset, kind):
    def loader():
        if kind == "device":
            return DeviceLoader(dataset, 4, seed=1)
        return make_loader(dataset, 4, True, seed=1, num_workers=2 if kind == "workers" else 0, seeded=True)

    full, m_full = _run(tmp_path / "full", loader(), epochs=4)
    _run(tmp_path / "part", loader(), epochs=2)
    resumed, m_res = _run(tmp_path / "part", loader(), epochs=4, models=_net(99))
    assert resumed.resumed_from is not None
    pd.testing.assert_frame_equal(_no_wall(full.history), _no_wall(resumed.history))
    assert _same_weights(m_full, m_res)


def test_device_loader_trains_on_the_device_it_is_given(tmp_path, dataset):
    loader = DeviceLoader(dataset, 4, seed=1)
    res, _ = _run(tmp_path, loader, epochs=1)
    assert loader.device == torch.device("cpu") and (res.history.kind == "step").sum() == 3


# ------------------------------------------------------------------------------------ torch.compile

def test_compile_failure_falls_back_to_eager_with_the_same_run(tmp_path, dataset, monkeypatch):
    eager, m_eager = _run(tmp_path / "eager", make_loader(dataset, 4, True, seed=1))

    def broken(fn, **kw):
        def call(*a, **k):
            raise RuntimeError("no compiler here")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(RuntimeWarning, match="torch.compile failed.*no compiler here"):
        fallback, m_fb = _run(tmp_path / "fb", make_loader(dataset, 4, True, seed=1), compile="default")
    pd.testing.assert_frame_equal(_no_wall(eager.history), _no_wall(fallback.history))
    assert _same_weights(m_eager, m_fb)
    assert m_fb["net"]._compiled_call_impl is None


def test_cuda_graph_modes_need_static_shapes(tmp_path, dataset, monkeypatch):
    modes = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, mode=None, dynamic=None: modes.append(mode))
    with pytest.warns(RuntimeWarning, match="CUDA graphs"):
        _run(tmp_path / "a", DeviceLoader(dataset, 4, seed=1), epochs=1, compile="max-autotune")
    _run(tmp_path / "b", DeviceLoader(dataset, 4, seed=1, static_shapes=True), epochs=1, compile="max-autotune")
    assert modes == ["max-autotune-no-cudagraphs", "max-autotune"]


@pytest.mark.slow
def test_compiled_model_gives_the_eager_losses(tmp_path, dataset):
    t0 = time.perf_counter()
    eager, _ = _run(tmp_path / "eager", make_loader(dataset, 4, True, seed=1), epochs=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled, m = _run(tmp_path / "compiled", make_loader(dataset, 4, True, seed=1), epochs=1, compile="default")
    assert not [w for w in caught if "torch.compile failed" in str(w.message)]  # it did compile
    a, b = eager.history.loss.to_numpy(), compiled.history.loss.to_numpy()
    assert abs(a - b).max() < 1e-4, (a, b)
    assert time.perf_counter() - t0 < 300
