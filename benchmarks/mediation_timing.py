"""Time the statistics chapter's workload at the paper's size: radiomics + mediation, 1,338 patients.

Fung et al. (2021) analysed 204 patient-level radiomic features (68 per region x overall/GGO/consolidation)
of 1,338 iCTCF patients as mediators of 3 exposures (age, gender, number of underlying diseases). This
script measures, on a simulated cohort of that size (the iCTCF CT images are not part of the data):

1. ``radiomics``: PyRadiomics features of the three regions of ``--slices-per-patient`` synthetic
   phantom slices (512 px) per patient, averaged per patient (``ssinfnet.stats.phenotypes``);
2. ``paper_rule``: the paper's three-regression rule with its bootstrap (``mediation_by_exposure``);
3. ``natural_effects``: natural direct/indirect effects, quasi-Bayesian intervals
   (``natural_effects_by_exposure``, joblib workers);
4. ``sensitivity``: Imai et al.'s rho for every significant (exposure, mediator);
5. ``sem``: correlation filter and the multiple-mediator SEM with bootstrap intervals.

The mediators of steps 2-5 are simulated (``simulate_cohort``: 6 planted mediators of age and of the
number of diseases, the others null, errors correlated in blocks up to r = 0.8) because phantom
radiomics carry no relation to a clinical table; the cost does not depend on the values.

Prints one JSON object (and writes it with ``--output``): ``meta`` (machine, usable cores, load average
before and after, versions), ``settings``, ``inputs_not_timed_in_total`` (making the phantoms and the
simulated table: the real pipeline reads slices and has its table), ``steps`` (``wall_s`` and the parent
process's ``cpu_s``, and ``cpu_s_all_processes`` with joblib's workers), ``total_wall_s`` (the steps),
``within_10_minutes``, and ``idle_estimate_s``: the steps' CPU seconds divided by the workers (the wall
time an idle machine with ``--jobs`` free cores would need, if the work splits evenly). Timings are only
meaningful on an otherwise idle machine (see README.md); on a shared one, read ``idle_estimate_s``.

    python benchmarks/mediation_timing.py --output runs/bench/mediation_cpu.json
    python benchmarks/mediation_timing.py --quick          # checks that it runs; numbers mean nothing
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EXPOSURES = ["age", "male", "n_diseases"]
CONTRASTS = {"age": (50.0, 60.0), "male": (0.0, 1.0), "n_diseases": (0.0, 1.0)}


def _cohort(n: int, k: int, seed: int):
    from ssinfnet.stats.simulation import simulate_cohort

    planted = {"m_common1": {"age": 0.03, "n_diseases": 0.4}, "m_common2": {"age": 0.02, "n_diseases": 0.3},
               "m_age1": {"age": 0.03}, "m_age2": {"age": 0.02}, "m_dis1": {"n_diseases": 0.4},
               "m_dis2": {"n_diseases": 0.3}}
    b = {m: 0.4 for m in planted}
    n_null = k - len(planted)
    # blocks of 12 features whose errors share one factor: loadings 0.9 ... 0.45 (pairwise r up to 0.8)
    load = np.zeros(k)
    for start in range(0, k, 12):
        load[start:start + 12] = np.linspace(0.9, 0.45, min(12, k - start))
    corr = np.zeros((k, k))
    for start in range(0, k, 12):
        s = slice(start, start + 12)
        corr[s, s] = np.outer(load[s], load[s])
    np.fill_diagonal(corr, 1.0)
    df = simulate_cohort(None, n, planted, b, n_null, {"age": 0.01, "male": 0.2}, seed=seed, intercept=0.5,
                         mediator_corr=corr)
    return df, [*planted, *[f"null_{i + 1}" for i in range(n_null)]]


def _cpu_by_process() -> dict[int, float]:
    """CPU seconds (user + system) of this process and its children (joblib's workers), by pid."""
    import psutil

    me = psutil.Process()
    out = {}
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:  # a worker that ended meanwhile
            pass
    return out


def _timed(steps: dict, name: str, fn):
    before, t, c = _cpu_by_process(), time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    after = _cpu_by_process()
    every = sum(v - before.get(pid, 0.0) for pid, v in after.items())
    steps[name] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "cpu_s_all_processes": round(every, 2)}
    print(f"{name}: {steps[name]}", file=sys.stderr, flush=True)
    return out


def _phantoms(n_patients: int, per_patient: int, size: int, seed: int, distinct: int = 60):
    """``distinct`` phantoms cycled to one slice per patient and position: making a 512 px phantom costs
    more than its radiomics, and the cost of PyRadiomics does not depend on which phantom it sees."""
    from ssinfnet.data.phantoms import synthetic_subset

    pool = synthetic_subset("train", n=min(distinct, n_patients * per_patient), size=size, seed=seed)
    return [pool[i % len(pool)] for i in range(n_patients * per_patient)]


def _radiomics(slices, per_patient: int, jobs: int):
    from ssinfnet.stats import phenotypes

    table = phenotypes.slice_radiomics(slices, n_jobs=jobs)
    table["patient_id"] = [i // (3 * per_patient) for i in range(len(table))]
    numeric = table.select_dtypes("number").drop(columns=["patient_id"])
    wide = numeric.assign(patient_id=table["patient_id"], region=table["region"]).groupby(
        ["patient_id", "region"]).mean().unstack("region")
    return wide.shape


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=int, default=1338)
    p.add_argument("--features", type=int, default=204)
    p.add_argument("--n-rep", type=int, default=1000, help="quasi-Bayesian draws per (exposure, mediator)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples: paper's rule and SEM")
    p.add_argument("--jobs", type=int, default=2, help="joblib workers of every parallel step")
    p.add_argument("--slices-per-patient", type=int, default=1)
    p.add_argument("--slice-size", type=int, default=512, help="phantom side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="120 patients, 24 features, 50 draws: checks it runs")
    p.add_argument("--output", type=Path)
    a = p.parse_args(argv)
    if a.quick:
        a.patients, a.features, a.n_rep, a.n_boot, a.slice_size = 120, 24, 50, 50, 128

    import semopy
    import statsmodels

    from ssinfnet.stats import compare_methods, mediation, natural_effects, sem, sensitivity
    from ssinfnet.training.device import cpu_model_name, usable_cores

    meta = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
            "usable_cores": usable_cores(), "load_average_before": os.getloadavg(),
            "statsmodels": statsmodels.__version__, "semopy": semopy.__version__, "numpy": np.__version__}
    meta["cpu_model"] = cpu_model_name()
    inputs: dict = {}
    steps: dict = {}
    slices = _timed(inputs, "phantoms", lambda: _phantoms(a.patients, a.slices_per_patient, a.slice_size, a.seed))
    df, meds = _timed(inputs, "simulate_cohort", lambda: _cohort(a.patients, a.features, a.seed))
    start = time.perf_counter()
    shape = _timed(steps, "radiomics", lambda: _radiomics(slices, a.slices_per_patient, a.jobs))
    steps["radiomics"]["patient_table_shape"] = list(shape)
    paper = _timed(steps, "paper_rule", lambda: mediation.mediation_by_exposure(
        df, EXPOSURES, meds, "severity_binary", n_boot=a.n_boot, seed=a.seed, n_jobs=a.jobs))
    natural = _timed(steps, "natural_effects", lambda: natural_effects.natural_effects_by_exposure(
        df, EXPOSURES, meds, "severity_binary", contrasts=CONTRASTS, n_rep=a.n_rep, seed=a.seed, n_jobs=a.jobs))
    sens = _timed(steps, "sensitivity", lambda: sensitivity.sensitivity_table(
        df, natural, "severity_binary", n_rep=a.n_rep, seed=a.seed))
    compare = compare_methods.compare_with_paper(paper, natural)

    def _sem():
        sig = natural[natural.significant & natural.x.isin(["age", "n_diseases"])]
        scores = sig.groupby("mediator")["nie"].apply(lambda v: v.abs().max())
        kept, _ = mediation.correlation_filter(df, list(scores.index), 0.8, "larger_indirect", scores=scores)
        common, specific = sem.mediator_groups(natural, ("age", "n_diseases"), kept=kept)
        if not common and not any(specific.values()):
            return None
        return sem.fit_mediation_sem(df, common, specific, n_boot=a.n_boot, seed=a.seed, n_jobs=a.jobs)

    fit = _timed(steps, "sem", _sem)
    total = time.perf_counter() - start
    result = {
        "meta": {**meta, "load_average_after": os.getloadavg()},
        "settings": {"patients": a.patients, "features": a.features, "exposures": EXPOSURES,
                     "pairs": a.features * len(EXPOSURES), "n_rep": a.n_rep, "n_boot": a.n_boot, "jobs": a.jobs,
                     "slices_per_patient": a.slices_per_patient, "slice_size": a.slice_size, "quick": a.quick},
        "inputs_not_timed_in_total": inputs,
        "steps": steps,
        "counts": {"natural_significant": int(natural.significant.sum()), "paper_significant": int(paper.significant.sum()),
                   "sensitivity_rows": len(sens), "disagreements": compare.attrs["counts"],
                   "sem_mediators": 0 if fit is None else int(fit.indirect.query("mediator != 'total'").mediator.nunique())},
        "total_wall_s": round(total, 1),
        "total_cpu_s_all_processes": round(sum(v["cpu_s_all_processes"] for v in steps.values()), 1),
        "idle_estimate_s": round(sum(v["cpu_s_all_processes"] for v in steps.values()) / max(a.jobs, 1), 1),
        "within_10_minutes": total <= 600,
    }
    text = json.dumps(result, indent=1, default=float)
    print(text)
    if a.output:
        a.output.parent.mkdir(parents=True, exist_ok=True)
        a.output.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
