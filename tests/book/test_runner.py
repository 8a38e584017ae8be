"""RunContext and the run manifest, notebook selection, data fingerprint (no notebooks executed)."""

import json
from pathlib import Path

import numpy as np
import pytest

from ssinfnet.book import context, runner
from ssinfnet.training import device
from ssinfnet.data.io import DataError
from ssinfnet.data.sources import SOURCES, DataRoot
from ssinfnet.book.context import RunContext, data_fingerprint
from ssinfnet.book.runner import list_notebooks, select_notebooks
from ssinfnet.book.profiles import get_profile


@pytest.fixture
def ctx(tmp_path):
    return RunContext.open("smoke", data_root="synthetic", run_dir=str(tmp_path / "run"), device="cpu",
                           image_size=32)


def test_open(ctx, tmp_path):
    assert ctx.run_dir == (tmp_path / "run").resolve() and ctx.run_dir.is_dir()
    assert ctx.profile.name == "smoke" and ctx.profile.image_size == 32 and ctx.device == "cpu"
    assert ctx.synthetic and ctx.data_label == "synthetic phantoms"
    assert ctx.caption("Loss curves.") == "Loss curves. (synthetic phantoms, profile `smoke`)"
    p = ctx.path("models", "a.pt")
    assert p == ctx.run_dir / "models" / "a.pt" and p.parent.is_dir()
    with pytest.raises(ValueError, match="unknown profile"):
        RunContext.open("huge", data_root="synthetic", run_dir=str(tmp_path / "r2"))


def _complete_root(root: Path) -> Path:
    """A data root whose COVID-SemiSeg has every required folder (one tiny file each; nothing is read)."""
    for req in SOURCES["covid-semiseg"].required:
        (root / req).mkdir(parents=True, exist_ok=True)
        (root / req / "1.png").write_bytes(b"x")
    return root


def test_open_real_root(tmp_path):
    root = _complete_root(tmp_path / "data")
    ctx = RunContext.open("cpu", data_root=str(root), run_dir=str(tmp_path / "run"), device="cpu")
    assert not ctx.synthetic and ctx.data_label == "real data" and ctx.data.path == root.resolve()


def test_open_refuses_an_incomplete_root_before_creating_the_run_folder(tmp_path):
    root = _complete_root(tmp_path / "data")
    gt = root / "COVID-SemiSeg/Dataset/TestingSet/LungInfection-Test/GT"
    (gt / "1.png").unlink()
    gt.rmdir()
    with pytest.raises(DataError, match=r"covid-semiseg is incomplete, missing COVID-SemiSeg/Dataset/TestingSet/"
                                         r"LungInfection-Test/GT \(not found\)"):
        RunContext.open("cpu", data_root=str(root), run_dir=str(tmp_path / "run"), device="cpu")
    with pytest.raises(DataError, match="covid-semiseg not found"):
        RunContext.open("cpu", data_root=str(tmp_path), run_dir=str(tmp_path / "run"), device="cpu")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"run folder .*file exists and is not a folder"):
        RunContext.open("smoke", data_root="synthetic", run_dir=str(tmp_path / "file"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "file"]


def test_record_writes_manifest(ctx):
    art = ctx.path("pretrain", "inpainter.pt")
    art.write_bytes(b"x")
    entry = ctx.record("pretrain", artifacts={"inpainter": art}, wall_time_s=np.float64(1.5), steps=np.int64(3),
                       losses=(np.float32(0.5), 0.25))
    man = json.loads(ctx.manifest_path.read_text())
    for key in ("git_commit", "data_fingerprint", "parameters", "device", "stages", "profile", "data_root"):
        assert key in man, key
    assert man["parameters"]["image_size"] == 32 and man["profile"] == "smoke"
    assert man["data_fingerprint"] == data_fingerprint(ctx.data, 0, ctx.profile)
    assert man["data_fingerprint"].endswith(" (seed 0, 96 px, test 6, train 12, unlabelled 16)")
    assert man["device"].startswith("cpu")
    stage = man["stages"]["pretrain"]
    assert stage == entry
    assert stage["artifacts"] == {"inpainter": "pretrain/inpainter.pt"}  # relative to the run folder
    assert stage["wall_time_s"] == 1.5 and stage["steps"] == 3 and stage["losses"] == [0.5, 0.25]
    assert "updated" in stage
    assert ctx.artifact("pretrain", "inpainter") == art
    assert ctx.artifact("pretrain", "coach") is None and ctx.artifact("nope", "x") is None
    art.unlink()
    assert ctx.artifact("pretrain", "inpainter") is None  # recorded but gone
    assert [p.name for p in ctx.run_dir.iterdir() if p.suffix == ".tmp"] == []


def test_record_keeps_other_stages_and_replaces_own(ctx):
    ctx.record("a", artifacts={"x": ctx.path("x.csv")}, n=1)
    ctx.record("b", n=2)
    ctx.record("a", n=3)
    stages = ctx.manifest()["stages"]
    assert set(stages) == {"a", "b"} and stages["a"]["n"] == 3 and stages["b"]["n"] == 2
    assert stages["a"]["artifacts"] == {}


def test_record_is_atomic(ctx, monkeypatch):
    ctx.record("first", n=1)
    before = ctx.manifest_path.read_text()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(context.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        ctx.record("second", n=2)
    assert ctx.manifest_path.read_text() == before  # the previous manifest is intact and loadable
    assert set(json.loads(before)["stages"]) == {"first"}


def test_git_commit_outside_a_repo(tmp_path):
    assert context.git_commit(tmp_path) == "unknown"


def test_git_commit_is_dirty_for_code_changes_not_for_run_outputs(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "out.txt").write_text("a")
    (tmp_path / "code.py").write_text("a")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    sha = context.git_commit(tmp_path)
    assert len(sha) == 40
    (tmp_path / "runs" / "out.txt").write_text("b")  # a run rewriting its outputs
    assert context.git_commit(tmp_path) == sha
    (tmp_path / "code.py").write_text("b")
    assert context.git_commit(tmp_path) == sha + "-dirty"


def test_data_fingerprint_stable_and_sensitive(tmp_path):
    assert data_fingerprint(DataRoot(None, "x"), seed=3).endswith(" (seed 3)")
    folder = tmp_path / "COVID-SemiSeg" / "Dataset"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"12345")
    root = DataRoot(tmp_path, "parameter")
    fp = data_fingerprint(root)
    assert fp == data_fingerprint(root) and fp.endswith("(1 files)")
    (tmp_path / "unrelated.txt").write_text("not part of a source")
    assert data_fingerprint(root) == fp
    (folder / "a.png").write_bytes(b"123456")
    assert data_fingerprint(root) != fp
    (tmp_path / "iCTCF-HUST19-clinical").mkdir()
    (tmp_path / "iCTCF-HUST19-clinical" / "raw_cf_data.csv").write_text("x")
    assert data_fingerprint(root).endswith("(2 files)")


NB = [Path(n) for n in ("01_data.ipynb", "02_pretrain.ipynb", "03_single.ipynb", "10_stats.ipynb")]


@pytest.mark.parametrize("only, start, expected", [
    (None, None, ["01", "02", "03", "10"]),
    ("3", None, ["03"]),
    ("03", None, ["03"]),
    (None, "2", ["02", "03", "10"]),
    (None, "10", ["10"]),
])
def test_select_notebooks(only, start, expected):
    assert [p.name[:2] for p in select_notebooks(NB, only, start)] == expected


@pytest.mark.parametrize("only, start, message", [
    ("9", None, "--only 9: no notebook numbered 09 (have 01, 02, 03, 10)"),
    (None, "04", "--from 04: no notebook numbered 04"),
])
def test_select_notebooks_bad_numbers(only, start, message):
    with pytest.raises(ValueError) as exc:
        select_notebooks(NB, only, start)
    assert message in str(exc.value)


def test_list_notebooks(tmp_path):
    for name in ("02_b.ipynb", "01_a.ipynb", "scratch.ipynb", "1_x.ipynb", "03_c.md"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in list_notebooks(tmp_path)] == ["01_a.ipynb", "02_b.ipynb"]


def test_device_name():
    assert device.device_name("cpu") == "cpu" and device.device_name("cuda:1") == "cuda:1"
    assert device.device_name("auto") in ("cpu", "cuda")


# ----------------------------------------------------------------------------- run_book checks first

class FakePapermill:
    """Stands in for ``papermill.execute_notebook``: records the call and copies the chapter unexecuted."""

    def __init__(self):
        self.calls = []

    def __call__(self, src, out, parameters, **kwargs):
        self.calls.append((Path(src).name, parameters))
        Path(out).write_bytes(Path(src).read_bytes())


@pytest.fixture
def fake_papermill(monkeypatch):
    import papermill

    fake = FakePapermill()
    monkeypatch.setattr(papermill, "execute_notebook", fake)
    return fake


@pytest.mark.parametrize("kwargs, message", [
    ({"only": "99"}, "--only 99: no notebook numbered 99 (have 01, "),
    ({"start": "42"}, "--from 42: no notebook numbered 42"),
    ({"only": "01", "start": "02"}, "--only 01 and --from 02 exclude each other; give one"),
    ({"profile": "huge"}, "unknown profile 'huge'"),
])
def test_run_book_bad_selection_creates_nothing(tmp_path, fake_papermill, kwargs, message):
    run = tmp_path / "run"
    with pytest.raises(ValueError) as exc:
        runner.run_book(**{"profile": "smoke", "data_root": "synthetic", "run_dir": str(run), **kwargs})
    assert message in str(exc.value)
    assert not run.exists() and fake_papermill.calls == []


def test_run_book_incomplete_root_fails_before_any_chapter(tmp_path, fake_papermill):
    root = tmp_path / "data"
    (root / SOURCES["covid-semiseg"].marker).mkdir(parents=True)  # what `data locate` used to call found
    run = tmp_path / "run"
    with pytest.raises(DataError) as exc:
        runner.run_book("cpu", str(root), run_dir=str(run), progress=False)
    msg = str(exc.value)
    assert msg.startswith(f"data root {root.resolve()}: covid-semiseg is incomplete, missing ")
    assert "COVID-SemiSeg/Dataset/TrainingSet/LungInfection-Train/Doctor-label/Imgs (not found)" in msg
    assert "\n" not in msg
    assert not run.exists() and fake_papermill.calls == []


def test_run_book_runs_with_an_incomplete_optional_source_and_warns(tmp_path, fake_papermill, capsys):
    root = _complete_root(tmp_path / "data")
    (root / "iCTCF-HUST19-clinical").mkdir()  # folder without raw_cf_data.csv: synthetic cohort, as before
    run = runner.run_book("smoke", str(root), only="1", run_dir=str(tmp_path / "run"), progress=False)
    assert run == (tmp_path / "run").resolve()
    assert [c[0] for c in fake_papermill.calls] == ["01_data.ipynb"]
    assert fake_papermill.calls[0][1]["data_root"] == str(root.resolve())
    err = capsys.readouterr().err
    assert err == ("[ssinfnet] warning: ictcf-clinical incomplete (missing: iCTCF-HUST19-clinical/raw_cf_data.csv "
                   "(not found)); optional, the run goes on without it\n")
    assert "notebook:01_data" in json.loads((run / "manifest.json").read_text())["stages"]


def test_each_stage_records_its_own_provenance_and_the_runs_it_reused(ctx, monkeypatch):
    from ssinfnet.training import provenance

    commits = iter(["A" * 40, "B" * 40, "B" * 40])
    monkeypatch.setattr(provenance, "git_state", lambda repo=None: {"git_commit": next(commits), "dirty": False})
    trained_at_a = {"key": {"data": "d1", "code": "c1"},
                    "trained_at": {"git_commit": "A" * 40, "dirty": False, "time": "2026-01-01T00:00:00+00:00"}}
    provenance.note_run(ctx.run_dir / "pretrain" / "single", "trained", trained_at_a)
    provenance.note_run(ctx.run_dir.parent / "other_run", "trained", trained_at_a)  # another run folder
    ctx.record("02_pretraining")
    # chapter 3, executed later at commit B, reloads what commit A trained and trains one model itself
    provenance.note_run(ctx.run_dir / "pretrain" / "single", "reused", trained_at_a)
    provenance.note_run(ctx.run_dir / "finetune" / "unet", "trained", {"key": {}, "trained_at": {}})
    ctx.record("03_single", validation={"unet": 0.5})
    stages = ctx.manifest()["stages"]
    two, three = stages["02_pretraining"], stages["03_single"]
    assert two["provenance"]["git_commit"] == "A" * 40 and three["provenance"]["git_commit"] == "B" * 40
    for entry in (two, three):
        assert entry["provenance"]["dirty"] is False
        assert entry["provenance"]["data_fingerprint"] == data_fingerprint(ctx.data, 0, ctx.profile)
        assert entry["provenance"]["code_fingerprint"] == provenance.code_fingerprint()
        assert entry["provenance"]["time"] == entry["updated"]
    assert two["trained"] == ["pretrain/single"] and two["reused"] == {}
    assert three["trained"] == ["finetune/unet"]
    assert three["reused"] == {"pretrain/single": {"trained_at_commit": "A" * 40, "dirty": False,
                                                   "trained": "2026-01-01T00:00:00+00:00",
                                                   "key": {"data": "d1", "code": "c1"}}}
    assert ctx.manifest()["git_commit"] == "B" * 40  # the top level names the last stage recorded
    # recording chapter 3 again without training anything keeps what it reused
    ctx.record("03_single", validation={"unet": 0.5})
    assert ctx.manifest()["stages"]["03_single"]["reused"] == three["reused"]
    assert set(provenance.take_runs(ctx.run_dir.parent)) == {"other_run"}


def test_stale_reuse_is_written_into_the_stage_entry(ctx):
    from ssinfnet.training import provenance

    record = {"key": {"data": "d1"}, "trained_at": {"git_commit": "A" * 40, "dirty": True, "time": "t"}}
    note = {"differs": ["data d1 -> d2"], "time": "t2", "git_commit": "B", "dirty": False}
    provenance.note_stale(ctx.run_dir / "finetune" / "x", note)
    provenance.note_run(ctx.run_dir / "finetune" / "x", "reused", record)
    entry = ctx.record("03_single")
    assert entry["reused"]["finetune/x"]["stale"] == [note] and entry["reused"]["finetune/x"]["dirty"] is True


def test_synthetic_data_fingerprint_is_keyed_on_the_generator_settings():
    smoke = get_profile("smoke")
    root = DataRoot(None, "synthetic")
    fp = data_fingerprint(root, 0, smoke)
    assert fp.startswith("synthetic-phantoms-") and fp == data_fingerprint(root, 0, smoke)
    assert fp.endswith(" (seed 0, 96 px, test 6, train 12, unlabelled 16)")
    assert data_fingerprint(root, 1, smoke) != fp
    assert data_fingerprint(root, 0, smoke.with_overrides(synthetic_size=128)) != fp
    assert data_fingerprint(root, 0, smoke.with_overrides(synthetic_counts={"train": 1, "test": 6,
                                                                           "unlabelled": 16})) != fp
