"""Does the pretraining learn? Three measurements on slices it never trained on.

* **Reconstruction** (:func:`reconstruction_errors`): the mean absolute error, in grey levels
  (0..255), inside the erased region of held-out slices, for the inpainter and two baselines that
  learn nothing: *mean-fill* (every erased pixel gets the mean of the slice's visible pixels) and
  *blur* (normalised convolution: a Gaussian-weighted mean of the visible pixels around each
  erased pixel). An inpainter that does not beat blurring has learnt no more than local smoothness.
* **Frozen-encoder probe** (:func:`encoder_probe`): the segmentation network's encoder, either
  copied from the inpainter or left at its random initialisation, is frozen; a linear head on its
  multi-scale features is trained on the labelled training slices and scored (per-image Dice) on
  validation slices. Features learnt by inpainting should make lesions more linearly separable.
* **Coach masks** (:func:`mask_concentration`): how concentrated the erased area is, per slice, over
  a grid of regions: the share held by the most-erased tenth of the regions, and the normalised
  entropy of the erased area over the regions (1: spread evenly; lower: concentrated).

Held-out slices (:func:`held_out_slices`): unlabelled slices outside the pretraining pool when the
profile's cap left some, else (the embedded default) the next phantoms of the unlabelled stream.
Their labels, if any, are removed. Everything is seeded and runs on the CPU in seconds to a minute.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from ..data.inputs import batch_input
from ..data.transforms import STD
from ..evaluation.comparison import verdict
from ..evaluation.paper_metrics import paper_scores
from ..models.coach import random_masks
from ..models.modes import eval_mode
from ..models.registry import build_model
from ..models.transfer import transfer_weights

__all__ = ["N_HELD_OUT", "BLUR_SIGMAS", "held_out_slices", "mean_fill", "blur_fill", "erased_mae",
           "reconstruction_errors", "summarise_errors", "mean_ci", "probe_encoders", "encoder_features",
           "ProbeResult", "encoder_probe", "mask_concentration", "concentration_table"]

#: At most this many held-out slices per set (evenly spaced).
N_HELD_OUT = 48
#: Extra phantoms drawn for the embedded default when its whole unlabelled pool was pretrained on.
N_EXTRA_PHANTOMS = 8
#: Widths (pixels) of the blur baseline; the best on each set is reported (an optimistic baseline).
BLUR_SIGMAS = (1.0, 2.0, 4.0, 8.0)
#: Side of the feature grid of the probe (cells); at most size // 8 (a stride-8 grid).
PROBE_GRID = 20
#: One unit of the normalised image in grey levels (the normalisation maps 0..255 to -1..1).
GREY = 255.0 * STD


# ----------------------------------------------------------------------------------------- held-out slices

def held_out_slices(data_root, profile, pool, *, seed: int = 0, n: int = N_HELD_OUT) -> tuple[list, str]:
    """Unlabelled slices that are not in ``pool`` (the pretraining pool), without labels.

    ``data_root`` is a :class:`~ssinfnet.data.sources.DataRoot`, ``profile`` a book profile (its
    synthetic counts and size), ``pool`` the samples pretrained on. Returns (at most ``n`` evenly
    spaced slices, a sentence saying where they come from). When the pool holds every unlabelled
    slice: on the embedded default the next ``N_EXTRA_PHANTOMS`` phantoms of the unlabelled stream
    (never generated for the pool); on real data an empty list, and the sentence says so.
    """
    from ..data.catalog import load_samples
    from ..data.phantoms import make_phantom
    from .inpainting import strip_labels

    unlabelled = load_samples(data_root, "unlabelled", synthetic_n=profile.synthetic_counts["unlabelled"],
                              synthetic_size=profile.synthetic_size, seed=seed)
    used = {s.slice_id for s in pool if s.subset == "unlabelled"}
    left = [s for s in unlabelled if s.slice_id not in used]
    if left:
        note = (f"{len(left)} of the {len(unlabelled)} unlabelled slices are outside the pretraining pool "
                f"(neighbours of pooled slices in the same volumes)")
    elif data_root.synthetic:
        first = len(unlabelled)
        left = [make_phantom(i, profile.synthetic_size, seed, "unlabelled")
                for i in range(first, first + N_EXTRA_PHANTOMS)]
        note = (f"the pool holds all {first} unlabelled phantoms; {len(left)} further phantoms of the same "
                f"generator (indices {first}-{first + len(left) - 1}) are held out")
    else:
        return [], f"none: the pretraining pool holds all {len(unlabelled)} unlabelled slices"
    if len(left) > n:
        left = [left[i] for i in np.linspace(0, len(left) - 1, n).round().astype(int)]
        note += f"; {n} evenly spaced ones are used"
    return strip_labels(left), note


# ------------------------------------------------------------------------------------------ reconstruction

def mean_fill(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each image's visible-pixel mean everywhere: x (B, C, H, W), mask (B, 1, H, W) with 1 = visible."""
    m = mask.expand_as(x)
    mean = (x * m).sum((2, 3), keepdim=True) / m.sum((2, 3), keepdim=True).clamp_min(1e-8)
    return mean.expand_as(x).clone()


def _gauss_1d(sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def blur_fill(x: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Normalised convolution: ``G * (x M) / G * M`` with a Gaussian G of ``sigma`` px (zero outside the
    image), so each pixel gets a distance-weighted mean of the visible pixels near it; where no visible
    pixel is within reach (``G * M < 1e-6``) the visible mean (:func:`mean_fill`). Shapes as mean_fill."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    k = _gauss_1d(sigma).to(x)
    r = (len(k) - 1) // 2

    def smooth(t):
        c = t.shape[1]
        t = F.conv2d(t, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(r, 0), groups=c)
        return F.conv2d(t, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, r), groups=c)

    m = mask.expand_as(x).contiguous()
    num, den = smooth(x * m), smooth(m)
    return torch.where(den > 1e-6, num / den.clamp_min(1e-6), mean_fill(x, mask))


def erased_mae(pred: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of the first channel inside the erased region (mask < 0.5), in grey levels
    (0..255), one value per image: (B,). NaN for an image with nothing erased."""
    erased = (mask[:, 0] < 0.5).float()
    err = (pred[:, 0].float() - x[:, 0].float()).abs() * GREY
    n = erased.sum((1, 2))
    return torch.where(n > 0, (err * erased).sum((1, 2)) / n.clamp_min(1), torch.full_like(n, float("nan")))


@torch.no_grad()
def _inpaint(inpainter: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor, batch_size: int) -> torch.Tensor:
    outs = []
    with eval_mode(inpainter):
        for i in range(0, len(x), batch_size):
            out = inpainter(x[i:i + batch_size] * mask[i:i + batch_size])
            outs.append(out[getattr(inpainter, "prediction_key", "out")] if isinstance(out, dict) else out)
    return torch.cat(outs).float()


def reconstruction_errors(inpainter: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor, *,
                          sigmas=BLUR_SIGMAS, batch_size: int = 16) -> pd.DataFrame:
    """Per-slice erased-region error (grey levels) of the inpainter and of the baselines.

    ``x`` (B, C, H, W) normalised slices, ``mask`` (B, 1, H, W) keep-masks (values > 0.5 count as
    kept; the inpainter sees ``x * mask`` with the mask made binary). The inpainter runs in eval mode
    on its own device. Returns a DataFrame, one row per slice (``slice`` = position in ``x``), columns
    ``inpainter``, ``mean-fill`` and ``blur σ=<s>`` for each of ``sigmas``.
    """
    if x.ndim != 4 or mask.shape != (x.shape[0], 1, *x.shape[2:]):
        raise ValueError(f"x must be (B, C, H, W) and mask (B, 1, H, W); got {tuple(x.shape)}, {tuple(mask.shape)}")
    mask = (mask > 0.5).float()
    device = next(inpainter.parameters()).device
    rec = _inpaint(inpainter, x.to(device), mask.to(device), batch_size).cpu()
    table = {"slice": np.arange(len(x)), "inpainter": erased_mae(rec, x, mask).numpy(),
             "mean-fill": erased_mae(mean_fill(x, mask), x, mask).numpy()}
    for s in sigmas:
        table[f"blur σ={s:g}"] = erased_mae(blur_fill(x, mask, s), x, mask).numpy()
    return pd.DataFrame(table)


def mean_ci(values, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lower, upper): the mean of ``values`` (NaN dropped) and its percentile bootstrap interval
    over the values (``n_boot`` resamples, seeded). All NaN for no value; the interval is the mean
    itself for one value."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (math.nan,) * 3
    if v.size == 1 or n_boot < 1:
        return float(v.mean()), float(v.mean()), float(v.mean())
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (n_boot, v.size))].mean(1)
    tail = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def summarise_errors(per_slice: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean error with bootstrap CIs per (set, masks) group of :func:`reconstruction_errors` tables.

    ``per_slice`` has columns ``set``, ``masks``, ``inpainter``, ``mean-fill`` and ``blur σ=...``. The
    blur baseline is the width with the lowest mean error in each group (``blur_sigma``). Returns one
    row per group: ``n``, ``<method>``, ``<method>_lo``, ``<method>_hi`` for inpainter, mean-fill and
    blur (grey levels), and ``gain`` (best baseline minus inpainter; > 0: the inpainter is better) with
    its paired interval ``gain_lo``/``gain_hi`` and ``verdict`` ("inpainter better", "baseline better"
    or "no detectable difference").
    """
    rows = []
    for (name, masks), g in per_slice.groupby(["set", "masks"], sort=False):
        blurs = [c for c in g.columns if c.startswith("blur σ=")]
        best_blur = min(blurs, key=lambda c: g[c].mean())
        row = {"set": name, "masks": masks, "n": len(g), "blur_sigma": float(best_blur.split("=")[1])}
        cols = {"inpainter": g["inpainter"], "mean-fill": g["mean-fill"], "blur": g[best_blur]}
        for method, v in cols.items():
            row[method], row[f"{method}_lo"], row[f"{method}_hi"] = mean_ci(v, n_boot=n_boot, seed=seed)
        base = cols["blur"] if row["blur"] <= row["mean-fill"] else cols["mean-fill"]
        row["gain"], row["gain_lo"], row["gain_hi"] = mean_ci(base.to_numpy() - g["inpainter"].to_numpy(),
                                                              n_boot=n_boot, seed=seed)
        row["verdict"] = {"helps": "inpainter better", "hurts": "baseline better"}.get(
            verdict(row["gain_lo"], row["gain_hi"]), "no detectable difference")
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------- probe

def probe_encoders(inpainter: torch.nn.Module, network: str, network_kwargs: dict, *, seed: int = 0) -> dict:
    """Two segmentation networks (``build_model(network, **network_kwargs)``, ``head="seg"``) with the same
    seeded initialisation: ``"random"`` as initialised, ``"pretrained"`` with its encoder
    (``encoder_names``) copied from ``inpainter`` (:func:`~ssinfnet.models.transfer.transfer_weights`).
    The global random state is left as it was. ValueError when nothing of the encoder was copied."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random_net = build_model(network, **network_kwargs)
    pretrained = copy.deepcopy(random_net)
    report = transfer_weights(inpainter, pretrained, only=pretrained.encoder_names)
    if not report.copied or report.skipped_shape or report.missing:
        raise ValueError(f"the inpainter's encoder does not fit {network}: {report}")
    return {"pretrained": pretrained.eval(), "random": random_net.eval()}


@torch.no_grad()
def encoder_features(model: torch.nn.Module, images, size: int, *, grid: int = PROBE_GRID,
                     batch_size: int = 8) -> torch.Tensor:
    """The encoder's four stages (``model.forward_features``) of uint8 slices at ``size`` px, brought to
    one ``grid`` x ``grid`` grid (average pooling for finer stages, bilinear for coarser ones) and
    concatenated: (N, sum of stage channels, grid, grid), on the CPU. Eval mode, no gradient: the
    encoder is not changed."""
    device = next(model.parameters()).device
    out = []
    with eval_mode(model):
        for i in range(0, len(images), batch_size):
            x = batch_input(images[i:i + batch_size], size).to(device)
            feats = [F.adaptive_avg_pool2d(f, grid) if f.shape[-1] >= grid
                     else F.interpolate(f, size=(grid, grid), mode="bilinear", align_corners=False)
                     for f in model.forward_features(x)]
            out.append(torch.cat(feats, 1).float().cpu())
    return torch.cat(out)


@dataclass
class ProbeResult:
    """Outcome of :func:`encoder_probe`: ``scores`` (one row per evaluation image and encoder: image,
    encoder, dice), ``summary`` (per encoder: dice, dice_lo, dice_hi, final training loss), ``difference``
    (pretrained minus random: estimate, lo, hi, verdict, n), ``seconds`` (wall time)."""

    scores: pd.DataFrame
    summary: pd.DataFrame
    difference: dict
    seconds: float


def _fit_head(feats: torch.Tensor, target: torch.Tensor, steps: int, lr: float):
    """A linear head on standardised features: feats (N, C, g, g), target (N, 1, g, g) in [0, 1].

    Channels are standardised with the training statistics; the head (weights zero, bias the log-odds
    of the lesion share) takes ``steps`` full-batch Adam steps on BCE + soft Dice, as a matrix product
    over the N g g positions (the same as a 1x1 convolution, cheaper on the CPU). Returns a function
    features (M, C, g, g) -> logits (M, 1, g, g) and the final training loss."""
    n, c, g, _ = feats.shape
    flat = lambda t: t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])  # noqa: E731  (positions, channels)
    z = flat(feats)
    mean, std = z.mean(0), z.std(0).clamp_min(1e-6)
    z = (z - mean) / std
    y = flat(target)
    prior = float(y.mean().clamp(1e-3, 1 - 1e-3))
    w = torch.zeros(c, 1, requires_grad=True)
    b = torch.full((1,), math.log(prior / (1 - prior)), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        logits = torch.addmm(b, z, w)
        p = torch.sigmoid(logits)
        dice = (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
        loss = F.binary_cross_entropy_with_logits(logits, y) + 1 - dice
        loss.backward()
        opt.step()
    w, b = w.detach(), b.detach()

    def predict(f: torch.Tensor) -> torch.Tensor:
        m, _, h, wd = f.shape
        return torch.addmm(b, (flat(f) - mean) / std, w).reshape(m, h, wd, 1).permute(0, 3, 1, 2)

    return predict, loss.item()


def encoder_probe(encoders: dict, train_slices, eval_slices, size: int, *, steps: int = 300,
                  lr: float = 0.05, n_boot: int = 1000, seed: int = 0) -> ProbeResult:
    """Train a linear head on each frozen encoder's features and score it on ``eval_slices``.

    ``encoders``: name -> network with ``forward_features`` (e.g. :func:`probe_encoders`; never modified);
    ``train_slices``/``eval_slices``: samples with ``infection`` masks. Features are computed once
    (:func:`encoder_features`, on a grid of ``min(PROBE_GRID, size // 8)`` cells); targets are the masks
    averaged onto that grid. The head (:func:`_fit_head`) takes ``steps`` full-batch Adam steps at ``lr``
    (no randomness: it starts from zero weights). Prediction: the
    head's logits upsampled (bilinear) to each slice's own size, Dice per image at threshold 0.5
    (:func:`~ssinfnet.evaluation.paper_metrics.paper_scores`; slices without lesion are left out).
    The difference row compares the first two encoders (first minus second), paired per image.
    """
    if len(encoders) < 1 or not train_slices or not eval_slices:
        raise ValueError("encoder_probe needs at least one encoder, training slices and evaluation slices")
    missing = [s.slice_id for s in [*train_slices, *eval_slices] if s.infection is None]
    if missing:
        raise ValueError(f"{len(missing)} probe slices have no infection mask (first: {missing[0]})")
    start = time.perf_counter()
    grid = min(PROBE_GRID, size // 8)
    target = torch.stack([F.adaptive_avg_pool2d(torch.from_numpy(s.infection).float()[None], grid)
                          for s in train_slices])
    rows, summary = [], []
    for name, model in encoders.items():
        predict, loss = _fit_head(encoder_features(model, [s.image for s in train_slices], size, grid=grid),
                                  target, steps, lr)
        with torch.no_grad():
            logits = predict(encoder_features(model, [s.image for s in eval_slices], size, grid=grid))
        probs = [torch.sigmoid(F.interpolate(logits[i:i + 1], size=s.shape, mode="bilinear",
                                             align_corners=False))[0, 0].numpy() for i, s in enumerate(eval_slices)]
        table = paper_scores(probs, [s.infection for s in eval_slices], image_ids=[s.slice_id for s in eval_slices])
        dice = table.set_index("image").dice
        rows += [{"image": k, "encoder": name, "dice": float(v)} for k, v in dice.items()]
        mean, lo, hi = mean_ci(dice, n_boot=n_boot, seed=seed)
        summary.append({"encoder": name, "dice": mean, "dice_lo": lo, "dice_hi": hi, "train_loss": loss})
    scores = pd.DataFrame(rows)
    difference = {}
    names = list(encoders)
    if len(names) >= 2:
        wide = scores.pivot(index="image", columns="encoder", values="dice")
        d = (wide[names[0]] - wide[names[1]]).dropna()
        est, lo, hi = mean_ci(d, n_boot=n_boot, seed=seed)
        difference = {"compared": f"{names[0]} - {names[1]}", "estimate": est, "lo": lo, "hi": hi,
                      "verdict": verdict(lo, hi), "n": int(d.size)}
    return ProbeResult(scores, pd.DataFrame(summary), difference, time.perf_counter() - start)


# --------------------------------------------------------------------------------------- coach masks

def mask_concentration(masks: torch.Tensor, regions: int, top: float = 0.1) -> dict[str, float]:
    """How concentrated the erased area (1 - mask) of keep-masks (B, 1, H, W) is, mean over images.

    The slice is cut into ``regions`` x ``regions`` equal regions (adaptive average pooling); per image
    p_i is region i's share of the erased area. Returns ``erased`` (erased fraction of the slice),
    ``top_share`` (the share held by the ``max(1, round(top * regions**2))`` most-erased regions: ``top``
    when spread evenly, up to min(1, k-regions' area / erased area) when packed) and ``entropy``
    (-sum p log p / log regions**2: 1 when spread evenly, 0 when in one region). Images with nothing
    erased are left out (NaN when none is left).
    """
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks must be (B, 1, H, W), got {tuple(masks.shape)}")
    if regions < 1 or regions > min(masks.shape[-2:]):
        raise ValueError(f"regions must be in [1, {min(masks.shape[-2:])}], got {regions}")
    erased = 1.0 - masks.float()
    per_region = F.adaptive_avg_pool2d(erased, regions).flatten(1)
    total = per_region.sum(1)
    keep = total > 0
    if not keep.any():
        return {"erased": float(erased.mean()), "top_share": math.nan, "entropy": math.nan}
    p = per_region[keep] / total[keep, None]
    n = p.shape[1]
    k = max(1, round(top * n))
    top_share = p.sort(1, descending=True).values[:, :k].sum(1)
    ent = -(p * torch.log(p.clamp_min(1e-12))).sum(1) / math.log(n) if n > 1 else torch.zeros(len(p))
    return {"erased": float(erased.mean()), "top_share": float(top_share.mean()), "entropy": float(ent.mean())}


def concentration_table(masks: dict[str, torch.Tensor], regions: int, *, keep: float, cell: int = 8,
                        top: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """:func:`mask_concentration` of the coach's masks after each phase (``masks``: phase -> (B, 1, H, W)),
    with two reference rows: ``random blocks`` (random ``cell`` px blocks keeping ``keep``, seeded, the
    same shape) and ``evenly spread`` (the limit: top_share = k / regions**2, entropy 1). Columns
    ``masks`` plus those of mask_concentration."""
    rows = [{"masks": name, **mask_concentration(m, regions, top)} for name, m in masks.items()]
    shape = next(iter(masks.values())).shape
    rand = random_masks(shape, keep, cell, generator=torch.Generator().manual_seed(seed))
    rows.append({"masks": "random blocks", **mask_concentration(rand, regions, top)})
    rows.append({"masks": "evenly spread", "erased": 1 - keep, "top_share": max(1, round(top * regions ** 2))
                 / regions ** 2, "entropy": 1.0})
    return pd.DataFrame(rows)

