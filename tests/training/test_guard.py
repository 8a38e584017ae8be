"""Tests for ssinfnet.training.guard: a diverging phase stops, says why, and is not carried on by a re-run."""

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ssinfnet.training.checkpoint import load_checkpoint
from ssinfnet.training.guard import DivergenceError, DivergenceGuard, NonFiniteLossError, check_epoch
from ssinfnet.training.loader import make_loader
from ssinfnet.training.loop import train
from ssinfnet.training.optimisers import sgd
from ssinfnet.training.phases import Phase


def _models():
    torch.manual_seed(0)
    return {"net": nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))}


def _loader():
    x = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(123))
    return make_loader(TensorDataset(x, x.flip(-1)), batch_size=4, shuffle=True, seed=5)  # 3 steps per epoch


def mse(models, batch, ctx):
    x, y = batch
    pred = models["net"](x)
    return ((pred - y) ** 2).mean(), {"far": ((pred - y).abs() > 1).float().mean()}


def _phase(guard, epochs=4, jump=None, lr=0.05, **kw):
    """SGD at ``lr``; with ``jump`` the rate is multiplied by it from epoch 1 on (lr 1e3 for jump=2e4)."""
    return Phase("net", epochs, ["net"], mse, make_optimizer=sgd(lr, momentum=0.0, weight_decay=0.0),
                 lr_factors={1: jump} if jump else {}, grad_clip=1.0, guard=guard, **kw)


def _run(tmp, phase, models=None):
    return train([phase], models or _models(), _loader(), seed=0, run_dir=tmp, progress=False)


def test_a_run_thrown_up_by_lr_1e3_stops_with_the_reason_in_the_history(tmp_path):
    with pytest.raises(DivergenceError) as err:
        _run(tmp_path, _phase(DivergenceGuard(loss_ratio=3.0), jump=2e4))
    e = err.value
    assert (e.phase, e.phase_index, e.epoch, e.global_step) == ("net", 0, 1, 6)
    message = str(e)
    assert message.startswith("phase 'net' diverged at epoch 1 (global step 6): the epoch's mean loss ")
    assert "x the phase's best epoch mean" in message and "(the guard stops above 3 x)" in message
    assert message.endswith("training stopped, its weights should not be used")
    hist = pd.read_csv(tmp_path / "history.csv")
    assert hist["kind"].tolist() == ["step"] * 3 + ["epoch"] + ["step"] * 3 + ["diverged"]
    last = hist.iloc[-1]
    assert last["note"] == message and last["loss"] == pytest.approx(e.value)
    assert e.value > 3 * hist.loc[hist["kind"] == "epoch", "loss"].min()
    # the checkpoint stays at the last healthy epoch: a re-run stops at the same place instead of going on
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["epochs_done"] == 1
    with pytest.raises(DivergenceError) as again:
        _run(tmp_path, _phase(DivergenceGuard(loss_ratio=3.0), jump=2e4), models=_models())
    assert str(again.value) == message
    assert pd.read_csv(tmp_path / "history.csv")["kind"].tolist() == hist["kind"].tolist()


def test_the_same_run_without_a_guard_goes_on_and_a_normal_run_never_stops(tmp_path):
    result = _run(tmp_path / "unguarded", _phase(None, jump=2e4))
    epochs = result.history[result.history["kind"] == "epoch"]["loss"]
    assert epochs.iloc[1] > 3 * epochs.iloc[0]  # what the guard would have stopped
    guarded = _run(tmp_path / "normal", _phase(DivergenceGuard(loss_ratio=3.0, limits={"far": 0.5})))
    assert "diverged" not in set(guarded.history["kind"]) and guarded.global_step == 12


def test_a_logged_value_past_its_limit_stops_at_the_first_epoch(tmp_path):
    guard = DivergenceGuard(loss_ratio=None, limits={"far": 0.01}, meanings={"far": "share of errors above 1"})
    with pytest.raises(DivergenceError, match=r"phase 'net' diverged at epoch 0 \(global step 3\): the epoch's mean "
                                              r"'far' \(share of errors above 1\) is .*, above the guard's limit 0\.01"):
        _run(tmp_path, _phase(guard, lr=1e3))
    row = pd.read_csv(tmp_path / "history.csv").iloc[-1]
    assert row["kind"] == "diverged" and row["far"] > 0.01
    assert not (tmp_path / "checkpoints" / "last.pt").exists()  # no epoch finished healthy
    with pytest.raises(ValueError, match="limits 'nope', which its loss does not log"):
        _run(tmp_path / "b", _phase(DivergenceGuard(limits={"nope": 1.0})))


def _rows(epoch_means, steps):
    rows = [{"kind": "epoch", "phase_index": 0, "loss": m} for m in epoch_means]
    rows += [{"kind": "epoch", "phase_index": 1, "loss": 0.001}]  # another phase's best does not count
    return rows + [{"kind": "step", "phase_index": 0, "loss": v, "far": 0.5} for v in steps]


def test_check_epoch_rule_boundaries():
    guard = DivergenceGuard(loss_ratio=3.0, limits={"far": 0.5})
    check_epoch(guard, _rows([2.0, 1.0], [3.0, 3.0]), "p", 0, 2, 2, 10)  # exactly 3 x: not yet
    check_epoch(guard, _rows([], [100.0]), "p", 0, 0, 1, 10)  # a first epoch has no best to compare with
    check_epoch(None, _rows([1.0], [100.0]), "p", 0, 1, 1, 10)  # no guard
    with pytest.raises(DivergenceError, match="mean loss 3.1 is 3.1 x the phase's best epoch mean 1 "):
        check_epoch(guard, _rows([2.0, 1.0], [3.0, 3.2]), "p", 0, 2, 2, 10)
    with pytest.raises(DivergenceError, match="'far' is 0.6, above the guard's limit 0.5"):
        rows = _rows([1.0], [1.0])
        rows[-1]["far"] = 0.6
        check_epoch(guard, rows, "p", 0, 1, 1, 10)


def test_non_finite_loss_is_a_divergence():
    err = NonFiniteLossError("p", 1, 2, 7, 2, float("nan"), phase_index=3)
    assert isinstance(err, DivergenceError) and isinstance(err, RuntimeError)
    assert str(err) == "non-finite loss (nan) in phase 'p', epoch 1, step 2 (global step 7), batch index 2"
    row = err.history_row()
    assert row["kind"] == "diverged" and row["phase_index"] == 3 and row["note"] == str(err)


@pytest.mark.parametrize("kwargs", [{"loss_ratio": 1.0}, {"loss_ratio": float("inf")}, {"limits": {"x": float("nan")}}])
def test_bad_guards(kwargs):
    with pytest.raises(ValueError):
        DivergenceGuard(**kwargs)
    with pytest.raises(ValueError, match="DivergenceGuard"):
        Phase("p", 1, ["net"], mse, guard={"loss_ratio": 3.0})
