"""Running the book: select notebooks, execute them in a run folder, refresh stored outputs."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..data.sources import resolve_data_root
from .context import NOTEBOOKS_DIR, REPO_ROOT, RunContext, relative_path
from .profiles import get_profile


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
    from ..data.sources import validate_data_root

    if only is not None and start is not None:
        raise ValueError(f"--only {only} and --from {start} exclude each other; give one")
    get_profile(profile)
    chapters = select_notebooks(list_notebooks(), only, start)
    statuses = validate_data_root(resolve_data_root(data_root))
    ctx = RunContext.open(profile, data_root, run_dir)  # validates again, then creates the run folder
    _warn_incomplete(statuses)

    import papermill as pm

    from .tidy import tidy_file

    params = {"profile": profile, "data_root": str(ctx.data.path) if ctx.data.path else "synthetic",
              "run_dir": relative_path(ctx.run_dir, REPO_ROOT)}
    for nb in chapters:
        out = ctx.run_dir / nb.name
        print(f"[ssinfnet] {nb.name} -> {relative_path(out, REPO_ROOT)} (profile {profile}, data {ctx.data.describe()})",
              flush=True)
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(out), parameters=params, cwd=str(nb.parent), kernel_name="python3",
                                progress_bar=progress, request_save_on_cell_execute=False)
        except pm.PapermillExecutionError as exc:
            # One line for the user (the refusal a chapter raised); the traceback stays in the notebook.
            raise ChapterFailed(f"chapter {nb.stem} stopped: {exc.ename}: {exc.evalue.strip()} "
                                f"(the executed notebook, with the traceback: {relative_path(out, REPO_ROOT)})") from None
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


def _warn_incomplete(statuses: list) -> None:
    """One stderr line per optional source that is incomplete (the run goes on as if it were absent);
    ``statuses`` as :func:`~ssinfnet.data.sources.validate_data_root` returns them."""
    import sys

    from ..data.sources import INCOMPLETE

    for st in statuses:
        if st.state == INCOMPLETE:
            print(f"[ssinfnet] warning: {st.describe()}; optional, the run goes on without it", file=sys.stderr)
