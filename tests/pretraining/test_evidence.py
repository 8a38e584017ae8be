"""The evidence that the pretraining learns: baselines, errors, intervals, the frozen-encoder probe, the
concentration of masks and the held-out slices, each on inputs whose answer is known."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from realdata import real_data_root
from ssinfnet.book.profiles import get_profile
from ssinfnet.data.sample import Sample
from ssinfnet.data.sources import DataRoot
from ssinfnet.models.coach import random_masks
from ssinfnet.pretraining import evidence as ev
from ssinfnet.pretraining import inpainting as pretrain

TINY = {"backbone": "resnet18", "backbone_kwargs": {"channels": (8, 16, 32, 64)}, "channels": 8,
        "edge_channels": 8, "ra_widths": (16, 8, 8)}
GREY = 127.5  # one normalised unit in grey levels


def _block_mask(b=2, h=32, w=32):
    """Keep-masks with a 12 x 12 erased square in the middle."""
    m = torch.ones(b, 1, h, w)
    m[:, :, 10:22, 10:22] = 0
    return m


# ------------------------------------------------------------------------------------------- baselines

def test_mean_fill_and_blur_reconstruct_a_constant_image_exactly():
    x = torch.full((2, 1, 32, 32), 0.3)
    m = _block_mask()
    assert ev.erased_mae(ev.mean_fill(x, m), x, m).abs().max() < 1e-5
    for sigma in ev.BLUR_SIGMAS:
        assert ev.erased_mae(ev.blur_fill(x, m, sigma), x, m).abs().max() < 1e-4


def test_blur_recovers_a_smooth_ramp_better_than_mean_fill():
    ramp = torch.linspace(-1, 1, 32).view(1, 1, 1, 32).expand(2, 1, 32, 32).contiguous()
    m = torch.ones(2, 1, 32, 32)
    m[:, :, 10:22, 2:8] = 0  # a hole on the left, where the ramp is far below the visible mean
    mean_err = ev.erased_mae(ev.mean_fill(ramp, m), ramp, m)
    blur_err = ev.erased_mae(ev.blur_fill(ramp, m, 2.0), ramp, m)
    assert (blur_err < 0.2 * mean_err).all()
    assert mean_err[0] > 0.5 * GREY  # the hole's grey values are about 0.7 units below the mean


def test_blur_falls_back_to_the_mean_where_no_visible_pixel_is_within_reach():
    x = torch.randn(1, 1, 64, 64)
    m = torch.zeros(1, 1, 64, 64)
    m[..., :4, :4] = 1  # only a corner is visible; sigma 1 px cannot reach the far side
    filled = ev.blur_fill(x, m, 1.0)
    assert torch.isfinite(filled).all()
    assert torch.allclose(filled[..., 40:, 40:], ev.mean_fill(x, m)[..., 40:, 40:])
    with pytest.raises(ValueError, match="sigma"):
        ev.blur_fill(x, m, 0.0)


def test_erased_mae_is_in_grey_levels_and_counts_only_erased_pixels():
    x = torch.zeros(2, 1, 32, 32)
    m = _block_mask()
    pred = x + 0.1
    pred[:, :, :5] = 9.0  # visible rows: wrong, but not counted
    assert torch.allclose(ev.erased_mae(pred, x, m), torch.full((2,), 0.1 * GREY))
    assert torch.isnan(ev.erased_mae(pred, x, torch.ones(2, 1, 32, 32))).all()


class _ConstantInpainter(nn.Module):
    """An 'inpainter' that outputs ``value`` everywhere, whatever it sees."""
    prediction_key = "lateral3"

    def __init__(self, value):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x):
        return {"lateral3": self.value.expand_as(x).clone()}


def test_reconstruction_errors_scores_the_inpainter_and_every_baseline_per_slice():
    x = torch.full((3, 1, 32, 32), 0.2)
    table = ev.reconstruction_errors(_ConstantInpainter(-0.2), x, _block_mask(3), sigmas=(1.0, 4.0), batch_size=2)
    assert list(table.columns) == ["slice", "inpainter", "mean-fill", "blur σ=1", "blur σ=4"]
    assert list(table.slice) == [0, 1, 2]
    np.testing.assert_allclose(table.inpainter, 0.4 * GREY, rtol=1e-5)
    np.testing.assert_allclose(table[["mean-fill", "blur σ=1", "blur σ=4"]], 0.0, atol=1e-3)
    with pytest.raises(ValueError, match="mask"):
        ev.reconstruction_errors(_ConstantInpainter(0), x, _block_mask(2))


def test_mean_ci_brackets_the_mean_and_handles_degenerate_inputs():
    mean, lo, hi = ev.mean_ci([1.0, 2.0, 3.0, 4.0, float("nan")], n_boot=500, seed=1)
    assert mean == 2.5 and 1.0 <= lo < 2.5 < hi <= 4.0
    assert ev.mean_ci([5.0, 5.0, 5.0]) == (5.0, 5.0, 5.0)
    assert ev.mean_ci([7.0]) == (7.0, 7.0, 7.0)
    assert all(math.isnan(v) for v in ev.mean_ci([float("nan")]))
    assert ev.mean_ci(np.arange(20.0), seed=3) == ev.mean_ci(np.arange(20.0), seed=3)


def test_summary_picks_the_best_blur_and_reads_the_gain_over_the_best_baseline():
    rng = np.random.default_rng(0)
    n = 30
    per_slice = pd.DataFrame({"set": "s", "masks": np.repeat(["good", "bad"], n),
                              "inpainter": np.r_[rng.normal(5, 1, n), rng.normal(40, 1, n)],
                              "mean-fill": rng.normal(30, 1, 2 * n),
                              "blur σ=1": rng.normal(20, 1, 2 * n), "blur σ=2": rng.normal(15, 1, 2 * n)})
    out = ev.summarise_errors(per_slice, n_boot=300).set_index("masks")
    assert list(out.index) == ["good", "bad"] and (out.n == n).all() and (out.blur_sigma == 2.0).all()
    assert out.loc["good", "gain"] == pytest.approx(out.loc["good", "blur"] - out.loc["good", "inpainter"])
    assert out.loc["good", "verdict"] == "inpainter better" and out.loc["good", "gain_lo"] > 0
    assert out.loc["bad", "verdict"] == "baseline better" and out.loc["bad", "gain_hi"] < 0
    for method in ("inpainter", "mean-fill", "blur"):
        assert (out[f"{method}_lo"] <= out[method]).all() and (out[method] <= out[f"{method}_hi"]).all()


# ------------------------------------------------------------------------------------------------ probe

def test_probe_encoders_share_the_initialisation_and_differ_only_in_the_encoder():
    torch.manual_seed(5)
    inpainter = pretrain.build_models(pretrain.PretrainConfig(model_kwargs=TINY))["inpainter"]
    state = torch.random.get_rng_state()
    nets = ev.probe_encoders(inpainter, "infnet", TINY, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global random stream is untouched
    pre, rnd = nets["pretrained"].state_dict(), nets["random"].state_dict()
    src = inpainter.state_dict()
    for k in pre:
        if k.startswith("backbone."):
            assert torch.equal(pre[k], src[k]), k
        else:
            assert torch.equal(pre[k], rnd[k]), k
    assert any(not torch.equal(pre[k], rnd[k]) for k in pre if k.startswith("backbone.") and "weight" in k)
    again = ev.probe_encoders(inpainter, "infnet", TINY, seed=0)["random"].state_dict()
    assert all(torch.equal(rnd[k], again[k]) for k in rnd)


def _square_slices(n, size=48, seed=0):
    """Slices with one bright square lesion on a dark noisy background."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = rng.integers(20, 60, (size, size)).astype(np.uint8)
        y, x = rng.integers(4, size - 20, 2)
        mask = np.zeros((size, size), bool)
        mask[y:y + 16, x:x + 16] = True
        img[mask] = 220
        out.append(Sample(image=img, slice_id=f"sq{seed}-{i}", source="test", subset="train", infection=mask))
    return out


class _ImageFeatures(nn.Module):
    """An 'encoder' whose four stages are the image itself (or nothing useful, with ``blind``)."""

    def __init__(self, blind=False):
        super().__init__()
        self.blind = blind
        self.scale = nn.Parameter(torch.ones(()))

    def forward_features(self, x):
        f = torch.zeros_like(x) if self.blind else x * self.scale
        return [f[..., ::s, ::s] for s in (4, 8, 16, 32)]


def test_the_probe_finds_what_the_features_show_and_nothing_else():
    train, val = _square_slices(12, seed=0), _square_slices(6, seed=1)
    res = ev.encoder_probe({"sees": _ImageFeatures(), "blind": _ImageFeatures(blind=True)}, train, val, 64,
                           steps=200, n_boot=200)
    dice = res.summary.set_index("encoder").dice
    assert dice["sees"] > 0.8  # a bright square is linearly separable on intensity
    assert dice["blind"] == 0.0  # constant features: the head predicts the (small) prior everywhere
    assert res.difference["compared"] == "sees - blind" and res.difference["verdict"] == "helps"
    assert res.difference["n"] == 6 and len(res.scores) == 12
    assert res.seconds > 0


def test_the_probe_leaves_a_frozen_encoder_unchanged_bit_for_bit():
    torch.manual_seed(0)
    inpainter = pretrain.build_models(pretrain.PretrainConfig(model_kwargs=TINY))["inpainter"]
    nets = ev.probe_encoders(inpainter, "infnet", TINY, seed=0)
    nets["random"].train()  # the probe must switch to eval mode (batch norm statistics) and back
    before = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in nets.items()}
    slices = _square_slices(6)
    for s in slices:
        s.infection[0, 0] = True
    ev.encoder_probe(nets, slices[:4], slices[4:], 64, steps=5, n_boot=10)
    for name, net in nets.items():
        after = net.state_dict()
        assert all(torch.equal(before[name][k], after[k]) for k in after), name
        assert all(p.grad is None for p in net.parameters()), name
    assert nets["random"].training and not nets["pretrained"].training


def test_the_probe_refuses_slices_without_masks():
    unlabelled = [Sample(image=np.zeros((32, 32), np.uint8), slice_id="u", source="test", subset="unlabelled")]
    with pytest.raises(ValueError, match="no infection mask.*first: u"):
        ev.encoder_probe({"a": _ImageFeatures()}, _square_slices(2), unlabelled, 64)
    with pytest.raises(ValueError, match="needs"):
        ev.encoder_probe({}, _square_slices(2), _square_slices(2), 64)


# ------------------------------------------------------------------------------------------ concentration

def test_concentration_of_an_even_and_a_packed_erasure():
    even = torch.full((2, 1, 32, 32), 0.75)  # a quarter erased everywhere
    out = ev.mask_concentration(even, regions=4)
    assert out["erased"] == pytest.approx(0.25)
    assert out["top_share"] == pytest.approx(2 / 16) and out["entropy"] == pytest.approx(1.0)
    packed = torch.ones(2, 1, 32, 32)
    packed[:, :, :8, :8] = 0  # all erasure in one of 16 regions
    out = ev.mask_concentration(packed, regions=4)
    assert out["top_share"] == pytest.approx(1.0) and out["entropy"] == pytest.approx(0.0, abs=1e-6)
    rand = ev.mask_concentration(random_masks((8, 1, 32, 32), 0.75, 4, generator=torch.Generator().manual_seed(0)), 4)
    assert 2 / 16 < rand["top_share"] < 1.0 and 0.0 < rand["entropy"] < 1.0


def test_concentration_rejects_bad_input_and_nothing_erased_is_nan():
    assert math.isnan(ev.mask_concentration(torch.ones(1, 1, 8, 8), 2)["entropy"])
    with pytest.raises(ValueError, match="masks"):
        ev.mask_concentration(torch.ones(1, 8, 8), 2)
    with pytest.raises(ValueError, match="regions"):
        ev.mask_concentration(torch.ones(1, 1, 8, 8), 9)


def test_concentration_table_adds_the_reference_rows():
    masks = {"init": torch.full((2, 1, 32, 32), 0.75), "coach": torch.ones(2, 1, 32, 32)}
    masks["coach"][:, :, :16, :16] = 0
    table = ev.concentration_table(masks, 4, keep=0.75).set_index("masks")
    assert list(table.index) == ["init", "coach", "random blocks", "evenly spread"]
    assert table.loc["evenly spread", "top_share"] == pytest.approx(2 / 16)
    assert table.loc["coach", "top_share"] == pytest.approx(0.5)  # 2 of the 4 erased regions
    assert table.loc["random blocks", "erased"] == pytest.approx(0.25)


# ---------------------------------------------------------------------------------------- held-out slices

def test_synthetic_default_holds_out_fresh_phantoms_when_the_pool_takes_everything():
    prof = get_profile("smoke")  # 16 unlabelled phantoms, cap 32: all in the pool
    root = DataRoot(None, "embedded default")
    pool, _ = pretrain.pretraining_pool(root, prof)
    held, note = ev.held_out_slices(root, prof, pool)
    assert len(held) == ev.N_EXTRA_PHANTOMS and "16 unlabelled phantoms" in note
    assert {s.slice_id for s in held}.isdisjoint(s.slice_id for s in pool)
    assert [s.slice_id for s in held] == [f"phantom-unlabelled-{i:04d}" for i in range(16, 24)]
    assert all(s.infection is None and s.pseudo_label is None for s in held)


def test_held_out_slices_are_the_pool_s_leftovers_evenly_spaced():
    prof = get_profile("smoke", unlabelled_limit=6)
    root = DataRoot(None, "embedded default")
    pool, _ = pretrain.pretraining_pool(root, prof)
    held, note = ev.held_out_slices(root, prof, pool, n=4)
    pooled = {s.slice_id for s in pool}
    assert len(held) == 4 and not pooled & {s.slice_id for s in held}
    assert note.startswith("10 of the 16 unlabelled slices") and "4 evenly spaced" in note


def test_real_data_without_leftovers_says_so(monkeypatch, tmp_path):
    from ssinfnet.data import catalog

    slices = [Sample(image=np.zeros((8, 8), np.uint8), slice_id=f"u{i}", source="x", subset="unlabelled")
              for i in range(5)]
    monkeypatch.setattr(catalog, "load_samples", lambda *a, **k: slices)
    held, note = ev.held_out_slices(DataRoot(tmp_path, "parameter"), get_profile("paper"), slices)
    assert held == [] and note.startswith("none") and "all 5" in note


@pytest.mark.skipif(real_data_root() is None, reason="needs the real COVID-SemiSeg")
def test_real_cpu_profile_holds_out_half_the_unlabelled_slices():
    from ssinfnet.data.sources import resolve_data_root

    root, prof = resolve_data_root(real_data_root()), get_profile("cpu")
    pool, _ = pretrain.pretraining_pool(root, prof)
    held, note = ev.held_out_slices(root, prof, pool)
    assert len(held) == ev.N_HELD_OUT and note.startswith("800 of the 1600")
    assert {s.slice_id for s in held}.isdisjoint(s.slice_id for s in pool)
