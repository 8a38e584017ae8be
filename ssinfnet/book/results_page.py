"""The book's results page, written from a run's manifest (so its numbers are the run's numbers).

:func:`write_results_page` is called by :func:`ssinfnet.book.render.assemble` when a run is rendered
(``make publish`` renders ``runs/cpu``), so the page always shows the run's own manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..evaluation.tables import MULTI_COLUMNS


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


NOT_RECORDED = "not recorded"


def _short_commit(sha) -> str:
    return f"`{sha[:7]}`" if isinstance(sha, str) and len(sha) >= 7 and sha != "unknown" else f"`{sha}`"


def _dirty(flag) -> str:
    return {True: "yes", False: "no"}.get(flag, NOT_RECORDED)


def _reused_cell(reused: dict) -> str:
    """Reused run folders grouped by the commit that trained them; stale reuse flagged."""
    if not reused:
        return "none"
    by_commit: dict[str, list[str]] = {}
    for folder, info in sorted(reused.items()):
        commit = info.get("trained_at_commit") or NOT_RECORDED
        label = commit if commit == NOT_RECORDED else _short_commit(commit).strip("`")
        if info.get("dirty"):
            label += ", dirty"
        name = f"`{folder}`" + (" (**stale: reused despite " + "; ".join(
            d for note in info["stale"] for d in note.get("differs", [])) + "**)" if info.get("stale") else "")
        by_commit.setdefault(label, []).append(name)
    return "; ".join(f"{', '.join(names)} (trained at {label})" for label, names in by_commit.items())


def provenance_markdown(manifest: dict) -> list[str]:
    """Lines of the per-chapter provenance table: chapter, commit, dirty, data and code fingerprints,
    and the cached training runs the chapter reloaded with the commit that trained them.

    Manifests written before stages recorded their own provenance read "not recorded".
    """
    stages = {k: v for k, v in manifest.get("stages", {}).items() if not k.startswith("notebook:")}
    if not stages:
        return []
    lines = ["", "## Provenance per chapter", "",
             "Each chapter records the commit it was executed at; a chapter that reloaded cached trained "
             "models (instead of training them) lists them with the commit that trained them.", "",
             "| chapter | commit | dirty | data fingerprint | code fingerprint | reused trained models |",
             "|---|---|---|---|---|---|"]
    commits, unrecorded = set(), 0
    for name, entry in sorted(stages.items()):
        prov = entry.get("provenance")
        if not isinstance(prov, dict):
            unrecorded += 1
            lines.append(f"| {name} | {NOT_RECORDED} | {NOT_RECORDED} | {NOT_RECORDED} | {NOT_RECORDED} "
                         f"| {NOT_RECORDED} |")
            continue
        commits.add(prov.get("git_commit"))
        commit = _short_commit(prov.get("git_commit", NOT_RECORDED))
        data, code = prov.get("data_fingerprint", NOT_RECORDED), prov.get("code_fingerprint", NOT_RECORDED)
        lines.append(f"| {name} | {commit} | {_dirty(prov.get('dirty'))} | `{data}` | `{code}` "
                     f"| {_reused_cell(entry.get('reused') or {})} |")
    if len(commits) > 1:
        lines += ["", f"The chapters were executed at {len(commits)} different commits."]
    if unrecorded:
        lines += ["", f"{unrecorded} chapter(s) were executed before chapters recorded their own provenance: the "
                  "git commit above is that of the last chapter recorded, not necessarily theirs, and whether they "
                  "reloaded models trained by earlier code is unknown."]
    return lines


def results_markdown(manifest: dict) -> str:
    """Markdown summary of a run: provenance, then the headline numbers each stage recorded."""
    stages = manifest.get("stages", {})
    lines = ["# Results of this run", "",
             f"Every number on this page was produced by the run whose provenance follows; the profile "
             f"`{manifest.get('profile', '?')}` sets what was reduced (see {{doc}}`running`).", "",
             "| provenance | value |", "|---|---|"]
    for key in ("profile", "data_root", "data_fingerprint", "device", "git_commit"):
        lines.append(f"| {key.replace('_', ' ')} | `{manifest.get(key, '?')}` |")
    lines += provenance_markdown(manifest)
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
        ggo, cons = (multi.get(c, {}) for c in MULTI_COLUMNS)
        lines += [f"| {k} | {_fmt(ggo[k])} | {_fmt(cons.get(k, float('nan')))} |" for k in ggo]
    lines += ["", "Scores on the 48 test slices are optimistic for unseen patients: training and test slices "
              "share patients (chapter 1). Published numbers for comparison are in chapter 5.", ""]
    return "\n".join(lines)


def write_results_page(run_dir: Path, dest: Path) -> Path:
    """Write ``dest`` (results.md) from ``run_dir/manifest.json``."""
    manifest = json.loads((Path(run_dir) / "manifest.json").read_text())
    dest.write_text(results_markdown(manifest))
    return dest
