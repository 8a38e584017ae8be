"""Running the book: the papermill runner, the run context notebooks use, and the run manifest.

Every run writes ``runs/<profile>/manifest.json``: git commit, data fingerprint, profile
parameters, device, per-notebook wall time and the artifacts each stage wrote. Stages find the
artifacts of earlier stages through the manifest (or their conventional paths), so any notebook can
be re-run alone. Chapters can be executed at different commits, so each stage entry carries its own
provenance (commit, dirty flag, data and code fingerprints, time) and names the trained run folders
it reused, with the commit that trained them (:mod:`ssinfnet.provenance`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import provenance
from .data.sources import DataRoot, resolve_data_root
from .profiles import Profile, get_profile

REPO_ROOT = Path(__file__).resolve().parents[1]
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
                    "generator": hashlib.sha256((Path(__file__).parent / "data" / "phantoms.py").read_bytes())
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


def device_name(device: str = "auto") -> str:
    """Resolve "auto" to "cuda" when a GPU is visible, else "cpu"; other values pass through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def describe_device(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(0)})"
    return f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


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
        from .data.sources import validate_data_root

        prof = get_profile(profile, **overrides)
        data = resolve_data_root(data_root)
        validate_data_root(data)
        run = _run_folder(run_dir, prof.name, data.synthetic)
        run.mkdir(parents=True, exist_ok=True)
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
        (:func:`ssinfnet.provenance.take_runs`), ``trained`` (folders trained or resumed) and
        ``reused`` (folder -> the commit, dirty flag, start time and key of the session that trained it;
        ``stale`` when it was reused despite another key, with ``SSINFNET_ALLOW_STALE=1``). When
        no run was noted (a record made again without training), the previous lists stay.
        """
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
        entry["artifacts"] = {k: _rel(v, self.run_dir) for k, v in (artifacts or {}).items()}
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
        _write_json_atomic(self.manifest_path, _jsonable(man))
        return entry

    def current_provenance(self) -> dict:
        """Where a stage recorded now comes from: ``git_commit`` (sha), ``dirty``,
        ``data_fingerprint`` (:func:`data_fingerprint`), ``code_fingerprint``
        (:func:`ssinfnet.provenance.code_fingerprint`) and ``time`` (UTC, ISO 8601)."""
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
                "data": self.data.describe(), "run_dir": _rel(self.run_dir, REPO_ROOT)}


def _reused(run: dict) -> dict:
    """What the manifest says about a reused training run: who trained it, with which key."""
    record = run.get("record") or {}
    trained_at = record.get("trained_at") or {}
    return {"trained_at_commit": trained_at.get("git_commit", provenance.NOT_RECORDED),
            "dirty": trained_at.get("dirty"), "trained": trained_at.get("time"), "key": record.get("key") or {}}


def _rel(path: str | Path, base: Path) -> str:
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


# ----------------------------------------------------------------------------- papermill runner

class ChapterFailed(RuntimeError):
    """A chapter raised an error while papermill executed it; the message names the chapter, the error
    and the executed notebook that holds the traceback."""


def list_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The book's chapters, ``NN_name.ipynb``, in order."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def select_notebooks(notebooks: list[Path], only: str | None = None, start: str | None = None) -> list[Path]:
    """Filter chapters by number: ``only="03"`` runs one, ``start="03"`` runs 03 and later."""
    nums = [p.name[:2] for p in notebooks]
    for arg, value in (("only", only), ("from", start)):
        if value is not None and value.zfill(2) not in nums:
            raise ValueError(f"--{arg} {value}: no notebook numbered {value.zfill(2)} (have {', '.join(nums)})")
    if only is not None:
        return [p for p in notebooks if p.name[:2] == only.zfill(2)]
    if start is not None:
        return [p for p in notebooks if p.name[:2] >= start.zfill(2)]
    return notebooks


def run_book(profile: str = "smoke", data_root: str | None = None, only: str | None = None,
             start: str | None = None, run_dir: str | None = None, progress: bool = True) -> Path:
    """Execute the chapters with papermill into the run folder and record wall times in the manifest.

    Everything that can be checked cheaply is checked before the run folder is created and before any
    chapter starts: the profile, the chapter selection (``only`` / ``start``, not both), the run folder
    path and the data root. On a real data root the sources of
    :data:`~ssinfnet.data.sources.RUN_REQUIRES` (COVID-SemiSeg) must be complete; an optional source
    that is incomplete (e.g. an iCTCF folder without its CSV) gets a warning on stderr and the run
    goes on without it, as when it is absent (chapters 01 and 07 then use the synthetic clinical cohort).
    Raises ``ValueError`` / :class:`~ssinfnet.data.io.DataError` with one line naming the problem.
    """
    from .data.sources import validate_data_root

    if only is not None and start is not None:
        raise ValueError(f"--only {only} and --from {start} exclude each other; give one")
    get_profile(profile)
    chapters = select_notebooks(list_notebooks(), only, start)
    statuses = validate_data_root(resolve_data_root(data_root))
    ctx = RunContext.open(profile, data_root, run_dir)  # validates again, then creates the run folder
    _warn_incomplete(statuses)

    import papermill as pm

    from .notebook_outputs import tidy_file

    params = {"profile": profile, "data_root": str(ctx.data.path) if ctx.data.path else "synthetic",
              "run_dir": _rel(ctx.run_dir, REPO_ROOT)}
    for nb in chapters:
        out = ctx.run_dir / nb.name
        print(f"[ssinfnet] {nb.name} -> {_rel(out, REPO_ROOT)} (profile {profile}, data {ctx.data.describe()})",
              flush=True)
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(out), parameters=params, cwd=str(nb.parent), kernel_name="python3",
                                progress_bar=progress, request_save_on_cell_execute=False)
        except pm.PapermillExecutionError as exc:
            # One line for the user (the refusal a chapter raised); the traceback stays in the notebook.
            raise ChapterFailed(f"chapter {nb.stem} stopped: {exc.ename}: {exc.evalue.strip()} "
                                f"(the executed notebook, with the traceback: {_rel(out, REPO_ROOT)})") from None
        tidy_file(out)  # progress bars as a terminal leaves them, not every redraw
        ctx.record(f"notebook:{nb.stem}", artifacts={"notebook": out},
                   wall_time_s=round(time.perf_counter() - t0, 1))
    return ctx.run_dir


def refresh_outputs(notebooks: list[Path] | None = None, timeout: int = 1200) -> list[Path]:
    """Re-execute the chapter sources in place on the embedded synthetic default, smoke profile.

    The committed notebooks keep these outputs: nbval compares the cells marked
    ``NBVAL_CHECK_OUTPUT`` against them, so a change of numbers fails CI until refreshed on purpose.
    """
    import nbformat
    from nbclient import NotebookClient

    done = []
    old = os.environ.get("SSINFNET_DATA")
    os.environ["SSINFNET_DATA"] = "synthetic"
    try:
        for nb_path in notebooks or list_notebooks():
            nb = nbformat.read(nb_path, as_version=4)
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(nb_path.parent)}}).execute()
            nbformat.write(nb, nb_path)
            done.append(nb_path)
    finally:
        if old is None:
            os.environ.pop("SSINFNET_DATA", None)
        else:
            os.environ["SSINFNET_DATA"] = old
    return done


# ----------------------------------------------------------------------------- checks before a run

def _run_folder(run_dir: str | None, profile: str, synthetic: bool) -> Path:
    """The run folder (not created): ``run_dir`` (relative to the repository, not the cwd) or the
    profile's default; ValueError when the path exists and is not a folder."""
    run = Path(run_dir) if run_dir else default_run_dir(profile, synthetic)
    if not run.is_absolute():
        run = REPO_ROOT / run
    if run.exists() and not run.is_dir():
        raise ValueError(f"run folder {run} exists and is not a folder")
    return run


def _warn_incomplete(statuses: list) -> None:
    """One stderr line per optional source that is incomplete (the run goes on as if it were absent);
    ``statuses`` as :func:`~ssinfnet.data.sources.validate_data_root` returns them."""
    import sys

    from .data.sources import INCOMPLETE

    for st in statuses:
        if st.state == INCOMPLETE:
            print(f"[ssinfnet] warning: {st.describe()}; optional, the run goes on without it", file=sys.stderr)
