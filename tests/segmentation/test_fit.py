"""Tests for ssinfnet.segmentation.fit: variants, initialisation, priors, fit/export, validation Dice, CV.

Everything is tiny: 64 px synthetic phantoms, a narrow ResNet-18 InfNet or a 4-channel U-Net,
one epoch of two steps.
"""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ssinfnet.data.phantoms import synthetic_subset
import ssinfnet.segmentation.fit as finetune
from ssinfnet.training import provenance
from ssinfnet.data.sample import Sample
from ssinfnet.segmentation.variants import VARIANTS, SegConfig, pretrained_variant_config, variant_config
from ssinfnet.segmentation.fit import (build_segmenter, fit, load_init_state, oracle_priors, segmentation_loss,
                                       validation_scores)
from ssinfnet.segmentation.crossval import cross_validate
from ssinfnet.segmentation.predict import predict_samples
from ssinfnet.training.losses import SEG_KEYS, infnet_loss, multi_infnet_loss, multiclass_structure_loss
from ssinfnet.training.export import load_exported
from ssinfnet.pretraining.inpainting import PretrainConfig, build_models
from ssinfnet.book.profiles import get_profile

TINY_INFNET = {"backbone": "resnet18", "backbone_kwargs": {"channels": (8, 16, 32, 64), "stem_width": 8},
               "channels": 8, "edge_channels": 8, "ra_widths": (16, 8, 8)}
TINY_UNET = {"base_width": 4, "depth": 2}
SMALL = dict(epochs=1, batch_size=2, image_size=64, max_steps_per_epoch=2)


@pytest.fixture(scope="module")
def phantoms():
    # Phantom 0 has no lesion: it must be left out of the validation means, not scored 0 or 1.
    return synthetic_subset("train", 9, size=64, seed=0)


def _crop(sample, rows, cols):
    """A non-square copy of a sample (so 'own size' predictions are really tested)."""
    cut = lambda a: None if a is None else a[:rows, :cols]  # noqa: E731
    return replace(sample, image=sample.image[:rows, :cols].copy(), infection=cut(sample.infection),
                   classes=cut(sample.classes), edge=cut(sample.edge), prior=cut(sample.prior),
                   slice_id=sample.slice_id + "-crop")


def _dice_by_hand(prob, gt):
    pred, gt = prob >= 0.5, np.asarray(gt, dtype=bool)
    if not gt.any():
        return np.nan
    return 2.0 * (pred & gt).sum() / (pred.sum() + gt.sum())


# ------------------------------------------------------------------------------------------ configs

@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_builds_a_config(name):
    cfg = variant_config(name, profile=get_profile("smoke"))
    assert isinstance(cfg, SegConfig) and cfg.name == name
    assert cfg.task == ("multi" if name.startswith("multi") else "single")
    assert (cfg.image_size, cfg.batch_size, cfg.max_steps_per_epoch) == (64, 4, 3)
    if cfg.network.startswith("infnet"):
        assert cfg.model_kwargs["backbone"] == "resnet18"
    assert cfg.network_kwargs()["in_chans"] == (2 if cfg.task == "multi" else 1)
    assert VARIANTS[name]().name == name  # the factory itself


def test_paper_settings_of_the_main_variants():
    single, multi = variant_config("ssinfnet"), variant_config("multi_ssinfnet")
    assert (single.init, single.loss, single.optimizer, single.learning_rate) == ("inpainting", "infnet", "adam", 1e-4)
    assert single.model_kwargs["backbone"] == "res2net50_26w_4s" and single.image_size == 352
    assert (multi.init, multi.loss, multi.optimizer, multi.learning_rate, multi.momentum) == \
        ("inpainting", "focal", "lookahead_sgd", 0.01, 0.7)
    baseline = variant_config("multi_sinfnet")
    assert (baseline.init, baseline.loss, baseline.optimizer) == ("scratch", "bce", "sgd")
    assert variant_config("sinfnet_cutout40").cutout == 0.4 and variant_config("ssinfnet_cutout50").cutout == 0.5
    tasks = [variant_config(n).task for n in VARIANTS]
    assert tasks == sorted(tasks, key=("single", "multi").index)  # single variants first, then multi


@pytest.mark.parametrize("name,changed", [
    ("multi_ssinfnet_no_inpainting", {"init": "scratch"}),
    ("multi_ssinfnet_no_focal", {"loss": "bce"}),
    ("multi_ssinfnet_no_lookahead", {"optimizer": "sgd"}),
    ("multi_ssinfnet_gt_prior", {"prior_source": "ground_truth"}),
    ("multi_ssinfnet_encoder", {"transfer": "encoder"}),
])
def test_each_ablation_changes_one_setting(name, changed):
    full, ablation = variant_config("multi_ssinfnet").to_dict(), variant_config(name).to_dict()
    diff = {k: ablation[k] for k in full if full[k] != ablation[k] and k != "name"}
    assert diff == changed


def test_overrides_merge_model_kwargs():
    cfg = variant_config("sinfnet", model_kwargs={"channels": 8}, epochs=3)
    assert cfg.model_kwargs == {"backbone": "res2net50_26w_4s", "channels": 8} and cfg.epochs == 3
    cfg = variant_config("multi_ssinfnet", network="unet_multi", model_kwargs=TINY_UNET)
    assert cfg.model_kwargs == TINY_UNET  # InfNet kwargs dropped with the network


def test_fit_refuses_a_folder_trained_in_another_precision(phantoms, tmp_path, monkeypatch):
    """amp and channels_last are settings of the run folder: a float32 folder is not resumed under bf16."""
    monkeypatch.delenv(provenance.ENV_ALLOW_STALE, raising=False)
    cfg = variant_config("unet", model_kwargs=TINY_UNET, **dict(SMALL, max_steps_per_epoch=1))
    train, val, run_dir = phantoms[:4], phantoms[6:8], tmp_path / "run"
    seen, real_train = [], finetune.train

    def spy(*args, **kwargs):
        seen.append((kwargs["amp"], kwargs["channels_last"]))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(finetune, "train", spy)
    first = fit(cfg, train, val, device="cpu", seed=0, run_dir=run_dir, progress=False)
    record = json.loads((run_dir / "config.json").read_text())
    assert seen == [("auto", "auto")] and record["config"]["amp"] == "auto"
    for change, shown in (({"amp": True}, "config amp \"auto\" -> true"),
                          ({"channels_last": True}, "config channels_last \"auto\" -> true")):
        with pytest.raises(provenance.StaleRunError, match=f"other settings \\({shown}\\)"):
            fit(replace(cfg, **change), train, val, device="cpu", seed=0, run_dir=run_dir, progress=False)
    assert json.loads((run_dir / "config.json").read_text()) == record  # refusals change nothing
    # a folder written before the settings existed holds the default: it is still resumed
    old = {**record, "config": {k: v for k, v in record["config"].items() if k not in ("amp", "channels_last")}}
    (run_dir / "config.json").write_text(json.dumps(old))
    assert fit(cfg, train, val, device="cpu", seed=0, run_dir=run_dir, progress=False).best == first.best
    # a bf16 run trains in its own folder and passes the settings to the loop
    fit(replace(cfg, amp=True, channels_last=True), train, val, device="cpu", seed=0, run_dir=tmp_path / "bf16",
        progress=False)
    assert seen[-1] == (True, True)
    with pytest.raises(ValueError, match="amp must be True, False or 'auto', got 1"):
        replace(cfg, amp=1)
    with pytest.raises(ValueError, match="channels_last must be True, False or 'auto', got 'yes'"):
        variant_config("sinfnet", channels_last="yes")

def test_pretrained_weights_go_only_to_inpainting_initialised_variants():
    weights = "pretrain/single/inpainter.pt"
    scratch = pretrained_variant_config("sinfnet", get_profile("smoke"), weights, amp=True)
    assert scratch.init == "scratch" and scratch.init_weights is None and scratch.amp is True
    transfer = pretrained_variant_config("ssinfnet_encoder", get_profile("smoke"), weights, amp=True)
    assert (transfer.init_weights, transfer.transfer, transfer.amp) == (weights, "encoder", True)
    assert pretrained_variant_config("ssinfnet").init_weights is None  # none given: none recorded
    assert transfer == variant_config("ssinfnet_encoder", get_profile("smoke"), init_weights=weights, amp=True)

def test_bad_names_and_settings_raise():
    with pytest.raises(ValueError, match="variants: sinfnet, ssinfnet"):
        variant_config("ssinfnet_cutout30")
    with pytest.raises(ValueError, match="unknown SegConfig fields"):
        variant_config("sinfnet", learning_rat=1e-3)
    with pytest.raises(ValueError, match="task must be one of"):
        SegConfig(task="triple")
    with pytest.raises(ValueError, match="network must be one of"):
        SegConfig(task="single", network="infnet_multi")
    with pytest.raises(ValueError, match="loss must be one of"):
        SegConfig(task="single", loss="focal")
    with pytest.raises(ValueError, match="cutout"):
        SegConfig(cutout=1.2)
    with pytest.raises(ValueError, match="transfer must be one of"):
        SegConfig(transfer="decoder")
    with pytest.raises(ValueError, match="init_weights must name"):
        build_segmenter(variant_config("ssinfnet", model_kwargs=TINY_INFNET))


# ------------------------------------------------------------------------------------------ init and priors

def test_inpainting_init_copies_trunk_and_reports_heads(tmp_path):
    torch.manual_seed(3)
    inpainter = build_models(PretrainConfig(network="infnet", model_kwargs=TINY_INFNET))["inpainter"]
    path = tmp_path / "last.pt"
    torch.save({"models": {"inpainter": inpainter.state_dict(), "coach": {}}}, path)
    cfg = variant_config("ssinfnet", model_kwargs=TINY_INFNET, init_weights=str(path), **SMALL)
    assert set(load_init_state(path)) == set(inpainter.state_dict())

    key = "backbone.conv1.weight"
    torch.manual_seed(0)
    scratch, none = build_segmenter(replace(cfg, init="scratch"))
    torch.manual_seed(0)
    model, report = build_segmenter(cfg)
    assert none is None
    assert not torch.equal(scratch.state_dict()[key], inpainter.state_dict()[key])
    assert torch.equal(model.state_dict()[key], inpainter.state_dict()[key])
    assert key in report.copied and not report.skipped_shape and not report.missing
    heads = {name.split(".")[0] for name in report.skipped_head}
    assert heads == set(model.head_names)
    # heads keep their fresh (seeded) values, not the inpainter's
    assert torch.equal(model.state_dict()["head_lateral3.weight"], scratch.state_dict()["head_lateral3.weight"])


def test_encoder_only_transfer_leaves_the_decoder_fresh(tmp_path):
    torch.manual_seed(3)
    inpainter = build_models(PretrainConfig(network="infnet", model_kwargs=TINY_INFNET))["inpainter"]
    path = tmp_path / "last.pt"
    torch.save({"models": {"inpainter": inpainter.state_dict()}}, path)
    cfg = variant_config("ssinfnet_encoder", model_kwargs=TINY_INFNET, init_weights=str(path), **SMALL)
    assert (cfg.init, cfg.transfer) == ("inpainting", "encoder")
    torch.manual_seed(0)
    scratch, _ = build_segmenter(replace(cfg, init="scratch"))
    torch.manual_seed(0)
    model, report = build_segmenter(cfg)
    src, got, fresh = inpainter.state_dict(), model.state_dict(), scratch.state_dict()
    assert report.copied and all(n.startswith("backbone.") for n in report.copied)
    assert sorted(report.copied) == sorted(n for n in got if n.startswith("backbone."))
    assert all(torch.equal(got[n], src[n]) for n in report.copied)
    # every decoder tensor (RFB, PPD, RA, edge branch) keeps the seeded fresh value
    assert report.not_requested and not any(n.startswith("backbone.") for n in report.not_requested)
    assert all(torch.equal(got[n], fresh[n]) for n in report.not_requested)
    assert not torch.equal(got["decoder.up5_to4.0.weight"], src["decoder.up5_to4.0.weight"])
    assert len(report.copied) + len(report.not_requested) + len(report.skipped_head) == len(got)
    with pytest.raises(ValueError, match="encoder_names"):
        build_segmenter(variant_config("ssinfnet_encoder", network="unet", model_kwargs=TINY_UNET,
                                       init_weights=str(path), **SMALL))


def test_init_from_a_foreign_file_is_refused(tmp_path):
    path = tmp_path / "unet.pt"
    torch.save(torch.nn.Conv2d(1, 2, 3).state_dict(), path)
    cfg = variant_config("ssinfnet", model_kwargs=TINY_INFNET, init_weights=str(path), **SMALL)
    with pytest.raises(ValueError, match="no tensor matches"):
        build_segmenter(cfg)


def test_oracle_prior_equals_infection_mask(phantoms, tmp_path):
    priors = oracle_priors(phantoms)
    for s, p in zip(phantoms, priors):
        assert p.dtype == np.float32 and np.array_equal(p, s.infection.astype(np.float32))
    no_infection = replace(phantoms[3], infection=None)
    assert np.array_equal(oracle_priors([no_infection])[0], (phantoms[3].classes > 0).astype(np.float32))
    cfg = variant_config("multi_ssinfnet_gt_prior", network="unet_multi", model_kwargs=TINY_UNET, init="scratch",
                         **SMALL)
    assert "oracle" in cfg.label
    with pytest.raises(ValueError, match="priors_train must be None"):
        fit(cfg, phantoms[:6], phantoms[6:], device="cpu", seed=0, run_dir=tmp_path,
            priors_train=[s.prior for s in phantoms[:6]], progress=False)


def test_multi_needs_predicted_priors(phantoms, tmp_path):
    cfg = variant_config("multi_unet", model_kwargs=TINY_UNET, **SMALL)
    with pytest.raises(ValueError, match="priors_train is required"):
        fit(cfg, phantoms[:6], phantoms[6:], device="cpu", seed=0, run_dir=tmp_path, progress=False)
    bad = [s.prior * 2 + 0.5 for s in phantoms[:6]]
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        fit(cfg, phantoms[:6], phantoms[6:], device="cpu", seed=0, run_dir=tmp_path, priors_train=bad,
            priors_val=[s.prior for s in phantoms[6:]], progress=False)


# ------------------------------------------------------------------------------------------ losses and scores

def test_multi_bce_loss_is_iou_plus_per_class_bce():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    labels = torch.randint(0, 3, (2, 8, 8), generator=g)
    cfg = SegConfig(task="multi", network="unet_multi", loss="bce")
    got = segmentation_loss(cfg, {"out": logits}, {"classes": labels})
    onehot = F.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    p = torch.sigmoid(logits)
    bce = -(onehot * torch.log(p) + (1 - onehot) * torch.log(1 - p)).mean()
    expected = multiclass_structure_loss(logits, labels, focal_weight=0.0) + bce
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    focal = segmentation_loss(replace(cfg, loss="focal"), {"out": logits}, {"classes": labels})
    assert focal.item() == pytest.approx(multiclass_structure_loss(logits, labels).item(), rel=1e-6)


def test_loss_dispatch_on_infnet_outputs():
    g = torch.Generator().manual_seed(1)
    multi = {k: torch.randn(2, 3, 8, 8, generator=g) for k in SEG_KEYS}
    multi["edge"] = torch.randn(2, 1, 8, 8, generator=g)
    labels = torch.randint(0, 3, (2, 8, 8), generator=g)
    edge = (torch.rand(2, 1, 8, 8, generator=g) > 0.8).float()
    batch = {"classes": labels, "edge": edge}
    cfg = SegConfig(task="multi", network="infnet_multi", loss="focal")
    assert segmentation_loss(cfg, multi, batch).item() == pytest.approx(
        multi_infnet_loss(multi, labels, edge).item(), rel=1e-6)
    onehot = F.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    expected = sum(multiclass_structure_loss(multi[k], labels, focal_weight=0.0)
                   + F.binary_cross_entropy_with_logits(multi[k], onehot) for k in SEG_KEYS)
    expected = expected + F.binary_cross_entropy_with_logits(multi["edge"], edge)
    got = segmentation_loss(replace(cfg, loss="bce"), multi, batch)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)

    single = {k: torch.randn(2, 1, 8, 8, generator=g) for k in (*SEG_KEYS, "edge")}
    mask = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    batch = {"infection": mask, "edge": edge}
    cfg = SegConfig(task="single", network="infnet", loss="infnet")
    assert segmentation_loss(cfg, single, batch).item() == pytest.approx(
        infnet_loss(single, mask, edge).item(), rel=1e-6)
    expected = sum(F.binary_cross_entropy_with_logits(single[k], t) for k, t in
                   [*((k, mask) for k in SEG_KEYS), ("edge", edge)])
    got = segmentation_loss(replace(cfg, loss="bce"), single, batch)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_fcn8s_baseline_takes_image_and_prior():
    cfg = variant_config("multi_fcn8s", model_kwargs={"fc_width": 8}, **SMALL)
    model, report = build_segmenter(cfg)
    assert report is None and model.in_chans == 2
    assert model(torch.zeros(1, 2, 64, 64))["out"].shape == (1, 3, 64, 64)


def test_validation_scores_hand_case():
    gt = np.zeros((4, 4), dtype=bool)
    gt[:2, :2] = True                      # 4 lesion pixels
    prob = np.zeros((4, 4))
    prob[:2, :1] = 0.5                     # 2 predicted (>= 0.5), both correct: Dice 2*2/(2+4) = 2/3
    empty = np.zeros((4, 4), dtype=bool)   # an empty-GT image is left out of the mean
    image = np.zeros((4, 4), dtype=np.uint8)
    samples = [Sample(image, "a", "synthetic", "train", infection=gt),
               Sample(image, "b", "synthetic", "train", infection=empty)]
    assert validation_scores("single", [prob, prob], samples)["dice"] == pytest.approx(2 / 3)


def test_multi_validation_scores_match_hand_computation(phantoms):
    rng = np.random.default_rng(0)
    samples = phantoms[1:6]
    probs = []
    for s in samples:  # noisy softmax around the truth: imperfect, non-trivial Dice for GGO and consolidation
        z = 3.0 * np.eye(3)[s.classes].transpose(2, 0, 1) + rng.normal(0, 1.5, (3, *s.classes.shape))
        probs.append(np.exp(z) / np.exp(z).sum(0))
    got = validation_scores("multi", probs, samples)
    ggo = np.nanmean([_dice_by_hand(p[1], s.classes == 1) for p, s in zip(probs, samples)])
    cons = np.nanmean([_dice_by_hand(p[2], s.classes == 2) for p, s in zip(probs, samples)])
    assert 0.2 < ggo < 0.95 and 0.2 < cons < 0.95
    assert got["dice_ggo"] == pytest.approx(ggo) and got["dice_consolidation"] == pytest.approx(cons)
    assert got["dice"] == pytest.approx((ggo + cons) / 2)


# ------------------------------------------------------------------------------------------ fit

def _centred(build):
    """Wrap build_segmenter: a forward hook (not part of the weights) subtracts each map's per-image
    median logit, so about half the pixels are predicted and the validation Dice is not trivially 0."""

    def wrapped(cfg):
        model, report = build(cfg)
        model.centring = model.register_forward_hook(lambda m, args, out: {
            k: v - v.flatten(2).median(-1).values[..., None, None] for k, v in out.items()})
        return model, report

    return wrapped


def test_fit_single_exports_a_model_and_selects_on_validation(phantoms, tmp_path, monkeypatch):
    monkeypatch.setattr(finetune, "build_segmenter", _centred(finetune.build_segmenter))
    torch.manual_seed(7)
    inpainter = build_models(PretrainConfig(network="infnet", model_kwargs=TINY_INFNET))["inpainter"]
    torch.save({"models": {"inpainter": inpainter.state_dict()}}, tmp_path / "pretrained.pt")
    cfg = variant_config("ssinfnet", model_kwargs=TINY_INFNET, init_weights=str(tmp_path / "pretrained.pt"),
                         **SMALL)
    run_dir = tmp_path / "run"
    # Every forward pass has batch size 2: fewer one-off kernel set-ups on a busy CPU.
    train, val = phantoms[:4], phantoms[6:8]
    res = fit(cfg, train, val, device="cpu", seed=1, run_dir=run_dir, progress=False)
    epochs = res.history[res.history["kind"] == "epoch"]
    assert len(epochs) == 1 and np.isfinite(epochs["val_dice"]).all()
    assert res.best is not None and res.best[0] == 0 and res.best[1] == epochs["val_dice"].iloc[0]
    assert res.export_path == run_dir / "model.pt"
    assert "backbone.conv1.weight" in res.transfer.copied and "head_lateral3.weight" in res.transfer.skipped_head

    # validation Dice = an independent per-image computation on the same predictions
    probs = predict_samples(res.model, val, cfg.image_size, "cpu", batch_size=cfg.batch_size)
    by_hand = [_dice_by_hand(p, s.infection) for p, s in zip(probs, val)]
    assert 0 < res.best[1] < 1 and res.best[1] == pytest.approx(np.nanmean(by_hand), abs=1e-12)

    loaded = load_exported(res.export_path)
    assert loaded.name == "infnet" and loaded.image_size == 64 and loaded.extra["variant"] == "ssinfnet"
    assert loaded.extra["transfer"]["copied"] == len(res.transfer.copied)
    # the model file says which commit, code and data trained it
    from ssinfnet.training.provenance import read_record

    assert loaded.extra["provenance"] == read_record(run_dir) and loaded.extra["provenance"]["key"]["code"]
    odd = _crop(phantoms[4], 50, 61)
    maps = predict_samples(loaded, [odd, phantoms[5]])
    assert maps[0].shape == (50, 61) and maps[1].shape == (64, 64)
    assert maps[0].dtype == np.float32 and 0 <= maps[0].min() and maps[0].max() <= 1
    # the hook lives on res.model only; drop it to compare with the exported weights
    res.model.centring.remove()
    np.testing.assert_allclose(maps[1], predict_samples(res.model, [odd, phantoms[5]], 64)[1], atol=1e-6)

    # a rerun resumes the finished run (no training) and gives the same selection
    again = fit(cfg, train, val, device="cpu", seed=1, run_dir=run_dir, progress=False)
    assert again.best == res.best and len(again.history) == len(res.history)
    with pytest.raises(ValueError, match="other settings"):
        fit(replace(cfg, epochs=2), train, val, device="cpu", seed=1, run_dir=run_dir, progress=False)
    # a folder written before a setting existed resumes when the setting holds its default ...
    record = json.loads((run_dir / "config.json").read_text())
    del record["config"]["transfer"]
    (run_dir / "config.json").write_text(json.dumps(record))
    assert fit(cfg, train, val, device="cpu", seed=1, run_dir=run_dir, progress=False).best == res.best
    # ... and not when it does not
    with pytest.raises(ValueError, match="other settings"):
        fit(replace(cfg, transfer="encoder"), train, val, device="cpu", seed=1, run_dir=run_dir, progress=False)
    with pytest.raises(ValueError, match="overlap"):
        fit(cfg, train, train[:1], device="cpu", seed=1, run_dir=tmp_path / "x", progress=False)


def test_fit_multi_with_predicted_priors(phantoms, tmp_path):
    cfg = variant_config("multi_unet", model_kwargs=TINY_UNET, **SMALL)
    train, val = phantoms[:6], phantoms[6:]
    p_train, p_val = [s.prior for s in train], [s.prior for s in val]
    res = fit(cfg, train, val, device="cpu", seed=0, run_dir=tmp_path, priors_train=p_train, priors_val=p_val,
              progress=False)
    assert {"val_dice", "val_dice_ggo", "val_dice_consolidation"} <= set(res.history.columns)
    probs = predict_samples(res.model, val, cfg.image_size, "cpu", priors=p_val, batch_size=cfg.batch_size)
    ggo = np.nanmean([_dice_by_hand(p[1], s.classes == 1) for p, s in zip(probs, val)])
    cons = [_dice_by_hand(p[2], s.classes == 2) for p, s in zip(probs, val)]
    cons = np.nanmean(cons) if not np.isnan(cons).all() else np.nan
    expected = np.nanmean([ggo, cons])
    assert res.best[1] == pytest.approx(expected, abs=1e-12)

    loaded = load_exported(res.export_path, "cpu")
    assert loaded.kwargs["in_chans"] == 2 and loaded.extra["prior_source"] == "predicted"
    odd = _crop(val[0], 40, 57)
    maps = predict_samples(loaded, [odd], priors=[odd.prior])
    assert maps[0].shape == (3, 40, 57)
    np.testing.assert_allclose(maps[0].sum(0), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="priors are required"):
        predict_samples(loaded, [odd])


def test_fit_refuses_a_folder_trained_on_other_data_or_code(phantoms, tmp_path, monkeypatch):
    monkeypatch.delenv(provenance.ENV_ALLOW_STALE, raising=False)
    monkeypatch.setattr(provenance, "git_state", lambda repo=None: {"git_commit": "c0ffee", "dirty": False})
    cfg = variant_config("multi_unet", model_kwargs=TINY_UNET, **dict(SMALL, max_steps_per_epoch=1))
    train, val = phantoms[:4], phantoms[6:8]
    p_train, p_val = [s.prior for s in train], [s.prior for s in val]
    run_dir = tmp_path / "run"

    def run(c=cfg, tr=train, pt=p_train):
        return fit(c, tr, val, device="cpu", seed=0, run_dir=run_dir, priors_train=pt, priors_val=p_val,
                   progress=False)

    first = run()
    record = json.loads((run_dir / "config.json").read_text())
    data = provenance.config_fingerprint({"train": provenance.samples_fingerprint(train, p_train),
                                          "val": provenance.samples_fingerprint(val, p_val)})
    assert record["provenance"]["key"] == {"data": data, "code": provenance.code_fingerprint()}
    assert record["provenance"]["trained_at"]["git_commit"] == "c0ffee"
    assert provenance.read_record(run_dir)["key"] == record["provenance"]["key"]  # the checkpoint's record agrees
    assert run().best == first.best  # same data, settings and code: reused

    # priors one grey level brighter, or other training slices: other data
    brighter = [np.clip(p + 1 / 255, 0, 1) for p in p_train]
    with pytest.raises(provenance.StaleRunError, match=f"run folder {run_dir} holds a run trained with other data"):
        run(pt=brighter)
    with pytest.raises(provenance.StaleRunError, match=f"other data \\(data {data} -> "):
        run(tr=phantoms[1:5], pt=[s.prior for s in phantoms[1:5]])
    with pytest.raises(provenance.StaleRunError, match=r"other settings/data \(config epochs 1 -> 2; data "):
        run(c=replace(cfg, epochs=2), pt=brighter)
    monkeypatch.setattr(finetune, "code_fingerprint", lambda: "feedfacefeedface")
    with pytest.raises(provenance.StaleRunError, match=r"other code \(code [0-9a-f]{16} -> feedfacefeedface\)"):
        run()
    monkeypatch.undo()
    monkeypatch.delenv(provenance.ENV_ALLOW_STALE, raising=False)
    assert json.loads((run_dir / "config.json").read_text()) == record  # refusals change nothing

    # a folder written before the key existed is refused while it holds a checkpoint ...
    legacy = {k: v for k, v in record.items() if k != "provenance"}
    (run_dir / "config.json").write_text(json.dumps(legacy))
    with pytest.raises(provenance.StaleRunError, match="data not recorded -> .*code not recorded -> "):
        run()
    # ... and rewritten when it holds nothing to reuse
    shutil.rmtree(run_dir / "checkpoints")
    run()
    assert json.loads((run_dir / "config.json").read_text())["provenance"]["key"] == record["provenance"]["key"]

    # reusing a stale folder knowingly: a warning, the old weights, and a note in config.json and the manifest
    provenance.take_runs(tmp_path)
    monkeypatch.setenv(provenance.ENV_ALLOW_STALE, "1")
    with pytest.warns(provenance.StaleRunWarning, match="other data"):
        again = run(pt=brighter)
    assert again.best == first.best
    note = json.loads((run_dir / "config.json").read_text())["provenance"]["stale_reuse"][0]
    assert note["differs"][0].startswith(f"data {data} -> ")
    runs = provenance.take_runs(tmp_path)
    assert runs["run"]["action"] == "reused" and runs["run"]["stale"] == [note]


def test_cross_validate_holds_out_every_sample_once(phantoms, tmp_path):
    # no group ids (like the labelled COVID-SemiSeg slices): every slice is its own group
    samples = [replace(s, group_id=None) for s in phantoms[1:7]]
    cfg = variant_config("unet", model_kwargs=TINY_UNET, **dict(SMALL, max_steps_per_epoch=1))
    cv = cross_validate(cfg, samples, k=3, device="cpu", seed=0, run_dir=tmp_path, val_fraction=0.25,
                        progress=False)
    assert sorted(cv.fold.tolist()) == [0, 0, 1, 1, 2, 2]
    assert sorted(cv.scores["image"]) == sorted(s.slice_id for s in samples)
    assert set(cv.scores["fold"]) == {0, 1, 2} and set(cv.scores["class"]) == {"infection"}
    assert [p.shape for p in cv.predictions] == [s.image.shape for s in samples]
    assert (cv.fits["n_train"] + cv.fits["n_val"] + cv.fits["n_test"] == len(samples)).all()
    for f in range(3):
        assert (tmp_path / f"fold{f}" / "model.pt").is_file()
        # each fold's health is the one its exported model records
        assert cv.fits.status[f] == load_exported(tmp_path / f"fold{f}" / "model.pt").extra["health"]["status"]
    # the scores are those of the out-of-fold maps
    row = cv.scores.set_index("image").loc[samples[0].slice_id]
    assert row["dice"] == pytest.approx(_dice_by_hand(cv.predictions[0], samples[0].infection), abs=1e-12)


def test_fit_is_reproducible_with_cutout(phantoms, tmp_path):
    cfg = variant_config("unet", model_kwargs=TINY_UNET, cutout=0.4, **SMALL)
    runs = [fit(cfg, phantoms[:4], phantoms[6:8], device="cpu", seed=5, run_dir=tmp_path / str(i), progress=False)
            for i in range(2)]
    a, b = (r.history[r.history["kind"] == "step"]["loss"].tolist() for r in runs)
    assert len(a) == 2 and a == b
    sa, sb = (load_exported(r.export_path).model.state_dict() for r in runs)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
