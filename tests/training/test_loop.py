"""Tests for ssinfnet.training.loop (the one loop) and ssinfnet.plots.training, on tiny toy conv nets."""

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ssinfnet.training import provenance
from ssinfnet.training import loop as train_module
from ssinfnet.training.checkpoint import load_checkpoint
from ssinfnet.training.optimisers import Lookahead, MilestoneFactor, sgd
from ssinfnet.training.loop import DivergenceError, NonFiniteLossError, train
from ssinfnet.training.phases import Phase, alternate
from ssinfnet.training.device import default_amp, default_channels_last
from ssinfnet.training.loader import make_loader

matplotlib.use("Agg")

N_SAMPLES, BATCH = 12, 4  # 3 steps per epoch


class ToyNet(nn.Module):
    """Two 3x3 convs with dropout: (B, 1, 8, 8) -> (B, 1, 8, 8)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.drop = nn.Dropout(0.3)
        self.conv2 = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        return self.conv2(self.drop(torch.relu(self.conv1(x))))


def _models(init_seed=0):
    torch.manual_seed(init_seed)
    return {"net": ToyNet(), "coach": ToyNet()}


def _dataset():
    g = torch.Generator().manual_seed(123)
    x = torch.rand(N_SAMPLES, 1, 8, 8, generator=g)
    return TensorDataset(x, x.flip(-1))


def _loader(seed=5):
    return make_loader(_dataset(), batch_size=BATCH, shuffle=True, seed=seed)


def net_loss(models, batch, ctx):
    """Masked reconstruction; the mask comes from ctx.generator so its state matters for resume."""
    x, y = batch
    keep = (torch.rand(x.shape, generator=ctx.generator, device=x.device) > 0.25).float()
    with torch.no_grad():
        hint = torch.sigmoid(models["coach"](x))
    pred = models["net"](x * keep * hint)
    loss = ((pred - y) ** 2).mean()
    return loss, {"mse": loss.detach(), "keep": float(keep.mean())}


def coach_loss(models, batch, ctx):
    x, y = batch
    erased = x * torch.sigmoid(models["coach"](x))
    return 1.0 - ((models["net"](erased) - y) ** 2).mean().clamp(max=1.0), {}


def _phases(epochs=4, second=0, make_optimizer=None, **kw):
    phases = [
        Phase("net", epochs=epochs, trainable=["net"], frozen=["coach"], loss_fn=net_loss,
              make_optimizer=make_optimizer or sgd(0.05, momentum=0.9, weight_decay=1e-4), lr_factors={3: 0.1}, **kw)
    ]
    if second:
        phases.append(Phase("coach", epochs=second, trainable=["coach"], frozen=["net"], loss_fn=coach_loss,
                            make_optimizer=lambda p: torch.optim.Adam(p, lr=1e-3)))
    return phases


def _run(tmp, phases, models=None, loader=None, **kw):
    models = models if models is not None else _models()
    result = train(phases, models, loader if loader is not None else _loader(), device="cpu", seed=11,
                   run_dir=tmp, progress=False, **kw)
    return result, models


def _steps(result):
    return result.history[result.history["kind"] == "step"].reset_index(drop=True)


def _assert_same_weights(a, b):
    for name in a:
        for (ka, va), (kb, vb) in zip(a[name].state_dict().items(), b[name].state_dict().items()):
            assert ka == kb and torch.equal(va, vb), f"{name}.{ka} differs"


# ------------------------------------------------------------------------------------ reproducibility


def test_same_seed_twice_gives_identical_losses_and_weights(tmp_path):
    r1, m1 = _run(tmp_path / "a", _phases(epochs=2))
    r2, m2 = _run(tmp_path / "b", _phases(epochs=2))
    assert len(_steps(r1)) == 2 * 3
    assert _steps(r1)["loss"].tolist() == _steps(r2)["loss"].tolist()
    _assert_same_weights(m1, m2)
    # The comparison can fail: another loader seed reshuffles and changes the losses.
    r3, _ = _run(tmp_path / "c", _phases(epochs=2), loader=_loader(seed=6))
    assert _steps(r1)["loss"].tolist() != _steps(r3)["loss"].tolist()


def test_make_loader_is_deterministic_and_validates():
    order = lambda loader: [b[0][:, 0, 0, 0].tolist() for b in loader]  # noqa: E731
    assert order(_loader(3)) == order(_loader(3))
    assert order(_loader(3)) != order(_loader(4))
    loader = _loader(3)
    assert order(loader) != order(loader)  # reshuffled each epoch
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(_dataset(), batch_size=0, shuffle=True, seed=0)
    with pytest.raises(ValueError, match="num_workers"):
        make_loader(_dataset(), batch_size=2, shuffle=True, seed=0, num_workers=-1)


# ------------------------------------------------------------------------------------ resume


class Crash(RuntimeError):
    pass


def _crashing(loss_fn, at_global_step):
    def wrapped(models, batch, ctx):
        if ctx.global_step == at_global_step:
            raise Crash("power cut")
        return loss_fn(models, batch, ctx)

    return wrapped


def _next_step_loss(models):
    x, y = _dataset().tensors
    for m in models.values():
        m.eval()
    with torch.no_grad():
        return ((models["net"](x) - y) ** 2).mean().item()


def _lookahead(params):
    return Lookahead(torch.optim.SGD(params, lr=0.05, momentum=0.9), k=2)


@pytest.mark.parametrize("optimizer", ["sgd", "lookahead"])
def test_resume_after_extending_epochs_equals_uninterrupted(tmp_path, optimizer):
    # the rate drops at epoch 3, after the resume: it must reach the optimiser that steps (Lookahead's base)
    kw = {"make_optimizer": _lookahead} if optimizer == "lookahead" else {}
    full, m_full = _run(tmp_path / "full", _phases(epochs=4, **kw))
    after_full = torch.rand(4)
    _run(tmp_path / "part", _phases(epochs=2, **kw))  # "crash" after 2 epochs
    resumed, m_res = _run(tmp_path / "part", _phases(epochs=4, **kw), models=_models(init_seed=99), loader=_loader())
    after_resumed = torch.rand(4)
    assert resumed.resumed_from is not None
    _assert_same_weights(m_full, m_res)
    assert _steps(full)["loss"].tolist() == _steps(resumed)["loss"].tolist()
    assert _steps(full)["lr"].tolist() == _steps(resumed)["lr"].tolist()
    assert _next_step_loss(m_full) == _next_step_loss(m_res)
    assert torch.equal(after_full, after_resumed)  # the global RNG continues identically too


def test_resume_after_crash_across_phase_boundary_equals_uninterrupted(tmp_path):
    full, m_full = _run(tmp_path / "full", _phases(epochs=2, second=3))
    after_full = torch.rand(4)
    phases = _phases(epochs=2, second=3)
    phases[1].loss_fn = _crashing(coach_loss, at_global_step=2 * 3 + 3 + 1)  # coach phase, epoch 1, step 1
    with pytest.raises(Crash):
        _run(tmp_path / "crash", phases)
    csv_rows = len(pd.read_csv(tmp_path / "crash" / "history.csv"))
    assert load_checkpoint(tmp_path / "crash" / "checkpoints" / "last.pt")["epochs_done"] == 1
    resumed, m_res = _run(tmp_path / "crash", _phases(epochs=2, second=3), models=_models(init_seed=42),
                          loader=_loader())
    after_resumed = torch.rand(4)
    _assert_same_weights(m_full, m_res)
    assert torch.equal(after_full, after_resumed)
    pd.testing.assert_frame_equal(full.history.drop(columns="wall_s"), resumed.history.drop(columns="wall_s"))
    assert csv_rows == 3 * 4 + 1  # the crashed epoch's first step was logged, then dropped on resume
    on_disk = pd.read_csv(resumed.history_path, float_precision="round_trip")
    assert on_disk["loss"].tolist() == resumed.history["loss"].tolist()


def test_finished_run_returns_trained_weights_without_training(tmp_path):
    _, m1 = _run(tmp_path, _phases(epochs=1))
    calls = []

    def counting(models, batch, ctx):
        calls.append(1)
        return net_loss(models, batch, ctx)

    phases = _phases(epochs=1)
    phases[0].loss_fn = counting
    result, m2 = _run(tmp_path, phases, models=_models(init_seed=7))
    assert calls == [] and result.global_step == 3
    _assert_same_weights(m1, m2)


def test_a_reloaded_history_keeps_a_metric_that_was_never_finite(tmp_path):
    """A validation with no finite score (e.g. every validation mask empty) writes an empty column; a rerun
    that loads the finished run must still have it (the fine-tuning health checks read it)."""
    first, _ = _run(tmp_path, _phases(epochs=2, val_fn=lambda models, loader, ctx: {"dice": float("nan")}))
    again, _ = _run(tmp_path, _phases(epochs=2, val_fn=lambda models, loader, ctx: {"dice": float("nan")}))
    assert "val_dice" in first.history and "val_dice" in again.history
    assert again.history["val_dice"].isna().all()
    assert list(again.history.columns) == list(first.history.columns)


def test_resume_false_starts_over(tmp_path):
    first, _ = _run(tmp_path, _phases(epochs=1))
    again, _ = _run(tmp_path, _phases(epochs=1), resume=False)
    assert again.resumed_from is None and len(again.history) == len(first.history)


def test_resume_rejects_changed_phases_or_seed(tmp_path):
    _run(tmp_path, _phases(epochs=1, second=1))
    renamed = _phases(epochs=1, second=1)
    renamed[0].name = "other"
    with pytest.raises(ValueError, match="phases changed"):
        _run(tmp_path, renamed)
    with pytest.raises(ValueError, match="seed"):
        train(_phases(epochs=1, second=1), _models(), _loader(), seed=12, run_dir=tmp_path, progress=False)


def _other_data_loader():
    """The toy loader's shapes and order, other pixels (a run folder re-run on another data root)."""
    x, y = _dataset().tensors
    return make_loader(TensorDataset(1 - x, y), batch_size=BATCH, shuffle=True, seed=5)


def test_resume_refuses_a_checkpoint_trained_on_other_data(tmp_path, monkeypatch):
    monkeypatch.delenv(provenance.ENV_ALLOW_STALE, raising=False)
    _run(tmp_path, _phases(epochs=1))
    last = tmp_path / "checkpoints" / "last.pt"
    before, history = last.read_bytes(), (tmp_path / "history.csv").read_text()
    old, new = provenance.loader_fingerprint(_loader()), provenance.loader_fingerprint(_other_data_loader())
    with pytest.raises(provenance.StaleRunError) as exc:
        _run(tmp_path, _phases(epochs=2), loader=_other_data_loader())
    message = str(exc.value)
    assert f"run folder {tmp_path} holds a run trained with other data (data {old} -> {new})" in message
    assert "delete the folder or use a new run_dir" in message and "SSINFNET_ALLOW_STALE=1" in message
    # nothing was trained or overwritten
    assert last.read_bytes() == before and (tmp_path / "history.csv").read_text() == history


def test_resume_refuses_other_code_or_settings_and_keys_unknown_loaders_on_code(tmp_path, monkeypatch):
    monkeypatch.delenv(provenance.ENV_ALLOW_STALE, raising=False)
    code = provenance.code_fingerprint()
    _run(tmp_path / "a", _phases(epochs=1))
    monkeypatch.setattr(train_module, "code_fingerprint", lambda: "feedfacefeedface")
    with pytest.raises(provenance.StaleRunError, match=f"other code \\(code {code} -> feedfacefeedface\\)"):
        _run(tmp_path / "a", _phases(epochs=1))
    # a caller's key: its own parts are compared as given
    _run(tmp_path / "b", _phases(epochs=1), provenance={"config": "s1"})
    _run(tmp_path / "b", _phases(epochs=1), provenance={"config": "s1"})
    with pytest.raises(provenance.StaleRunError, match=r"other settings \(config s1 -> s2\)"):
        _run(tmp_path / "b", _phases(epochs=1), provenance={"config": "s2"})
    # a plain list of batches has no known dataset: keyed on the code only
    batches = [batch for batch in _loader()]
    _run(tmp_path / "c", _phases(epochs=1), loader=batches)
    monkeypatch.setattr(train_module, "code_fingerprint", lambda: "0000000000000000")
    with pytest.raises(provenance.StaleRunError, match="other code"):
        _run(tmp_path / "c", _phases(epochs=1), loader=batches)


def test_checkpoint_without_a_key_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(provenance.ENV_ALLOW_STALE, raising=False)
    _run(tmp_path, _phases(epochs=1))
    last = tmp_path / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    del state["provenance"]  # as written before run folders were keyed
    torch.save(state, last)
    with pytest.raises(provenance.StaleRunError, match="data not recorded -> .*; code not recorded -> "):
        _run(tmp_path, _phases(epochs=1))


def test_checkpoint_and_record_say_who_trained_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "git_state", lambda repo=None: {"git_commit": "c0ffee", "dirty": False})
    _run(tmp_path, _phases(epochs=1))
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")  # weights_only=True
    key = {"data": provenance.loader_fingerprint(_loader()), "code": provenance.code_fingerprint()}
    assert state["provenance"]["key"] == key
    assert state["provenance"]["trained_at"]["git_commit"] == "c0ffee"
    assert state["provenance"]["trained_at"]["dirty"] is False
    assert provenance.read_record(tmp_path) == state["provenance"]
    runs = provenance.take_runs(tmp_path)
    assert runs == {".": {"action": "trained", "record": state["provenance"]}}
    # a later session at another commit reuses the finished run: the record keeps the training commit
    monkeypatch.setattr(provenance, "git_state", lambda repo=None: {"git_commit": "beef", "dirty": True})
    _run(tmp_path, _phases(epochs=1))
    assert provenance.take_runs(tmp_path)["."]["action"] == "reused"
    assert provenance.read_record(tmp_path)["trained_at"]["git_commit"] == "c0ffee"
    _run(tmp_path, _phases(epochs=2))  # more epochs: resumed and trained further
    assert provenance.take_runs(tmp_path)["."]["action"] == "trained"


def test_allow_stale_reuses_knowingly_and_records_it(tmp_path, monkeypatch):
    _, m1 = _run(tmp_path, _phases(epochs=1))
    provenance.take_runs(tmp_path)
    monkeypatch.setenv(provenance.ENV_ALLOW_STALE, "1")
    with pytest.warns(provenance.StaleRunWarning, match="other data"):
        result, m2 = _run(tmp_path, _phases(epochs=1), models=_models(init_seed=3), loader=_other_data_loader())
    _assert_same_weights(m1, m2)  # the old weights, not retrained
    assert result.global_step == 3
    record = provenance.read_record(tmp_path)
    old = provenance.loader_fingerprint(_loader())
    assert record["key"]["data"] == old  # the folder keeps the key it was trained with
    assert record["stale_reuse"][0]["differs"] == [
        f"data {old} -> {provenance.loader_fingerprint(_other_data_loader())}"]
    runs = provenance.take_runs(tmp_path)
    assert runs["."]["action"] == "reused" and runs["."]["stale"][0]["differs"] == record["stale_reuse"][0]["differs"]


# ------------------------------------------------------------------------------------ failures


def test_nan_loss_stops_within_the_step_and_names_it(tmp_path):
    def nan_at_3(models, batch, ctx):
        loss, logs = net_loss(models, batch, ctx)
        return (loss * float("nan") if ctx.global_step == 3 else loss), logs

    phases = _phases(epochs=3)
    phases[0].loss_fn = nan_at_3
    models = _models()
    with pytest.raises(NonFiniteLossError, match=r"phase 'net', epoch 1, step 0 \(global step 3\), batch index 0") as err:
        train(phases, models, _loader(), seed=11, run_dir=tmp_path, progress=False)
    assert (err.value.epoch, err.value.step, err.value.global_step, err.value.batch_index) == (1, 0, 3, 0)
    assert math.isnan(err.value.value)
    assert all(torch.isfinite(p).all() for p in models["net"].parameters())  # the NaN step was not applied
    # Weights equal those of a clean run stopped after 3 steps.
    clean = _phases(epochs=1)
    clean[0].lr_factors = {}
    ref, m_ref = _run(tmp_path / "ref", clean)
    _assert_same_weights(models, m_ref)
    hist = pd.read_csv(tmp_path / "history.csv")
    assert len(hist) == 3 + 1 + 1  # rows so far were written, then the row that says why training stopped
    assert hist["kind"].iloc[-1] == "diverged" and hist["note"].iloc[-1] == str(err.value)
    assert (hist["phase_index"].iloc[-1], hist["epoch"].iloc[-1], hist["global_step"].iloc[-1]) == (0, 1, 3)
    assert isinstance(err.value, DivergenceError)


@pytest.mark.parametrize("bad", [torch.ones(2, requires_grad=True), 1.0])
def test_non_scalar_loss_rejected(tmp_path, bad):
    phases = [Phase("p", 1, ["net"], lambda m, b, c: (bad, {}))]
    with pytest.raises(ValueError, match="0-d tensor"):
        _run(tmp_path, phases)


# ------------------------------------------------------------------------------------ validation / best


def _val_sequence(values):
    it = iter(values)

    def val_fn(models, loader, ctx):
        assert not any(m.training for m in models.values())
        assert not torch.is_grad_enabled()
        return {"score": next(it), "other": 1.0}

    return val_fn


@pytest.mark.parametrize(
    "values, mode, best_epoch",
    [
        ([float("nan"), 0.5, float("nan"), 0.3, 0.4], "min", 3),
        ([float("nan"), 0.5, float("nan"), 0.3, 0.4], "max", 1),
        ([0.2, float("nan"), 0.9, 0.1, float("inf")], "max", 2),
        ([float("-inf"), 0.7, float("nan"), 0.6, 0.8], "min", 3),
    ],
)
def test_best_checkpoint_follows_monitor_and_skips_non_finite(tmp_path, values, mode, best_epoch):
    phases = _phases(epochs=5, val_fn=_val_sequence(values), monitor="score", mode=mode)
    result, models = _run(tmp_path, phases, val_loader=[0])
    best = result.best["net"]
    assert best["epoch"] == best_epoch and best["value"] == values[best_epoch]
    state = load_checkpoint(best["path"])
    assert state["epochs_done"] == best_epoch + 1 and state["value"] == values[best_epoch]
    epochs = result.history[result.history["kind"] == "epoch"]
    np.testing.assert_array_equal(epochs["val_score"].to_numpy(), np.array(values))


def test_all_nan_metric_never_makes_a_best(tmp_path):
    phases = _phases(epochs=2, val_fn=_val_sequence([float("nan")] * 2), monitor="score")
    result, _ = _run(tmp_path, phases, val_loader=[0])
    assert result.best == {}
    assert not list((tmp_path / "checkpoints").glob("best_*.pt"))


def test_best_weights_are_those_of_the_best_epoch(tmp_path):
    kept = {}

    def val_fn(models, loader, ctx):
        kept[ctx.epoch] = {k: v.clone() for k, v in models["net"].state_dict().items()}
        return {"score": [3.0, 1.0, 2.0][ctx.epoch]}

    result, _ = _run(tmp_path, _phases(epochs=3, val_fn=val_fn, monitor="score"), val_loader=[0])
    net = ToyNet()
    net.load_state_dict(load_checkpoint(result.best["net"]["path"])["models"]["net"])
    for k, v in net.state_dict().items():
        assert torch.equal(v, kept[1][k])


def test_missing_monitor_key_raises(tmp_path):
    phases = _phases(epochs=1, val_fn=lambda m, l, c: {"dice": 0.5}, monitor="score")
    with pytest.raises(ValueError, match="monitor 'score'"):
        _run(tmp_path, phases, val_loader=[0])


# ------------------------------------------------------------------------------------ phases


def test_phase_modes_freezing_and_restoration(tmp_path):
    seen = []

    def checking(models, batch, ctx):
        seen.append((models["net"].training, models["coach"].training,
                     all(p.requires_grad for p in models["net"].parameters()),
                     any(p.requires_grad for p in models["coach"].parameters()), ctx.phase.name))
        return net_loss(models, batch, ctx)

    phases = _phases(epochs=1, second=1)
    phases[0].loss_fn = checking
    models = _models()
    models["net"].conv1.bias.requires_grad_(False)  # the caller fixed this on purpose
    coach_before = {k: v.clone() for k, v in models["coach"].state_dict().items()}
    bias_before = models["net"].conv1.bias.detach().clone()
    result, models = _run(tmp_path, phases, models=models)
    assert set(seen) == {(True, False, False, False, "net")}  # bias stays frozen in a trainable model
    assert torch.equal(models["net"].conv1.bias, bias_before)
    # phase 1 changed only the net, phase 2 the coach; after train the caller's flags are back
    assert not torch.equal(models["coach"].conv1.weight, coach_before["conv1.weight"])
    assert models["net"].conv1.bias.requires_grad is False
    assert models["coach"].conv1.weight.requires_grad is True
    assert list(result.history["phase"].unique()) == ["net", "coach"]


def test_history_columns_lr_schedule_and_max_steps(tmp_path):
    result, _ = _run(tmp_path, _phases(epochs=4, max_steps_per_epoch=2))
    hist = pd.read_csv(tmp_path / "history.csv")
    assert list(hist.columns[:9]) == ["phase", "phase_index", "kind", "epoch", "step", "global_step", "loss",
                                      "lr", "wall_s"]
    assert {"mse", "keep"} <= set(hist.columns)
    steps = hist[hist["kind"] == "step"]
    assert len(steps) == 4 * 2 and steps["global_step"].tolist() == list(range(8))
    np.testing.assert_allclose(steps["lr"], [0.05] * 6 + [0.005] * 2)
    np.testing.assert_allclose(steps["mse"], steps["loss"], rtol=1e-6)
    epochs = hist[hist["kind"] == "epoch"]
    np.testing.assert_allclose(epochs["loss"], steps.groupby("epoch")["loss"].mean(), rtol=1e-12)
    assert (np.diff(hist["wall_s"]) >= 0).all()


def test_alternate_and_milestones():
    a = _phases(epochs=1)[0]
    b = Phase("coach", 2, ["coach"], coach_loss, frozen=["net"])
    names = [p.name for p in alternate(a, b, rounds=2)]
    assert names == ["net_r1", "coach_r1", "net_r2", "coach_r2"]
    f = MilestoneFactor({10: 0.1, 20: 0.01})
    assert [f(e) for e in (0, 9, 10, 19, 20, 50)] == [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    with pytest.raises(ValueError, match="rounds"):
        alternate(a, b, rounds=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "bad name"}, "name"),
        ({"epochs": 0}, "epochs"),
        ({"trainable": []}, "trainable"),
        ({"trainable": "net"}, "trainable"),
        ({"frozen": ["net"]}, "overlap"),
        ({"mode": "best"}, "mode"),
        ({"monitor": "dice"}, "val_fn"),
        ({"lr_factors": {0: 0.1}}, "lr_factors"),
        ({"grad_clip": 0.0}, "grad_clip"),
    ],
)
def test_bad_phase_arguments(kwargs, match):
    base = dict(name="p", epochs=1, trainable=["net"], loss_fn=net_loss)
    with pytest.raises(ValueError, match=match):
        Phase(**{**base, **kwargs})


def test_bad_train_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown models"):
        _run(tmp_path, [Phase("p", 1, ["inpainter"], net_loss)])
    with pytest.raises(ValueError, match="unique"):
        _run(tmp_path, _phases(epochs=1) * 2)
    with pytest.raises(ValueError, match="amp"):
        _run(tmp_path, _phases(epochs=1), amp="yes")
    with pytest.raises(ValueError, match="phases"):
        _run(tmp_path, [])
    with pytest.raises(ValueError, match="no batches"):
        _run(tmp_path, _phases(epochs=1), loader=[])


def test_grad_clip_limits_the_update(tmp_path):
    def big_loss(models, batch, ctx):
        return 1e6 * models["net"](batch[0]).mean(), {}

    phases = [Phase("p", 1, ["net"], big_loss, make_optimizer=sgd(1.0, momentum=0.0, weight_decay=0.0),
                    grad_clip=1e-3, max_steps_per_epoch=1)]
    models = _models()
    before = torch.cat([p.detach().flatten().clone() for p in models["net"].parameters()])
    _run(tmp_path, phases, models=models)
    after = torch.cat([p.detach().flatten() for p in models["net"].parameters()])
    assert torch.linalg.vector_norm(after - before).item() == pytest.approx(1e-3, rel=1e-3)


# ------------------------------------------------------------------------------------ plot


def test_plot_training_history(tmp_path):
    from ssinfnet.plots.training import epoch_axis, plot_training_history

    result, _ = _run(tmp_path, _phases(epochs=2, second=2, val_fn=_val_sequence([0.5, 0.4]), monitor="score"),
                     val_loader=[0])
    hist = pd.read_csv(result.history_path)
    x = epoch_axis(hist)
    steps = hist["kind"] == "step"
    np.testing.assert_allclose(x[steps].to_numpy()[:3], [1 / 3, 2 / 3, 1.0])
    assert x[(hist["kind"] == "epoch")].tolist() == [1.0, 2.0, 3.0, 4.0]
    fig = plot_training_history(hist, values=["loss", "val_score"], log_scale=True)
    axes = fig.get_axes()
    assert len(axes) == 2 and axes[0].get_yscale() == "log"
    assert axes[1].get_xlabel() == "epoch (cumulative over phases)" and axes[0].get_ylabel() == "loss"
    assert axes[0].get_title() == ""
    with pytest.raises(ValueError, match="dice"):
        plot_training_history(hist, values=["dice"])
    matplotlib.pyplot.close("all")


def test_amp_and_channels_last_flags_reach_the_step(tmp_path):
    seen = []

    def probing(models, batch, ctx):
        # C > 1 tensors only: a 1-channel tensor is contiguous in both layouts.
        seen.append((torch.is_autocast_enabled("cpu"), batch[0].is_contiguous(memory_format=torch.channels_last),
                     models["net"].conv2.weight.is_contiguous(memory_format=torch.channels_last)))
        loss, logs = net_loss(models, (batch[0][:, :1], batch[1]), ctx)
        return loss.float(), logs

    phases = _phases(epochs=1)
    phases[0].loss_fn = probing
    x = torch.rand(2, 2, 8, 8)
    batches = [(x, x[:, :1])]
    _run(tmp_path / "on", phases, loader=batches, amp=True, channels_last=True)
    _run(tmp_path / "auto", phases, loader=batches)  # "auto" on CPU: neither
    _run(tmp_path / "cl", phases, loader=batches, amp=False, channels_last=True)
    assert seen == [(True, True, True), (False, False, False), (False, True, True)]
    assert [default_amp(d) for d in ("cpu", "cuda", "mps")] == [False, False, False]  # bf16 only on request
    assert [default_channels_last(d) for d in ("cpu", "cuda", "mps")] == [False, True, False]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_run_and_resume(tmp_path):
    models = _models()
    result = train(_phases(epochs=2), models, _loader(), device="cuda", seed=11, run_dir=tmp_path, progress=False)
    assert np.isfinite(result.history["loss"]).all()
    assert next(models["net"].parameters()).is_cuda
    again = train(_phases(epochs=3), _models(), _loader(), device="cuda", seed=11, run_dir=tmp_path, progress=False)
    assert again.resumed_from is not None and again.global_step == 9
