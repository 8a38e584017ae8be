"""Failed trainings are named: non-finite loss, flat loss, validation score at the floor."""
import numpy as np
import pandas as pd
import pytest

from ssinfnet.training.health import check_training


def _history(loss, val=None, phase="train"):
    rows = [{"kind": "epoch", "phase": phase, "epoch": i, "loss": l, **({"val_dice": v} if val is not None else {})}
            for i, (l, v) in enumerate(zip(loss, val if val is not None else [None] * len(loss)))]
    steps = [{"kind": "step", "phase": phase, "epoch": 0, "loss": 99.0}]
    return pd.DataFrame(steps + rows)


def test_a_learning_run_is_ok():
    h = check_training(_history([1.0, 0.8, 0.6, 0.5, 0.4, 0.35], [0.1, 0.3, 0.5, 0.55, 0.6, 0.58]))
    assert not h.failed and h.status == "ok"
    assert h.best_score == pytest.approx(0.6) and h.loss_ratio == pytest.approx(0.375 / 0.9)


def test_each_failure_is_named():
    flat = check_training(_history([0.7, 0.71, 0.7, 0.69, 0.7, 0.7], [0.3] * 6))
    assert flat.failed and "loss did not fall" in flat.status
    floor = check_training(_history([1.0, 0.5, 0.2], [0.0, 0.01, 0.02]))
    assert floor.failed and floor.reasons == ("best val_dice 0.020 below the floor 0.05",)
    nan = check_training(_history([1.0, np.nan, 0.5], [0.2, 0.3, 0.4]))
    assert nan.reasons[0] == "non-finite loss at epoch 2"
    no_score = check_training(_history([1.0, 0.5, 0.2], [np.nan] * 3))
    assert no_score.reasons == ("no finite val_dice",)


def test_phases_bad_input_and_no_monitor():
    h = pd.concat([_history([1.0, 0.5, 0.2], phase="a"), _history([0.5, 0.5, 0.5], phase="b")])
    assert not check_training(h, None, phase="a").failed
    assert check_training(h, None, phase="b").failed
    with pytest.raises(ValueError, match="no epoch rows for phase 'c'"):
        check_training(h, None, phase="c")
    with pytest.raises(ValueError, match="no column 'val_iou'"):
        check_training(h, "val_iou")
