"""The GPU check of the paper network, in one process, printing one JSON (see gpu_check.sh).

Usage::

    python benchmarks/gpu_check.py --output gpu_check.json          # on the GPU machine (<= 8 min on one H200)
    python benchmarks/gpu_check.py --quick --device cpu             # checks that it runs (numbers mean nothing)

What it measures (all on ``--device``, all in this one run, so ratios compare like with like):

1. ``steps``: the paper's InfNet (Res2Net-50, 352 px) with its own loss and Adam, ms per image of one
   training step and of inference at batch 4 and 16, in the settings that matter for the loop's device
   policy: fp32 contiguous (the authors' setting), the loop's CUDA default (fp32 + channels_last), the
   old default (bf16 autocast + channels_last), and the last two under ``torch.compile``. ``vs_fp32`` is each row's speed-up over
   fp32 contiguous at the same batch. The authors' fp32 figures from ../shared/measurements (one H200,
   2026-11-30: 3.78 ms train / 0.90 ms infer per image at batch 16) are quoted for reference only:
   another machine, another day.
2. ``loops``: the real loop against the bare step (the ``gpu`` profile's network and batch on
   phantoms): a 40-slice fine-tune (``segmentation.fit``, per-epoch validation) and inpainter epochs of the
   pretraining over a pool; ``real_over_bare`` = trained images/s of the real loop, all overheads
   included from its second epoch on, over the bare step's images/s.
   Each loop runs twice: with the training set held on the device and augmented there
   (``device_data``, :class:`ssinfnet.data.held.DeviceLoader`, the CUDA default) and with the per-slice
   DataLoader (``dataloader``, the profile's workers, persistent, per-item seeds).
3. ``gpu_profile``: measured seconds per epoch of those two loops at the ``gpu`` profile's pool size,
   and ``paper_projection``: the ``paper`` profile's training images per stage x the measured ms per
   image (a lower bound of its wall time).
4. ``profiler``: ``torch.profiler`` over a few training steps at the larger batch, fp32 contiguous and the
   loop's default, each with its top operators by device time (CUDA time on a GPU, CPU time on the CPU)
   and the share of the step in convolutions, batch norm and element-wise kernels, so the bf16 /
   channels_last question can be answered from the JSON.

Time: the JSON is rewritten after every section, and a section that would start after ``--budget-s``
(default 450 s) is skipped and listed under ``meta.skipped`` rather than cut off by the script's timeout.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from ssinfnet.book.profiles import get_profile
from ssinfnet.book.projection import TRAINING_STAGES, training_images
from ssinfnet.data.phantoms import synthetic_subset
from ssinfnet.models.registry import build_model
from ssinfnet.training.cost import device_description, time_inference, time_training_step
from ssinfnet.training.losses import infnet_loss

AUTHORS_H200 = {"measured": "one NVIDIA H200, torch 2.11 + CUDA 13, 2026-11-30 (../shared/measurements)",
                "batch_16_train_ms": 3.78, "batch_16_infer_ms": 0.90, "batch_4_train_ms": 12.90,
                "batch_4_infer_ms": 2.87}


def _batch(b: int, size: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(b, 1, size, size, generator=g),
            "mask": (torch.rand(b, 1, size, size, generator=g) > 0.7).float(),
            "edge": (torch.rand(b, 1, size, size, generator=g) > 0.9).float()}


def step_table(kwargs: dict, size: int, batches, device: str, repeats: int, compile_too: bool, seed: int) -> list:
    """ms per image of a training step and of inference for each (batch, setting)."""
    settings = [("fp32", False, False, False), ("fp32+channels_last (loop default)", False, True, False),
                ("bf16+channels_last (old default)", True, True, False)]
    if compile_too:
        settings += [("compiled fp32+channels_last", False, True, True), ("compiled bf16+channels_last", True, True, True)]
    rows = []
    for b in batches:
        base = None
        for name, amp, cl, comp in settings:
            torch.manual_seed(seed)
            model = build_model("infnet", **kwargs)
            run = torch.compile(model) if comp else model
            batch = _batch(b, size, seed)
            row = {"batch": b, "setting": name}
            try:
                t0 = time.perf_counter()
                train_s = time_training_step(run, batch, lambda m, x: infnet_loss(m(x["image"]), x["mask"], x["edge"]),
                                             device=device, repeats=repeats, amp=amp, channels_last=cl,
                                             make_optimizer=lambda p: torch.optim.Adam(p, lr=1e-4))
                infer_s = time_inference(run, batch["image"], device=device, repeats=repeats, amp=amp, channels_last=cl)
                row.update(train_ms_per_image=1000 * train_s / b, infer_ms_per_image=1000 * infer_s / b,
                           seconds_incl_warmup_and_compile=time.perf_counter() - t0)
            except Exception as err:  # a failing compile is a finding, not a crash of the whole check
                row.update(error=f"{type(err).__name__}: {err}"[:300])
            if name == "fp32" and "error" not in row:
                base = row
            if base is not None and "error" not in row:
                row.update(train_vs_fp32=base["train_ms_per_image"] / row["train_ms_per_image"],
                           infer_vs_fp32=base["infer_ms_per_image"] / row["infer_ms_per_image"])
            rows.append(row)
    return rows


def profile_steps(kwargs: dict, size: int, batch: int, device: str, steps: int, seed: int, top: int = 12) -> dict:
    """torch.profiler over ``steps`` training steps (after two warm-ups) of fp32 contiguous and of the
    loop's default memory format: the top operators by device time and coarse shares per kind."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    out = {}
    for name, cl in (("fp32", False), ("fp32+channels_last (loop default)", cuda)):
        torch.manual_seed(seed)
        model = build_model("infnet", **kwargs).to(device).train()
        if cl:
            model = model.to(memory_format=torch.channels_last)
        data = {k: v.to(device) for k, v in _batch(batch, size, seed).items()}
        if cl:
            data["image"] = data["image"].contiguous(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            loss = infnet_loss(model(data["image"]), data["mask"], data["edge"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(2):
            step()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            for _ in range(steps):
                step()
            if cuda:
                torch.cuda.synchronize()
        events = prof.key_averages()
        attr = "self_device_time_total" if cuda else "self_cpu_time_total"
        rows = sorted(events, key=lambda e: getattr(e, attr, 0.0), reverse=True)
        total = sum(getattr(e, attr, 0.0) for e in events) or 1.0
        kinds = {"convolution": ("conv", "cudnn", "gemm", "mm"), "batch_norm": ("batch_norm", "bn_"),
                 "elementwise": ("elementwise", "add", "mul", "relu", "sigmoid", "copy", "fill", "cat")}
        shares = {k: sum(getattr(e, attr, 0.0) for e in events if any(w in e.key.lower() for w in words)) / total
                  for k, words in kinds.items()}
        out[name] = {"time_kind": "device (CUDA) self time" if cuda else "CPU self time", "steps": steps,
                     "ms_per_step": total / 1000 / steps, "shares": shares,
                     "top_ops": [{"op": e.key, "ms_per_step": getattr(e, attr, 0.0) / 1000 / steps,
                                  "share": getattr(e, attr, 0.0) / total, "calls_per_step": e.count / steps}
                                 for e in rows[:top]]}
    return out


def finetune_loop(profile, device: str, epochs: int, seed: int, device_data: bool = True) -> dict:
    """Trained images/s of a real 40-slice fine-tune with per-epoch validation, from its second epoch."""
    from ssinfnet.segmentation.fit import fit
    from ssinfnet.segmentation.variants import variant_config

    samples = synthetic_subset("train", 50, size=profile.synthetic_size, seed=seed)
    train, val = samples[:40], samples[40:]
    cfg = variant_config("sinfnet", profile, epochs=epochs, patience=None, device_data=device_data)
    with tempfile.TemporaryDirectory() as run_dir:
        res = fit(cfg, train, val, device=device, seed=seed, run_dir=run_dir, progress=False)
    ep = res.history[res.history.kind == "epoch"].wall_s.to_numpy()
    per_epoch = float(ep[-1] - ep[0]) / (len(ep) - 1)
    return {"device_data": device_data, "epochs": epochs, "train_slices": len(train), "val_slices": len(val),
            "s_per_epoch": per_epoch, "images_per_s": len(train) / per_epoch}


def pretrain_loop(profile, device: str, epochs: int, pool: int, seed: int, device_data: bool = True) -> dict:
    """Trained images/s of inpainter epochs of the real pretraining over a pool, from its second epoch."""
    from ssinfnet.pretraining import inpainting as pre

    samples = pre.strip_labels(synthetic_subset("unlabelled", pool, size=profile.synthetic_size, seed=seed))
    cfg = pre.config_from_profile(profile)
    cfg = type(cfg)(**{**cfg.to_dict(), "inpainter_epochs": epochs, "coach_epochs": 1, "alternations": 0,
                       "device_data": device_data})
    loader = pre.pool_loader(samples, cfg, seed=seed, pin_memory=device.startswith("cuda"), device=device)
    with tempfile.TemporaryDirectory() as run_dir:
        _, result = pre.pretrain(cfg, loader, device=device, seed=seed, run_dir=run_dir, progress=False)
    h = result.history
    ep = h[(h.kind == "epoch") & (h.phase == "inpainter")].wall_s.to_numpy()
    per_epoch = float(ep[-1] - ep[0]) / (len(ep) - 1)
    return {"device_data": device_data, "epochs": epochs, "pool": pool, "s_per_epoch": per_epoch,
            "images_per_s": pool / per_epoch}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="smoke network, 64 px, tiny loops: checks it runs")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--budget-s", type=float, default=450.0, help="start no section after this many seconds")
    ap.add_argument("--output", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    gpu = get_profile("gpu")
    if args.quick:
        gpu = get_profile("smoke").with_overrides(max_steps_per_epoch=None, batch_size=4)
    size, batches = (gpu.image_size, (4, 16)) if not args.quick else (64, (2, 4))
    t0 = time.perf_counter()
    out = {"meta": {"device": args.device, "device_name": device_description(args.device),
                    "torch": torch.__version__, "quick": args.quick, "size": size,
                    "network": gpu.infnet_kwargs(), "skipped": []}, "authors_reference": AUTHORS_H200}

    def save() -> None:
        out["meta"]["wall_s"] = time.perf_counter() - t0
        if args.output:
            Path(args.output).write_text(json.dumps(out, indent=2) + "\n")

    def due(section: str) -> bool:
        if time.perf_counter() - t0 > args.budget_s:
            out["meta"]["skipped"].append(section)
            return False
        return True

    out["steps"] = step_table(gpu.infnet_kwargs(), size, batches, args.device,
                              2 if args.quick else args.repeats, not args.no_compile, args.seed)
    out["profiler"] = profile_steps(gpu.infnet_kwargs(), size, batches[-1], args.device,
                                    2 if args.quick else 5, args.seed)
    save()
    bare = next(r for r in out["steps"] if r["batch"] == batches[-1] and r["setting"] == "fp32+channels_last (loop default)")
    bare_ips = 1000 / bare["train_ms_per_image"]
    out["loops"] = {"bare_images_per_s": bare_ips, "bare_setting": f"{bare['setting']}, batch {bare['batch']}"}
    pool = 12 if args.quick else gpu.unlabelled_limit + 40
    ft_epochs = 3 if args.quick else 6
    for held in (True, False):
        kind = "device_data" if held else "dataloader"
        if due(f"finetune {kind}"):
            ft = finetune_loop(gpu, args.device, ft_epochs, args.seed, device_data=held)
            out["loops"][f"finetune_{kind}"] = {**ft, "real_over_bare": ft["images_per_s"] / bare_ips}
            save()
        if due(f"pretraining {kind}"):
            pt = pretrain_loop(gpu, args.device, 3, pool, args.seed, device_data=held)
            out["loops"][f"pretraining_{kind}"] = {**pt, "real_over_bare": pt["images_per_s"] / bare_ips}
            save()
    held_ft, held_pt = out["loops"].get("finetune_device_data"), out["loops"].get("pretraining_device_data")
    out["gpu_profile"] = {"finetune_s_per_epoch": held_ft and held_ft["s_per_epoch"],
                          "pretraining_s_per_epoch": held_pt and held_pt["s_per_epoch"], "pretraining_pool": pool}
    paper = get_profile("paper")
    ms = bare["train_ms_per_image"]
    stages = {s: training_images(paper, s, n_train=50, n_pool=1650) for s in TRAINING_STAGES}
    out["paper_projection"] = {"ms_per_image": ms, "images": stages,
                               "hours": sum(stages.values()) * ms / 1000 / 3600,
                               "note": ("training steps only, every fit to its epoch cap, every network at the bare "
                                        "InfNet step's speed (U-Net costs more per image): a rough lower bound")}
    save()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
