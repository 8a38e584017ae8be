"""Coach masks: the keep budget, hand-computed soft masks, variational mode, random masks, gradients."""

import math

import pytest
import torch

from ssinfnet.training.losses import coach_loss
from ssinfnet.models.coach import Coach, mask_from_scores, random_masks
from ssinfnet.models.registry import build_model


def test_mask_from_scores_hand_case():
    scores = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    # keep 0.5 of 4 positions -> k = 2, 2nd largest = 3
    mask = mask_from_scores(scores, keep=0.5, alpha=1.0)
    expected = torch.sigmoid(torch.tensor([[[[-2.0, -1.0], [0.0, 1.0]]]]))
    torch.testing.assert_close(mask, expected)
    # nearest upsampling keeps each cell a 2x2 block
    big = mask_from_scores(scores, keep=0.5, alpha=1.0, size=(4, 4))
    torch.testing.assert_close(big, expected.repeat_interleave(2, 2).repeat_interleave(2, 3))


@pytest.mark.parametrize("keep", [0.75, 0.5])
def test_erased_fraction_matches_budget_at_alpha_100(keep):
    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(4, 1, 44, 44, generator=gen)
    mask = mask_from_scores(scores, keep=keep, alpha=100.0, size=(352, 352))
    erased = 1.0 - mask.mean(dim=(1, 2, 3))
    assert torch.all((erased - (1 - keep)).abs() <= 0.02)
    # nearly binary: few positions sit within the soft band
    assert ((mask > 0.05) & (mask < 0.95)).float().mean() < 0.1


def test_mask_is_per_image():
    scores = torch.stack([torch.arange(16.0), 100 + torch.arange(16.0)]).view(2, 1, 4, 4)
    mask = mask_from_scores(scores, keep=0.75, alpha=100.0)
    # the same 12 positions kept in both images despite the offset of 100
    torch.testing.assert_close(mask[0], mask[1])
    assert (mask > 0.5).sum().item() == 2 * 11 + 0  # 11 above the 12th largest, which sits at 0.5
    assert (mask == 0.5).sum().item() == 2


@pytest.mark.parametrize("kwargs,match", [
    ({"keep": 0.0}, "keep"), ({"keep": 1.5}, "keep"), ({"alpha": 0.0}, "alpha"),
    ({"upsample": "cubic"}, "upsample"),
])
def test_mask_from_scores_bad_args(kwargs, match):
    args = {"keep": 0.75, "alpha": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        mask_from_scores(torch.zeros(1, 1, 4, 4), **args)
    with pytest.raises(ValueError, match="scores"):
        mask_from_scores(torch.zeros(1, 2, 4, 4), keep=0.5, alpha=1.0)


@pytest.mark.parametrize("size", [64, 96])
def test_coach_mask_shape_range_and_budget(size):
    torch.manual_seed(0)
    coach = build_model("coach", width=8, reduction=4).eval()
    with torch.no_grad():
        mask = coach(torch.randn(3, 1, size, size), alpha=100.0)
    assert mask.shape == (3, 1, size, size)
    assert mask.min() >= 0 and mask.max() <= 1
    erased = 1.0 - mask.mean(dim=(1, 2, 3))
    assert torch.all((erased - 0.25).abs() <= 0.02)


@pytest.mark.parametrize("reduction", [2, 4, 8, 16])
def test_coach_score_grid_stride(reduction):
    coach = Coach(width=4, blocks=(1, 1, 1, 1), reduction=reduction)
    scores, kl = coach.scores(torch.randn(1, 1, 64, 64))
    assert scores.shape == (1, 1, 64 // reduction, 64 // reduction)
    assert kl.item() == 0.0


def test_variational_coach_samples_in_training_and_uses_mean_in_eval():
    torch.manual_seed(0)
    coach = Coach(width=4, variational=True)
    x = torch.randn(2, 1, 64, 64)
    coach.train()
    s1, kl = coach.scores(x, generator=torch.Generator().manual_seed(1))
    s2, _ = coach.scores(x, generator=torch.Generator().manual_seed(2))
    s1b, _ = coach.scores(x, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(s1, s2)
    torch.testing.assert_close(s1, s1b)
    assert kl.item() >= 0
    coach.eval()
    with torch.no_grad():
        mu, _ = coach.scores(x)
        torch.testing.assert_close(mu, coach.score(coach.stages(coach.stem(x))))
        mask, kl_eval = coach(x, alpha=100.0, return_kl=True)
    assert mask.shape == (2, 1, 64, 64) and kl_eval.ndim == 0


def test_coach_bad_args():
    with pytest.raises(ValueError, match="reduction"):
        Coach(reduction=32)
    with pytest.raises(ValueError, match="keep"):
        Coach(keep=0)
    with pytest.raises(ValueError, match="x must be"):
        Coach(width=4)(torch.randn(1, 2, 32, 32))


def test_random_masks_budget_and_reproducibility():
    masks = random_masks((5, 1, 64, 96), keep=0.75, patch=16, generator=torch.Generator().manual_seed(3))
    assert masks.shape == (5, 1, 64, 96) and masks.dtype == torch.float32
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    # 4 x 6 = 24 cells, round(0.25 * 24) = 6 erased cells of 256 px each
    assert torch.all((1 - masks).sum(dim=(1, 2, 3)) == 6 * 256)
    again = random_masks((5, 64, 96), keep=0.75, patch=16, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(masks, again)
    other = random_masks((5, 64, 96), keep=0.75, patch=16, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(masks, other)
    # cells are solid blocks
    cells = masks[:, 0].unfold(1, 16, 16).unfold(2, 16, 16)
    assert torch.all(cells.amin(dim=(-1, -2)) == cells.amax(dim=(-1, -2)))


def test_random_masks_uneven_size_close_to_budget():
    masks = random_masks((8, 100, 100), keep=0.75, patch=7, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (8, 1, 100, 100)
    assert abs((1 - masks).mean().item() - 0.25) <= 0.02


@pytest.mark.parametrize("kwargs,match", [
    ({"shape": (4, 4)}, "shape"), ({"keep": 0}, "keep"), ({"patch": 0}, "patch"),
])
def test_random_masks_bad_args(kwargs, match):
    args = {"shape": (1, 8, 8), **kwargs}
    with pytest.raises(ValueError, match=match):
        random_masks(**args)


def test_coach_loss_trains_coach_not_frozen_inpainter():
    torch.manual_seed(0)
    coach = Coach(width=4, reduction=4)
    inpainter = build_model("unet", head="inpaint", base_width=4, depth=2).requires_grad_(False)
    x = torch.randn(2, 1, 32, 32)
    mask = coach(x, alpha=1.0)
    loss = coach_loss(inpainter(x * mask), x, mask)
    loss.backward()
    assert all(p.grad is None for p in inpainter.parameters())
    grads = [p.grad for p in coach.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0
    # the other phase: the inpainter learns, the coach's mask is a fixed input
    inpainter.requires_grad_(True)
    coach.requires_grad_(False)
    coach.zero_grad(set_to_none=True)
    with torch.no_grad():
        hard = coach(x, alpha=100.0)
    out = inpainter(x * hard)["out"]
    ((out - x) ** 2).mean().backward()
    assert all(p.grad is not None for p in inpainter.parameters())
    assert all(p.grad is None for p in coach.parameters())
    assert math.isfinite(loss.item())


def test_standardize_makes_flat_scores_hard_and_keeps_ranking():
    gen = torch.Generator().manual_seed(0)
    flat = 0.001 * torch.randn(2, 1, 16, 16, generator=gen)  # an untrained coach's near-flat scores
    raw = mask_from_scores(flat, keep=0.75, alpha=100.0)
    std = mask_from_scores(flat, keep=0.75, alpha=100.0, standardize=True)
    assert ((raw > 0.05) & (raw < 0.95)).float().mean() > 0.9  # raw formula: soft everywhere
    assert abs((1 - std).mean().item() - 0.25) <= 0.02
    # same positions above the threshold either way
    assert torch.equal(raw > 0.5, std > 0.5)
    # standardising is scale and shift invariant
    d = flat.double()
    torch.testing.assert_close(mask_from_scores(d, 0.75, 100.0, standardize=True),
                               mask_from_scores(5 * d + 3, 0.75, 100.0, standardize=True),
                               atol=1e-6, rtol=1e-6)
