"""train() under torchrun: two CPU processes (gloo) against one process with the same global batch.

The two processes are started with ``torch.multiprocessing.spawn`` and given the environment
torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR=127.0.0.1``, a free port), so
:func:`ssinfnet.training.distributed.join` takes the same path as under torchrun; nothing leaves localhost.

Tolerance of the comparison with one process
--------------------------------------------
The single-process run draws its batches with a one-replica ``DistributedSampler`` of the same seed,
so step k of both runs sees the same 4 samples (the two processes 2 each). The network has no
BatchNorm and no dropout and the loss no randomness, so the two runs compute the same function;
they differ only in the order of float32 sums: the loss is the mean of two means of 2 instead of a
mean of 4, and the gradient the all-reduced mean of two per-process gradients instead of one
gradient of the whole batch. Each such sum is exact to a few units in the last place (float32:
2**-24 ~ 6e-8 relative), and 20 steps of SGD at lr 0.05 and Adam at lr 1e-3 on this smooth loss do
not amplify such differences much: measured, the largest relative difference of a logged value
(loss, logs, validation) is 1.2e-7 and of a weight 3e-8 absolute. ``RTOL = 1e-5`` leaves a margin
of about 100 for other CPUs' kernels and stays far below what a real mistake moves: gradients
summed over the two processes instead of averaged (one process at twice the learning rate) are
off by 10 % from the second step on (the test checks that the tolerance tells the two apart); a
per-process batch not divided by the number of processes changes the number of steps.
"""

import os
import socket
import time

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from ssinfnet.training import distributed
from ssinfnet.training.loader import make_loader
from ssinfnet.training.loop import train
from ssinfnet.training.optimisers import sgd
from ssinfnet.training.phases import Phase

pytestmark = pytest.mark.slow  # whole stages: run in the first CI round (default kernels), see .ci/run

N_SAMPLES, GLOBAL_BATCH, WORLD, SEED, LOADER_SEED = 16, 4, 2, 7, 3
RTOL = 1e-5


class Net(nn.Module):
    """(B, 1, 6, 6) -> (B, 1, 6, 6): two convolutions, no BatchNorm, no dropout."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        return self.conv2(torch.tanh(self.conv1(x)))


def _models():
    torch.manual_seed(0)
    return {"a": Net(), "b": Net()}


def _dataset():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(N_SAMPLES, 1, 6, 6, generator=g)
    return TensorDataset(x, x.flip(-1) * 0.5)


def loss_fn(models, batch, ctx):
    x, y = batch
    loss = ((models["b"](models["a"](x)) - y) ** 2).mean()
    return loss, {"mse": loss.detach(), "x_mean": float(x.mean())}  # a tensor log and a float log


def val_fn(models, loader, ctx):
    x, y = _dataset().tensors
    return {"mse": ((models["b"](models["a"](x)) - y) ** 2).mean().item()}


def _phases(first_epochs=2, lr=0.05):
    """a (SGD, validated, best kept), then b (Adam), then a again: a is wrapped in DDP twice."""
    return [
        Phase("a", first_epochs, ["a"], loss_fn, frozen=["b"], make_optimizer=sgd(lr, momentum=0.9),
              lr_factors={1: 0.5}, val_fn=val_fn, monitor="mse"),
        Phase("b", 2, ["b"], loss_fn, frozen=["a"], make_optimizer=lambda p: torch.optim.Adam(p, lr=1e-3)),
        Phase("a_again", 1, ["a"], loss_fn, frozen=["b"], make_optimizer=sgd(0.05), grad_clip=0.5),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, port, tmp):
    """One of the two processes: a full run, then a run stopped after 1 epoch and resumed."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    if os.path.exists("/sys/class/net/lo"):  # gloo's own connections on the loopback interface too
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    if rank != 0:  # only process 0 writes: any write here fails the run
        from ssinfnet.training import history, loop, resume

        def refuse(*a, **k):
            raise AssertionError(f"process {rank} wrote a file")
        history.History.write = refuse
        resume.save_checkpoint = refuse
        loop.write_record = refuse
    try:
        models = _models()
        result = train(_phases(), models, make_loader(_dataset(), GLOBAL_BATCH, True, LOADER_SEED), device="cpu",
                       seed=SEED, run_dir=tmp / "full", progress=False)
        result.history.to_csv(tmp / f"full_rank{rank}.csv", index=False)
        torch.save({n: m.state_dict() for n, m in models.items()}, tmp / f"weights_rank{rank}.pt")
        train(_phases(first_epochs=1)[:1], _models(), make_loader(_dataset(), GLOBAL_BATCH, True, LOADER_SEED),
              device="cpu", seed=SEED, run_dir=tmp / "resumed", progress=False)
        again = train(_phases(), _models(), make_loader(_dataset(), GLOBAL_BATCH, True, LOADER_SEED),
                      device="cpu", seed=SEED, run_dir=tmp / "resumed", progress=False)
        assert again.resumed_from is not None
        again.history.to_csv(tmp / f"resumed_rank{rank}.csv", index=False)
    finally:
        distributed.leave()


def _single(tmp, lr=0.05):
    """One process, the same global batches: a one-replica DistributedSampler of the same seed."""
    sampler = DistributedSampler(_dataset(), num_replicas=1, rank=0, shuffle=True, seed=LOADER_SEED)
    models = _models()
    result = train(_phases(lr=lr), models, DataLoader(_dataset(), batch_size=GLOBAL_BATCH, sampler=sampler),
                   device="cpu", seed=SEED, run_dir=tmp, progress=False)
    return result.history, models


def _numbers(history):
    return history.drop(columns="wall_s").select_dtypes("number")


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as in each spawned process (and much faster on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    t0 = time.perf_counter()
    mp.spawn(_worker, args=(_free_port(), tmp), nprocs=WORLD, join=True)
    print(f"two gloo processes: {time.perf_counter() - t0:.1f} s")
    return tmp


def test_two_processes_follow_the_single_process_trajectory(spawned, tmp_path):
    full = pd.read_csv(spawned / "full_rank0.csv", float_precision="round_trip")
    single, single_models = _single(tmp_path / "single")
    assert list(full.columns) == list(single.columns)
    assert full[["phase", "kind", "epoch", "step", "global_step"]].equals(
        single[["phase", "kind", "epoch", "step", "global_step"]])
    assert len(full[full.kind == "step"]) == 5 * N_SAMPLES // GLOBAL_BATCH  # 5 epochs of 4 global batches
    pd.testing.assert_frame_equal(_numbers(full), _numbers(single), check_exact=False, rtol=RTOL, atol=0)
    ddp_weights = torch.load(spawned / "weights_rank0.pt", weights_only=True)
    for name, module in single_models.items():
        for k, v in module.state_dict().items():
            torch.testing.assert_close(ddp_weights[name][k], v, rtol=RTOL, atol=1e-6)
    # The tolerance tells right from wrong: gradients summed over the 2 processes, not averaged, would
    # be one process at twice the learning rate, which is off by far more from the second step on.
    wrong, _ = _single(tmp_path / "summed", lr=0.1)
    assert full.loss.iloc[0] == pytest.approx(wrong.loss.iloc[0], rel=RTOL)
    assert abs(full.loss.iloc[1] - wrong.loss.iloc[1]) > 100 * RTOL * wrong.loss.iloc[1]


def test_every_process_holds_the_same_history_and_weights(spawned):
    rank0 = pd.read_csv(spawned / "full_rank0.csv", float_precision="round_trip")
    rank1 = pd.read_csv(spawned / "full_rank1.csv", float_precision="round_trip")
    pd.testing.assert_frame_equal(rank0.drop(columns="wall_s"), rank1.drop(columns="wall_s"))
    w0 = torch.load(spawned / "weights_rank0.pt", weights_only=True)
    w1 = torch.load(spawned / "weights_rank1.pt", weights_only=True)
    assert all(torch.equal(w0[n][k], w1[n][k]) for n in w0 for k in w0[n])
    # process 0 wrote the run's files (the other would have failed on any write)
    run = spawned / "full"
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"last.pt", "best_a.pt"}
    assert (run / "history.csv").is_file() and (run / "provenance.json").is_file()
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["world_size"] == WORLD and len(state["rng_by_rank"]) == WORLD


def test_resume_under_two_processes_equals_the_uninterrupted_run(spawned):
    full = pd.read_csv(spawned / "full_rank0.csv", float_precision="round_trip")
    resumed = pd.read_csv(spawned / "resumed_rank0.csv", float_precision="round_trip")
    pd.testing.assert_frame_equal(full.drop(columns="wall_s"), resumed.drop(columns="wall_s"))  # bitwise


def test_a_checkpoint_of_two_processes_is_refused_by_one_with_training_left(spawned, tmp_path):
    import shutil

    shutil.copytree(spawned / "resumed", tmp_path / "run")
    phases = _phases()
    phases[-1].epochs = 2  # one more epoch to train
    with pytest.raises(ValueError, match=r"written by a run of 2 process\(es\), this one has 1"):
        train(phases, _models(), make_loader(_dataset(), GLOBAL_BATCH, True, LOADER_SEED), device="cpu",
              seed=SEED, run_dir=tmp_path / "run", progress=False)
    # a finished run is reused by one process (e.g. the notebook after a torchrun stage)
    done = train(_phases(), _models(), make_loader(_dataset(), GLOBAL_BATCH, True, LOADER_SEED), device="cpu",
                 seed=SEED, run_dir=tmp_path / "run", progress=False)
    assert done.global_step == 20 and done.resumed_from is not None


def test_shard_loader_checks_the_batch_and_keeps_the_settings():
    world = distributed.World(rank=1, size=2, local_rank=1)
    shard = distributed.shard_loader(make_loader(_dataset(), 4, True, seed=9, drop_last=True), world, seed=0)
    assert shard.batch_size == 2 and shard.drop_last and shard.sampler.seed == 9 and shard.sampler.rank == 1
    assert shard.generator.initial_seed() == world.seed(9) != 9
    with pytest.raises(ValueError, match="batch size 5 does not divide by 2 processes"):
        distributed.shard_loader(make_loader(_dataset(), 5, True, seed=0), world, seed=0)
    with pytest.raises(ValueError, match="must be a torch DataLoader"):
        distributed.shard_loader([(torch.zeros(1),)], world, seed=0)


def test_without_torchrun_there_is_no_world(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.join(torch.device("cpu")) is None and distributed.is_main()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.launched() is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert distributed.launched() == (1, 2, 1) and not distributed.is_main()
    assert distributed.on_main(lambda: "written") is None  # process 1 leaves writing to process 0
