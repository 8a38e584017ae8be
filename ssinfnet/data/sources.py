"""The source registry: where each public dataset comes from, and where it is on this machine.

Resolution order of the data root (:func:`resolve_data_root`):
explicit parameter -> environment variable ``SSINFNET_DATA`` -> the project's ``data/`` folder ->
the embedded synthetic default. The word ``synthetic`` (as parameter or variable) asks for the
embedded default explicitly.
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

from .io import DataError

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
        """Whether ``source`` is present below this root."""
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


def locate(root: DataRoot) -> list[dict]:
    """What was found where: one row per registered source."""
    rows = []
    for s in SOURCES.values():
        found = root.has(s.name)
        rows.append({"source": s.name, "found": found,
                     "path": str(root.path / s.folder) if root.path is not None else None,
                     "title": s.title})
    return rows


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
    if (root / src.marker).exists():
        return target
    if target.exists():
        raise DataError(f"{target} exists but is incomplete ({src.marker} missing); move it away and fetch again")
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
        if not (staging / src.marker).exists():
            raise DataError(f"{name}: the archive did not contain the expected layout ({src.marker})")
        shutil.move(str(staging / src.folder), str(target))
    return target
