"""Tests for ssinfnet.training.schedules (lr ladders over the fraction of a phase's steps) and their use by the loop."""

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
from ssinfnet.training.schedules import FractionLadder, fraction_milestones

PAPER = {0.4: 0.1, 0.8: 0.01, 0.9: 0.001}  # the paper's pretraining ladder


class Tiny(nn.Module):
    """(B, 1, 8, 8) -> (B, 1, 8, 8): two 3x3 convolutions."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x)))


def _models(seed=0):
    torch.manual_seed(seed)
    return {"net": Tiny()}


def _loader(n, batch=1, seed=5):
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(123))
    return make_loader(TensorDataset(x, x.flip(-1)), batch_size=batch, shuffle=True, seed=seed)


def mse(models, batch, ctx):
    x, y = batch
    noise = 0.1 * torch.rand(x.shape, generator=ctx.generator)  # the context generator's state matters on resume
    return ((models["net"](x + noise) - y) ** 2).mean(), {}


def _phase(epochs, fractions=PAPER, lr=0.1, **kw):
    return Phase("p", epochs, ["net"], kw.pop("loss_fn", mse), make_optimizer=sgd(lr, momentum=0.9, weight_decay=0.0),
                 lr_fractions=fractions, **kw)


def _run(tmp, phases, loader, models=None, **kw):
    models = models if models is not None else _models()
    return train(phases, models, loader, seed=3, run_dir=tmp, progress=False, **kw), models


def _rows(result, kind):
    return result.history[result.history["kind"] == kind].reset_index(drop=True)


def test_milestones_fall_on_the_papers_epochs_and_read_fractions_exactly():
    assert fraction_milestones(PAPER, 100) == [[40, 0.1], [80, 0.01], [90, 0.001]]
    # 0.9 * 300 is 270.00000000000006 in floats; the ladder reads 0.9 as 9/10
    assert fraction_milestones(PAPER, 300) == [[120, 0.1], [240, 0.01], [270, 0.001]]
    # short phases: the last step always runs at the last factor; a single step at the base rate
    assert fraction_milestones(PAPER, 10) == [[4, 0.1], [8, 0.01], [9, 0.001]]
    assert fraction_milestones(PAPER, 3) == [[2, 0.1], [2, 0.01], [2, 0.001]]
    assert fraction_milestones(PAPER, 1) == [[1, 0.1], [1, 0.01], [1, 0.001]]
    with pytest.raises(ValueError, match="total_steps"):
        fraction_milestones(PAPER, 0)


@pytest.mark.parametrize("steps_per_epoch", [1, 7])
def test_a_100_epoch_ladder_changes_rate_at_epochs_40_80_90(steps_per_epoch):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    ladder = FractionLadder(opt, PAPER, 100 * steps_per_epoch)
    at_epoch_start = []
    for epoch in range(100):
        at_epoch_start.append(opt.param_groups[0]["lr"])
        for _ in range(steps_per_epoch):
            opt.step()
            ladder.step()
    expected = [0.1] * 40 + [0.01] * 40 + [0.001] * 10 + [0.0001] * 10
    assert at_epoch_start == pytest.approx(expected, rel=1e-12)


def test_one_epoch_phase_descends_to_a_thousandth_of_its_rate_in_the_history(tmp_path):
    result, _ = _run(tmp_path, [_phase(1)], _loader(10))
    steps = _rows(result, "step")
    assert steps["lr"].tolist() == pytest.approx([0.1] * 4 + [0.01] * 4 + [0.001, 0.0001], rel=1e-12)
    epoch = _rows(result, "epoch")
    assert epoch["lr"].tolist() == [0.1]  # the epoch row keeps the rate it started at
    # with the old epoch milestones a one-epoch phase stayed at 0.1 throughout
    short, _ = _run(tmp_path / "short", [_phase(1)], _loader(3))
    assert _rows(short, "step")["lr"].tolist() == pytest.approx([0.1, 0.1, 0.0001], rel=1e-12)


def test_a_100_epoch_phase_logs_the_papers_milestones_per_epoch(tmp_path):
    phase = _phase(100, checkpoint_every=100)
    torch.manual_seed(0)
    result, _ = _run(tmp_path, [phase], _loader(4, batch=2), models={"net": nn.Linear(8, 8)})  # 2 steps per epoch
    epochs = _rows(result, "epoch")
    assert epochs["lr"].tolist() == pytest.approx([0.1] * 40 + [0.01] * 40 + [0.001] * 10 + [0.0001] * 10,
                                                  rel=1e-12)
    steps = _rows(result, "step")
    assert len(steps) == 200 and steps["lr"].iloc[-1] == pytest.approx(1e-4, rel=1e-12)


def test_max_steps_per_epoch_sizes_the_ladder(tmp_path):
    result, _ = _run(tmp_path, [_phase(2, max_steps_per_epoch=5)], _loader(12))  # 2 x 5 steps, not 2 x 12
    assert _rows(result, "step")["lr"].tolist() == pytest.approx([0.1] * 4 + [0.01] * 4 + [0.001, 0.0001],
                                                                 rel=1e-12)


class Crash(RuntimeError):
    pass


def test_resume_mid_phase_with_a_step_ladder_equals_uninterrupted(tmp_path):
    full, m_full = _run(tmp_path / "full", [_phase(3)], _loader(5))
    after_full = torch.rand(3)

    def crashing(models, batch, ctx):
        if ctx.global_step == 11:  # epoch 2, step 1: last.pt holds 2 epochs and the ladder's state
            raise Crash("power cut")
        return mse(models, batch, ctx)

    with pytest.raises(Crash):
        _run(tmp_path / "part", [_phase(3, loss_fn=crashing)], _loader(5))
    state = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt")
    assert state["epochs_done"] == 2 and state["scheduler"]["last_epoch"] == 10
    resumed, m_res = _run(tmp_path / "part", [_phase(3)], _loader(5), models=_models(seed=9))
    after_resumed = torch.rand(3)
    assert resumed.resumed_from is not None
    for k, v in m_full["net"].state_dict().items():
        assert torch.equal(v, m_res["net"].state_dict()[k]), k
    pd.testing.assert_frame_equal(full.history.drop(columns="wall_s"), resumed.history.drop(columns="wall_s"))
    assert _rows(resumed, "step")["lr"].tolist() == pytest.approx(
        [0.1] * 6 + [0.01] * 6 + [0.001, 0.001, 0.0001], rel=1e-12)
    assert torch.equal(after_full, after_resumed)


def test_resume_refuses_a_ladder_over_another_number_of_steps(tmp_path):
    _run(tmp_path, [_phase(2)], _loader(5, batch=5))  # 2 epochs of 1 step
    # the same phase made longer: its ladder would fall on other steps than the ones already run
    with pytest.raises(ValueError, match=r"checkpoint .*last\.pt, phase 'p': the saved lr ladder spans 2 steps .*"
                                         r"this phase 3 steps .*train it in a new run folder"):
        _run(tmp_path, [_phase(3)], _loader(5, batch=5))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr_fractions": {1.0: 0.1}}, r"in \(0, 1\)"),
        ({"lr_fractions": {0.0: 0.1}}, r"in \(0, 1\)"),
        ({"lr_fractions": {0.5: 0.0}}, "finite and > 0"),
        ({"lr_fractions": {0.5: float("inf")}}, "finite and > 0"),
        ({"lr_fractions": [0.5]}, "dict"),
        ({"lr_fractions": {0.5: 0.1}, "lr_factors": {2: 0.1}}, "give one"),
        ({"lr_fractions": {0.5: 0.1}, "make_scheduler": lambda opt: None}, "give one"),
    ],
)
def test_bad_fraction_ladders(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Phase("p", 1, ["net"], mse, **kwargs)


def test_a_ladder_needs_the_length_of_an_epoch(tmp_path):
    batches = (b for b in list(_loader(4)))  # a generator: no len()
    with pytest.raises(ValueError, match="lr_fractions needs the number of steps per epoch"):
        _run(tmp_path / "a", [_phase(1)], batches)
    # max_steps_per_epoch gives it
    result, _ = _run(tmp_path / "b", [_phase(1, max_steps_per_epoch=2)], iter(list(_loader(4))))
    assert _rows(result, "step")["lr"].tolist() == pytest.approx([0.1, 0.0001], rel=1e-12)
