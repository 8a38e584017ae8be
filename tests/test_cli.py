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
    root = _data_root(tmp_path)
    res = subprocess.run([sys.executable, "-m", "ssinfnet", "data", "locate", "--data-root", str(root)],
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"data root: {root.resolve()} (parameter)"
    assert lines[1].split() == ["found", "covid-semiseg", str(root.resolve() / "COVID-SemiSeg")]
    assert lines[2].split() == ["missing", "medseg", str(root.resolve() / "medseg")]
    assert lines[3].split() == ["missing", "ictcf-clinical", str(root.resolve() / "iCTCF-HUST19-clinical")]


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
