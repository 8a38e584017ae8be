"""The source registry: where each public dataset comes from, and where it is on this machine.

Resolution order of the data root (:func:`resolve_data_root`):
explicit parameter -> environment variable ``SSINFNET_DATA`` -> the project's ``data/`` folder ->
the embedded synthetic default. The word ``synthetic`` (as parameter or variable) asks for the
embedded default explicitly.

Each source declares the paths a reader needs (:attr:`Source.required`); :func:`check_source` calls a
source ``found`` (all there), ``incomplete`` (its folder exists, parts are missing or empty) or
``missing`` (no folder). A run on real data needs :data:`RUN_REQUIRES` complete
(:func:`validate_data_root`); the other sources are optional and the book runs without them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .io import IMAGE_SUFFIXES, DataError

ENV_VAR = "SSINFNET_DATA"
SYNTHETIC = "synthetic"
PROJECT_DATA = Path(__file__).resolve().parents[2] / "data"


@dataclass(frozen=True)
class Source:
    """One public dataset: provenance and the folder it occupies below a data root."""

    name: str
    title: str
    url: str
    version: str
    licence: str
    citation: str
    folder: str                      # relative to the data root
    marker: str                      # relative path whose presence means "found"
    archive_url: str | None = None   # what `data fetch` downloads; None: manual download only
    sha256: str | None = None        # checksum of the archive, when known
    archive_prefix: str = ""         # member prefix inside the archive to keep
    notes: str = ""
    layout: dict = field(default_factory=dict)
    # What the readers need, relative to the data root: a folder (ending "/") must hold at least one
    # image file, a file must be non-empty; "a|b" accepts either path.
    required: tuple[str, ...] = ()
    # Folders read together: every image of the first must have a file of the same stem in the others.
    paired: tuple[tuple[str, ...], ...] = ()


_DS = "COVID-SemiSeg/Dataset/"
_DOCTOR = _DS + "TrainingSet/LungInfection-Train/Doctor-label/"
_MULTI_TRAIN = _DS + "TrainingSet/MultiClassInfection-Train/"
_POOL = _DS + "TrainingSet/LungInfection-Train/Pseudo-label/"
_TEST = _DS + "TestingSet/LungInfection-Test/"
_MULTI_TEST = _DS + "TestingSet/MultiClassInfection-Test/"

SOURCES: dict[str, Source] = {
    "covid-semiseg": Source(
        name="covid-semiseg",
        title="COVID-SemiSeg (Inf-Net release of MedSeg COVID-19 CT slices)",
        url="https://github.com/DengPingFan/Inf-Net",
        version="commit fb3a03b5b2f70642fbf2a12cde9e5c41b5ebd28e (2020-05-12; Dataset/ deleted upstream later)",
        licence="non-commercial use only (Inf-Net README, section 9); code MIT",
        citation="Fan D.-P. et al., Inf-Net: Automatic COVID-19 Lung Infection Segmentation from CT Images, "
                 "IEEE TMI 39(8), 2020",
        folder="COVID-SemiSeg",
        marker="COVID-SemiSeg/Dataset/TestingSet/LungInfection-Test/Imgs",
        archive_url="https://github.com/DengPingFan/Inf-Net/archive/fb3a03b5b2f70642fbf2a12cde9e5c41b5ebd28e.zip",
        sha256=None,  # GitHub archives are generated on demand and not byte-stable: verified by file count
        archive_prefix="Dataset/",
        notes="50 labelled train, 48 test, 1,600 unlabelled slices; 8-bit crops, no HU, no patient ids",
        layout={"train": "Dataset/TrainingSet/LungInfection-Train/Doctor-label/{Imgs,GT,Edge}",
                "multi_train": "Dataset/TrainingSet/MultiClassInfection-Train/{Imgs,GT,Prior}",
                "unlabelled": "Dataset/TrainingSet/LungInfection-Train/Pseudo-label/{Imgs,GT,Edge}",
                "test": "Dataset/TestingSet/LungInfection-Test/{Imgs,GT}",
                "multi_test": "Dataset/TestingSet/MultiClassInfection-Test/{Imgs,GT,GT-1,GT-2}"},
        # what ssinfnet.data.semiseg reads; MultiClass*/Imgs (copies), GT-1/GT-2 and the pseudo
        # labels' Edge are in the release but never read, so a root without them is complete
        required=tuple(_DOCTOR + f for f in ("Imgs/", "GT/", "Edge/"))
        + (_MULTI_TRAIN + "GT/", _MULTI_TRAIN + "Prior/", _TEST + "Imgs/", _TEST + "GT/", _MULTI_TEST + "GT/",
           _POOL + "Imgs/", _POOL + "GT/"),
        paired=((_DOCTOR + "Imgs/", _DOCTOR + "GT/", _DOCTOR + "Edge/", _MULTI_TRAIN + "GT/", _MULTI_TRAIN + "Prior/"),
                (_TEST + "Imgs/", _TEST + "GT/", _MULTI_TEST + "GT/"),
                (_POOL + "Imgs/", _POOL + "GT/")),
    ),
    "medseg": Source(
        name="medseg",
        title="MedSeg COVID-19 CT segmentation dataset (NIfTI: tr_im/tr_mask 100 slices, rp_im/rp_msk 9 volumes)",
        url="https://medicalsegmentation.com/covid19/",
        version="accessed 2020-04-11 (as used by Inf-Net and SSInfNet)",
        licence="as stated by MedSeg (free for research; check the site)",
        citation="MedSeg, COVID-19 CT segmentation dataset, 2020",
        folder="medseg",
        marker="medseg/tr_im.nii.gz",
        notes="labels 1 GGO, 2 consolidation, 3 pleural effusion; HU values; manual download",
        layout={"slices": "medseg/tr_im.nii.gz + tr_mask.nii.gz",
                "volumes": "medseg/rp_im/{1..9}.nii.gz + rp_msk/{1..9}.nii.gz"},
        required=("medseg/tr_im.nii.gz|medseg/tr_im.nii", "medseg/tr_mask.nii.gz|medseg/tr_mask.nii"),
    ),
    "ictcf-clinical": Source(
        name="ictcf-clinical",
        title="iCTCF / HUST-19 per-patient clinical table (1,521 patients)",
        url="https://ngdc.cncb.ac.cn/ictcf/",
        version="table as scraped in radadjoneva/Discovery-InterpDNN-Covid19 @ 4e6f35f (2024-10-13)",
        licence="not stated by the source; cite Ning et al. 2020",
        citation="Ning W. et al., Open resource of clinical data from patients with pneumonia for the "
                 "prediction of COVID-19 outcomes via deep learning, Nat Biomed Eng 4, 2020",
        folder="iCTCF-HUST19-clinical",
        marker="iCTCF-HUST19-clinical/raw_cf_data.csv",
        notes="clinical table only; CT images (per-patient folders) are a separate manual download",
        layout={"clinical": "iCTCF-HUST19-clinical/raw_cf_data.csv",
                "images": "ictcf-images/Patient <N>/*.jpg (optional)"},
        required=("iCTCF-HUST19-clinical/raw_cf_data.csv",),
    ),
}


def get_source(name: str) -> Source:
    """Look up a source by name; the error lists the known names."""
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown source {name!r}; known sources: {', '.join(SOURCES)}") from None


@dataclass(frozen=True)
class DataRoot:
    """A resolved data root: ``path`` is None for the embedded synthetic default."""

    path: Path | None
    how: str  # "parameter", "environment", "project data/", "embedded default"

    @property
    def synthetic(self) -> bool:
        return self.path is None

    def has(self, source: str) -> bool:
        """Whether the marker of ``source`` is present below this root (the source may still be
        incomplete: :func:`check_source` says)."""
        return self.path is not None and (self.path / get_source(source).marker).exists()

    def describe(self) -> str:
        if self.synthetic:
            return f"embedded synthetic default ({self.how})"
        return f"{self.path} ({self.how})"


def resolve_data_root(explicit: str | os.PathLike | None = None, env: dict | None = None) -> DataRoot:
    """Resolve the data root: parameter -> ``SSINFNET_DATA`` -> ``data/`` -> embedded default.

    A given root that does not exist is an error (a typo must not silently fall back to phantoms).
    """
    env = os.environ if env is None else env
    for value, how in ((explicit, "parameter"), (env.get(ENV_VAR) or None, f"environment {ENV_VAR}")):
        if value is None or str(value) == "":
            continue
        if str(value) == SYNTHETIC:
            return DataRoot(None, f"{how} = synthetic")
        path = Path(value).expanduser()
        if not path.is_dir():
            raise DataError(f"data root {path} (from {how}) is not a folder")
        return DataRoot(path.resolve(), how)
    if any(PROJECT_DATA.joinpath(s.marker).exists() for s in SOURCES.values()):
        return DataRoot(PROJECT_DATA, "project data/")
    return DataRoot(None, "no data root found")


#: Sources a run on a real data root needs complete; the others are optional (chapters 01 and 07 use the
#: synthetic clinical cohort when the iCTCF table is absent, and no chapter reads MedSeg).
RUN_REQUIRES = ("covid-semiseg",)

FOUND, INCOMPLETE, MISSING = "found", "incomplete", "missing"


@dataclass(frozen=True)
class SourceStatus:
    """What :func:`check_source` found: ``state`` is "found", "incomplete" or "missing"; ``missing``
    lists the absent parts relative to the data root, each with its reason ("not found", "empty",
    "no file for 2 of 50 images: 12, 15")."""

    source: str
    state: str
    path: Path | None
    missing: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line: "covid-semiseg incomplete (missing: ...)" or "covid-semiseg found"."""
        if self.state == INCOMPLETE:
            return f"{self.source} incomplete (missing: {_short_list(self.missing)})"
        return f"{self.source} {self.state}"


def check_source(root: DataRoot, name: str) -> SourceStatus:
    """Check one source's folder below ``root`` against its declared layout (:attr:`Source.required`,
    :attr:`Source.paired`). Cheap: lists folders, reads no image. On the embedded default every source
    is "missing" (the default needs none)."""
    src = get_source(name)
    if root.path is None:
        return SourceStatus(name, MISSING, None)
    folder = root.path / src.folder
    if not folder.is_dir():
        return SourceStatus(name, MISSING, folder)
    problems = []
    stems: dict[str, dict[str, str] | None] = {}
    for req in src.required:
        problem = _check_path(root.path, req, stems)
        if problem:
            problems.append(problem)
    for first, *others in src.paired:
        if stems.get(first) is None:
            continue  # already reported as missing or empty
        images = list(stems[first])
        for other in others:
            have = stems.get(other)
            if have is None:
                continue
            lacking = [st for st in images if st not in have]
            if lacking:
                problems.append(f"{other.rstrip('/')} (no file for {len(lacking)} of {len(images)} images: "
                                f"{_short_list(lacking, 3)})")
    return SourceStatus(name, INCOMPLETE if problems else FOUND, folder, tuple(problems))


def _check_path(root: Path, req: str, stems: dict) -> str | None:
    """The problem with one required path (None when fine); records image stems of folders in ``stems``."""
    alternatives = req.split("|")
    if req.endswith("/"):
        folder = root / req
        if not folder.is_dir():
            stems[req] = None
            return f"{req.rstrip('/')} (not found)"
        names = {p.stem: p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}
        stems[req] = names or None
        return None if names else f"{req.rstrip('/')} (empty: no image files)"
    for alt in alternatives:
        if (root / alt).is_file():
            return None if (root / alt).stat().st_size > 0 else f"{alt} (empty file)"
    return f"{' or '.join(alternatives)} (not found)"


def _short_list(items, n: int = 6) -> str:
    items = list(items)
    more = f", and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(str(i) for i in items[:n]) + more


def locate(root: DataRoot) -> list[dict]:
    """What was found where: one row per registered source with ``state`` ("found", "incomplete",
    "missing"), ``found`` (state == "found"), ``missing`` (absent parts) and ``path``."""
    rows = []
    for s in SOURCES.values():
        status = check_source(root, s.name)
        rows.append({"source": s.name, "state": status.state, "found": status.state == FOUND,
                     "missing": list(status.missing),
                     "path": str(root.path / s.folder) if root.path is not None else None,
                     "title": s.title})
    return rows


def validate_data_root(root: DataRoot, required: tuple[str, ...] = RUN_REQUIRES) -> list[SourceStatus]:
    """Check every registered source below ``root``; raise :class:`DataError` (one line, naming what is
    missing) unless each source in ``required`` is found complete. The embedded synthetic default is
    always complete. Returns the status of every source (optional ones may be incomplete)."""
    statuses = [check_source(root, name) for name in SOURCES]
    if root.synthetic:
        return statuses
    for st in statuses:
        if st.source not in required or st.state == FOUND:
            continue
        src = get_source(st.source)
        if st.state == MISSING:
            raise DataError(f"data root {root.path}: {st.source} not found (expected {root.path / src.folder}, "
                            f"see `python -m ssinfnet data locate`; `--data-root synthetic` runs on phantoms)")
        raise DataError(f"data root {root.path}: {st.source} is incomplete, missing "
                        f"{_short_list(st.missing)} (see `python -m ssinfnet data locate`)")
    return statuses


# ----------------------------------------------------------------------------- fetching

def safe_extract(archive: Path, dest: Path, prefix: str = "") -> list[Path]:
    """Extract a zip or tar archive into ``dest``, refusing unsafe members.

    Members whose path is absolute, contains ``..`` or is a link pointing outside ``dest`` raise
    :class:`DataError` before anything is written. ``prefix`` keeps only members below it (after the
    archive's single top folder, as GitHub archives have) and strips what comes before.
    """
    dest = Path(dest).resolve()
    archive = Path(archive)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = [(i.filename, i.is_dir(), _zip_link(zf, i)) for i in zf.infolist()]
            _check_members(members, archive)
            plan = _plan(members, prefix)
            for name, rel in plan:
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(name) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
        return [dest / rel for _, rel in plan]
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            infos = tf.getmembers()
            members = [(i.name, i.isdir(), i.linkname if (i.issym() or i.islnk()) else None) for i in infos]
            _check_members(members, archive)
            plan = _plan(members, prefix)
            by_name = {i.name: i for i in infos}
            for name, rel in plan:
                info = by_name[name]
                if not info.isfile():
                    continue
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with tf.extractfile(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
        return [dest / rel for _, rel in plan]
    raise DataError(f"{archive}: not a zip or tar archive")


def _zip_link(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    """The target of a symlink member (Unix mode S_IFLNK in the high bits of external_attr), else None."""
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        return zf.read(info).decode("utf-8", "replace")
    return None


def _unsafe(name: str) -> bool:
    p = Path(name)
    return (name.startswith(("/", "\\")) or p.is_absolute() or ".." in p.parts
            or (bool(p.parts) and ":" in p.parts[0]))


def _escapes(parent: Path, link: str) -> bool:
    """Whether ``link`` (relative to folder ``parent`` inside the archive) points above the archive root."""
    depth = len(parent.parts)
    for part in Path(link).parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            return True
    return False


def _check_members(members, archive) -> None:
    for name, _, link in members:
        if _unsafe(name):
            raise DataError(f"{archive}: refusing unsafe member path {name!r}")
        if link is not None and (link.startswith("/") or _escapes(Path(name).parent, link)):
            raise DataError(f"{archive}: refusing link {name!r} -> {link!r} that leaves the target folder")


def _plan(members, prefix: str):
    files = [(n, d) for n, d, link in members if not d and link is None]
    tops = {Path(n).parts[0] for n, _ in files}
    strip_top = len(tops) == 1 and all(len(Path(n).parts) > 1 for n, _ in files)
    plan = []
    for name, _ in files:
        parts = Path(name).parts[1:] if strip_top else Path(name).parts
        rel = Path(*parts)
        if prefix:
            pre = Path(prefix.rstrip("/"))
            if rel.parts[: len(pre.parts)] != pre.parts:
                continue
        plan.append((name, rel))
    return plan


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(name: str, root: Path | str, timeout: float = 60.0, opener=urllib.request.urlopen) -> Path:
    """Download and unpack a source below ``root``; returns the source folder.

    The archive is verified against its checksum when one is registered, extracted with
    :func:`safe_extract` into a temporary folder and moved into place only when complete.
    Raises :class:`DataError` with a clear message when offline or when the source has no
    downloadable archive.
    """
    src = get_source(name)
    root = Path(root)
    target = root / src.folder
    status = check_source(DataRoot(root, "fetch"), name)
    if status.state == FOUND:
        return target
    if target.exists():
        missing = _short_list(status.missing) if status.missing else f"{target} is not a folder"
        raise DataError(f"{target} exists but is incomplete (missing: {missing}); move it away and fetch again")
    if src.archive_url is None:
        raise DataError(f"{name}: no automatic download; get it from {src.url} and place it as "
                        f"{root / src.folder} ({src.layout})")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        archive = Path(tmp) / "archive"
        try:
            with opener(src.archive_url, timeout=timeout) as resp, open(archive, "wb") as out:
                shutil.copyfileobj(resp, out)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise DataError(f"{name}: could not download {src.archive_url} ({exc}). If this machine is "
                            f"offline, download it elsewhere and unpack it to {target}") from exc
        if src.sha256 is not None and sha256_of(archive) != src.sha256:
            raise DataError(f"{name}: checksum mismatch for {src.archive_url}")
        staging = Path(tmp) / "staging"
        safe_extract(archive, staging / src.folder, prefix=src.archive_prefix)
        staged = check_source(DataRoot(staging, "fetch"), name)
        if staged.state != FOUND:
            raise DataError(f"{name}: the archive did not contain the expected layout "
                            f"(missing: {_short_list(staged.missing) or src.folder})")
        shutil.move(str(staging / src.folder), str(target))
    return target
