"""Losses on small hand-computed cases, reductions to known losses, and bad input."""

import math

import pytest
import torch
from torch.nn import functional as F

from ssinfnet.training.losses import (boundary_weights, coach_loss, edge_loss, focal_loss, focal_loss_multiclass,
                                      infnet_loss, inpainting_loss, masked_errors, multi_infnet_loss,
                                      multiclass_structure_loss, past_ceiling, structure_loss)

PRED = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])  # squared errors vs 0: 0, 1, 4, 9
ZERO = torch.zeros(1, 1, 2, 2)
KEEP = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])  # top-right and bottom-left erased


def test_masked_errors_hand_case():
    rec, con = masked_errors(PRED, ZERO, KEEP, ceiling=10.0)
    assert rec.item() == pytest.approx((1 + 4) / 2)
    assert con.item() == pytest.approx((0 + 9) / 2)
    # clipped at 5: the 9 counts as 5
    rec, con = masked_errors(PRED, ZERO, KEEP, ceiling=5.0)
    assert (rec.item(), con.item()) == pytest.approx((2.5, 2.5))


def test_masked_errors_soft_and_empty_masks():
    rec, con = masked_errors(PRED, ZERO, torch.full((1, 1, 2, 2), 0.5), ceiling=10.0)
    assert rec.item() == pytest.approx(14 / 4) and con.item() == pytest.approx(14 / 4)
    rec, con = masked_errors(PRED, ZERO, torch.ones(1, 1, 2, 2), ceiling=10.0)
    assert rec.item() == 0.0 and con.item() == pytest.approx(14 / 4)
    # a one-channel mask covers every channel
    two = torch.cat([PRED, 2 * PRED], dim=1)  # squared errors 0, 1, 4, 9 and 0, 4, 16, 36
    rec, _ = masked_errors(two, torch.zeros(1, 2, 2, 2), KEEP, ceiling=100.0)
    assert rec.item() == pytest.approx((1 + 4 + 4 + 16) / 4)


def test_inpainting_loss_weights_and_sums_outputs():
    expected = 0.99 * 2.5 + 0.01 * 4.5
    assert inpainting_loss(PRED, ZERO, KEEP, ceiling=10.0).item() == pytest.approx(expected)
    outputs = {"global": PRED, "lateral3": ZERO}  # the second reconstructs perfectly
    assert inpainting_loss(outputs, ZERO, KEEP, ceiling=10.0).item() == pytest.approx(expected)
    assert inpainting_loss([PRED, PRED], ZERO, KEEP, ceiling=10.0).item() == pytest.approx(2 * expected)
    assert inpainting_loss(PRED, ZERO, KEEP, ceiling=10.0, weight=1.0).item() == pytest.approx(2.5)


def test_past_ceiling_counts_pixels_the_clipped_loss_ignores():
    # squared errors 0, 1, 4, 9: past a ceiling of 1 are 4 and 9 (1 itself is still clipped to itself)
    assert past_ceiling(PRED, ZERO, ceiling=1.0).item() == 0.5
    assert past_ceiling(PRED, ZERO, ceiling=10.0).item() == 0.0
    # pooled over outputs: a perfect one and one past the ceiling everywhere
    assert past_ceiling({"a": ZERO, "b": ZERO + 5.0}, ZERO).item() == 0.5
    x = torch.rand(2, 1, 4, 4, requires_grad=True)
    share = past_ceiling([x * 10], torch.zeros(2, 1, 4, 4), ceiling=1.0)
    assert share.ndim == 0 and not share.requires_grad
    with pytest.raises(ValueError, match="shape"):
        past_ceiling(PRED, torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match="ceiling"):
        past_ceiling(PRED, ZERO, ceiling=0.0)


def test_coach_loss_hand_case_and_kl():
    # ceiling 1: clipped errors 0, 1, 1, 1 -> L_rec over erased = 1 -> loss 0
    assert coach_loss(PRED, ZERO, KEEP, ceiling=1.0).item() == pytest.approx(0.0)
    # averaged over outputs: (1 + 0) / 2
    assert coach_loss([PRED, ZERO], ZERO, KEEP, ceiling=1.0).item() == pytest.approx(0.5)
    kl = torch.tensor(0.2)
    assert coach_loss(ZERO, ZERO, KEEP, kl=kl, kl_weight=0.5).item() == pytest.approx(1.1)


def test_coach_loss_gradient_flows_into_mask():
    mask = torch.full((1, 1, 2, 2), 0.5, requires_grad=True)
    coach_loss(PRED, ZERO, mask, ceiling=10.0).backward()
    # erasing (lowering M) a high-error pixel lowers the loss: positive gradient where error is large
    assert mask.grad[0, 0, 1, 1] > 0 and mask.grad[0, 0, 0, 0] < 0


def test_boundary_weights_hand_case():
    w = boundary_weights(torch.ones(1, 1, 3, 3), kernel=3)
    # zero padding counts in the mean: corner 4/9, edge 6/9, centre 1
    expected = 1 + 5 * torch.tensor([[5 / 9, 3 / 9, 5 / 9], [3 / 9, 0, 3 / 9], [5 / 9, 3 / 9, 5 / 9]])
    torch.testing.assert_close(w[0, 0], expected)


@pytest.mark.parametrize("kernel", [1, 3, 31])
def test_boundary_weights_equal_the_two_dimensional_pool(kernel):
    g = torch.Generator().manual_seed(kernel)
    mask = (torch.rand(2, 3, 40, 57, generator=g) > 0.7).float()
    direct = 1 + 5 * (F.avg_pool2d(mask, kernel, stride=1, padding=kernel // 2) - mask).abs()
    torch.testing.assert_close(boundary_weights(mask, kernel), direct, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        boundary_weights(mask, 4)


def test_structure_loss_unit_weights_hand_case():
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # kernel 1 -> all weights 1; p = 0.5: BCE = log 2; inter = 0.5, union = 2 + 1
    wiou = 1 - (0.5 + 1) / (3 - 0.5 + 1)
    loss = structure_loss(torch.zeros(1, 1, 2, 2), mask, kernel=1)
    assert loss.item() == pytest.approx(wiou + math.log(2))
    loss = structure_loss(torch.zeros(1, 1, 2, 2), mask, kernel=1, bce_weight=0.5)
    assert loss.item() == pytest.approx(wiou + 0.5 * math.log(2))


def test_structure_loss_bce_is_really_weighted():
    mask = torch.tensor([[[[1.0, 0.0, 0.0]]]])
    logits = torch.tensor([[[[2.0, 0.0, -1.0]]]])
    # 3x3 window, zero padding counted: means 1/9, 1/9, 0
    w = [1 + 5 * 8 / 9, 1 + 5 / 9, 1.0]
    bce = [math.log1p(math.exp(-2.0)), math.log(2), math.log1p(math.exp(-1.0))]
    p = [1 / (1 + math.exp(-v)) for v in (2.0, 0.0, -1.0)]
    m = [1.0, 0.0, 0.0]
    wbce = sum(a * b for a, b in zip(w, bce)) / sum(w)
    inter = sum(a * b * c for a, b, c in zip(w, p, m))
    union = sum(a * (b + c) for a, b, c in zip(w, p, m))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    assert structure_loss(logits, mask, kernel=3).item() == pytest.approx(wiou + wbce, rel=1e-6)
    unweighted = sum(bce) / 3
    assert abs(wbce - unweighted) > 0.05  # the weighting matters on this case


def test_structure_loss_per_image_mean():
    a = torch.tensor([[[[3.0, -3.0], [-3.0, -3.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    both = structure_loss(torch.cat([a, -a]), torch.cat([mask, mask]), reduction="none")
    assert both.shape == (2, 1)
    assert structure_loss(torch.cat([a, -a]), torch.cat([mask, mask])).item() == pytest.approx(both.mean().item())
    assert both[0, 0] < both[1, 0]


def test_edge_loss_and_focal_hand_cases():
    assert edge_loss(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)).item() == pytest.approx(math.log(2))
    # p_t = 0.5 -> (1 - 0.5)^2 * log 2
    assert focal_loss(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)).item() == pytest.approx(0.25 * math.log(2))
    # 4 classes, uniform logits -> (3/4)^2 * log 4
    got = focal_loss_multiclass(torch.zeros(1, 4, 1, 1), torch.tensor([[[2]]]))
    assert got.item() == pytest.approx(0.5625 * math.log(4))


def test_focal_reduces_to_cross_entropy_when_gamma_zero():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 5, 5, generator=gen)
    target = (torch.rand(2, 1, 5, 5, generator=gen) > 0.5).float()
    torch.testing.assert_close(focal_loss(logits, target, alpha=1.0, gamma=0.0),
                               F.binary_cross_entropy_with_logits(logits, target))
    torch.testing.assert_close(focal_loss(logits, target, alpha=0.5, gamma=0.0),
                               0.5 * F.binary_cross_entropy_with_logits(logits, target))
    mlogits = torch.randn(2, 3, 5, 5, generator=gen)
    labels = torch.randint(0, 3, (2, 5, 5), generator=gen)
    torch.testing.assert_close(focal_loss_multiclass(mlogits, labels, gamma=0.0),
                               F.cross_entropy(mlogits, labels))
    # focusing down-weights easy pixels: focal <= CE everywhere
    per_pixel = focal_loss_multiclass(mlogits, labels, reduction="none")
    assert per_pixel.shape == (2, 5, 5)
    assert torch.all(per_pixel <= F.cross_entropy(mlogits, labels, reduction="none") + 1e-7)


def test_infnet_loss_sums_terms():
    gen = torch.Generator().manual_seed(0)
    outs = {k: torch.randn(2, 1, 8, 8, generator=gen) for k in ("global", "lateral5", "lateral4", "lateral3", "edge")}
    mask = (torch.rand(2, 1, 8, 8, generator=gen) > 0.6).float()
    edge = (torch.rand(2, 1, 8, 8, generator=gen) > 0.9).float()
    expected = sum(structure_loss(outs[k], mask) for k in ("global", "lateral5", "lateral4", "lateral3"))
    expected = expected + F.binary_cross_entropy_with_logits(outs["edge"], edge)
    torch.testing.assert_close(infnet_loss(outs, mask, edge), expected)


def test_multiclass_losses():
    labels = torch.tensor([[[0, 1], [2, 0]]])
    good = 10 * F.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    bad = 10 * F.one_hot((labels + 1) % 3, 3).permute(0, 3, 1, 2).float()
    assert multiclass_structure_loss(good, labels).item() < 0.1
    assert multiclass_structure_loss(bad, labels).item() > 1.0
    outs = {k: good for k in ("global", "lateral5", "lateral4", "lateral3")}
    outs["edge"] = torch.zeros(1, 1, 2, 2)
    no_edge = multi_infnet_loss(outs, labels)
    with_edge = multi_infnet_loss(outs, labels, edge=torch.ones(1, 1, 2, 2))
    assert with_edge.item() == pytest.approx(no_edge.item() + math.log(2), rel=1e-5)


@pytest.mark.parametrize("call,match", [
    (lambda: masked_errors(PRED, ZERO, KEEP, ceiling=0.0), "ceiling"),
    (lambda: masked_errors(PRED, torch.zeros(1, 1, 3, 3), KEEP), "target"),
    (lambda: masked_errors(PRED, ZERO, torch.ones(1, 1, 3, 3)), "mask"),
    (lambda: inpainting_loss(PRED, ZERO, KEEP, weight=1.5), "weight"),
    (lambda: inpainting_loss([], ZERO, KEEP), "empty"),
    (lambda: inpainting_loss("x", ZERO, KEEP), "outputs"),
    (lambda: coach_loss(PRED, ZERO, KEEP, kl_weight=-1.0), "kl_weight"),
    (lambda: structure_loss(PRED, torch.zeros(1, 1, 3, 3)), "mask"),
    (lambda: structure_loss(PRED, ZERO, kernel=4), "kernel"),
    (lambda: focal_loss(PRED, ZERO, gamma=-1.0), "gamma"),
    (lambda: focal_loss(PRED, ZERO, reduction="max"), "reduction"),
    (lambda: focal_loss_multiclass(torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 3)), "labels"),
    (lambda: focal_loss_multiclass(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2)), "integer"),
    (lambda: focal_loss_multiclass(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 3, dtype=torch.long)), "labels"),
    (lambda: infnet_loss({"global": PRED}, ZERO, ZERO), "edge"),
    (lambda: infnet_loss({"global": PRED, "edge": PRED}, ZERO, ZERO), "lacks keys"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
