"""Command line: ``python -m ssinfnet data ...`` output and exit codes (no network)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssinfnet.cli import main

REPO = Path(__file__).resolve().parents[1]


def _data_root(tmp_path: Path) -> Path:
    """A root where only COVID-SemiSeg's marker folder exists."""
    (tmp_path / "COVID-SemiSeg/Dataset/TestingSet/LungInfection-Test/Imgs").mkdir(parents=True)
    return tmp_path


def _env():
    env = {k: v for k, v in os.environ.items() if k != "SSINFNET_DATA"}
    return env


def test_python_m_ssinfnet_data_locate(tmp_path):
    """A root holding only COVID-SemiSeg's marker folder is incomplete, not found: the lines say what is missing."""
    root = _data_root(tmp_path)
    (root / "COVID-SemiSeg/Dataset/TestingSet/LungInfection-Test/Imgs/1.jpg").write_bytes(b"x")
    res = subprocess.run([sys.executable, "-m", "ssinfnet", "data", "locate", "--data-root", str(root)],
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"data root: {root.resolve()} (parameter)"
    assert lines[1].split() == ["incomplete", "covid-semiseg", str(root.resolve() / "COVID-SemiSeg")]
    missing = [line.split(None, 1)[1] for line in lines[2:11]]
    assert all(line.startswith("      missing COVID-SemiSeg/Dataset/") for line in lines[2:11])
    assert "COVID-SemiSeg/Dataset/TrainingSet/LungInfection-Train/Doctor-label/GT (not found)" in missing
    assert "COVID-SemiSeg/Dataset/TestingSet/LungInfection-Test/GT (not found)" in missing
    assert "COVID-SemiSeg/Dataset/TestingSet/MultiClassInfection-Test/GT (not found)" in missing
    assert lines[11].split() == ["missing", "medseg", str(root.resolve() / "medseg")]
    assert lines[12].split() == ["missing", "ictcf-clinical", str(root.resolve() / "iCTCF-HUST19-clinical")]
    assert lines[13] == "a run needs covid-semiseg found; the other sources are optional"
    assert len(lines) == 14


def test_locate_bad_root_exits_2(tmp_path, capsys):
    assert main(["data", "locate", "--data-root", str(tmp_path / "no-such-folder")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data root ") and "no-such-folder (from parameter) is not a folder" in err


def test_locate_synthetic(capsys):
    assert main(["data", "locate", "--data-root", "synthetic"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "data root: embedded synthetic default (parameter = synthetic)"
    assert len(out) == 4 and all(line.split()[0] == "missing" for line in out[1:])


def test_fetch_manual_source_exits_2(tmp_path, capsys):
    assert main(["data", "fetch", "medseg", "--data-root", str(tmp_path)]) == 2
    assert "medseg: no automatic download" in capsys.readouterr().err


def test_fetch_unknown_source_exits_2(tmp_path, capsys):
    assert main(["data", "fetch", "mnist", "--data-root", str(tmp_path)]) == 2
    assert "unknown source 'mnist'" in capsys.readouterr().err


def test_bad_arguments_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--profile", "huge"])
    assert exc.value.code == 2 and "invalid choice: 'huge'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([])


# ----------------------------------------------------------------------------- run, locate, evaluate: user errors

def _complete_root(root: Path) -> Path:
    """COVID-SemiSeg with every required folder (one tiny file each) and an iCTCF folder without its CSV."""
    from ssinfnet.data.sources import SOURCES

    for req in SOURCES["covid-semiseg"].required:
        (root / req).mkdir(parents=True, exist_ok=True)
        (root / req / "1.png").write_bytes(b"x")
    (root / "iCTCF-HUST19-clinical").mkdir()
    return root


def test_locate_found_and_incomplete_optional_source(tmp_path, capsys):
    root = _complete_root(tmp_path)
    assert main(["data", "locate", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["found", "covid-semiseg", str(root.resolve() / "COVID-SemiSeg")]
    assert out[3].split() == ["incomplete", "ictcf-clinical", str(root.resolve() / "iCTCF-HUST19-clinical")]
    assert out[4] == "      missing iCTCF-HUST19-clinical/raw_cf_data.csv (not found)"


@pytest.fixture
def no_notebooks_run(monkeypatch):
    import papermill

    def fail(*args, **kwargs):
        raise AssertionError("no chapter may start")

    monkeypatch.setattr(papermill, "execute_notebook", fail)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_run_incomplete_root_one_line_exit_2_nothing_created(tmp_path, capsys, no_notebooks_run):
    root = _data_root(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["run", "--profile", "cpu", "--data-root", str(root), "--run-dir", str(run)]) == 2
    err = _one_error_line(capsys)
    assert err.startswith(f"error: data root {root.resolve()}: covid-semiseg is incomplete, missing ")
    assert "Doctor-label/Imgs (not found)" in err
    assert not run.exists()
    assert main(["run", "--data-root", str(tmp_path / "typo"), "--run-dir", str(run)]) == 2
    assert "typo (from parameter) is not a folder" in _one_error_line(capsys) and not run.exists()


@pytest.mark.parametrize("args, message", [
    (["--only", "99"], "error: --only 99: no notebook numbered 99 (have 01, "),
    (["--from", "0x"], "error: --from 0x: no notebook numbered 0x"),
    (["--only", "1", "--from", "2"], "error: --only 1 and --from 2 exclude each other; give one"),
])
def test_run_bad_selection_one_line_exit_2_nothing_created(tmp_path, capsys, no_notebooks_run, args, message):
    run = tmp_path / "run"
    assert main(["run", "--data-root", "synthetic", "--run-dir", str(run), *args]) == 2
    assert _one_error_line(capsys).startswith(message)
    assert not run.exists()


def test_run_dir_that_is_a_file(tmp_path, capsys, no_notebooks_run):
    (tmp_path / "run").write_text("x")
    assert main(["run", "--data-root", "synthetic", "--run-dir", str(tmp_path / "run")]) == 2
    assert _one_error_line(capsys).endswith("run exists and is not a folder")


def _grey_pair(tmp_path: Path) -> tuple[Path, Path]:
    from PIL import Image
    import numpy as np

    for name in ("pred", "gt"):
        (tmp_path / name).mkdir()
        mask = np.zeros((8, 8), np.uint8)
        mask[2:5, 2:6] = 255
        Image.fromarray(mask).save(tmp_path / name / "1.png")
    return tmp_path / "pred", tmp_path / "gt"


@pytest.mark.parametrize("extra, message", [
    (["--threshold", "0.3"], "error: --threshold applies to the paper protocol only"),
    (["--count-empty"], "error: --count-empty applies to the paper protocol only"),
    (["--protocol", "paper", "--threshold", "1.5"], "error: --threshold 1.5: must be in [0, 1]"),
    (["--protocol", "paper", "--threshold", "nan"], "error: --threshold nan: must be in [0, 1]"),
])
def test_evaluate_bad_option_values(tmp_path, capsys, extra, message):
    pred, gt = _grey_pair(tmp_path)
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), *extra]) == 2
    assert _one_error_line(capsys).startswith(message)


def test_evaluate_bad_folders(tmp_path, capsys):
    pred, gt = _grey_pair(tmp_path)
    assert main(["evaluate", "--pred", str(gt), "--gt", str(gt)]) == 2
    assert _one_error_line(capsys).startswith(f"error: --gt and --pred are the same folder ({gt})")
    assert main(["evaluate", "--pred", str(tmp_path / "nope"), "--gt", str(gt)]) == 2
    assert _one_error_line(capsys) == f"error: --pred {tmp_path / 'nope'}: no such folder"
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt / "1.png")]) == 2
    assert _one_error_line(capsys) == f"error: --gt {gt / '1.png'}: no such folder"
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--output", str(tmp_path)]) == 2
    assert _one_error_line(capsys) == f"error: --output {tmp_path}: is a folder; give a file name"
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--protocol", "matlab"])
    assert exc.value.code == 2 and "invalid choice: 'matlab'" in capsys.readouterr().err
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 0


def test_evaluate_help_documents_exit_codes():
    res = subprocess.run([sys.executable, "-m", "ssinfnet", "evaluate", "--help"], cwd=REPO, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    assert "exit codes:\n  0  scored" in res.stdout and "\n  1  nothing could be scored" in res.stdout
    assert "\n  2  bad arguments or data" in res.stdout


# ----------------------------------------------------------------------------- predict

@pytest.mark.parametrize("extra,first_words", [
    (["--device", "tpu"], "error: --device 'tpu' is not a device"),
    (["--device", "cpu"], "error: {tmp}/model.pt: not a loadable ssinfnet model file (corrupt, truncated, or "
                          "written by another program; UnpicklingError"),
])
def test_python_m_ssinfnet_predict_refusal_is_one_line(tmp_path, extra, first_words):
    (tmp_path / "model.pt").write_bytes(bytes(range(256)) * 4)  # not a model
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"\x89PNG")
    res = subprocess.run([sys.executable, "-m", "ssinfnet", "predict", "--checkpoint", str(tmp_path / "model.pt"),
                          "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--no-progress",
                          *extra], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert res.stderr.startswith(first_words.format(tmp=tmp_path)) and res.stderr.count("\n") == 1, res.stderr
    assert "weights_only" not in res.stderr and res.stdout == ""
    assert not (tmp_path / "out").exists()


def test_predict_help_names_overwrite_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--overwrite" in out and "Exit codes: 0 some slice predicted, 1 none predicted, 2 refused" in out


def test_a_chapter_that_stops_is_one_line_naming_it_and_its_notebook(tmp_path, capsys, monkeypatch):
    import papermill

    def stale(nb, out, **kwargs):
        raise papermill.PapermillExecutionError(3, 4, "pretrain(...)", "StaleRunError", "run folder x holds a run trained "
                                                "with other data\n", ["Traceback ..."])

    monkeypatch.setattr(papermill, "execute_notebook", stale)
    run = tmp_path / "run"
    assert main(["run", "--data-root", "synthetic", "--run-dir", str(run), "--only", "02"]) == 1
    err = _one_error_line(capsys)
    assert err.startswith("error: chapter 02_pretraining stopped: StaleRunError: run folder x holds a run trained "
                          "with other data (the executed notebook, with the traceback: ")
    assert err.endswith("02_pretraining.ipynb)")


def test_under_torchrun_only_stage_runs(tmp_path, capsys, monkeypatch, no_notebooks_run):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    run = tmp_path / "run"
    assert main(["run", "--data-root", "synthetic", "--run-dir", str(run)]) == 2
    assert _one_error_line(capsys) == ("error: under torchrun (2 processes) only `stage NN` runs; "
                                       "run `python -m ssinfnet run` without torchrun")
    assert not run.exists()


def test_stage_names_the_conditional_artifacts_it_did_not_write(tmp_path, capsys, monkeypatch):
    """Chapter 5 writes its hand-off maps only from models that passed their training checks; the stage
    command lists what it wrote and says which of them it did not write, and when it would."""
    from ssinfnet.book import artifacts, stages

    def evaluation_handing_on_single_only(key, ctx, progress=True):
        path = ctx.path("predictions", "test_ssinfnet.npz")
        path.write_bytes(b"x")
        artifacts.record(ctx, "05_evaluation", {"test_predictions": path})

    monkeypatch.setattr(stages, "run_stage", evaluation_handing_on_single_only)
    assert main(["stage", "05", "--data-root", "synthetic", "--run-dir", str(tmp_path / "run"), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].split() == ["test_predictions", "predictions/test_ssinfnet.npz"]
    assert lines[-1].split(None, 1) == ["test_class_maps", "not written (only when a multi-class InfNet-family "
                                        "model other than the oracle passed its training checks)"]


def test_stage_passes_fit_workers_to_the_run_context_and_refuses_a_bad_count(tmp_path, capsys, monkeypatch):
    from ssinfnet.book import stages

    seen = {}
    monkeypatch.setattr(stages, "run_stage", lambda key, ctx, progress=True: seen.update(workers=ctx.profile.fit_workers))
    run = tmp_path / "run"
    assert main(["stage", "03", "--data-root", "synthetic", "--run-dir", str(run), "--device", "cpu",
                 "--fit-workers", "2"]) == 0
    assert seen == {"workers": 2}
    assert main(["stage", "03", "--data-root", "synthetic", "--run-dir", str(run), "--device", "cpu"]) == 0
    assert seen == {"workers": 1}  # the smoke profile's
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(["stage", "03", "--data-root", "synthetic", "--run-dir", str(tmp_path / "other"), "--fit-workers", "0"])
    assert stop.value.code == 2 and "--fit-workers: must be an integer >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
