"""The book's results page, the verdict, written from a run's manifest and artifacts (so its numbers are
the run's numbers).

The page opens with the verdict (:func:`verdict_markdown`: one row per claim of the paper, see
:mod:`ssinfnet.book.verdict`), then the run's provenance and headline numbers. :func:`write_results_page`
is called by :func:`ssinfnet.book.render.assemble` when a run is rendered (``make publish`` renders
``runs/cpu``), so the page always shows the run's own manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..evaluation.tables import MULTI_COLUMNS
from ..segmentation.health import PLATEAU_GAIN, PLATEAU_WINDOW
from .audit import chapter_wall_times, plateau_table, recorded_training_seconds, reused_trainings, stop_counts
from .profiles import PROFILES, SUMMARY_FIELDS, Profile, reductions
from .verdict import RULES, VERDICTS, load_comparisons, pair_rows
from .verdict_family import family_markdown
from .verdict_recorded import other_rows


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
    lines = ["", "### Provenance per chapter", "",
             "Each chapter records the commit it was executed at; a chapter that reloaded cached trained "
             "models (instead of training them) lists them with the commit that trained them.", "",
             "| chapter | commit | dirty | data fingerprint | code fingerprint | reused trained models |",
             "|---|---|---|---|---|---|"]
    unrecorded = 0
    for name, entry in sorted(stages.items()):
        prov = entry.get("provenance")
        if not isinstance(prov, dict):
            unrecorded += 1
            lines.append(f"| {name} | {NOT_RECORDED} | {NOT_RECORDED} | {NOT_RECORDED} | {NOT_RECORDED} "
                         f"| {NOT_RECORDED} |")
            continue
        commit = _short_commit(prov.get("git_commit", NOT_RECORDED))
        data, code = prov.get("data_fingerprint", NOT_RECORDED), prov.get("code_fingerprint", NOT_RECORDED)
        lines.append(f"| {name} | {commit} | {_dirty(prov.get('dirty'))} | `{data}` | `{code}` "
                     f"| {_reused_cell(entry.get('reused') or {})} |")
    commits = chapter_commits(manifest)
    if len(commits) > 1:
        lines += ["", f"The chapters were executed at {len(commits)} different commits."]
    if unrecorded:
        lines += ["", f"{unrecorded} chapter(s) were executed before chapters recorded their own provenance: the "
                  "git commit above is that of the last chapter recorded, not necessarily theirs, and whether they "
                  "reloaded models trained by earlier code is unknown."]
    return lines


def chapter_commits(manifest: dict) -> list[str]:
    """The distinct commits the chapters recorded in their provenance, in chapter order (full hashes); empty
    when no chapter recorded one."""
    stages = manifest.get("stages", {})
    found = [(stages[k].get("provenance") or {}).get("git_commit") for k in sorted(stages)
             if not k.startswith("notebook:") and isinstance(stages[k], dict)]
    return list(dict.fromkeys(c for c in found if c))


def run_profile(manifest: dict) -> Profile | None:
    """The profile the run used: its recorded parameters over the named profile (None for an unknown name)."""
    name = manifest.get("profile")
    if name not in PROFILES:
        return None
    params = manifest.get("parameters") or {}
    fields = PROFILES[name].__dataclass_fields__
    known = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items() if k in fields and k != "name"}
    return PROFILES[name].with_overrides(**known)


def _pretrain_epochs(p: Profile) -> int:
    """Pretraining epochs in all: inpainter + coach + the alternation rounds (inpainter and coach each)."""
    alternating = 2 * p.pretrain_alternations * p.pretrain_alternate_epochs
    return p.pretrain_inpainter_epochs + p.pretrain_coach_epochs + alternating


def profile_lines(manifest: dict) -> list[str]:
    """What the run's profile reduced, in words, then one line per reduced setting (ours vs the paper's)."""
    name, p = manifest.get("profile", "?"), run_profile(manifest)
    commits = chapter_commits(manifest)
    commit = (f"commits {', '.join(_short_commit(c) for c in commits)} (chapter by chapter under Provenance)"
              if len(commits) > 1 else f"commit {_short_commit(manifest.get('git_commit', 'unknown'))}")
    if p is None:
        return [f"Profile `{name}` (unknown to this code: its reductions cannot be stated); {commit}."]
    paper = PROFILES["paper"]
    data = str(manifest.get("data_root", "?"))
    lines = []
    if name == "paper":
        lines.append(f"Profile `paper`: the paper's schedules (fine-tuning at most {p.finetune_epochs} epochs, "
                     f"pretraining {_pretrain_epochs(p):,} epochs); {commit}.")
    else:
        lines.append(f"Profile `{name}`: **a reduced schedule** — fine-tuning at most {p.finetune_epochs} (single) "
                     f"and {p.multi_epochs} (multi) epochs vs the paper's {paper.finetune_epochs}, pretraining "
                     f"{_pretrain_epochs(p)} epochs vs {_pretrain_epochs(paper):,} (the paper's text says 2,000; its "
                     f"phases add up to 2,200), {p.image_size} px with a {p.backbone} encoder vs {paper.image_size} "
                     f"px {paper.backbone}; {commit}. Estimates marked ‡ come from this reduced schedule.")
        lines += ["", "| setting | ours (paper) |", "|---|---|"]
        params = manifest.get("parameters")
        unrecorded = [f for f in SUMMARY_FIELDS if f not in params] if isinstance(params, dict) and params else []
        lines += [f"| {k} | {v} |" for k, v in reductions(p, unrecorded=unrecorded).items()]
    if "synthetic" in data.lower():
        lines += ["", "**This run used the embedded synthetic phantoms**, not CT: its verdicts show the pipeline "
                  "working, not whether the paper's claims hold."]
    return lines


def _cell(v) -> str:
    return str(v).replace("|", "/").replace("\n", " ")


def verdict_markdown(manifest: dict, run_dir: Path | None = None) -> list[str]:
    """Lines of the verdict: the profile in words, where the pair comparisons come from, one row per claim
    (:func:`ssinfnet.book.verdict.pair_rows`, :func:`ssinfnet.book.verdict_recorded.other_rows`), a count
    per verdict and the rules."""
    name = manifest.get("profile", "?")
    comparisons, where = load_comparisons(manifest, run_dir)
    reduced = name in PROFILES and name != "paper"
    rows = pair_rows(manifest, comparisons, reduced) + other_rows(manifest, run_dir, comparisons, reduced)
    lines = ["# Verdict: the paper's claims, tested by this run", "",
             "Each row is one claim of Fung et al.: our estimate with its interval, the paper's number with "
             "where it is printed, and the verdict by the rules below. Everything is read from this run's "
             "manifest and artifacts when the book is rendered.", "", *profile_lines(manifest), "", where, "",
             "| claim | ours: B − A (interval) | n | paper | source | verdict | note |",
             "|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(_cell(r[k]) for k in ("claim", "ours", "seeds", "paper", "source", "verdict", "note"))
              + " |" for r in rows]
    counts = {v: sum(r["verdict"].startswith(v) for r in rows) for v in VERDICTS}
    lines += ["", "In all: " + "; ".join(f"{v}: {n}" for v, n in counts.items() if n) + ".", "",
              "B − A is the claimed method minus its baseline on the test slices, in Dice points (paper protocol, "
              "threshold 0.5), or in pixel-AUC points for a claim marked (AUC) when the run compared AUC; the "
              "papers' own numbers are F1 (= Dice) or AUC on their own test sets. "
              "Published numbers and their sources: `ssinfnet/evaluation/published.py`."]
    lines += family_markdown(manifest, comparisons)
    lines += ["", "## How a verdict is reached", ""] + [f"- {r}" for r in RULES]
    return lines


def _trainings(table) -> str:
    folds = int((table["kind"] == "cross-validation fold").sum())
    tuned = f"{len(table) - folds} fine-tunings that passed their checks"
    return f"{len(table)} trainings ({tuned} and {folds} cross-validation folds)" if folds else tuned


def plateau_markdown(manifest: dict, run_dir: Path | None) -> list[str]:
    """Lines saying whether each fine-tuning that passed its checks, and each cross-validation fold, reached a
    plateau (:func:`ssinfnet.book.audit.plateau_table`), with a table of those still gaining in their last
    epochs; none without a run folder or trainings."""
    table = plateau_table(manifest, run_dir) if run_dir is not None else None
    if table is None or table.empty:
        return []
    rising = table[table["plateau"].eq(False)]
    unknown = table[table["plateau"].isna()]
    if len(rising):
        verdict = f"{len(rising)} did not: " + ", ".join(rising["training"]) + "."
    elif len(unknown) == len(table):
        verdict = "none could be judged."
    elif len(unknown):
        verdict = "none of those that could be judged was still gaining."
    else:
        verdict = "every one did."
    lines = ["", "### Did fine-tuning reach a plateau?", "",
             f"Of the {_trainings(table)}, {stop_counts(table)}. A run that did "
             f"not stop on its patience counts as having plateaued when its best validation Dice rose by less "
             f"than {PLATEAU_GAIN:g} in its last {PLATEAU_WINDOW} validated epochs; " + verdict
             + (f" Too short or without a history to tell: {', '.join(unknown['training'])}." if len(unknown) else "")]
    late = table[table["stop"] != "patience"].dropna(subset=["late_gain"])
    late = late[late["late_gain"].astype(float) > 0].sort_values("late_gain", ascending=False, kind="stable")
    if len(late):
        lines += ["", f"Runs whose best epoch fell in their last {PLATEAU_WINDOW} validated epochs (gain over the "
                  "best before them):", "", "| training | epochs run | late gain (validation Dice) |", "|---|---|---|"]
        lines += [f"| {r.training} | {int(r.epochs_run)} | {float(r.late_gain):+.4f} |" for r in late.itertuples()]
    return lines


def _wall_time_markdown(manifest: dict, run_dir: Path | None) -> list[str]:
    """The wall-time table: each chapter's last execution, and for a chapter that reused trainings of an
    earlier execution the training time their ``history.csv`` recorded (read from ``run_dir``)."""
    walls = chapter_wall_times(manifest)
    if not walls:
        return []
    reused = reused_trainings(manifest)
    lines = ["", "### Wall time per chapter", "", "Seconds of the last execution of each chapter."]
    if not reused:
        return lines + ["", "| chapter | seconds |", "|---|---|"] + [f"| {k} | {v} |" for k, v in sorted(walls.items())]
    recorded = {k: None if run_dir is None else recorded_training_seconds(run_dir, v) for k, v in reused.items()}
    lines[-1] += (f" {', '.join(reused)} reused trainings of an earlier execution (a resumed or re-executed run): "
                  "its last execution leaves their time out, and the last column adds the training time their "
                  "`history.csv` recorded.")
    known = [float(w) for w in walls.values() if isinstance(w, (int, float))]
    if all(v is not None for v in recorded.values()):
        lines[-1] += (f" With it the book took about {(sum(known) + sum(recorded.values())) / 60:.1f} min, "
                      f"against {sum(known) / 60:.1f} min summed over the last executions.")
    lines += ["", "| chapter | seconds | reused trainings' recorded seconds |", "|---|---|---|"]
    for k, v in sorted(walls.items()):
        extra = recorded.get(k)
        shown = "" if k not in reused else "not readable" if extra is None else f"{extra:.1f}"
        lines.append(f"| {k} | {v} | {shown} |")
    return lines


def results_markdown(manifest: dict, run_dir: Path | None = None) -> str:
    """Markdown of the page: the verdict (:func:`verdict_markdown`, artifacts read from ``run_dir``; None:
    none read), then provenance and the headline numbers each stage recorded."""
    stages = manifest.get("stages", {})
    lines = verdict_markdown(manifest, run_dir) + [
        "", "## The run", "",
        f"Every number on this page was produced by the run whose provenance follows; the profile "
        f"`{manifest.get('profile', '?')}` sets what was reduced (see {{doc}}`running`).", "",
        "| provenance | value |", "|---|---|"]
    several = len(chapter_commits(manifest)) > 1
    for key in ("profile", "data_root", "data_fingerprint", "device", "git_commit"):
        note = " (the last chapter executed; the chapters ran at several commits, below)" \
            if key == "git_commit" and several else ""
        lines.append(f"| {key.replace('_', ' ')} | `{manifest.get(key, '?')}`{note} |")
    lines += provenance_markdown(manifest)
    lines += _wall_time_markdown(manifest, run_dir)
    sections = [("03_single", "validation", "Stage 1, validation Dice (paper protocol, per image at 0.5)"),
                ("03_single", "cross_validation", "Stage 1, cross-validated Dice of held-out training slices"),
                ("04_multi", "validation", "Stage 2, validation Dice (mean of GGO and consolidation)"),
                ("05_evaluation", "infnet_single", "Test split, Inf-Net protocol meanDic, single-class"),
                ]
    for stage, key, title in sections:
        values = stages.get(stage, {}).get(key)
        if isinstance(values, dict) and values:
            lines += ["", f"### {title}", "", "| model | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in values.items()]
        if (stage, key) == ("04_multi", "validation"):
            lines += plateau_markdown(manifest, run_dir)
    multi = stages.get("05_evaluation", {}).get("infnet_multi")
    if isinstance(multi, dict) and multi:
        lines += ["", "### Test split, Inf-Net protocol meanDic, multi-class", "", "| model | GGO | consolidation |",
                  "|---|---|---|"]
        ggo, cons = (multi.get(c, {}) for c in MULTI_COLUMNS)
        lines += [f"| {k} | {_fmt(ggo[k])} | {_fmt(cons.get(k, float('nan')))} |" for k in ggo]
    lines += ["", "Scores on the 48 test slices are optimistic for unseen patients: training and test slices "
              "share patients (chapter 1). Published numbers for comparison are in chapter 5.", ""]
    return "\n".join(lines)


def write_results_page(run_dir: Path, dest: Path) -> Path:
    """Write ``dest`` (results.md) from ``run_dir/manifest.json`` and the artifacts it names."""
    manifest = json.loads((Path(run_dir) / "manifest.json").read_text())
    dest.write_text(results_markdown(manifest, run_dir))
    return dest
