"""The audit of a run against the published run's bars: known manifests -> known pass / fail, bad input."""
import json
from pathlib import Path

import pandas as pd
import pytest

from ssinfnet.book import audit as a
from ssinfnet.book.artifacts import STAGE_NAMES
from ssinfnet.cli import main

from .test_verdict import manifest as verdict_manifest
from .test_verdict import run_dir  # noqa: F401  (the fixture: comparisons and mediation CSVs)

ROOT = Path(__file__).resolve().parents[2]
CLEAN = {"git_commit": "abcdef1234567890", "dirty": False}


def good_manifest() -> dict:
    """The verdict fixture's manifest with every chapter's wall time (100 minutes in all on 2 cores) and
    provenance, chapter 5's tables (best usable single model 0.612) and hand-off, and the trainings'
    statuses: all passed but multi_fcn8s (allowed to fail), with each training's exported model (its
    history: :func:`write_histories`)."""
    m = verdict_manifest()
    for stage in STAGE_NAMES.values():
        m["stages"].setdefault(stage, {})["provenance"] = dict(CLEAN)
        m["stages"][f"notebook:{stage}"] = {"wall_time_s": 6000 / 7, "provenance": dict(CLEAN)}
    m["device"] = "cpu (AMD EPYC, 2 cores, AVX512 kernels)"
    m["stages"]["03_single"]["status"] = {"sinfnet": "ok", "ssinfnet": "ok", "unet": "ok"}
    m["stages"]["03_single"]["seeds"] = {"status": {"ssinfnet": {"seed1": "ok", "seed2": "ok"}}}
    m["stages"]["04_multi"]["status"] = {"multi_ssinfnet": "ok", "multi_ssinfnet_gt_prior (oracle prior)": "ok",
                                         "multi_fcn8s": "failed: best val_dice 0.000 not above the floor 0.091"}
    m["stages"]["03_single"]["artifacts"] = {f"model:{k}": f"finetune/{k.replace('@', '/')}/model.pt" for k in
                                             ("sinfnet", "ssinfnet", "unet", "ssinfnet@seed1", "ssinfnet@seed2")}
    m["stages"]["04_multi"]["artifacts"] = {f"model:{k}": f"finetune/{k}/model.pt" for k in
                                            ("multi_ssinfnet", "multi_ssinfnet_gt_prior", "multi_fcn8s")}
    ev = m["stages"]["05_evaluation"]
    ev["infnet_single"] = {"sinfnet": 0.5683, "ssinfnet": 0.612, "unet": 0.58}
    ev["selected"] = {"test_predictions": "ssinfnet", "test_class_maps": "multi_ssinfnet"}
    return m


def history(scores, stop) -> pd.DataFrame:
    """A fine-tuning history of validated epochs ``scores``; the last row's ``stop`` says why it ended."""
    n = len(scores)
    return pd.DataFrame({"phase": "seg", "kind": "epoch", "epoch": range(n),
                         "loss": [1.0 - i / (2 * n) for i in range(n)],
                         "val_dice": scores, "stop": [None] * (n - 1) + [stop]})


#: A run that ran to its cap 12 epochs in, its best (0.605) 0.005 above the best before its last 5 epochs.
PLATEAUED = history([0.3, 0.45, 0.5, 0.55, 0.6, 0.58, 0.59, 0.6, 0.605, 0.6, 0.59, 0.6], "cap")


def write_histories(folder: Path, manifest: dict, **special) -> None:
    """Write the history of every model ``manifest`` names under ``folder``: :data:`PLATEAUED`, or
    ``special[training]`` (None: none, and an earlier one removed)."""
    for key, path in a.training_histories(manifest, folder).items():
        h = special.get(key, PLATEAUED)
        if h is None:
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            h.to_csv(path, index=False)


@pytest.fixture
def audit_dir(run_dir):  # noqa: F811
    """The verdict fixture's run folder with the histories of :func:`good_manifest`'s trainings."""
    write_histories(run_dir, good_manifest())
    return run_dir


def _by_name(checks) -> dict:
    return {c.name: c for c in checks}


def test_a_run_meeting_the_bars_passes_them(audit_dir):
    checks = _by_name(a.audit(good_manifest(), audit_dir))
    assert list(checks) == ["every chapter executed", "one clean commit", "book wall time", "best single-class model",
                            "fine-tuned to a plateau", "no collapsed model", "later chapters read trained models",
                            "verdict page complete"]
    assert checks["every chapter executed"].passed
    assert checks["one clean commit"].passed and checks["one clean commit"].found == "1 commit(s): abcdef1"
    assert checks["book wall time"].passed
    assert checks["book wall time"].found == "100.0 min on cpu (AMD EPYC, 2 cores, AVX512 kernels)"
    best = checks["best single-class model"]
    assert best.passed and best.found == "0.6120 (ssinfnet)" and best.required.startswith(">= 0.60")
    plateau = checks["fine-tuned to a plateau"]  # multi_fcn8s failed: its plateau is not asked for
    assert plateau.passed and plateau.found == "7 trainings: 0 stopped on patience, 7 ran to the cap (largest late " \
                                               "gain +0.0050, multi_ssinfnet)"
    trainings = checks["no collapsed model"]
    assert trainings.passed and trainings.found == "7 of 8 trainings passed their checks; failed: multi_fcn8s"
    handoff = checks["later chapters read trained models"]
    assert handoff.passed and handoff.found == "test_predictions from ssinfnet, test_class_maps from multi_ssinfnet"
    # the fixture's comparisons have no rows for six pairs the profile trains: those claims have no verdict
    verdict = checks["verdict page complete"]
    assert not verdict.passed and verdict.found.startswith(
        "15 of 21 claims with a verdict; none for: Single: SSInfNet vs U-Net (AUC); ")
    assert "Data augmentation (cutout 0.4), single" in verdict.found


def test_each_bar_fails_on_the_run_that_misses_it(audit_dir):
    m = good_manifest()
    m["stages"]["05_evaluation"]["provenance"] = {"git_commit": "1234567aaaa", "dirty": False}
    m["stages"]["notebook:06_severity"]["provenance"]["dirty"] = True
    m["stages"]["notebook:07_radiomics_mediation"]["wall_time_s"] = 3000.0  # 100 - 857/60 + 50 min
    m["stages"]["05_evaluation"]["infnet_single"]["ssinfnet"] = 0.5908
    m["stages"]["03_single"]["seeds"]["status"]["ssinfnet"]["seed2"] = "failed: flat loss"
    checks = _by_name(a.audit(m, audit_dir))
    commit = checks["one clean commit"]
    assert not commit.passed and commit.found == "2 commit(s): 1234567, abcdef1; dirty or unrecorded tree: " \
                                                 "notebook:06_severity"
    assert not checks["book wall time"].passed and checks["book wall time"].found.startswith("135.7 min")
    assert not checks["best single-class model"].passed
    assert checks["best single-class model"].found == "0.5908 (ssinfnet)"
    trainings = checks["no collapsed model"]
    assert not trainings.passed and trainings.found.endswith("failed: multi_fcn8s, ssinfnet@seed2")


def test_a_chapter_without_a_commit_fails_the_commit_bar(audit_dir):
    m = good_manifest()
    del m["stages"]["notebook:03_single"]["provenance"]["git_commit"]
    m["stages"]["06_severity"].pop("provenance")
    commit = _by_name(a.audit(m, audit_dir))["one clean commit"]
    assert not commit.passed and commit.found == "1 commit(s): abcdef1; no commit recorded: 06_severity, " \
                                                 "notebook:03_single"


def test_the_time_bar_holds_only_for_a_run_on_its_machine(audit_dir):
    m = good_manifest()
    m["device"] = "cpu (AMD EPYC, 16 cores, AVX512 kernels)"
    timed = _by_name(a.audit(m, audit_dir))["book wall time"]
    assert not timed.passed and timed.found.endswith("(not a 2-core CPU run: the bar does not apply)")
    m["device"] = "cuda (NVIDIA H200)"
    assert not _by_name(a.audit(m, audit_dir))["book wall time"].passed
    m["device"] = "cpu (2 cores, x86_64)"  # manifests written before the CPU model was recorded
    assert _by_name(a.audit(m, audit_dir))["book wall time"].passed


def test_a_chapter_that_reused_earlier_trainings_fails_the_time_bar_and_counts_them(audit_dir):
    m = good_manifest()
    m["stages"]["04_multi"]["reused"] = {"finetune/multi_ssinfnet": {}, "pretrain/multi": {}}
    n = len(PLATEAUED)
    PLATEAUED.assign(wall_s=[1800.0 * (i + 1) / n for i in range(n)]).to_csv(
        audit_dir / "finetune/multi_ssinfnet/history.csv", index=False)
    (audit_dir / "pretrain/multi").mkdir(parents=True)
    pd.DataFrame({"kind": ["step", "epoch"], "wall_s": [300.0, 600.0]}).to_csv(
        audit_dir / "pretrain/multi/history.csv", index=False)
    timed = _by_name(a.audit(m, audit_dir))["book wall time"]
    # 100 min of chapters + 40 min of reused training: fails even though the sum alone is under 120
    assert not timed.passed
    assert timed.found == ("100.0 min on cpu (AMD EPYC, 2 cores, AVX512 kernels) (not one pass: 04_multi reused 2 "
                           "trainings of an earlier execution, whose time is not in the sum; with their recorded "
                           "training time 140.0 min)")
    (audit_dir / "pretrain/multi/history.csv").unlink()
    timed = _by_name(a.audit(m, audit_dir))["book wall time"]
    assert not timed.passed and timed.found.endswith("whose time is not in the sum)")
    assert a.recorded_training_seconds(audit_dir, ["finetune/multi_ssinfnet"]) == 1800.0


def test_a_failed_model_is_never_the_best_nor_handed_on(audit_dir):
    m = good_manifest()
    m["stages"]["03_single"]["status"]["unet"] = "failed: best val_dice 0.010 not above the floor 0.091"
    m["stages"]["05_evaluation"]["infnet_single"]["unet"] = 0.70
    checks = _by_name(a.audit(m, audit_dir))
    assert checks["best single-class model"].found == "0.6120 (ssinfnet)"
    assert not checks["no collapsed model"].passed
    m["stages"]["05_evaluation"]["selected"]["test_predictions"] = "unet"
    handoff = _by_name(a.audit(m, audit_dir))["later chapters read trained models"]
    assert not handoff.passed and handoff.found.endswith("; not from a model that passed its checks: test_predictions")
    m["stages"]["05_evaluation"]["selected"] = {"test_predictions": None}  # every model failed: nothing handed on
    handoff = _by_name(a.audit(m, audit_dir))["later chapters read trained models"]
    assert not handoff.passed and handoff.found.startswith("test_predictions from nothing, test_class_maps from nothing")


def test_an_empty_manifest_meets_no_bar():
    checks = a.audit({"profile": "cpu"})
    assert [c.passed for c in checks[:-1]] == [False] * 7
    assert checks[4].found == "no run folder to read the histories from"
    assert checks[0].found == "missing " + ", ".join(STAGE_NAMES.values())


def test_a_chapter_without_its_notebook_or_wall_time_fails(audit_dir):
    m = good_manifest()
    del m["stages"]["notebook:06_severity"]
    m["stages"]["notebook:02_pretraining"].pop("wall_time_s")
    checks = _by_name(a.audit(m, audit_dir))
    assert not checks["every chapter executed"].passed
    assert checks["every chapter executed"].found == "missing 06_severity"
    assert not checks["book wall time"].passed and "(some chapters recorded no wall time)" in \
        checks["book wall time"].found


def test_a_training_still_rising_at_its_cap_or_without_history_fails_the_plateau_bar(audit_dir):
    m = good_manifest()
    rising = history([0.3, 0.45, 0.5, 0.55, 0.6, 0.58, 0.59, 0.6, 0.62, 0.6, 0.59, 0.6], "cap")  # +0.02
    stopped = history([0.3, 0.45, 0.5, 0.55, 0.6, 0.58, 0.59, 0.6, 0.62, 0.6, 0.59, 0.6], "patience")
    write_histories(audit_dir, m, **{"ssinfnet@seed2": rising, "unet": stopped, "sinfnet": None})
    plateau = _by_name(a.audit(m, audit_dir))["fine-tuned to a plateau"]
    assert not plateau.passed
    assert plateau.found == ("7 trainings: 1 stopped on patience, 5 ran to the cap, 1 had no history (largest "
                             "late gain +0.0200, ssinfnet@seed2); still rising: ssinfnet@seed2; too short or no "
                             "history to tell: sinfnet")
    table = a.plateau_table(m, audit_dir).set_index("training")
    assert table.loc["unet", "plateau"] and table.loc["unet", "late_gain"] == 0.02  # patience: plateaued anyway
    assert table.loc["sinfnet", "stop"] == "history missing"
    assert "multi_fcn8s" not in table.index


def test_cross_validation_folds_are_judged_with_the_fine_tunings(audit_dir):
    """The folds chapters 3 and 4 trained (their ``trained`` / ``reused`` folders ``cv/<variant>/fold<k>``)
    count for the plateau bar and the page; a fold still rising fails the bar by its name."""
    from ssinfnet.book.results_page import plateau_markdown

    m = good_manifest()
    m["stages"]["03_single"]["trained"] = ["cv/ssinfnet/fold0", "finetune/sinfnet"]
    m["stages"]["04_multi"]["reused"] = {"cv/multi_ssinfnet/fold1": {"stale": []}}
    assert a.fold_histories(m, audit_dir) == {
        "ssinfnet/fold0": audit_dir / "cv" / "ssinfnet" / "fold0" / "history.csv",
        "multi_ssinfnet/fold1": audit_dir / "cv" / "multi_ssinfnet" / "fold1" / "history.csv"}
    rising = history([0.3, 0.45, 0.5, 0.55, 0.6, 0.58, 0.59, 0.6, 0.62, 0.6, 0.59, 0.6], "cap")  # +0.02
    for key, h in (("ssinfnet/fold0", PLATEAUED), ("multi_ssinfnet/fold1", rising)):
        path = a.fold_histories(m, audit_dir)[key]
        path.parent.mkdir(parents=True)
        h.to_csv(path, index=False)
    trainings = _by_name(a.audit(m, audit_dir))["no collapsed model"]
    assert trainings.passed and trainings.found == ("7 of 8 trainings passed their checks; failed: multi_fcn8s; 2 "
                                                    "cross-validation folds without a recorded health (the run "
                                                    "predates it)")
    plateau = _by_name(a.audit(m, audit_dir))["fine-tuned to a plateau"]
    assert not plateau.passed and plateau.found == (
        "9 trainings (2 of them cross-validation folds): 0 stopped on patience, 9 ran to the cap (largest late gain "
        "+0.0200, multi_ssinfnet/fold1); still rising: multi_ssinfnet/fold1")
    table = a.plateau_table(m, audit_dir).set_index("training")
    assert table.loc["ssinfnet/fold0", "kind"] == "cross-validation fold" and table.loc["sinfnet", "kind"] == \
        "fine-tuning"
    text = "\n".join(plateau_markdown(m, audit_dir))
    assert ("Of the 9 trainings (7 fine-tunings that passed their checks and 2 cross-validation folds), 0 stopped "
            "on patience, 9 ran to the cap.") in text and "1 did not: multi_ssinfnet/fold1." in text
    # a run that recorded its folds' health: a failed fold is a collapsed model and is not asked to plateau
    m["stages"]["04_multi"]["cross_validation_status"] = {"multi_ssinfnet": {"fold1": "failed: flat loss"}}
    m["stages"]["03_single"]["cross_validation_status"] = {"ssinfnet": {"fold0": "ok"}}
    checks = _by_name(a.audit(m, audit_dir))
    assert checks["fine-tuned to a plateau"].passed
    assert "multi_ssinfnet/fold1" not in a.plateau_table(m, audit_dir).training.tolist()
    assert checks["no collapsed model"].found == ("8 of 10 trainings passed their checks; failed: multi_fcn8s, "
                                                  "multi_ssinfnet/fold1") and not checks["no collapsed model"].passed
    m["stages"]["04_multi"]["cross_validation_status"] = {}  # fold1 trained, its health not recorded
    assert _by_name(a.audit(m, audit_dir))["no collapsed model"].found.endswith(
        "; 1 cross-validation fold without a recorded health (the run predates it)")


def test_chapter_4_priors_from_a_failed_fold_fail_the_handoff_bar(audit_dir):
    m = good_manifest()
    m["stages"]["03_single"]["cross_validation_status"] = {"ssinfnet": {"fold0": "ok", "fold1": "failed: flat loss"},
                                                          "unet": {"fold0": "failed: flat loss"}}
    handoff = _by_name(a.audit(m, audit_dir))["later chapters read trained models"]
    assert not handoff.passed and handoff.found.endswith(
        "; chapter 4's priors come from failed folds: ssinfnet/fold1 failed: flat loss")  # unet's folds give none
    m["stages"]["03_single"]["cross_validation_status"]["ssinfnet"]["fold1"] = "ok"
    assert _by_name(a.audit(m, audit_dir))["later chapters read trained models"].passed


def test_a_profile_without_bars_is_checked_for_provenance_trainings_and_verdict(audit_dir):
    m = good_manifest()
    m["profile"] = "smoke"
    names = [c.name for c in a.audit(m, audit_dir)]
    assert names == ["every chapter executed", "one clean commit", "no collapsed model",
                     "later chapters read trained models", "verdict page complete"]


def test_the_published_run_reads_its_own_manifest():
    """The committed cpu run: the audit reads the best model and the commits it recorded."""
    m = json.loads((ROOT / "runs" / "cpu" / "manifest.json").read_text())
    checks = _by_name(a.audit_run_dir(ROOT / "runs" / "cpu"))
    scores = m["stages"]["05_evaluation"]["infnet_single"]
    best = max(scores, key=scores.get)
    assert checks["best single-class model"].found == f"{scores[best]:.4f} ({best})"
    commits = {e["provenance"]["git_commit"] for e in m["stages"].values() if "provenance" in e}
    assert checks["one clean commit"].passed == (len(commits) == 1)
    passed = int(checks["no collapsed model"].found.split(" of ")[0])  # every training that passed has a history
    folds = sum(str(t).startswith("cv/") for st in ("03_single", "04_multi")
                for t in [*m["stages"][st].get("trained", []), *m["stages"][st].get("reused", {})])
    folds_passed = sum(v == "ok" for st in ("03_single", "04_multi")  # runs that record the folds' health count
                       for fs in m["stages"][st].get("cross_validation_status", {}).values() for v in fs.values())
    assert checks["fine-tuned to a plateau"].found.startswith(
        f"{passed - folds_passed + folds} trainings ({folds} of them cross-validation folds): ")
    # what the committed run's 28 fine-tunings and 6 folds say (runs/cpu/{finetune,cv}/*/history.csv)
    plateau = checks["fine-tuned to a plateau"]
    assert plateau.passed and plateau.found == ("34 trainings (6 of them cross-validation folds): 9 stopped on "
                                                "patience, 25 ran to the cap (largest late gain +0.0082, "
                                                "ssinfnet@seed1)")
    if a.reused_trainings(m):  # a resumed run cannot meet the time bar on the sum of its last executions
        assert not checks["book wall time"].passed and "not one pass" in checks["book wall time"].found
    verdict = checks["verdict page complete"]  # the published run's verdict page has a verdict on every row
    n = int(verdict.found.split(" of ")[1].split()[0])
    assert verdict.passed and verdict.found == f"{n} of {n} claims with a verdict" and n >= 15


def test_the_audit_names_a_missing_or_broken_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}/manifest.json: no manifest"):
        a.audit_run_dir(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"manifest.json: not valid JSON"):
        a.audit_run_dir(tmp_path)
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"manifest.json: expected a JSON object, got list"):
        a.audit_run_dir(tmp_path)


def test_the_command_exits_1_on_a_missed_bar_and_2_without_a_manifest(audit_dir, tmp_path, capsys):
    (audit_dir / "manifest.json").write_text(json.dumps(good_manifest()))
    assert main(["audit", "--run-dir", str(audit_dir)]) == 1  # the verdict fixture lacks the FCN8s row
    out = capsys.readouterr().out
    assert "| best single-class model | >= 0.60 test meanDic (Inf-Net protocol) | 0.6120 (ssinfnet) | pass |" in out
    assert out.rstrip().endswith("7 of 8 bars met.")
    assert main(["audit", "--run-dir", str(audit_dir), "--json"]) == 1
    got = json.loads(capsys.readouterr().out)
    assert [c["passed"] for c in got] == [True, True, True, True, True, True, True, False]
    empty = tmp_path / "empty"
    empty.mkdir()
    before = sorted(empty.iterdir())
    assert main(["audit", "--run-dir", str(empty)]) == 2
    assert "no manifest" in capsys.readouterr().err and sorted(empty.iterdir()) == before


def test_the_results_page_says_whether_fine_tuning_plateaued(audit_dir):
    from ssinfnet.book.results_page import plateau_markdown, results_markdown

    m = good_manifest()
    rising = history([0.3, 0.45, 0.5, 0.55, 0.6, 0.58, 0.59, 0.6, 0.62, 0.6, 0.59, 0.6], "cap")
    write_histories(audit_dir, m, **{"unet": rising})
    lines = plateau_markdown(m, audit_dir)
    text = "\n".join(lines)
    assert "Of the 7 fine-tunings that passed their checks, 0 stopped on patience, 7 ran to the cap." in text
    assert "in its last 5 validated epochs; 1 did not: unet." in text
    assert lines[-7:] == ["| unet | 12 | +0.0200 |"] + [f"| {k} | 12 | +0.0050 |" for k in (
        "multi_ssinfnet", "multi_ssinfnet_gt_prior", "sinfnet", "ssinfnet", "ssinfnet@seed1", "ssinfnet@seed2")]
    assert "### Did fine-tuning reach a plateau?" in results_markdown(m, audit_dir)
    assert plateau_markdown(m, None) == [] and "Did fine-tuning" not in results_markdown(m, None)


def test_the_results_page_names_runs_it_cannot_judge_and_claims_nothing_for_them(audit_dir):
    from ssinfnet.book.results_page import plateau_markdown

    m = good_manifest()
    short = history([0.3, 0.4, 0.5], "cap")  # 3 validated epochs: too short for a window of 5
    write_histories(audit_dir, m, **{"unet": short, "sinfnet": None})
    text = "\n".join(plateau_markdown(m, audit_dir))
    assert "0 stopped on patience, 6 ran to the cap, 1 had no history." in text
    assert "none of those that could be judged was still gaining." in text and "every one did" not in text
    assert "Too short or without a history to tell: sinfnet, unet." in text
    assert "| unet |" not in text and "| sinfnet |" not in text  # no gain to show for either
    # nothing judgeable at all: the page says so instead of claiming the runs plateaued
    write_histories(audit_dir, m, **{k: short for k in a.training_histories(m, audit_dir)})
    text = "\n".join(plateau_markdown(m, audit_dir))
    assert "none could be judged." in text and "still gaining" not in text


def test_a_run_without_a_patience_is_counted_apart_and_judged_by_its_late_gain(audit_dir):
    m = good_manifest()
    no_patience = history([0.3, 0.45, 0.5, 0.55, 0.6, 0.58, 0.59, 0.6, 0.62, 0.6, 0.59, 0.6], None)  # +0.02
    write_histories(audit_dir, m, **{"unet": no_patience})
    assert a.stop_counts(a.plateau_table(m, audit_dir)) == "0 stopped on patience, 6 ran to the cap, " \
                                                             "1 ran with no patience set"
    plateau = _by_name(a.audit(m, audit_dir))["fine-tuned to a plateau"]
    assert not plateau.passed and plateau.found.endswith("; still rising: unet")
