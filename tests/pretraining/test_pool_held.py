"""Pretraining on a device-held pool: pool_loader's choice, and a run in phase prefixes equals one run."""

import pandas as pd
import pytest
import torch

from ssinfnet.book.profiles import get_profile
from ssinfnet.data.held import DeviceLoader
from ssinfnet.data.phantoms import synthetic_subset
from ssinfnet.pretraining import inpainting as pre


@pytest.fixture(scope="module")
def pool():
    return pre.strip_labels(synthetic_subset("unlabelled", 8, size=80, seed=0))


def _cfg(**kw):
    cfg = pre.config_from_profile(get_profile("smoke"))
    return pre.PretrainConfig(**{**cfg.to_dict(), "device_data": True, **kw})


def test_pool_loader_holds_the_pool_when_asked(pool):
    assert isinstance(pre.pool_loader(pool, _cfg(), device="cpu"), DeviceLoader)
    assert not isinstance(pre.pool_loader(pool, _cfg(device_data="auto"), device="cpu"), DeviceLoader)
    assert isinstance(pre.pool_loader(pool, _cfg(device_data="auto"), device="cuda"), DeviceLoader)
    with pytest.raises(ValueError, match="device_data"):
        _cfg(device_data="on")


@pytest.mark.slow  # about 90 s on 2 cores: two pretraining runs
def test_prefix_runs_on_a_held_pool_equal_one_run(tmp_path, pool):
    cfg = _cfg(with_prior=True, network="infnet_multi")
    priors = [torch.rand(s.image.shape, generator=torch.Generator().manual_seed(i)).numpy()
              for i, s in enumerate(pool)]
    _, one = pre.pretrain(cfg, pre.pool_loader(pool, cfg, seed=1, priors=priors, device="cpu"), device="cpu",
                          seed=1, run_dir=tmp_path / "one", progress=False)
    seen = []
    _, parts = pre.pretrain(cfg, pre.pool_loader(pool, cfg, seed=1, priors=priors, device="cpu"), device="cpu",
                            seed=1, run_dir=tmp_path / "parts", progress=False,
                            on_phase_end=lambda name, models: seen.append(name))
    assert seen == ["init", "inpainter", "coach", "inpainter_adv_r1", "coach_adv_r1"]
    pd.testing.assert_frame_equal(one.history.drop(columns="wall_s"), parts.history.drop(columns="wall_s"))
