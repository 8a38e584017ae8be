"""ssinfnet.book.checks: reference numbers with a tolerance (the notebooks' hidden checks)."""

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from ssinfnet.book import checks


def test_close_numbers_pass_and_far_ones_fail_with_every_offender_named():
    checks.expect_close(pd.Series({"a": 0.51, "b": 0.2}), {"a": 0.5, "b": 0.22}, atol=0.03, what="dice")
    with pytest.raises(AssertionError) as err:
        checks.expect_close({"a": 0.6, "b": 0.2, "c": 1.0}, {"a": 0.5, "b": 0.2, "d": 0.0}, atol=0.03, what="dice")
    msg = str(err.value)
    assert msg.startswith("dice: 3 number(s) off the reference (tolerance 0.03)")
    assert "a: 0.6000, reference 0.5000 (|difference| 0.1000 > 0.03)" in msg
    assert "missing 'd'" in msg and "unexpected 'c' = 1.0" in msg


def test_dataframes_flatten_to_row_column_keys_and_nan_must_match_nan():
    frame = pd.DataFrame({"x": [1.0, math.nan]}, index=["r1", "r2"])
    assert checks.flatten(frame)["r1/x"] == 1.0
    checks.expect_close(frame, {"r1": {"x": 1.0}, "r2": {"x": math.nan}}, atol=1e-9, what="t")
    with pytest.raises(AssertionError, match="r2/x: nan, reference 0.0000"):
        checks.expect_close(frame, {"r1": {"x": 1.0}, "r2": {"x": 0.0}}, atol=1e-9, what="t")
    with pytest.raises(AssertionError, match="r2/x: 1.0000, reference NaN"):
        checks.expect_close(frame.fillna(1.0), {"r1": {"x": 1.0}, "r2": {"x": math.nan}}, atol=1e-9, what="t")


def test_bad_arguments():
    with pytest.raises(ValueError, match="atol must be a positive number"):
        checks.expect_close({"a": 1.0}, {"a": 1.0}, atol=0, what="t")
    with pytest.raises(TypeError, match="mapping, Series or DataFrame"):
        checks.flatten([1.0])


@pytest.mark.parametrize("profile, synthetic, expected", [("smoke", True, True), ("smoke", False, False),
                                                          ("cpu", True, False)])
def test_only_the_smoke_run_on_phantoms_has_references(profile, synthetic, expected):
    ctx = SimpleNamespace(profile=SimpleNamespace(name=profile), synthetic=synthetic)
    assert checks.is_reference_run(ctx) is expected
