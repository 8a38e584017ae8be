"""The book's results page, written from a run's manifest (so its numbers are the run's numbers)."""

from __future__ import annotations

import json
from pathlib import Path


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def results_markdown(manifest: dict) -> str:
    """Markdown summary of a run: provenance, then the headline numbers each stage recorded."""
    stages = manifest.get("stages", {})
    lines = ["# Results of this run", "",
             f"Every number on this page was produced by the run whose provenance follows; the profile "
             f"`{manifest.get('profile', '?')}` sets what was reduced (see {{doc}}`running`).", "",
             "| provenance | value |", "|---|---|"]
    for key in ("profile", "data_root", "data_fingerprint", "device", "git_commit"):
        lines.append(f"| {key.replace('_', ' ')} | `{manifest.get(key, '?')}` |")
    walls = {k.split(":", 1)[1]: v.get("wall_time_s") for k, v in stages.items() if k.startswith("notebook:")}
    if walls:
        lines += ["", "## Wall time per chapter", "",
                  "Seconds of the last execution of each chapter; a chapter re-run over its own checkpoints "
                  "shows only that re-run (training times are in each run folder's `history.csv`).", "",
                  "| chapter | seconds |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(walls.items())]
    sections = [("03_single", "validation", "Stage 1, validation Dice (paper protocol, per image at 0.5)"),
                ("03_single", "cross_validation", "Stage 1, cross-validated Dice of held-out training slices"),
                ("04_multi", "validation", "Stage 2, validation Dice (mean of GGO and consolidation)"),
                ("05_evaluation", "infnet_single", "Test split, Inf-Net protocol meanDic, single-class"),
                ]
    for stage, key, title in sections:
        values = stages.get(stage, {}).get(key)
        if isinstance(values, dict) and values:
            lines += ["", f"## {title}", "", "| model | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in values.items()]
    multi = stages.get("05_evaluation", {}).get("infnet_multi")
    if isinstance(multi, dict) and multi:
        lines += ["", "## Test split, Inf-Net protocol meanDic, multi-class", "", "| model | GGO | consolidation |",
                  "|---|---|---|"]
        ggo, cons = multi.get("GGO meanDic", {}), multi.get("consolidation meanDic", {})
        lines += [f"| {k} | {_fmt(ggo[k])} | {_fmt(cons.get(k, float('nan')))} |" for k in ggo]
    lines += ["", "Scores on the 48 test slices are optimistic for unseen patients: training and test slices "
              "share patients (chapter 1). Published numbers for comparison are in chapter 5.", ""]
    return "\n".join(lines)


def write_results_page(run_dir: Path, dest: Path) -> Path:
    """Write ``dest`` (results.md) from ``run_dir/manifest.json``."""
    manifest = json.loads((Path(run_dir) / "manifest.json").read_text())
    dest.write_text(results_markdown(manifest))
    return dest
