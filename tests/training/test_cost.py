"""Tests of ssinfnet.training.cost: hand-computed FLOPs and parameter counts, timing helpers, the cost table."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ssinfnet.training import cost

# (cin, cout, kernel, padding, stride, H, W): expected FLOPs = 2 * Cout * Hout * Wout * Cin * k * k
CONV_CASES = [
    (3, 8, 3, 1, 1, 16, 16),   # 2 * 8 * 16 * 16 * 3 * 9 = 110,592
    (1, 4, 5, 0, 1, 12, 10),   # out 8 x 6: 2 * 4 * 48 * 25 = 9,600
    (2, 6, 3, 1, 2, 9, 9),     # out 5 x 5: 2 * 6 * 25 * 18 = 5,400
]


@pytest.mark.parametrize("cin,cout,k,pad,stride,h,w", CONV_CASES)
def test_conv_flops_match_hand_count(cin, cout, k, pad, stride, h, w):
    conv = nn.Conv2d(cin, cout, k, padding=pad, stride=stride, bias=False)
    hout = (h + 2 * pad - k) // stride + 1
    wout = (w + 2 * pad - k) // stride + 1
    expected = 2 * cout * hout * wout * cin * k * k
    assert cost.count_flops(conv, torch.zeros(1, cin, h, w)) == expected


def test_conv_flops_literal_value_and_batch_scaling():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert cost.count_flops(conv, torch.zeros(1, 3, 16, 16)) == 110_592
    assert cost.count_flops(conv, torch.zeros(4, 3, 16, 16)) == 4 * 110_592


def test_linear_flops_and_mode_restored():
    lin = nn.Linear(10, 7)
    lin.train()
    assert cost.count_flops(lin, torch.zeros(5, 10)) == 2 * 5 * 10 * 7
    assert lin.training  # count_flops must not leave the model in eval mode


def test_count_flops_rejects_non_tensor():
    with pytest.raises(ValueError, match="x must be a tensor"):
        cost.count_flops(nn.Linear(2, 2), [[0.0, 0.0]])


def test_count_parameters_tiny_model():
    # conv 1->2 k3 with bias: 2*1*9 + 2 = 20; batch norm(2): 2 + 2 = 4; linear 2->3: 6 + 3 = 9
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3))
    assert cost.count_parameters(model) == 33
    model[0].requires_grad_(False)
    assert cost.count_parameters(model, trainable_only=True) == 13
    assert cost.count_parameters(model) == 33


def test_count_parameters_shared_weight_counted_once():
    lin = nn.Linear(4, 4, bias=False)
    model = nn.Sequential(lin, lin)
    assert cost.count_parameters(model) == 16


def test_time_training_step_updates_weights_and_is_positive():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 1))
    before = [p.detach().clone() for p in model.parameters()]
    seconds = cost.time_training_step(model, torch.randn(2, 1, 8, 8), device="cpu", repeats=2)
    assert seconds > 0 and math.isfinite(seconds)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_time_training_step_custom_loss_and_optimizer_called():
    calls = []

    def loss_fn(model, batch):
        calls.append(batch["image"].shape)
        return model(batch["image"]).pow(2).mean()

    model = nn.Conv2d(1, 1, 1)
    seconds = cost.time_training_step(model, {"image": torch.ones(3, 1, 4, 4)}, loss_fn, "cpu", repeats=3,
                                      make_optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))
    assert seconds > 0
    assert calls == [torch.Size([3, 1, 4, 4])] * 4  # one warm-up + 3 timed steps


def test_time_inference_leaves_eval_mode_and_no_grad_effect():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    seconds = cost.time_inference(model, torch.randn(2, 1, 8, 8), "cpu", repeats=2)
    assert seconds > 0
    assert not model.training
    # eval mode: batch-norm running statistics are untouched
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("repeats", [0, -1, 1.5, True])
def test_bad_repeats_raise(repeats):
    with pytest.raises(ValueError, match="repeats"):
        cost.time_inference(nn.Conv2d(1, 1, 1), torch.zeros(1, 1, 4, 4), "cpu", repeats=repeats)


def test_cost_table_tiny_unet_columns_and_values():
    spec = {"tiny": ("unet", {"base_width": 4, "depth": 2})}
    table = cost.cost_table(spec, size=32, device="cpu", batch=2, repeats=1)
    assert list(table.columns) == cost.COST_COLUMNS
    assert len(table) == 1
    row = table.iloc[0]
    assert row["model"] == "tiny" and row["registry_name"] == "unet" and row["size"] == 32
    from ssinfnet.models.registry import build_model

    assert row["params"] == cost.count_parameters(build_model("unet", base_width=4, depth=2))
    for col in ("gflops_per_image", "train_ms_per_image", "infer_ms_per_image", "peak_memory_mib"):
        assert row[col] > 0 and math.isfinite(row[col]), col
    assert row["peak_memory_kind"].startswith("cpu_")
    assert not row["amp_bf16"] and not row["channels_last"]  # the loop's CPU defaults: fp32, contiguous
    assert row["device_name"].startswith("cpu")


def test_cost_table_times_the_requested_precision_and_memory_format(monkeypatch):
    seen = []

    def fake_train(model, x, loss_fn, device, repeats, amp=None, channels_last=None):
        seen.append(("train", amp, channels_last))
        return 0.2

    def fake_infer(model, x, device, repeats, amp=None, channels_last=None):
        seen.append(("infer", amp, channels_last))
        return 0.1

    monkeypatch.setattr(cost, "time_training_step", fake_train)
    monkeypatch.setattr(cost, "time_inference", fake_infer)
    spec = {"tiny": ("unet", {"base_width": 4, "depth": 2})}
    table = cost.cost_table(spec, size=32, batch=2, repeats=1, amp=True, channels_last=True)
    assert seen == [("train", True, True), ("infer", True, True)]
    row = table.iloc[0]
    assert row["amp_bf16"] and row["channels_last"]
    assert row["train_ms_per_image"] == pytest.approx(100.0) and row["infer_ms_per_image"] == pytest.approx(50.0)
    seen.clear()
    table = cost.cost_table(spec, size=32, batch=2, repeats=1)  # None: the loop's CPU defaults
    assert seen == [("train", False, False), ("infer", False, False)]


def test_cost_table_gflops_equals_count_flops_at_batch_one():
    spec = {"a": ("unet", {"base_width": 4, "depth": 2})}
    table = cost.cost_table(spec, size=32, batch=1, repeats=1)
    from ssinfnet.models.registry import build_model

    model = build_model("unet", base_width=4, depth=2)
    assert table.loc[0, "gflops_per_image"] == pytest.approx(cost.count_flops(model, torch.zeros(1, 1, 32, 32)) / 1e9)


@pytest.mark.parametrize("kwargs,match", [
    ({"models": {}}, "models"),
    ({"models": {"x": "unet"}}, r"models\['x'\]"),
    ({"size": 16}, "size"),
    ({"batch": 0}, "batch"),
    ({"repeats": 0}, "repeats"),
])
def test_cost_table_bad_arguments(kwargs, match):
    args = {"models": {"t": ("unet", {"base_width": 4, "depth": 2})}, "size": 32, "batch": 1, "repeats": 1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cost.cost_table(**args)


def test_cost_table_unknown_model_name():
    with pytest.raises(ValueError, match="not a registered model"):
        cost.cost_table({"t": ("unett", {})}, size=32, repeats=1)


def test_the_cpu_is_named_by_model_cores_and_kernel_instruction_set(monkeypatch, tmp_path):
    from ssinfnet.training import device

    monkeypatch.setattr(device, "CGROUP_ROOT", tmp_path)  # no quota here, whatever the test machine has
    monkeypatch.setattr(device, "PROC_CGROUP", tmp_path / "absent")
    monkeypatch.setattr(device, "cpu_model_name", lambda: "Example CPU 9000")
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(device.torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert device.describe_device("cpu") == "cpu (Example CPU 9000, 3 cores, AVX512 kernels)"
    monkeypatch.setattr(cost, "cpu_model_name", lambda: "Example CPU 9000")
    assert cost.device_description("cpu").startswith("cpu: Example CPU 9000, ")


@pytest.mark.parametrize("files, quota, cores", [
    ({"cpu.max": "200000 100000\n"}, 2.0, 2),                       # cgroup v2: 2 CPUs
    ({"cpu.max": "150000 100000\n"}, 1.5, 2),                       # 1.5 CPUs: rounded up
    ({"cpu.max": "max 100000\n"}, None, 8),                         # no quota
    ({"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"}, 1.0, 1),   # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None, 8),      # v1, unlimited
    ({"cpu.max": "garbage"}, None, 8),                               # unreadable: no quota assumed
    ({}, None, 8),                                                   # no cgroup files
    ({"cpu.max": "6400000 100000\n"}, 64.0, 8),                     # a quota above the affinity mask
])
def test_a_containers_cpu_quota_caps_the_usable_cores(monkeypatch, tmp_path, files, quota, cores):
    from ssinfnet.training import device

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "proc_cgroup").write_text("0::/\n")  # a container with its own cgroup namespace
    monkeypatch.setattr(device, "PROC_CGROUP", tmp_path / "proc_cgroup")
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert device.cpu_quota(tmp_path) == quota
    assert device.usable_cores(tmp_path) == cores


def test_the_quota_of_the_processs_own_cgroup_counts(monkeypatch, tmp_path):
    """Without a cgroup namespace the quota sits in the process's own folder (/proc/self/cgroup's v2 line),
    not at the root; a folder without cpu.max falls back to the root's."""
    from ssinfnet.training import device

    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "kubepods" / "pod1").mkdir(parents=True)
    (tmp_path / "kubepods" / "pod1" / "cpu.max").write_text("300000 100000\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("1:cpu:/\n0::/kubepods/pod1\n")
    monkeypatch.setattr(device, "PROC_CGROUP", proc)
    assert device.cpu_quota(tmp_path) == 3.0
    proc.write_text("0::/elsewhere\n")
    assert device.cpu_quota(tmp_path) is None  # the root's "max"
    monkeypatch.setattr(device, "PROC_CGROUP", tmp_path / "absent")
    assert device.cpu_quota(tmp_path) is None



def test_the_tightest_quota_on_the_way_up_binds(monkeypatch, tmp_path):
    """A parent's quota binds its children: the smallest quota from the process's own cgroup up to the root
    counts, in cgroup v2 and in a v1 cpu hierarchy (where the quota used to be read at the root only)."""
    from ssinfnet.training import device

    proc = tmp_path / "proc_cgroup"
    monkeypatch.setattr(device, "PROC_CGROUP", proc)
    v2 = tmp_path / "v2"
    (v2 / "slice" / "job").mkdir(parents=True)
    (v2 / "cpu.max").write_text("max 100000\n")
    (v2 / "slice" / "cpu.max").write_text("200000 100000\n")        # 2 CPUs for the slice
    (v2 / "slice" / "job" / "cpu.max").write_text("max 100000\n")   # no quota of its own
    proc.write_text("0::/slice/job\n")
    assert device.cpu_quota(v2) == 2.0
    (v2 / "slice" / "job" / "cpu.max").write_text("50000 100000\n")  # tighter than its parent
    assert device.cpu_quota(v2) == 0.5
    v1 = tmp_path / "v1"
    (v1 / "cpu" / "docker" / "abc").mkdir(parents=True)
    for folder, quota in ((v1 / "cpu", "-1"), (v1 / "cpu" / "docker", "-1"), (v1 / "cpu" / "docker" / "abc", "300000")):
        (folder / "cpu.cfs_quota_us").write_text(quota)
        (folder / "cpu.cfs_period_us").write_text("100000")
    proc.write_text("5:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n")
    assert device.cpu_quota(v1) == 3.0
    (v1 / "cpu" / "docker" / "abc" / "cpu.cfs_quota_us").write_text("-1")
    assert device.cpu_quota(v1) is None
    (v1 / "cpu" / "docker" / "cpu.cfs_quota_us").write_text("150000")
    assert device.cpu_quota(v1) == 1.5
    proc.write_text("5:cpu,cpuacct:/../../etc\n")  # a path that leaves the hierarchy: the root only
    assert device.cpu_quota(v1) is None

def test_torch_threads_are_lowered_to_the_usable_cores_never_raised(monkeypatch):
    from ssinfnet.training import device

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        monkeypatch.setattr(device, "usable_cores", lambda root=None: 2)
        assert device.match_threads_to_cores() == 2 and torch.get_num_threads() == 2
        monkeypatch.setattr(device, "usable_cores", lambda root=None: 8)
        assert device.match_threads_to_cores() == 2  # more cores than threads: left alone
    finally:
        torch.set_num_threads(before)
