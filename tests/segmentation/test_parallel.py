"""Tests for ssinfnet.segmentation.parallel: fits trained in worker processes, then loaded by the
chapter's one-after-another code.

Tiny U-Nets on 64 px phantoms, one epoch of two steps; the spawned workers import ssinfnet afresh,
so each test that starts them takes a few seconds.
"""

from dataclasses import replace

import pandas as pd
import pytest
import torch

from ssinfnet.data.phantoms import synthetic_subset
from ssinfnet.segmentation.crossval import cross_validate, fold_jobs
from ssinfnet.segmentation.parallel import FitJob, train_jobs
from ssinfnet.segmentation.variants import variant_config
from ssinfnet.training.export import load_exported

TINY_UNET = {"base_width": 4, "depth": 2}
SMALL = dict(epochs=1, batch_size=2, image_size=64, max_steps_per_epoch=2)


@pytest.fixture(scope="module")
def phantoms():
    return synthetic_subset("train", 8, size=64, seed=0)


@pytest.fixture
def one_thread():
    """Train with one torch thread here, as each of two workers does on 2 cores (same summation order)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _jobs(phantoms, root, seeds=(3, 4)):
    cfg = variant_config("unet", model_kwargs=TINY_UNET, **SMALL)
    return [FitJob(cfg, phantoms[:4], phantoms[5:7], seed, root / f"seed{seed}") for seed in seeds]


def _steps(run_dir):
    h = pd.read_csv(run_dir / "history.csv")
    return h[h["kind"] == "step"]["loss"].tolist()


def test_workers_train_what_one_process_trains_bit_for_bit(phantoms, tmp_path, one_thread):
    parallel = _jobs(phantoms, tmp_path / "parallel")
    seconds = train_jobs(parallel, device="cpu", workers=2, progress=False)
    assert sorted(seconds) == ["parallel/seed3", "parallel/seed4"] and all(s > 0 for s in seconds.values())
    for job in _jobs(phantoms, tmp_path / "serial"):
        job.run("cpu", progress=False)
    for seed in (3, 4):
        a, b = tmp_path / "parallel" / f"seed{seed}", tmp_path / "serial" / f"seed{seed}"
        assert len(_steps(a)) == 2 and _steps(a) == _steps(b)
        wa, wb = (load_exported(d / "model.pt").model.state_dict() for d in (a, b))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_the_chapter_code_then_loads_the_finished_runs_without_training(phantoms, tmp_path):
    jobs = _jobs(phantoms, tmp_path)
    train_jobs(jobs, device="cpu", workers=2, progress=False)
    before = [_steps(j.run_dir) for j in jobs]
    for job in jobs:
        res = job.run("cpu", progress=False)
        assert res.best is not None and res.export_path == job.run_dir / "model.pt"
    assert [_steps(j.run_dir) for j in jobs] == before  # nothing was trained again
    # and a second parallel pass finds nothing left to do
    assert train_jobs(jobs, device="cpu", workers=2, progress=False) == {}


def test_one_worker_or_one_job_leaves_the_training_to_the_caller(phantoms, tmp_path):
    jobs = _jobs(phantoms, tmp_path)
    assert train_jobs(jobs, device="cpu", workers=1, progress=False) == {}
    assert train_jobs(jobs[:1], device="cpu", workers=2, progress=False) == {}
    assert not any((j.run_dir / "model.pt").exists() for j in jobs)


def test_bad_input_is_refused_before_any_worker_starts(phantoms, tmp_path):
    jobs = _jobs(phantoms, tmp_path)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="workers must be an integer >= 1"):
            train_jobs(jobs, device="cpu", workers=bad, progress=False)
    twins = [jobs[0], replace(jobs[1], run_dir=jobs[0].run_dir)]
    with pytest.raises(ValueError, match="share a run folder"):
        train_jobs(twins, device="cpu", workers=2, progress=False)
    assert not tmp_path.joinpath("seed3").exists()


def test_a_failing_job_is_named_with_its_folder(phantoms, tmp_path):
    good = _jobs(phantoms, tmp_path, seeds=(3,))[0]
    # validation slices without the mask a single model is scored on: fit refuses them in the worker
    unlabelled = [replace(s, infection=None) for s in phantoms[5:7]]
    bad = replace(good, val=unlabelled, run_dir=tmp_path / "broken")
    with pytest.raises(RuntimeError, match=r"fine-tuning unet in \S*broken failed in a worker process: "
                                           r"ValueError: 2 samples have no infection mask"):
        train_jobs([good, bad], device="cpu", workers=2, progress=False)


def test_fold_jobs_are_the_folds_cross_validate_trains(phantoms, tmp_path):
    samples = [replace(s, group_id=None) for s in phantoms[1:7]]
    cfg = variant_config("unet", model_kwargs=TINY_UNET, **dict(SMALL, max_steps_per_epoch=1))
    plan = fold_jobs(cfg, samples, 3, seed=2, run_dir=tmp_path, val_fraction=0.25)
    assert [job.run_dir.name for job, _ in plan] == ["fold0", "fold1", "fold2"]
    assert [job.seed for job, _ in plan] == [2, 3, 4]
    held = sorted(i for _, idx in plan for i in idx)
    assert held == list(range(len(samples)))  # every sample held out once
    for job, idx in plan:
        used = {s.slice_id for s in (*job.train, *job.val)}
        assert used.isdisjoint(samples[i].slice_id for i in idx)
    train_jobs([job for job, _ in plan], device="cpu", workers=2, progress=False)
    trained = [_steps(job.run_dir) for job, _ in plan]
    cv = cross_validate(cfg, samples, 3, device="cpu", seed=2, run_dir=tmp_path, val_fraction=0.25, progress=False)
    assert [_steps(job.run_dir) for job, _ in plan] == trained  # cross_validate loaded the folds
    assert sorted(cv.fold.tolist()) == [0, 0, 1, 1, 2, 2]
