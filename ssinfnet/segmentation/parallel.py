"""Several fine-tuning runs at once, each in its own process (chapters 3 and 4 on a many-core machine).

A chapter's fits (variants, extra seeds, cross-validation folds) do not depend on one another. A
:class:`FitJob` is one call of :func:`ssinfnet.segmentation.fit.fit`; :func:`train_jobs` trains a
list of them in ``workers`` processes. The chapter's own code then calls :meth:`FitJob.run` one job
after another, as it does with one worker, and finds each run finished (a finished run folder is
loaded, not retrained): tables, exports and records come from one code path whatever the number of
workers, and an interrupted parallel pass resumes like any other run. The workers' runs are noted in
this process as trained (:mod:`ssinfnet.training.provenance`), so the chapter's manifest entry says
what this run trained, as with one worker.

Threads: this process's torch threads are shared out between the workers (at least one each). On 2
CPU cores, two one-thread workers finished 3 SInfNet and 3 U-Net fits 1.14x sooner than one process
with two threads (``benchmarks/parallel_fits.py``). The order in which floating-point sums are
taken changes with the thread count, so a run's numbers agree with a one-worker run to training
noise, not bit for bit; with the same thread count they are identical
(``tests/segmentation/test_parallel.py``).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.sample import Sample
from ..training import provenance
from .fit import FitResult, fit
from .variants import SegConfig

#: Networks whose fits take about three times an InfNet's (cpu profile): started first, so the last
#: minutes are not one long fit running alone.
SLOW_NETWORKS = ("unet", "unet_multi", "fcn8s")


@dataclass(frozen=True)
class FitJob:
    """The arguments of one :func:`~ssinfnet.segmentation.fit.fit` call but the device.

    ``run_dir`` is where the run lives; two jobs of one list must not share it.
    """

    cfg: SegConfig
    train: Sequence[Sample]
    val: Sequence[Sample]
    seed: int
    run_dir: Path
    priors_train: Sequence[np.ndarray] | None = None
    priors_val: Sequence[np.ndarray] | None = None

    def run(self, device: str | torch.device, progress: bool = True) -> FitResult:
        """Train (or load, when finished) this job's run on ``device``."""
        return fit(self.cfg, self.train, self.val, device=device, seed=self.seed, run_dir=self.run_dir,
                   priors_train=self.priors_train, priors_val=self.priors_val, progress=progress)

    @property
    def finished(self) -> bool:
        """Whether the run folder already holds an exported model (its settings are checked when it is loaded)."""
        return (Path(self.run_dir) / "model.pt").is_file()

    @property
    def name(self) -> str:
        """The run folder's last two parts (``finetune/sinfnet``, ``sinfnet/seed1``, ``ssinfnet/fold0``)."""
        return "/".join(Path(self.run_dir).parts[-2:])


def _train_one(job: FitJob, device: str, threads: int) -> tuple[float, dict]:
    """Worker body: train ``job`` with ``threads`` torch threads; returns the seconds it took and what
    the worker noted of the run (:func:`~ssinfnet.training.provenance.take_runs`), for the parent to note."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    job.run(device, progress=False)
    return time.perf_counter() - start, provenance.take_runs(job.run_dir)


def _note_in_parent(run_dir: Path, runs: dict) -> None:
    """Note a worker's runs in this process, so the chapter's manifest entry lists them as trained here
    (the chapter's own call then loads them, which alone would read as "reused")."""
    for rel, entry in runs.items():
        folder = Path(run_dir) / rel
        provenance.note_run(folder, entry["action"], entry["record"])
        for note in entry.get("stale", ()):
            provenance.note_stale(folder, note)


def train_jobs(jobs: Sequence[FitJob], *, device: str | torch.device, workers: int,
               progress: bool = True) -> dict[str, float]:
    """Train the unfinished ``jobs`` in ``workers`` processes (spawned; each with an equal share of
    this process's torch threads, at least one).

    With ``workers`` 1, or fewer than two unfinished jobs, nothing is trained here: the caller's
    :meth:`FitJob.run` calls train them one after another. Otherwise the slow networks
    (:data:`SLOW_NETWORKS`) start first. Every worker on a CUDA device uses the same GPU.

    Returns {job name: seconds} of the jobs trained here. A job that fails stops the rest (those
    running finish their current run; finished runs are kept and resume) and raises RuntimeError
    naming the job and its folder, from the worker's exception.
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    folders = [Path(j.run_dir).resolve() for j in jobs]
    if len(set(folders)) != len(folders):
        raise ValueError("two jobs share a run folder; each fit needs its own")
    todo = sorted((j for j in jobs if not j.finished), key=lambda j: j.cfg.network not in SLOW_NETWORKS)
    if workers == 1 or len(todo) < 2:
        return {}
    workers = min(workers, len(todo))
    threads = max(1, torch.get_num_threads() // workers)
    seconds: dict[str, float] = {}
    context = multiprocessing.get_context("spawn")  # safe with torch threads, CUDA and Jupyter kernels
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(_train_one, job, str(device), threads): job for job in todo}
        bar = tqdm(total=len(todo), desc=f"fine-tuning, {workers} processes x {threads} threads",
                   disable=not progress)
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                job = futures[future]
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    bar.close()
                    raise RuntimeError(f"fine-tuning {job.cfg.name} in {job.run_dir} failed in a worker process: "
                                       f"{type(error).__name__}: {error}") from error
                seconds[job.name], runs = future.result()
                _note_in_parent(job.run_dir, runs)
                bar.update(1)
        bar.close()
    return seconds
