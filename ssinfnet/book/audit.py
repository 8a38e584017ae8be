"""Does a run meet the bars set for the published run? ``python -m ssinfnet audit --run-dir runs/cpu``.

The bars are what the project asks of the run it publishes (issue 14, for the ``cpu`` profile: the whole
book within 120 minutes on 2 cores, the best single-class model at 0.60 Inf-Net meanDic or more on the
48 test slices, no failed training in a results table or behind the maps later chapters read, a
complete verdict, every chapter executed at
one clean commit). Every check reads what the run recorded (``manifest.json`` and the artifacts it
names); nothing is re-computed, so the audit takes a second and can be run on any copy of a run folder.
The book's wall time is the sum of each chapter's last execution: a run resumed over its own
checkpoints records only the resumed part, so the time bar is meaningful for a run from scratch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .artifacts import STAGE_NAMES
from .verdict import NOT_COMPARED, failed_models, load_comparisons, pair_rows
from .verdict_recorded import other_rows

__all__ = ["Bars", "BARS", "Check", "audit", "audit_run_dir", "format_checks"]


@dataclass(frozen=True)
class Bars:
    """The bars of one profile: ``max_book_minutes`` (sum of the chapters' wall times; None: no bar),
    ``min_best_single`` (best usable single-class model's test Inf-Net meanDic; None: no bar) and
    ``machine`` (what the time bar assumes, in words)."""

    max_book_minutes: float | None = None
    min_best_single: float | None = None
    machine: str = ""


#: The bars by profile (issue 14). A profile absent here is checked for provenance, failed models in
#: tables and the verdict only.
BARS = {"cpu": Bars(max_book_minutes=120.0, min_best_single=0.60, machine="2 CPU cores, real data")}


@dataclass(frozen=True)
class Check:
    """One bar: what is required, what this run recorded, and whether it passes."""

    name: str
    required: str
    found: str
    passed: bool


def _provenance(manifest: dict) -> list[tuple[str, dict]]:
    return [(name, entry["provenance"]) for name, entry in sorted(manifest.get("stages", {}).items())
            if isinstance(entry, dict) and isinstance(entry.get("provenance"), dict)]


def _check_chapters(manifest: dict) -> Check:
    stages = manifest.get("stages", {})
    missing = [s for s in STAGE_NAMES.values() if f"notebook:{s}" not in stages]
    return Check("every chapter executed", f"{len(STAGE_NAMES)} notebooks recorded",
                 "all" if not missing else "missing " + ", ".join(missing), not missing)


def _check_commit(manifest: dict) -> Check:
    prov = _provenance(manifest)
    commits = sorted({str(p.get("git_commit"))[:7] for _, p in prov})
    dirty = sorted(name for name, p in prov if p.get("dirty") is not False)
    found = f"{len(commits)} commit(s): {', '.join(commits) or 'none recorded'}"
    if dirty:
        found += f"; dirty or unrecorded tree: {', '.join(dirty)}"
    return Check("one clean commit", "every chapter at the same commit, clean tree", found,
                 len(commits) == 1 and not dirty and bool(prov))


def _check_time(manifest: dict, bars: Bars) -> Check:
    walls = [v.get("wall_time_s") for k, v in manifest.get("stages", {}).items() if k.startswith("notebook:")]
    known = [float(w) for w in walls if isinstance(w, (int, float))]
    minutes = sum(known) / 60
    found = f"{minutes:.1f} min on {manifest.get('device', 'an unrecorded device')}"
    if len(known) < len(walls) or not walls:
        found += " (some chapters recorded no wall time)"
    return Check("book wall time", f"<= {bars.max_book_minutes:g} min ({bars.machine})", found,
                 bool(walls) and len(known) == len(walls) and minutes <= bars.max_book_minutes)


def _single_scores(manifest: dict) -> dict[str, float]:
    return {k: float(v) for k, v in (manifest.get("stages", {}).get("05_evaluation", {}).get("infnet_single")
                                     or {}).items()}


def _check_best_single(manifest: dict, bars: Bars) -> Check:
    failed = failed_models(manifest)
    usable = {k: v for k, v in _single_scores(manifest).items() if k.split(" (")[0] not in failed}
    if not usable:
        return Check("best single-class model", f">= {bars.min_best_single:.2f} test meanDic", "no usable model "
                     "recorded (chapter 5's infnet_single)", False)
    best = max(usable, key=usable.get)
    return Check("best single-class model", f">= {bars.min_best_single:.2f} test meanDic (Inf-Net protocol)",
                 f"{usable[best]:.4f} ({best})", usable[best] >= bars.min_best_single)


def _check_tables(manifest: dict) -> Check:
    failed = failed_models(manifest)
    evaluation = manifest.get("stages", {}).get("05_evaluation", {})
    listed = set(_single_scores(manifest))
    for column in (evaluation.get("infnet_multi") or {}).values():
        listed |= set(column or {})
    shown = sorted({k.split(" (")[0] for k in listed} & set(failed))
    found = ("none shown" if not shown else "shown: " + ", ".join(shown)) + \
        f" ({len(failed)} failed training(s) recorded{': ' + ', '.join(sorted(failed)) if failed else ''})"
    return Check("no failed training in a results table", "failed models kept out of chapter 5's tables", found,
                 not shown)


def _check_handoff(manifest: dict) -> Check:
    failed = failed_models(manifest)
    selected = manifest.get("stages", {}).get("05_evaluation", {}).get("selected") or {}
    bad = sorted(k for k, v in selected.items() if str(v).split(" (")[0] in failed)
    found = ", ".join(f"{k} from {v}" for k, v in sorted(selected.items())) or "nothing handed on"
    if bad:
        found += "; from a failed training: " + ", ".join(bad)
    return Check("later chapters read trained models", "the maps chapter 5 hands on come from models that passed "
                 "their checks", found, not bad)


def _check_verdict(manifest: dict, run_dir: Path | None) -> Check:
    comparisons, _ = load_comparisons(manifest, run_dir)
    name = manifest.get("profile")
    rows = pair_rows(manifest, comparisons, name != "paper") + other_rows(manifest, run_dir, comparisons,
                                                                            name != "paper")
    empty = [r["claim"] for r in rows if not r["verdict"] or r["verdict"].startswith(NOT_COMPARED)]
    found = f"{len(rows) - len(empty)} of {len(rows)} claims with a verdict"
    if empty:
        found += "; none for: " + "; ".join(empty)
    return Check("verdict page complete", "every claim with a verdict", found, not empty)


def audit(manifest: dict, run_dir: Path | None = None) -> list[Check]:
    """The checks of a run (``manifest``: its ``manifest.json`` as a dict; ``run_dir``: where its
    artifacts are, for the verdict's comparisons): chapters, commit, then the profile's bars
    (:data:`BARS`), failed models in tables and in what chapter 5 hands on, and the verdict. Returns one :class:`Check` per bar."""
    bars = BARS.get(manifest.get("profile"), Bars())
    checks = [_check_chapters(manifest), _check_commit(manifest)]
    if bars.max_book_minutes is not None:
        checks.append(_check_time(manifest, bars))
    if bars.min_best_single is not None:
        checks.append(_check_best_single(manifest, bars))
    return checks + [_check_tables(manifest), _check_handoff(manifest), _check_verdict(manifest, run_dir)]


def audit_run_dir(run_dir: str | Path) -> list[Check]:
    """:func:`audit` of ``run_dir/manifest.json``; FileNotFoundError naming the file when it is absent,
    ValueError naming it when it is not a JSON object."""
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest (is {run_dir} a run folder? `python -m ssinfnet run` "
                                "writes one)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    return audit(manifest, Path(run_dir))


def format_checks(checks: list[Check]) -> str:
    """A Markdown table of ``checks`` and a last line counting the passed ones."""
    lines = ["| bar | required | this run | |", "|---|---|---|---|"]
    lines += [f"| {c.name} | {c.required} | {c.found} | {'pass' if c.passed else 'FAIL'} |" for c in checks]
    lines.append(f"\n{sum(c.passed for c in checks)} of {len(checks)} bars met.")
    return "\n".join(lines)
