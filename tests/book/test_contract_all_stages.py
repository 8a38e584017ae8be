"""The artifact contract over the whole book: every stage run in order on the smoke profile writes
exactly what ssinfnet/book/artifacts.py declares, and reads only through it."""
import inspect

import pytest

from ssinfnet.book import artifacts as A
from ssinfnet.book.context import RunContext
from ssinfnet.book.stages import STAGE_MODULES, run_stage

pytestmark = pytest.mark.slow  # whole stages: run in the first CI round (default kernels), see .ci/run


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """Run every stage once in one run folder; record who called RunContext.artifact."""
    callers = []
    original = RunContext.artifact

    def watched(self, stage, name):
        caller = inspect.stack()[1].frame.f_globals.get("__name__")
        callers.append((caller, stage, name))
        return original(self, stage, name)

    mp = pytest.MonkeyPatch()
    mp.setattr(RunContext, "artifact", watched)
    ctx = RunContext.open("smoke", "synthetic", str(tmp_path_factory.mktemp("book") / "run"))
    results = {n: run_stage(n, ctx, progress=False) for n in STAGE_MODULES}
    mp.undo()
    return ctx, results, callers


def test_every_declared_artifact_is_written_and_recorded(book):
    ctx, _, _ = book
    stages = ctx.manifest()["stages"]
    for stage in A.STAGE_NAMES.values():
        expected = A.expected_outputs(stage, ctx.profile, stages[stage].get("conditions", ()))
        recorded = stages[stage]["artifacts"]
        assert recorded == expected, stage  # nothing missing, nothing undeclared, the declared paths
        for rel in expected.values():
            assert (ctx.run_dir / rel).exists(), rel


def test_every_read_goes_through_the_contract(book):
    _, _, callers = book
    assert callers, "no stage read an artifact"
    assert {c for c, _, _ in callers} == {"ssinfnet.book.artifacts"}
    for _, stage, name in callers:
        art, _ = A.declared(name, writer=stage)  # raises when undeclared
        assert art.readers, f"{name} of {stage} is read but has no declared reader"


def test_stage_modules_do_not_open_the_manifest_themselves():
    import importlib

    for module in STAGE_MODULES.values():
        source = inspect.getsource(importlib.import_module(f"ssinfnet.book.stages.{module}"))
        assert "ctx.artifact(" not in source and "ctx.record(" not in source, module
