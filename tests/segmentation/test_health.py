"""Failed fine-tuning runs: the floors of ssinfnet.segmentation.health, and fit's early stopping and record."""

import numpy as np
import pandas as pd
import pytest

import ssinfnet.segmentation.fit as finetune
from ssinfnet.data.phantoms import synthetic_subset
from ssinfnet.data.sample import Sample
from ssinfnet.segmentation.fit import fit
from ssinfnet.segmentation.health import (MARGIN, MIN_FLOOR, fit_health, late_gain, plateau_record,
                                          score_floors, stop_record)
from ssinfnet.segmentation.variants import variant_config
from ssinfnet.training.export import load_exported

NAN = float("nan")
TINY_UNET = {"base_width": 4, "depth": 2}


def _sample(name, infection=None, classes=None):
    shape = (infection if infection is not None else classes).shape
    return Sample(np.zeros(shape, np.uint8), name, "synthetic", "train", infection=infection, classes=classes)


def _history(loss, **scores):
    rows = [{"phase": "seg", "kind": "epoch", "epoch": i, "loss": v, **{f"val_{k}": s[i] for k, s in scores.items()}}
            for i, v in enumerate(loss)]
    return pd.DataFrame(rows)


def test_single_floor_is_the_all_lesion_maps_dice_or_the_minimum():
    big = np.zeros((10, 10), bool)
    big[:5] = True  # half the slice: the all-lesion map has Dice 2*50/(100+50) = 2/3
    small = np.zeros((10, 10), bool)
    small[0, 0] = True  # one pixel: 2/101
    empty = np.zeros((10, 10), bool)  # left out of the mean
    floors = score_floors("single", [_sample("a", big), _sample("b", small), _sample("c", empty)])
    assert floors == {"dice": pytest.approx((2 / 3 + 2 / 101) / 2 + MARGIN)}
    assert score_floors("single", [_sample("b", small)]) == {"dice": MIN_FLOOR}


def test_multi_floors_per_class_and_for_the_mean():
    classes = np.zeros((10, 10), np.uint8)
    classes[:4] = 1  # GGO 40 %: GGO everywhere has GGO Dice 2*40/140
    classes[4:5] = 2  # consolidation 10 %: 2*10/110
    floors = score_floors("multi", [_sample("a", classes=classes)])
    ggo, cons = 80 / 140, 20 / 110
    assert floors == {"dice": pytest.approx(ggo / 2 + MARGIN), "dice_ggo": pytest.approx(ggo + MARGIN),
                      "dice_consolidation": pytest.approx(cons + MARGIN)}
    assert score_floors("multi", [_sample("a", classes=classes)], margin=0.0)["dice_consolidation"] == \
        pytest.approx(cons)  # 20/110 = 0.18 > 0.05: the constant map decides

    # no consolidation anywhere: it cannot be judged, so it has no floor
    only_ggo = np.where(classes == 2, 0, classes).astype(np.uint8)
    assert set(score_floors("multi", [_sample("a", classes=only_ggo)])) == {"dice", "dice_ggo"}


def test_phantom_floor_matches_a_constant_prediction():
    val = synthetic_subset("train", 4, size=64, seed=0)
    ones = [np.ones(s.image.shape, np.float32) for s in val]
    constant = finetune.validation_scores("single", ones, val)["dice"]
    assert score_floors("single", val)["dice"] == max(MIN_FLOOR, constant + MARGIN)
    assert score_floors("single", val, minimum=0.9)["dice"] == 0.9


@pytest.mark.parametrize("scores, failed, why", [
    ({"dice": [0.1, 0.3, 0.2]}, False, None),
    ({"dice": [0.1, 0.25, 0.2]}, True, "best val_dice 0.250 not above the floor 0.250"),  # a constant map's score
    ({"dice": [NAN, NAN, NAN]}, True, "no finite val_dice"),
    ({"dice": [0.1, 0.3, 0.3], "dice_ggo": [0.5, 0.6, 0.6], "dice_consolidation": [0.0, 0.0, 0.01]}, True,
     "best val_dice_consolidation 0.010 not above the floor 0.050"),
])
def test_fit_health_judges_every_floor(scores, failed, why):
    floors = {"dice": 0.25, "dice_ggo": 0.2, "dice_consolidation": 0.05}
    floors = {k: v for k, v in floors.items() if k in scores}
    health = fit_health(_history([1.0, 0.6, 0.4], **scores), floors)
    assert health.failed is failed
    assert (why in health.reasons) if why else health.status == "ok"
    assert np.isnan(health.best_score) or health.best_score == np.nanmax(scores["dice"])


def test_fit_health_reports_a_flat_loss_and_a_missing_column():
    health = fit_health(_history([0.7, 0.7, 0.69, 0.7], dice=[0.5] * 4), {"dice": 0.1})
    assert health.failed and health.reasons[0].startswith("loss did not fall")
    with pytest.raises(ValueError, match="val_dice_ggo"):
        fit_health(_history([1.0, 0.5], dice=[0.5, 0.6]), {"dice_ggo": 0.1})


def test_stop_record():
    h = _history([1.0, 0.5, 0.4], dice=[0.1, 0.2, 0.1]).assign(stop=[None, None, "patience"])
    assert stop_record(h) == {"epochs_run": 3, "stop": "patience"}
    assert stop_record(h.drop(columns="stop")) == {"epochs_run": 3, "stop": None}


def test_late_gain_is_the_rise_of_the_best_score_in_the_last_epochs():
    # best before the last 2 epochs 0.60 (epoch 1); the run's best 0.65 (epoch 4): it rose by 0.05 there
    h = _history([1.0] * 5, dice=[0.4, 0.60, 0.55, 0.58, 0.65])
    assert late_gain(h, window=2) == pytest.approx(0.05)
    assert late_gain(h, window=3) == pytest.approx(0.05)
    assert late_gain(h, window=4) == pytest.approx(0.25)  # against epoch 0 alone
    assert late_gain(h, window=1) == pytest.approx(0.05)
    # a best in the middle: nothing gained at the end
    assert late_gain(_history([1.0] * 5, dice=[0.4, 0.7, 0.55, 0.58, 0.65]), window=2) == 0.0
    # unvalidated epochs (NaN) are not epochs of the window
    assert late_gain(_history([1.0] * 4, dice=[0.4, 0.5, NAN, 0.6]), window=1) == pytest.approx(0.1)
    # nothing before the window: NaN
    assert np.isnan(late_gain(h, window=5))


def test_late_gain_rejects_bad_input():
    h = _history([1.0, 0.9], dice=[0.2, 0.3])
    with pytest.raises(ValueError, match="val_dice_ggo"):
        late_gain(h, score="dice_ggo")
    for bad in (0, -1, 2.5, True, np.int64(0), "5"):
        with pytest.raises(ValueError, match="window must be a positive integer"):
            late_gain(h, window=bad)


def test_plateau_record_judges_capped_runs_by_their_late_gain():
    # 0.5 and 0.5 + 2**-6 are exact in binary: a gain of exactly 0.015625 against a bar set at that gain
    exact = 2.0 ** -6
    cap = [None] * 10 + ["cap"]
    at_gain = _history([1.0] * 11, dice=[0.5] * 10 + [0.5 + exact]).assign(stop=cap)
    assert plateau_record(at_gain, gain=exact) == {"late_gain": 0.0156, "plateau": True}  # the rounded gain decides
    assert plateau_record(at_gain, gain=0.0156) == {"late_gain": 0.0156, "plateau": False}  # not below: still rising
    # just above and just below the default bar
    above = _history([1.0] * 11, dice=[0.5] * 10 + [0.511]).assign(stop=cap)
    below = _history([1.0] * 11, dice=[0.5] * 10 + [0.509]).assign(stop=cap)
    assert plateau_record(above) == {"late_gain": 0.011, "plateau": False}
    assert plateau_record(below) == {"late_gain": 0.009, "plateau": True}
    # a raw gain of 0.00996 is recorded as 0.01, and judged on that: not below the bar
    rounds_up = _history([1.0] * 11, dice=[0.5] * 10 + [0.50996]).assign(stop=cap)
    assert plateau_record(rounds_up) == {"late_gain": 0.01, "plateau": False}
    # a run stopped on its patience has plateaued, whatever came before
    patience = [None] * 10 + ["patience"]
    assert plateau_record(above.assign(stop=patience))["plateau"] is True
    # no patience (no stop column) is judged like the cap; too short a run cannot be judged
    assert plateau_record(above.drop(columns="stop"))["plateau"] is False
    assert plateau_record(_history([1.0] * 3, dice=[0.1, 0.2, 0.3])) == {"late_gain": None, "plateau": None}
    # no finite score at all: nothing to judge
    assert plateau_record(_history([1.0] * 11, dice=[NAN] * 11).assign(stop=cap)) == {"late_gain": None,
                                                                                       "plateau": None}


def test_plateau_record_reads_a_phase_a_class_score_and_numpy_windows():
    seg = _history([1.0] * 7, dice=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]).assign(phase="seg")
    other = _history([1.0] * 7, dice=[0.5, 0.65, 0.5, 0.5, 0.5, 0.5, 0.5]).assign(phase="warmup")
    both = pd.concat([other, seg], ignore_index=True)
    assert plateau_record(both, window=2, phase="warmup") == {"late_gain": 0.0, "plateau": True}
    assert plateau_record(both, window=2, phase="seg") == {"late_gain": 0.2, "plateau": False}
    assert plateau_record(both, window=2)["late_gain"] == 0.05  # both phases: the best 0.7 over 0.65 before
    assert late_gain(both, window=np.int64(2), phase="seg") == pytest.approx(0.2)
    assert plateau_record(both, window=np.int64(2), phase="seg") == {"late_gain": 0.2, "plateau": False}
    multi = seg.assign(val_dice_ggo=[0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.305])
    assert plateau_record(multi, window=2, score="dice_ggo") == {"late_gain": 0.005, "plateau": True}


def test_a_history_read_back_from_csv_without_a_stop_is_judged_like_the_cap(tmp_path):
    h = _history([1.0] * 7, dice=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]).assign(stop=None)
    h.to_csv(tmp_path / "history.csv", index=False)
    back = pd.read_csv(tmp_path / "history.csv")
    assert back["stop"].isna().all()
    assert stop_record(back) == {"epochs_run": 7, "stop": None}
    assert plateau_record(back, window=2) == {"late_gain": 0.2, "plateau": False}


def test_fit_stops_early_records_why_and_exports_its_health(tmp_path, monkeypatch):
    """A validation sequence that peaks at epoch 1: patience 2 stops after epoch 3 of at most 6."""
    original = finetune.validation_scores
    sequence = iter([0.3, 0.6, 0.5, 0.55, 0.9, 0.9])

    def fake(task, probs, samples):
        if all(np.all(p == 1) for p in probs):  # the floor's constant map: the real score
            return original(task, probs, samples)
        return {"dice": next(sequence)}

    monkeypatch.setattr(finetune, "validation_scores", fake)
    phantoms = synthetic_subset("train", 6, size=64, seed=0)
    cfg = variant_config("unet", model_kwargs=TINY_UNET, epochs=6, patience=2, batch_size=2, image_size=64,
                         max_steps_per_epoch=1)
    res = fit(cfg, phantoms[:4], phantoms[4:], device="cpu", seed=0, run_dir=tmp_path, progress=False)
    epochs = res.history[res.history["kind"] == "epoch"]
    assert len(epochs) == 4 and epochs["stop"].iloc[-1] == "patience"
    assert res.best == (1, 0.6)
    assert res.record["epochs_run"] == 4 and res.record["stop"] == "patience"
    assert res.record["plateau"] is True and res.record["late_gain"] is None  # 4 validated epochs, window 5
    assert res.health.best_score == 0.6 and res.record["status"] == res.health.status
    assert res.record["floors"] == {"dice": round(score_floors("single", phantoms[4:])["dice"], 4)}
    extra = load_exported(res.export_path).extra
    assert extra["health"] == res.record and extra["best_epoch"] == 1


def test_patience_in_configs_and_profiles():
    from ssinfnet.book.profiles import get_profile

    assert variant_config("ssinfnet", get_profile("cpu")).patience == get_profile("cpu").patience == 25
    assert variant_config("multi_ssinfnet", get_profile("smoke")).patience == 2
    with pytest.raises(ValueError, match="patience"):
        variant_config("ssinfnet", patience=0)
