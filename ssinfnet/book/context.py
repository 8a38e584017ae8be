"""Running the book: the papermill runner, the run context notebooks use, and the run manifest.

Every run writes ``runs/<profile>/manifest.json``: git commit, data fingerprint, profile
parameters, device, per-notebook wall time and the artifacts each stage wrote. Stages find the
artifacts of earlier stages through the manifest (or their conventional paths), so any notebook can
be re-run alone. Chapters can be executed at different commits, so each stage entry carries its own
provenance (commit, dirty flag, data and code fingerprints, time) and names the trained run folders
it reused, with the commit that trained them (:mod:`ssinfnet.training.provenance`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..data.sources import DataRoot, resolve_data_root
from ..training import provenance
from ..training.device import describe_device, device_name, match_threads_to_cores
from .profiles import Profile, get_profile


REPO_ROOT = Path(__file__).resolve().parents[2]  # this file is ssinfnet/book/context.py


NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


RUNS_DIR = REPO_ROOT / "runs"


def git_commit(repo: Path = REPO_ROOT) -> str:
    """The checked-out commit (with ``-dirty`` when tracked files outside ``runs/`` have changes), or
    "unknown". A run rewrites its own tracked outputs under ``runs/`` as it goes; those do not count."""
    state = provenance.git_state(repo)
    return state["git_commit"] + ("-dirty" if state["dirty"] else "")


def data_fingerprint(root: DataRoot, seed: int = 0, profile: Profile | None = None) -> str:
    """A short hash of what the data root holds: relative paths and sizes of every file of the
    registered sources (fast: no file contents), or the phantom generator's identity.

    For the embedded default the identity is the generator's settings: ``seed``, and with
    ``profile`` its ``synthetic_size`` and ``synthetic_counts``, plus a hash of the generator's code
    (``data/phantoms.py``), e.g. ``synthetic-phantoms-3f2a... (seed 0, 96 px, train 12, test 6,
    unlabelled 16)``.
    """
    if root.synthetic:
        settings = {"seed": seed,
                    "generator": hashlib.sha256((Path(__file__).parents[1] / "data" / "phantoms.py").read_bytes())
                    .hexdigest()[:16]}
        label = f"seed {seed}"
        if profile is not None:
            settings.update(size=profile.synthetic_size, counts=profile.synthetic_counts)
            label += f", {profile.synthetic_size} px, " + ", ".join(
                f"{k} {v}" for k, v in sorted(profile.synthetic_counts.items()))
        return f"synthetic-phantoms-{provenance.config_fingerprint(settings)} ({label})"
    h = hashlib.sha256()
    n = 0
    for folder in ("COVID-SemiSeg", "iCTCF-HUST19-clinical", "medseg"):
        base = root.path / folder
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            if p.is_file():
                h.update(f"{p.relative_to(root.path)}:{p.stat().st_size}\n".encode())
                n += 1
    return f"{h.hexdigest()[:16]} ({n} files)"


def default_run_dir(profile: str, synthetic: bool) -> Path:
    """``runs/<profile>`` for real data, ``runs/<profile>-synthetic`` for the embedded default, so the two
    never share artifacts.

    ``$SSINFNET_RUNS`` replaces ``runs/`` as the parent folder: ``make test`` executes the notebooks in a
    fresh temporary folder with it, so nbval never reuses (nor touches) a user's cached run.
    """
    parent = Path(os.environ["SSINFNET_RUNS"]) if os.environ.get("SSINFNET_RUNS") else RUNS_DIR
    return parent / (f"{profile}-synthetic" if synthetic else profile)


@dataclass
class RunContext:
    """What a notebook needs to know about its run: profile, data root, run folder, device.

    Create it with :meth:`open` from the notebook's parameters. ``path(...)`` names artifacts inside
    the run folder; ``record(stage, ...)`` writes them into the manifest.
    """

    profile: Profile
    data: DataRoot
    run_dir: Path
    device: str
    seed: int = 0
    info: dict = field(default_factory=dict)

    @classmethod
    def open(cls, profile: str = "smoke", data_root: str | None = None, run_dir: str | None = None,
             device: str = "auto", **overrides) -> "RunContext":
        """Resolve profile, data root and run folder; create the run folder only after all three check out.

        Raises ``ValueError`` for an unknown profile or a run folder path that is a file, and
        :class:`~ssinfnet.data.io.DataError` for a data root that does not exist or lacks a source a run
        needs (:func:`~ssinfnet.data.sources.validate_data_root`), so a bad root fails here, in one line,
        not chapters later in a reader.
        """
        from ..data.sources import validate_data_root

        prof = get_profile(profile, **overrides)
        data = resolve_data_root(data_root)
        validate_data_root(data)
        run = run_folder(run_dir, prof.name, data.synthetic)
        run.mkdir(parents=True, exist_ok=True)
        match_threads_to_cores()  # a container's CPU quota, which torch does not see
        return cls(profile=prof, data=data, run_dir=run.resolve(), device=device_name(device), seed=prof.seed)

    @property
    def synthetic(self) -> bool:
        return self.data.synthetic

    @property
    def data_label(self) -> str:
        """"synthetic phantoms" or "real data", for captions."""
        return "synthetic phantoms" if self.synthetic else "real data"

    def caption(self, text: str) -> str:
        """A figure caption ending with the data kind and the profile."""
        return f"{text} ({self.data_label}, profile `{self.profile.name}`)"

    def samples(self, subset: str, limit: int | None = None) -> list:
        """The slices of ``subset`` ("train", "test", "unlabelled") of this run's data: COVID-SemiSeg,
        or the profile's phantoms on the embedded default (:func:`ssinfnet.data.catalog.load_samples`)."""
        from ..data import catalog

        return catalog.load_samples(self.data, subset, synthetic_n=self.profile.synthetic_counts[subset],
                                    synthetic_size=self.profile.synthetic_size, limit=limit, seed=self.seed)

    def path(self, *parts: str) -> Path:
        """A path inside the run folder (parents created)."""
        p = self.run_dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    # -- manifest -----------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.run_dir / "manifest.json"

    def manifest(self) -> dict:
        if self.manifest_path.is_file():
            return json.loads(self.manifest_path.read_text())
        return {}

    def record(self, stage: str, artifacts: dict[str, str | Path] | None = None, **info) -> dict:
        """Add or replace the entry of ``stage`` in the manifest (written atomically).

        Besides ``artifacts`` and ``info`` the entry gets ``provenance`` (:meth:`current_provenance`)
        and, from the training runs this process noted under the run folder since the last record
        (:func:`ssinfnet.training.provenance.take_runs`), ``trained`` (folders trained or resumed) and
        ``reused`` (folder -> the commit, dirty flag, start time and key of the session that trained it;
        ``stale`` when it was reused despite another key, with ``SSINFNET_ALLOW_STALE=1``). When
        no run was noted (a record made again without training), the previous lists stay.

        Under torchrun only process 0 writes the manifest (the entry is returned on every process);
        the entry then says how many processes trained (``processes``).
        """
        from ..training.distributed import is_main, launched

        man = self.manifest()
        stage_provenance = self.current_provenance()
        man.update({
            "profile": self.profile.name, "parameters": self.profile.to_dict(),
            "data_root": self.data.describe(), "data_fingerprint": stage_provenance["data_fingerprint"],
            "device": describe_device(self.device),
            "git_commit": stage_provenance["git_commit"] + ("-dirty" if stage_provenance["dirty"] else ""),
            "code_fingerprint": stage_provenance["code_fingerprint"],
        })
        stages = man.setdefault("stages", {})
        entry = stages.setdefault(stage, {})
        entry["artifacts"] = {k: relative_path(v, self.run_dir) for k, v in (artifacts or {}).items()}
        entry.update(_jsonable(info))
        entry["updated"] = stage_provenance["time"]
        entry["provenance"] = stage_provenance
        runs = provenance.take_runs(self.run_dir)
        if runs:
            entry["trained"] = sorted(k for k, v in runs.items() if v["action"] == "trained")
            entry["reused"] = {k: _reused(v) for k, v in sorted(runs.items()) if v["action"] != "trained"}
            stale = {k: v["stale"] for k, v in runs.items() if v.get("stale")}
            for k, notes in stale.items():  # a stale folder can also have been trained further
                entry["reused"].setdefault(k, _reused(runs[k]))["stale"] = notes
        if launched() is None:
            entry.pop("processes", None)
        else:
            entry["processes"] = launched()[1]
        if is_main():
            _write_json_atomic(self.manifest_path, _jsonable(man))
        return entry

    def current_provenance(self) -> dict:
        """Where a stage recorded now comes from: ``git_commit`` (sha), ``dirty``,
        ``data_fingerprint`` (:func:`data_fingerprint`), ``code_fingerprint``
        (:func:`ssinfnet.training.provenance.code_fingerprint`) and ``time`` (UTC, ISO 8601)."""
        state = provenance.git_state(REPO_ROOT)
        return {"git_commit": state["git_commit"], "dirty": state["dirty"],
                "data_fingerprint": data_fingerprint(self.data, self.seed, self.profile),
                "code_fingerprint": provenance.code_fingerprint(),
                "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}

    def artifact(self, stage: str, name: str) -> Path | None:
        """The path of an artifact recorded by ``stage``, or None when absent."""
        rel = self.manifest().get("stages", {}).get(stage, {}).get("artifacts", {}).get(name)
        if rel is None:
            return None
        p = self.run_dir / rel
        return p if p.exists() else None

    def summary(self) -> dict:
        """Environment and run description for the notebook's opening printout."""
        import numpy
        import torch

        return {"ssinfnet": __import__("ssinfnet").__version__, "torch": torch.__version__,
                "numpy": numpy.__version__, "python": platform.python_version(),
                "device": describe_device(self.device), "profile": self.profile.name,
                "data": self.data.describe(), "run_dir": relative_path(self.run_dir, REPO_ROOT)}


def _reused(run: dict) -> dict:
    """What the manifest says about a reused training run: who trained it, with which key."""
    record = run.get("record") or {}
    trained_at = record.get("trained_at") or {}
    return {"trained_at_commit": trained_at.get("git_commit", provenance.NOT_RECORDED),
            "dirty": trained_at.get("dirty"), "trained": trained_at.get("time"), "key": record.get("key") or {}}


def relative_path(path: str | Path, base: Path) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- checks before a run

def run_folder(run_dir: str | None, profile: str, synthetic: bool) -> Path:
    """The run folder (not created): ``run_dir`` (relative to the repository, not the cwd) or the
    profile's default; ValueError when the path exists and is not a folder."""
    run = Path(run_dir) if run_dir else default_run_dir(profile, synthetic)
    if not run.is_absolute():
        run = REPO_ROOT / run
    if run.exists() and not run.is_dir():
        raise ValueError(f"run folder {run} exists and is not a folder")
    return run
