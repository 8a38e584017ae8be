"""Lookahead by hand on one parameter, exact resume from its state dict, schedules, bad arguments."""

import io

import pytest
import torch

from ssinfnet.training.optimisers import Lookahead, make_lookahead_sgd


def _linear_problem(value=1.0, lr=0.1, k=5, alpha=0.5):
    p = torch.nn.Parameter(torch.tensor([value]))
    return p, Lookahead(torch.optim.SGD([p], lr=lr), k=k, alpha=alpha)


def _step(p, opt):
    opt.zero_grad()
    p.sum().backward()  # gradient 1: each fast SGD step subtracts lr
    opt.step()


def test_slow_update_by_hand():
    p, opt = _linear_problem()
    for _ in range(4):
        _step(p, opt)
    assert p.item() == pytest.approx(1.0 - 0.4)  # fast weights only
    _step(p, opt)
    # fast = 0.5 after 5 steps; slow = 1 + 0.5 * (0.5 - 1) = 0.75; fast restarts there
    assert p.item() == pytest.approx(0.75)
    assert opt.slow[p].item() == pytest.approx(0.75)
    for _ in range(5):
        _step(p, opt)
    assert p.item() == pytest.approx(0.75 + 0.5 * (0.25 - 0.75))


def test_k1_alpha1_is_the_base_optimizer():
    torch.manual_seed(0)
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    opt_a = Lookahead(torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9), k=1, alpha=1.0)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(8, 3)
    for _ in range(4):
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)


def _train(model, opt, x, steps):
    for _ in range(steps):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


def test_state_dict_round_trip_resumes_exactly():
    torch.manual_seed(0)
    x = torch.randn(16, 4)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = make_lookahead_sgd(model.parameters(), lr=0.05, momentum=0.7)
    _train(model, opt, x, 3)  # mid-cycle: 3 of k = 5 fast steps taken
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)

    torch.manual_seed(1)  # a differently initialised copy, then restored
    resumed = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    resumed.load_state_dict(ckpt["model"])
    opt2 = make_lookahead_sgd(resumed.parameters(), lr=0.05, momentum=0.7)
    opt2.load_state_dict(ckpt["opt"])
    assert opt2.fast_steps == 3
    _train(model, opt, x, 4)  # crosses the slow update at step 5
    _train(resumed, opt2, x, 4)
    for pa, pb in zip(model.parameters(), resumed.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def test_a_rate_change_after_resume_reaches_the_base_optimiser():
    """A scheduler steps the wrapper's groups; after load_state_dict they must still be the base's own (a
    resumed multi-class fit once kept lr 0.01 past its drop to 0.001 while its history said 0.001)."""
    p, opt = _linear_problem(lr=0.1)
    _step(p, opt)
    p2, opt2 = _linear_problem(lr=0.1)
    p2.data.copy_(p.data)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.param_groups is opt2.base_optimizer.param_groups and opt2.state is opt2.base_optimizer.state
    for o in (opt, opt2):
        for group in o.param_groups:
            group["lr"] = 0.01
    before = p2.item()
    _step(p, opt)
    _step(p2, opt2)
    assert p2.item() == pytest.approx(before - 0.01) and p2.item() == p.item()


def test_scheduler_and_closure_work_through_the_wrapper():
    p, opt = _linear_problem(lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2], gamma=0.1)
    for _ in range(3):
        _step(p, opt)
        sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.01)

    def closure():
        opt.zero_grad()
        loss = p.sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(p.item() + 0.01)


def test_make_lookahead_sgd_settings():
    la = make_lookahead_sgd([torch.nn.Parameter(torch.zeros(1))])
    assert (la.k, la.alpha, la.param_groups[0]["lr"], la.param_groups[0]["momentum"]) == (5, 0.5, 0.01, 0.7)


@pytest.mark.parametrize("kwargs,match", [({"k": 0}, "k"), ({"k": 2.5}, "k"), ({"alpha": 0.0}, "alpha"),
                                          ({"alpha": 1.5}, "alpha")])
def test_bad_lookahead_args(kwargs, match):
    base = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=match):
        Lookahead(base, **kwargs)


def test_bad_inputs():
    p, opt = _linear_problem()
    with pytest.raises(ValueError, match="base_optimizer"):
        Lookahead("sgd")
    with pytest.raises(ValueError, match="already"):
        Lookahead(opt)
    with pytest.raises(ValueError, match="state_dict"):
        opt.load_state_dict({"state": {}, "param_groups": []})
    with pytest.raises(ValueError, match="lr"):
        make_lookahead_sgd([p], lr=0.0)
    _step(p, opt)
    state = opt.state_dict()
    state["lookahead"]["slow"][0] = torch.zeros(2)
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(state)


def test_fused_kernels_only_for_cuda_parameters():
    from ssinfnet.training.optimisers import adam, on_cuda, sgd

    params = [torch.nn.Parameter(torch.zeros(3))]
    assert not on_cuda(params) and not on_cuda([])
    for factory in (adam(1e-3), sgd(0.1)):
        opt = factory(params)
        assert not opt.defaults.get("fused")  # CPU: the default implementation
