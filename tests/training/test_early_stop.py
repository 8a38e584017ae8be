"""Early stopping in the training loop: a phase with a ``patience`` ends when its monitored validation
value has not improved for that many validations; ``epochs`` is the cap; resuming counts exactly."""

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ssinfnet.training.checkpoint import load_checkpoint
from ssinfnet.training.loader import make_loader
from ssinfnet.training.loop import train
from ssinfnet.training.optimisers import sgd
from ssinfnet.training.phases import Phase

STEPS = 3  # 12 samples, batch 4
NAN = float("nan")


class Crash(RuntimeError):
    pass


def _models(seed=0):
    torch.manual_seed(seed)
    return {"net": nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Dropout(0.3), nn.ReLU(), nn.Conv2d(4, 1, 1)),
            "other": nn.Conv2d(1, 1, 1)}


def _loader():
    x = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    return make_loader(TensorDataset(x, x.flip(-1)), batch_size=4, shuffle=True, seed=5)


def _loss(name):
    def loss_fn(models, batch, ctx):
        x, y = batch
        keep = (torch.rand(x.shape, generator=ctx.generator) > 0.2).float()  # RNG state matters on resume
        loss = ((models[name](x * keep) - y) ** 2).mean()
        return loss, {}
    return loss_fn


def _by_epoch(values):
    """A validation function returning ``values[epoch]``: the same sequence in a fresh and a resumed run."""
    return lambda models, loader, ctx: {"score": values[ctx.epoch]}


def _crashing(loss_fn, at):
    def wrapped(models, batch, ctx):
        if ctx.global_step == at:
            raise Crash("power cut")
        return loss_fn(models, batch, ctx)
    return wrapped


def _phases(values, patience, epochs=None, mode="max", val_every=1, second=0, crash_at=None):
    wrap = (lambda f: f) if crash_at is None else (lambda f: _crashing(f, crash_at))
    phases = [Phase("net", epochs=epochs or len(values), trainable=["net"], loss_fn=wrap(_loss("net")),
                    make_optimizer=sgd(0.05, momentum=0.9), val_fn=_by_epoch(values), monitor="score", mode=mode,
                    val_every=val_every, patience=patience)]
    if second:
        phases.append(Phase("other", epochs=second, trainable=["other"], frozen=["net"],
                            loss_fn=wrap(_loss("other")), make_optimizer=sgd(0.01)))
    return phases


def _run(tmp, phases, models=None):
    models = models if models is not None else _models()
    return train(phases, models, _loader(), device="cpu", seed=7, run_dir=tmp, val_loader=[0], progress=False), models


def _epochs(result, phase="net"):
    h = result.history
    return h[(h["kind"] == "epoch") & (h["phase"] == phase)].reset_index(drop=True)


def _same_weights(a, b):
    for name in a:
        for (k, va), (_, vb) in zip(a[name].state_dict().items(), b[name].state_dict().items()):
            assert torch.equal(va, vb), f"{name}.{k} differs"


@pytest.mark.parametrize("values, mode, patience, best, ran", [
    # best 0.3 at epoch 1; epochs 2-4 do not beat it (0.3 again is not better): stop after epoch 4
    ([0.1, 0.3, 0.2, 0.25, 0.3, 0.9, 0.9, 0.9], "max", 3, 1, 5),
    # min mode; a NaN never improves, nor does an equal value: best 0.39 at epoch 4, stop after epoch 7
    ([0.5, 0.4, NAN, 0.45, 0.39, 0.6, NAN, 0.39, 0.1], "min", 3, 4, 8),
    # no finite value at all: every validation counts
    ([NAN] * 8, "max", 3, None, 3),
])
def test_stops_at_the_right_epoch_and_says_why(tmp_path, values, mode, patience, best, ran):
    result, _ = _run(tmp_path, _phases(values, patience, mode=mode))
    epochs = _epochs(result)
    assert len(epochs) == ran and result.global_step == ran * STEPS
    assert epochs["stop"].iloc[-1] == "patience" and epochs["stop"].iloc[:-1].isna().all()
    assert result.best.get("net", {}).get("epoch") == best
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["epochs_done"] == ran  # the stopping epoch is checkpointed
    on_disk = pd.read_csv(tmp_path / "history.csv")
    assert on_disk[on_disk["kind"] == "epoch"]["stop"].iloc[-1] == "patience"


def test_patience_counts_validations_not_epochs(tmp_path):
    # validations after epochs 1, 3, 5, 7 (val_every=2); the best is at epoch 1, so the 2nd
    # non-improving validation (epoch 5) ends the phase after 6 epochs
    values = [NAN, 0.5, NAN, 0.4, NAN, 0.5, NAN, 0.9]
    result, _ = _run(tmp_path, _phases(values, patience=2, val_every=2))
    epochs = _epochs(result)
    assert len(epochs) == 6 and epochs["stop"].iloc[-1] == "patience"
    assert epochs["val_score"].notna().sum() == 3


def test_the_cap_ends_a_phase_that_keeps_improving(tmp_path):
    result, _ = _run(tmp_path, _phases([0.1, 0.2, 0.3, 0.4], patience=2))
    epochs = _epochs(result)
    assert len(epochs) == 4 and list(epochs["stop"].fillna("")) == ["", "", "", "cap"]


def test_without_patience_nothing_changes(tmp_path):
    result, _ = _run(tmp_path, _phases([0.5, 0.1, 0.1, 0.1], patience=None))
    assert len(_epochs(result)) == 4 and "stop" not in result.history.columns


def test_the_next_phase_runs_after_an_early_stop(tmp_path):
    result, _ = _run(tmp_path, _phases([0.5, 0.1, 0.1, 0.9, 0.9], patience=2, second=2))
    assert len(_epochs(result)) == 3 and len(_epochs(result, "other")) == 2
    assert result.global_step == 5 * STEPS


def test_resume_after_an_early_stop_does_not_train_the_stopped_phase_again(tmp_path):
    values = [0.5, 0.1, 0.1, 0.9, 0.9]
    full, m_full = _run(tmp_path / "full", _phases(values, patience=2, second=2))
    after_full = torch.rand(3)
    # the same run, cut after the early stop of the first phase (epoch 2), then resumed
    _run(tmp_path / "cut", _phases(values, patience=2))
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["epochs_done"] == 3
    resumed, m_res = _run(tmp_path / "cut", _phases(values, patience=2, second=2), models=_models(seed=9))
    assert resumed.resumed_from is not None
    _same_weights(m_full, m_res)
    assert torch.equal(after_full, torch.rand(3))
    pd.testing.assert_frame_equal(full.history.drop(columns="wall_s"), resumed.history.drop(columns="wall_s"))
    # resuming the finished run trains nothing
    again, _ = _run(tmp_path / "cut", _phases(values, patience=2, second=2), models=_models(seed=4))
    assert again.global_step == full.global_step and len(again.history) == len(full.history)


# global steps: epoch 2 of the first phase (patience counter 1 restored from the best epoch), its
# stopping epoch 4 (last.pt of epoch 3, counter 2), and the second phase after the early stop
@pytest.mark.parametrize("crash_at", [2 * STEPS + 1, 4 * STEPS + 1, 5 * STEPS + 1])
def test_resume_after_a_crash_counts_patience_exactly(tmp_path, crash_at):
    values = [0.2, 0.6, 0.5, NAN, 0.55, 0.9, 0.9]  # best at epoch 1; stop after epoch 4 (patience 3)
    full, m_full = _run(tmp_path / "full", _phases(values, patience=3, second=2))
    after_full = torch.rand(3)
    assert len(_epochs(full)) == 5
    with pytest.raises(Crash):
        _run(tmp_path / "crash", _phases(values, patience=3, second=2, crash_at=crash_at))
    resumed, m_res = _run(tmp_path / "crash", _phases(values, patience=3, second=2), models=_models(seed=9))
    assert resumed.resumed_from is not None
    _same_weights(m_full, m_res)
    assert torch.equal(after_full, torch.rand(3))
    pd.testing.assert_frame_equal(full.history.drop(columns="wall_s"), resumed.history.drop(columns="wall_s"))


@pytest.mark.parametrize("kwargs, match", [
    ({"patience": 0}, "patience must be an int >= 1"),
    ({"patience": 2.5}, "patience must be an int >= 1"),
    ({"patience": True}, "patience must be an int >= 1"),
    ({"patience": 3, "monitor": None, "val_fn": None}, "needs a monitor"),
])
def test_bad_patience(kwargs, match):
    settings = dict(name="p", epochs=3, trainable=["net"], loss_fn=_loss("net"),
                    val_fn=_by_epoch([0.0] * 3), monitor="score")
    with pytest.raises(ValueError, match=match):
        Phase(**{**settings, **kwargs})


def test_validations_since_best_is_a_function_of_the_best_epoch():
    p = Phase("p", epochs=10, trainable=["net"], loss_fn=_loss("net"), val_fn=_by_epoch([0.0] * 10),
              monitor="score", val_every=3, patience=2)
    # validations after epochs 2, 5, 8 and 9 (the last)
    assert [p.validations_since_best(None, n) for n in range(11)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 4]
    assert [p.validations_since_best(2, n) for n in (3, 6, 9, 10)] == [0, 1, 2, 3]
    assert not p.patience_spent(2, 8) and p.patience_spent(2, 9)
    assert p.validations_since_best(9, 10) == 0
