"""Demo of the predict -> evaluate round trip on real test slices in mixed formats and sizes.

Writes copies of the COVID-SemiSeg test images as RGB PNG, RGBA PNG, 16-bit PNG and JPEG at several
scales into OUT/inputs, runs ``python -m ssinfnet predict`` on that folder and
``python -m ssinfnet evaluate`` on the maps against the original ground truth (the evaluation tool
resizes each map back to its ground truth's size, MATLAB-style bicubic).

    .venv/bin/python scripts/predict_demo.py --data-root DATA --checkpoint runs/cpu/finetune/ssinfnet/model.pt \
        --multi-checkpoint runs/cpu/finetune/multi_ssinfnet/model.pt --out /tmp/predict_demo
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ssinfnet.data.semiseg import read_semiseg

FORMATS = ("rgb", "rgba", "16bit", "jpeg")
SCALES = (0.5, 0.75, 1.0, 1.5)


def write_mixed(data_root: str, out: Path) -> tuple[Path, Path]:
    """Mixed-format copies of the test images (inputs/) and their binary ground truth (gt/)."""
    inputs, gt = out / "inputs", out / "gt"
    inputs.mkdir(parents=True, exist_ok=True)
    gt.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(read_semiseg(data_root, "test")):
        fmt, scale = FORMATS[i % len(FORMATS)], SCALES[(i // len(FORMATS)) % len(SCALES)]
        h, w = s.image.shape
        img = Image.fromarray(s.image).resize((max(32, round(w * scale)), max(32, round(h * scale))),
                                              Image.Resampling.BICUBIC)
        if fmt == "rgb":
            img.convert("RGB").save(inputs / f"{s.slice_id}.png")
        elif fmt == "rgba":
            img.convert("RGBA").save(inputs / f"{s.slice_id}.png")
        elif fmt == "16bit":
            Image.fromarray((np.asarray(img).astype(np.uint16) * 257)).save(inputs / f"{s.slice_id}.png")
        else:
            img.save(inputs / f"{s.slice_id}.jpg", quality=95)
        Image.fromarray(s.infection.astype(np.uint8) * 255).save(gt / f"{s.slice_id}.png")
    return inputs, gt


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--multi-checkpoint", default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    out = Path(args.out)
    inputs, gt = write_mixed(args.data_root, out)
    cmd = [sys.executable, "-m", "ssinfnet", "predict", "--checkpoint", args.checkpoint, "--input", str(inputs),
           "--output", str(out / "maps"), "--no-progress"]
    if args.multi_checkpoint:
        cmd += ["--multi-checkpoint", args.multi_checkpoint]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    maps = out / "maps_infection"
    maps.mkdir(exist_ok=True)
    for f in (out / "maps").glob("*.png"):  # the probability maps only (not the class maps)
        if not f.stem.endswith(("_classes", "_classes_rgb")):
            (maps / f.name).write_bytes(f.read_bytes())
    for protocol in ("infnet", "paper"):
        cmd = [sys.executable, "-m", "ssinfnet", "evaluate", "--pred", str(maps), "--gt", str(gt),
               "--protocol", protocol, "--output", str(out / f"scores_{protocol}.json")]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
