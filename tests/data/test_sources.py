"""Source registry, data-root resolution, safe archive extraction and fetching (no network: fake openers)."""

import dataclasses
import io
import shutil
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import pytest

from ssinfnet.data import sources
from ssinfnet.data.io import DataError
from ssinfnet.data.semiseg import read_semiseg
from ssinfnet.data.sources import (ENV_VAR, RUN_REQUIRES, SOURCES, DataRoot, check_source, fetch, get_source, locate,
                                   resolve_data_root, safe_extract, sha256_of, validate_data_root)

from .conftest import FAKE_TEST, FAKE_TRAIN, POOL, SEMISEG, TEST, TRAIN, real_data_root, write_semiseg_tree

SHA = "fb3a03b5b2f70642fbf2a12cde9e5c41b5ebd28e"


# ----------------------------------------------------------------------------- registry

def test_registry_is_complete():
    assert set(SOURCES) == {"covid-semiseg", "medseg", "ictcf-clinical"}
    for name, s in SOURCES.items():
        assert s.name == name and s.url.startswith("https://") and s.version and s.licence and s.citation
        assert s.marker.startswith(s.folder + "/")
    assert SHA in SOURCES["covid-semiseg"].archive_url


def test_get_source_unknown_lists_names():
    assert get_source("medseg").folder == "medseg"
    with pytest.raises(ValueError, match="unknown source 'mnist'; known sources: covid-semiseg, medseg, ictcf-clinical"):
        get_source("mnist")


# ----------------------------------------------------------------------------- resolution order

@pytest.fixture
def no_project_data(tmp_path, monkeypatch):
    empty = tmp_path / "project-data"
    empty.mkdir()
    monkeypatch.setattr(sources, "PROJECT_DATA", empty)
    return empty


def test_explicit_beats_environment(tmp_path, no_project_data):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    got = resolve_data_root(a, env={ENV_VAR: str(b)})
    assert got == DataRoot(a.resolve(), "parameter") and not got.synthetic
    assert resolve_data_root(None, env={ENV_VAR: str(b)}) == DataRoot(b.resolve(), f"environment {ENV_VAR}")
    assert resolve_data_root("", env={ENV_VAR: str(b)}).path == b.resolve()  # empty parameter = not given


def test_environment_read_from_os_environ(tmp_path, monkeypatch, no_project_data):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert resolve_data_root().path == tmp_path.resolve()


def test_project_data_then_synthetic(tmp_path, monkeypatch, no_project_data):
    assert resolve_data_root(None, env={}) == DataRoot(None, "no data root found")
    assert resolve_data_root(None, env={ENV_VAR: ""}).synthetic
    (no_project_data / "iCTCF-HUST19-clinical").mkdir()
    (no_project_data / "iCTCF-HUST19-clinical" / "raw_cf_data.csv").write_text("x")
    got = resolve_data_root(None, env={})
    assert got == DataRoot(no_project_data, "project data/")


def test_synthetic_keyword(tmp_path, no_project_data):
    got = resolve_data_root("synthetic", env={ENV_VAR: str(tmp_path)})
    assert got.synthetic and got.how == "parameter = synthetic"
    assert "embedded synthetic default" in got.describe()
    got = resolve_data_root(None, env={ENV_VAR: "synthetic"})
    assert got.synthetic and got.how == f"environment {ENV_VAR} = synthetic"


def test_nonexistent_root_raises(tmp_path, no_project_data):
    with pytest.raises(DataError, match=r"data root .*typo \(from parameter\) is not a folder"):
        resolve_data_root(tmp_path / "typo", env={})
    with pytest.raises(DataError, match=rf"\(from environment {ENV_VAR}\) is not a folder"):
        resolve_data_root(None, env={ENV_VAR: str(tmp_path / "typo")})
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is not a folder"):
        resolve_data_root(tmp_path / "file", env={})


def test_locate_rows(tmp_path):
    write_semiseg_tree(tmp_path)
    root = DataRoot(tmp_path, "parameter")
    rows = {r["source"]: r for r in locate(root)}
    assert set(rows) == set(SOURCES)
    assert rows["covid-semiseg"]["found"] and rows["covid-semiseg"]["path"] == str(tmp_path / "COVID-SemiSeg")
    assert rows["covid-semiseg"]["state"] == "found" and rows["covid-semiseg"]["missing"] == []
    assert not rows["medseg"]["found"] and not rows["ictcf-clinical"]["found"]
    assert rows["medseg"]["state"] == rows["ictcf-clinical"]["state"] == "missing"
    assert root.has("covid-semiseg") and not root.has("medseg")
    assert all(r["path"] is None and not r["found"] and r["state"] == "missing" for r in locate(DataRoot(None, "x")))


# ----------------------------------------------------------------------------- layout checks

SEMISEG_REQUIRED = {  # what ssinfnet.data.semiseg reads (written out, not taken from the registry): subset
    "TrainingSet/LungInfection-Train/Doctor-label/Imgs": "train",
    "TrainingSet/LungInfection-Train/Doctor-label/GT": "train",
    "TrainingSet/LungInfection-Train/Doctor-label/Edge": "train",
    "TrainingSet/MultiClassInfection-Train/GT": "train",
    "TrainingSet/MultiClassInfection-Train/Prior": "train",
    "TestingSet/LungInfection-Test/Imgs": "test",
    "TestingSet/LungInfection-Test/GT": "test",
    "TestingSet/MultiClassInfection-Test/GT": "test",
    "TrainingSet/LungInfection-Train/Pseudo-label/Imgs": "unlabelled",
    "TrainingSet/LungInfection-Train/Pseudo-label/GT": "unlabelled",
}


def test_required_folders_are_exactly_what_the_reader_needs(tmp_path):
    """Each required folder, moved away, makes the source incomplete (naming it) AND makes the reader of
    its subset fail; folders of the release that no reader opens are not required."""
    root = write_semiseg_tree(tmp_path)
    data = DataRoot(root, "parameter")
    assert check_source(data, "covid-semiseg").state == "found"
    assert sorted(r.rstrip("/") for r in SOURCES["covid-semiseg"].required) == \
        sorted(f"{SEMISEG}/{f}" for f in SEMISEG_REQUIRED)
    for rel in SEMISEG_REQUIRED:
        folder = root / SEMISEG / rel
        folder.rename(tmp_path / "away")
        try:
            st = check_source(data, "covid-semiseg")
            assert st.state == "incomplete" and st.missing == (f"{SEMISEG}/{rel} (not found)",), rel
            with pytest.raises(DataError):
                read_semiseg(root, SEMISEG_REQUIRED[rel])
        finally:
            (tmp_path / "away").rename(folder)
    shutil.rmtree(root / SEMISEG / "TrainingSet/MultiClassInfection-Train/Imgs")  # copies, never read
    assert check_source(data, "covid-semiseg").state == "found"
    assert len(read_semiseg(root, "train")) == len(FAKE_TRAIN)


def test_check_source_states_and_what_is_missing(tmp_path):
    data = DataRoot(tmp_path, "parameter")
    assert [check_source(data, n).state for n in SOURCES] == ["missing"] * 3
    assert check_source(data, "medseg").path == tmp_path / "medseg"
    marker = tmp_path / SOURCES["covid-semiseg"].marker
    marker.mkdir(parents=True)  # the marker alone: what `data locate` used to call "found"
    (marker / "3.jpg").write_bytes(b"x")
    st = check_source(data, "covid-semiseg")
    assert st.state == "incomplete" and len(st.missing) == 9
    assert f"{TRAIN}/GT (not found)" in st.missing and f"{TEST}/GT (not found)" in st.missing
    assert st.describe().startswith(f"covid-semiseg incomplete (missing: {TRAIN}/Imgs (not found), ")
    assert st.describe().endswith(", and 3 more)")

    root = write_semiseg_tree(tmp_path / "tree")
    tree = DataRoot(root, "parameter")
    for f in (root / TEST / "GT").iterdir():
        f.unlink()  # an empty GT folder
    (root / POOL / "GT" / f"{'Data-1_radiopaedia_org_x_3'}.png").unlink()  # one pseudo label lost
    (root / TRAIN / "GT" / "notes.txt").write_text("not an image")
    st = check_source(tree, "covid-semiseg")
    assert st.state == "incomplete"
    assert st.missing == (f"{TEST}/GT (empty: no image files)",
                          f"{POOL}/GT (no file for 1 of 3 images: Data-1_radiopaedia_org_x_3)")

    clinical = tmp_path / "iCTCF-HUST19-clinical"
    clinical.mkdir()
    (clinical / "cleaned_cf_data.csv").write_text("a,b\n1,2\n")  # the other table, not the one read
    st = check_source(data, "ictcf-clinical")
    assert (st.state, st.missing) == ("incomplete", ("iCTCF-HUST19-clinical/raw_cf_data.csv (not found)",))
    (clinical / "raw_cf_data.csv").write_text("")
    assert check_source(data, "ictcf-clinical").missing == ("iCTCF-HUST19-clinical/raw_cf_data.csv (empty file)",)
    (clinical / "raw_cf_data.csv").write_text("Age\n1\n")
    assert check_source(data, "ictcf-clinical").state == "found"

    (tmp_path / "medseg").mkdir()
    (tmp_path / "medseg" / "tr_im.nii").write_bytes(b"x")  # uncompressed NIfTI is read too
    st = check_source(data, "medseg")
    assert st.missing == ("medseg/tr_mask.nii.gz or medseg/tr_mask.nii (not found)",)
    (tmp_path / "medseg" / "tr_mask.nii.gz").write_bytes(b"x")
    assert check_source(data, "medseg").state == "found"


def test_validate_data_root(tmp_path):
    assert RUN_REQUIRES == ("covid-semiseg",)
    statuses = validate_data_root(DataRoot(None, "embedded default"))  # the default is always complete
    assert [s.state for s in statuses] == ["missing"] * 3
    with pytest.raises(DataError) as exc:
        validate_data_root(DataRoot(tmp_path, "parameter"))
    assert str(exc.value) == (f"data root {tmp_path}: covid-semiseg not found (expected {tmp_path}/COVID-SemiSeg, "
                              f"see `python -m ssinfnet data locate`; `--data-root synthetic` runs on phantoms)")
    root = write_semiseg_tree(tmp_path / "tree")
    shutil.rmtree(root / TRAIN / "Edge")
    shutil.rmtree(root / TEST / "GT")
    with pytest.raises(DataError) as exc:
        validate_data_root(DataRoot(root, "parameter"))
    assert str(exc.value) == (f"data root {root}: covid-semiseg is incomplete, missing {TRAIN}/Edge (not found), "
                              f"{TEST}/GT (not found) (see `python -m ssinfnet data locate`)")
    assert "\n" not in str(exc.value)
    (root / TEST / "GT").mkdir()
    (root / TRAIN / "Edge").mkdir()
    write_semiseg_tree(root)
    (root / "iCTCF-HUST19-clinical").mkdir()  # an optional source, incomplete: reported, not refused
    got = {s.source: s.state for s in validate_data_root(DataRoot(root, "parameter"))}
    assert got == {"covid-semiseg": "found", "medseg": "missing", "ictcf-clinical": "incomplete"}


@pytest.mark.skipif(real_data_root() is None, reason="real data not found (set SSINFNET_DATA)")
def test_real_data_root_is_complete():
    data = DataRoot(real_data_root(), "parameter")
    assert check_source(data, "covid-semiseg").state == "found"
    assert check_source(data, "ictcf-clinical").state == "found"
    assert [s.source for s in validate_data_root(data)] == list(SOURCES)


# ----------------------------------------------------------------------------- safe_extract

def _zip(path: Path, members: dict) -> Path:
    """members: name -> bytes, or ("link", target) for a symlink member."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            if isinstance(data, tuple):
                info = zipfile.ZipInfo(name)
                info.external_attr = 0o120777 << 16  # S_IFLNK
                zf.writestr(info, data[1])
            else:
                zf.writestr(zipfile.ZipInfo(name), data)
    return path


def _tar(path: Path, members: dict) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, tuple):
                info.type, info.linkname = (tarfile.SYMTYPE if data[0] == "link" else tarfile.LNKTYPE), data[1]
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


MALICIOUS = {
    "dotdot": {"top/ok.txt": b"ok", "top/../../evil.txt": b"evil"},
    "absolute": {"top/ok.txt": b"ok", "/tmp/ssinfnet-abs-evil.txt": b"evil"},
    "link-up": {"top/ok.txt": b"ok", "top/a/link": ("link", "../../../outside")},
    "link-absolute": {"top/ok.txt": b"ok", "top/link": ("link", "/etc/passwd")},
}


@pytest.mark.parametrize("kind", ["zip", "tar"])
@pytest.mark.parametrize("case", list(MALICIOUS))
def test_safe_extract_refuses_and_writes_nothing(tmp_path, kind, case):
    archive = (_zip if kind == "zip" else _tar)(tmp_path / f"bad.{kind}", MALICIOUS[case])
    dest = tmp_path / "out" / "dest"
    with pytest.raises(DataError, match="refusing") as exc:
        safe_extract(archive, dest)
    assert str(archive) in str(exc.value)
    assert not (tmp_path / "out").exists()  # nothing written, not even the good member
    assert not Path("/tmp/ssinfnet-abs-evil.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]


def test_tar_hardlink_up_refused(tmp_path):
    archive = _tar(tmp_path / "h.tar", {"top/ok.txt": b"ok", "top/h": ("hard", "../../x")})
    with pytest.raises(DataError, match="refusing link"):
        safe_extract(archive, tmp_path / "dest")


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_safe_extract_good_archive_strips_top_and_keeps_prefix(tmp_path, kind):
    members = {"Inf-Net-abc/README.md": b"readme", "Inf-Net-abc/Dataset/a/x.txt": b"x",
               "Inf-Net-abc/Dataset/b.txt": b"b", "Inf-Net-abc/Code/c.py": b"c",
               "Inf-Net-abc/Dataset/a/link": ("link", "x.txt")}  # a link staying inside: harmless
    archive = (_zip if kind == "zip" else _tar)(tmp_path / f"good.{kind}", members)
    written = safe_extract(archive, tmp_path / "dest", prefix="Dataset/")
    dest = (tmp_path / "dest").resolve()
    assert sorted(written) == sorted([dest / "Dataset/a/x.txt", dest / "Dataset/b.txt"])
    assert (dest / "Dataset/a/x.txt").read_bytes() == b"x"
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() or p.is_symlink())
    assert files == ["Dataset/a/x.txt", "Dataset/b.txt"]  # links are never created
    everything = safe_extract(archive, tmp_path / "all")
    assert len(everything) == 4 and (tmp_path / "all" / "Code" / "c.py").read_bytes() == b"c"


def test_safe_extract_not_an_archive(tmp_path):
    (tmp_path / "x.zip").write_text("plain text")
    with pytest.raises(DataError, match="not a zip or tar archive"):
        safe_extract(tmp_path / "x.zip", tmp_path / "dest")


# ----------------------------------------------------------------------------- fetch

def _github_zip(tmp_path: Path) -> Path:
    """A zip shaped like GitHub's archive of Inf-Net: Inf-Net-<sha>/{README.md,Code/...,Dataset/...}."""
    tree = write_semiseg_tree(tmp_path / "tree") / "COVID-SemiSeg"
    archive = tmp_path / "inf-net.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"Inf-Net-{SHA}/", b"")
        zf.writestr(f"Inf-Net-{SHA}/README.md", b"Inf-Net")
        zf.writestr(f"Inf-Net-{SHA}/Code/train.py", b"print()")
        for p in sorted(tree.rglob("*")):
            if p.is_file():
                zf.write(p, f"Inf-Net-{SHA}/{p.relative_to(tree)}")
    return archive


class FakeOpener:
    def __init__(self, archive: Path | None = None, error: Exception | None = None):
        self.archive, self.error, self.calls = archive, error, []

    def __call__(self, url, timeout):
        self.calls.append((url, timeout))
        if self.error is not None:
            raise self.error
        return open(self.archive, "rb")


def test_fetch_puts_data_in_place(tmp_path):
    opener = FakeOpener(_github_zip(tmp_path))
    root = tmp_path / "data"
    target = fetch("covid-semiseg", root, timeout=5, opener=opener)
    assert target == root / "COVID-SemiSeg"
    assert opener.calls == [(SOURCES["covid-semiseg"].archive_url, 5)]
    assert sorted(p.name for p in root.iterdir()) == ["COVID-SemiSeg"]  # no temporary folder left
    assert sorted(p.name for p in target.iterdir()) == ["Dataset"]  # README and Code not copied
    assert [s.slice_id for s in read_semiseg(root, "test")] == list(FAKE_TEST)
    assert len(read_semiseg(root, "train")) == len(FAKE_TRAIN)
    assert DataRoot(root, "parameter").has("covid-semiseg")
    again = FakeOpener(error=AssertionError("must not download again"))
    assert fetch("covid-semiseg", root, opener=again) == target and again.calls == []


@pytest.mark.parametrize("error", [urllib.error.URLError("[Errno -3] Temporary failure in name resolution"),
                                   TimeoutError("timed out")])
def test_fetch_offline(tmp_path, error):
    root = tmp_path / "data"
    with pytest.raises(DataError) as exc:
        fetch("covid-semiseg", root, opener=FakeOpener(error=error))
    msg = str(exc.value)
    assert "could not download" in msg and "offline" in msg and str(root / "COVID-SemiSeg") in msg
    assert list(root.iterdir()) == []  # no partial data, no temporary folder


def test_fetch_checksum(tmp_path, monkeypatch):
    archive = _github_zip(tmp_path)
    src = SOURCES["covid-semiseg"]
    monkeypatch.setitem(SOURCES, "covid-semiseg", dataclasses.replace(src, sha256="0" * 64))
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch("covid-semiseg", tmp_path / "d1", opener=FakeOpener(archive))
    assert not (tmp_path / "d1" / "COVID-SemiSeg").exists()
    monkeypatch.setitem(SOURCES, "covid-semiseg", dataclasses.replace(src, sha256=sha256_of(archive)))
    assert fetch("covid-semiseg", tmp_path / "d2", opener=FakeOpener(archive)).is_dir()


def test_fetch_wrong_layout_and_manual_sources(tmp_path):
    archive = _zip(tmp_path / "x.zip", {f"Inf-Net-{SHA}/README.md": b"no data here"})
    with pytest.raises(DataError, match="did not contain the expected layout"):
        fetch("covid-semiseg", tmp_path / "data", opener=FakeOpener(archive))
    assert not (tmp_path / "data" / "COVID-SemiSeg").exists()
    with pytest.raises(DataError, match="medseg: no automatic download; get it from https://medicalsegmentation"):
        fetch("medseg", tmp_path / "data", opener=FakeOpener(error=AssertionError("no download")))


def test_sha256_of(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_of(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_fetch_refuses_a_folder_with_its_marker_but_parts_missing(tmp_path):
    """The marker alone used to count as "ready"; now every required folder must be there."""
    root = write_semiseg_tree(tmp_path)
    shutil.rmtree(root / TRAIN / "GT")
    with pytest.raises(DataError, match=rf"COVID-SemiSeg exists but is incomplete \(missing: {TRAIN}/GT \(not found\)"):
        fetch("covid-semiseg", root, opener=FakeOpener(error=AssertionError("no download expected")))


def test_fetch_refuses_an_incomplete_existing_folder(tmp_path):
    from ssinfnet.data.io import DataError
    from ssinfnet.data.sources import fetch

    (tmp_path / "COVID-SemiSeg" / "Dataset").mkdir(parents=True)

    def opener(*args, **kwargs):  # must never be called
        raise AssertionError("no download expected")

    with pytest.raises(DataError, match="incomplete"):
        fetch("covid-semiseg", tmp_path, opener=opener)
