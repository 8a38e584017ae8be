import warnings

import pytest
import torch

from ssinfnet.pretraining import inpainting as pretrain
from ssinfnet.training import provenance
from ssinfnet.data.dataset import SliceDataset
from ssinfnet.data.phantoms import synthetic_subset
from ssinfnet.data.sources import DataRoot
from ssinfnet.data.transforms import eval_transform
from ssinfnet.book.profiles import get_profile
from ssinfnet.training.loader import make_loader

TINY = {"backbone": "resnet18", "backbone_kwargs": {"channels": (8, 16, 32, 64)}, "channels": 8,
        "edge_channels": 8, "ra_widths": (16, 8, 8)}


def test_lr_ladder_follows_the_paper_and_survives_short_phases():
    assert pretrain.lr_ladder(100) == {40: 0.1, 80: 0.01, 90: 0.001}
    assert pretrain.lr_ladder(4) == {2: 0.1, 3: 0.01, 4: 0.001}
    assert pretrain.lr_ladder(1) == {1: 0.01}  # a one-epoch phase never reaches its first milestone


def test_schedule_is_inpainter_then_coach_then_alternation():
    cfg = pretrain.PretrainConfig(alternations=2)
    names = [p.name for p in pretrain.build_phases(cfg)]
    assert names == ["inpainter", "coach", "inpainter_adv_r1", "coach_adv_r1", "inpainter_adv_r2", "coach_adv_r2"]
    phases = pretrain.build_phases(cfg)
    assert phases[0].trainable == ["inpainter"] and phases[0].frozen == ["coach"]
    assert phases[1].trainable == ["coach"] and phases[1].frozen == ["inpainter"]


@pytest.mark.parametrize("bad", [{"keep": 1.0}, {"keep": 0.0}, {"inpainter_epochs": 0}, {"alternations": -1}])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        pretrain.PretrainConfig(**bad)


def test_pool_strips_labels_and_subsamples_evenly():
    prof = get_profile("smoke").with_overrides(unlabelled_limit=5)
    samples, counts = pretrain.pretraining_pool(DataRoot(None, "test"), prof)
    assert counts["unlabelled pool"] == 5 and counts["total"] == 5 + prof.synthetic_counts["train"]
    assert all(s.infection is None and s.classes is None and s.prior is None for s in samples)
    ids = [s.slice_id for s in samples[:5]]
    assert ids[0].endswith("0000") and ids[-1].endswith(f"{prof.synthetic_counts['unlabelled'] - 1:04d}")


def test_pretraining_reruns_and_resumes_with_recorded_masks(tmp_path):
    ds = SliceDataset(synthetic_subset("unlabelled", 4, 64), 32, eval_transform(32))
    cfg = pretrain.PretrainConfig(model_kwargs=TINY, max_steps_per_epoch=1, patch=8)
    x = torch.stack([ds[i]["image"] for i in range(2)])

    def run(recorder):
        return pretrain.pretrain(cfg, make_loader(ds, 2, True, 0), device="cpu", seed=0, run_dir=tmp_path / "run",
                                 progress=False, on_phase_end=recorder)

    first = pretrain.MaskRecorder(x, path=tmp_path / "masks.pt")
    models, _ = run(first)
    assert list(first.masks) == ["init", "inpainter", "coach", "inpainter_adv_r1", "coach_adv_r1"]
    again = pretrain.MaskRecorder(x, path=tmp_path / "masks.pt")  # a re-run of a finished pretraining
    models2, _ = run(again)
    assert list(again.masks) == list(first.masks)
    for k, v in models["inpainter"].state_dict().items():
        assert torch.equal(v, models2["inpainter"].state_dict()[k])
    frac = pretrain.erased_fraction(models2["coach"], x, keeps=[0.75])
    assert frac.erased_mean.iloc[0] == pytest.approx(0.25, abs=0.05)


def test_pretraining_refuses_a_folder_trained_on_another_pool_config_or_code(tmp_path, monkeypatch):
    monkeypatch.delenv(provenance.ENV_ALLOW_STALE, raising=False)
    pool = synthetic_subset("unlabelled", 4, 64)
    cfg = pretrain.PretrainConfig(model_kwargs=TINY, max_steps_per_epoch=1, patch=8, alternations=0)

    def run(c=cfg, samples=pool, size=32, batch=2):
        loader = make_loader(SliceDataset(samples, size, eval_transform(size)), batch, True, 0)
        return pretrain.pretrain(c, loader, device="cpu", seed=0, run_dir=tmp_path, progress=False)

    run()
    assert provenance.take_runs(tmp_path)["."]["action"] == "trained"
    key = provenance.read_record(tmp_path)["key"]
    assert set(key) == {"data", "config", "code"} and key["code"] == provenance.code_fingerprint()
    # a field spelt out at its default is the same configuration; the finished run is reused
    _, result = run(c=pretrain.PretrainConfig(model_kwargs=TINY, max_steps_per_epoch=1, patch=8, alternations=0,
                                              kl_weight=0.0, keep=0.75))
    assert result.resumed_from is not None and provenance.take_runs(tmp_path)["."]["action"] == "reused"
    other_pool = synthetic_subset("unlabelled", 4, 64, seed=1)  # the phantom generator with another seed
    for kwargs in ({"samples": other_pool}, {"size": 48}, {"batch": 4}):
        with pytest.raises(provenance.StaleRunError, match=f"run folder {tmp_path} holds a run trained with "
                                                           f"other data \\(data {key['data']} -> "):
            run(**kwargs)
    with pytest.raises(provenance.StaleRunError, match=f"other settings \\(config {key['config']} -> "):
        run(c=pretrain.PretrainConfig(model_kwargs=TINY, max_steps_per_epoch=1, patch=8, alternations=0, keep=0.5))
    monkeypatch.setattr(pretrain, "code_fingerprint", lambda: "feedfacefeedface")
    with pytest.raises(provenance.StaleRunError, match="other code"):
        run()


def test_each_phase_changes_only_its_own_network(tmp_path):
    ds = SliceDataset(synthetic_subset("unlabelled", 4, 64), 32, eval_transform(32))
    cfg = pretrain.PretrainConfig(model_kwargs=TINY, max_steps_per_epoch=1, patch=8, alternations=0)
    states = {}

    def snapshot(name, models):
        states[name] = {k: {n: t.detach().clone() for n, t in m.state_dict().items() if t.is_floating_point()}
                        for k, m in models.items()}

    pretrain.pretrain(cfg, make_loader(ds, 2, True, 0), device="cpu", seed=0, run_dir=tmp_path, progress=False,
                      on_phase_end=snapshot)

    def changed(a, b, net):
        return any(not torch.equal(states[a][net][n], states[b][net][n])
                   for n in states[a][net] if "running" not in n and "num_batches" not in n)

    assert changed("init", "inpainter", "inpainter") and not changed("init", "inpainter", "coach")
    assert changed("inpainter", "coach", "coach") and not changed("inpainter", "coach", "inpainter")


def test_saturated_inpainter_is_detected_and_warned():
    cfg = pretrain.PretrainConfig(model_kwargs=TINY)
    torch.manual_seed(0)
    inpainter = pretrain.build_models(cfg)["inpainter"]
    samples = synthetic_subset("unlabelled", n=4, size=64, seed=0)
    loader = make_loader(SliceDataset(samples, 64, eval_transform(64)), batch_size=2, shuffle=False, seed=0)
    x = torch.stack([loader.dataset[i]["image"] for i in range(4)])
    healthy = pretrain.saturated_share(inpainter, x)
    assert 0.0 <= healthy < 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a healthy network raises no warning
        assert pretrain.warn_if_saturated(inpainter, loader, cfg) == pytest.approx(healthy)
    # push every output far from the image, as the diverged run did (outputs ~4, image within ~[-1, 1])
    with torch.no_grad():
        for name in inpainter.head_names:
            getattr(inpainter, name).bias.fill_(10.0)
    state = torch.get_rng_state()
    with pytest.warns(pretrain.SaturatedInpainterWarning, match="past the loss's clipping ceiling"):
        share = pretrain.warn_if_saturated(inpainter, loader, cfg)
    assert share > 0.5 and torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ValueError, match="shape"):
        pretrain.saturated_share(torch.nn.Conv2d(1, 3, 1), x)  # outputs are not reconstructions of x
