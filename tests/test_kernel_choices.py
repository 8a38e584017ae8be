"""The kernel settings that ``.ci/run`` runs the suite under really change PyTorch's arithmetic.

``make test`` must pass on any x86-64 CPU; CI proves it by running the suite three times, under the
default kernels, ``ATEN_CPU_CAPABILITY=default`` and ``ONEDNN_MAX_CPU_ISA=SSE41``. This test shows that
the two settings are honoured: PyTorch's gives another raw number from the same seeded computation, and
oneDNN reports the instruction set it was limited to.
"""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

PROBE = Path(__file__).resolve().parents[1] / "scripts" / "kernel_probe.py"
SETTINGS = {"default kernels": {}, "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
            "ONEDNN_MAX_CPU_ISA=SSE41": {"ONEDNN_MAX_CPU_ISA": "SSE41"}}


def _probe(extra: dict) -> dict:
    """The probe's JSON line, plus ``onednn_isa``: the instruction set oneDNN says it dispatches to
    (its verbose mode prints it on first use)."""
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    out = subprocess.run([sys.executable, str(PROBE)], env={**env, **extra, "ONEDNN_VERBOSE": "1"},
                         capture_output=True, text=True, timeout=300, check=True).stdout
    lines = out.strip().splitlines()
    isa = [line.split("isa:", 1)[1].strip() for line in lines if "onednn_verbose" in line and "isa:" in line]
    return {**json.loads([line for line in lines if line.startswith("{")][-1]), "onednn_isa": isa[:1] or None}


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or
                    torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "NO AVX"),
                    reason="needs an x86-64 CPU with AVX2 or better (otherwise the settings change nothing)")
def test_each_kernel_setting_changes_a_raw_number():
    results = {name: _probe(extra) for name, extra in SETTINGS.items()}
    assert results["ATEN_CPU_CAPABILITY=default"]["cpu_capability"] == "DEFAULT"
    losses = {name: r["loss"] for name, r in results.items()}
    # PyTorch's own kernels: the same seeded computation gives other last digits ...
    assert losses["ATEN_CPU_CAPABILITY=default"] != losses["default kernels"], losses
    # oneDNN honours its limit (it says so); whether that moves this probe's digits depends on the CPU:
    # on a 2-core AVX2 AMD EPYC it did not (the suite then runs twice under the same arithmetic there)
    isas = {name: r["onednn_isa"] for name, r in results.items()}
    assert isas["ONEDNN_MAX_CPU_ISA=SSE41"] == ["Intel SSE4.1"] and isas["default kernels"] != isas["ONEDNN_MAX_CPU_ISA=SSE41"], isas
    # ... and only the last digits: the numbers agree to 1e-4
    values = [float(v) for v in losses.values()]
    assert max(values) - min(values) < 1e-4, losses
