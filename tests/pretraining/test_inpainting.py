import warnings

import pandas as pd
import pytest
import torch

from ssinfnet.pretraining import inpainting as pretrain
from ssinfnet.training import provenance
from ssinfnet.training.guard import DivergenceError
from ssinfnet.training.loop import train
from ssinfnet.data.dataset import SliceDataset
from ssinfnet.data.phantoms import synthetic_subset
from ssinfnet.data.sources import DataRoot
from ssinfnet.data.transforms import eval_transform
from ssinfnet.book.profiles import get_profile
from ssinfnet.training.loader import make_loader

TINY = {"backbone": "resnet18", "backbone_kwargs": {"channels": (8, 16, 32, 64)}, "channels": 8,
        "edge_channels": 8, "ra_widths": (16, 8, 8)}


def test_inpainter_phases_follow_the_papers_ladder_over_their_steps_and_every_phase_is_guarded():
    assert pretrain.LR_LADDER == {0.4: 0.1, 0.8: 0.01, 0.9: 0.001}
    phases = pretrain.build_phases(pretrain.PretrainConfig(alternations=1))
    inpainters = [p for p in phases if p.trainable == ["inpainter"]]
    assert [p.name for p in inpainters] == ["inpainter", "inpainter_adv_r1"]
    assert all(p.lr_fractions == pretrain.LR_LADDER and not p.lr_factors for p in inpainters)
    assert all(p.guard.loss_ratio == 3.0 and dict(p.guard.limits) == {"past_ceiling": 0.5} for p in inpainters)
    coaches = [p for p in phases if p.trainable == ["coach"]]
    assert all(p.guard.loss_ratio == 3.0 and not p.guard.limits and not p.lr_fractions for p in coaches)
    off = pretrain.PretrainConfig(diverge_loss_ratio=None, diverge_past_ceiling=None).guards()
    assert all(g.loss_ratio is None and not g.limits for g in off)


def _pool_loader(n, batch=2):
    ds = SliceDataset(synthetic_subset("unlabelled", n, 64), 32, eval_transform(32))
    return make_loader(ds, batch, True, 0)


def test_a_one_epoch_inpainter_phase_ends_at_a_thousandth_of_its_rate(tmp_path):
    cfg = pretrain.PretrainConfig(model_kwargs=TINY, patch=8, alternations=0)
    torch.manual_seed(0)
    inpainter_phase = pretrain.build_phases(cfg)[:1]  # the coach's phase is not needed here
    result = train(inpainter_phase, pretrain.build_models(cfg), _pool_loader(20), seed=0, run_dir=tmp_path,
                   progress=False)
    steps = result.history[result.history["kind"] == "step"]
    assert steps["lr"].tolist() == pytest.approx([0.1] * 4 + [0.01] * 4 + [0.001, 0.0001], rel=1e-12)
    # a healthy run: the guard (which reads the epoch's mean) stays quiet; single steps may cross 0.5 by a
    # little, and by how much depends on the CPU's kernels, so only the mean is held to the rule
    assert steps["past_ceiling"].between(0, 1).all() and steps["past_ceiling"].mean() < 0.45
    assert (result.history["kind"] != "diverged").all()


def test_a_diverging_pretraining_stops_and_says_why(tmp_path):
    # SGD at lr 1e3 throws every output past the clipping ceiling: the loss sits flat at its maximum
    cfg = pretrain.PretrainConfig(model_kwargs=TINY, patch=8, alternations=0, inpainter_lr=1e3, inpainter_epochs=3)
    with pytest.raises(DivergenceError, match=r"phase 'inpainter' diverged at epoch 0 \(global step 5\): the epoch's "
                                              r"mean 'past_ceiling' \(share of output pixels whose squared error is "
                                              r"past the loss's clipping ceiling 1, where the loss gives no gradient\)"):
        pretrain.pretrain(cfg, _pool_loader(10), device="cpu", seed=0, run_dir=tmp_path, progress=False)
    hist = pd.read_csv(tmp_path / "history.csv")
    assert hist["kind"].iloc[-1] == "diverged" and "training stopped" in hist["note"].iloc[-1]
    # the last step is far past the ceiling (1.0 with the default kernels of most CPUs, 0.82 with ATen's
    # portable ones), and so is the epoch's mean the guard stopped on
    assert hist["past_ceiling"].iloc[-2] > 0.75 and hist["past_ceiling"].iloc[-1] > 0.5
    assert "coach" not in set(hist["phase"])  # nothing trained after the diverged phase
    with pytest.raises(ValueError, match="diverge_past_ceiling"):
        pretrain.PretrainConfig(diverge_past_ceiling=1.5)
    with pytest.raises(ValueError, match="loss_ratio"):
        pretrain.PretrainConfig(diverge_loss_ratio=0.5)


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
    bf16 = pretrain.PretrainConfig(model_kwargs=TINY, max_steps_per_epoch=1, patch=8, alternations=0, amp=True)
    with pytest.raises(provenance.StaleRunError, match="other settings"):  # the precision is a setting too
        run(c=bf16)
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
