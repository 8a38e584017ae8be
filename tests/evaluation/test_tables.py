import numpy as np
import pandas as pd
import pytest

from ssinfnet.evaluation import tables as evaluation
from ssinfnet.evaluation import infnet_metrics


def test_as_saved_png_quantises_like_an_8bit_file():
    np.testing.assert_allclose(evaluation.as_saved_png(np.array([0.0, 0.5, 0.999, 1.2])),
                               [0.0, 128 / 255, 1.0, 1.0])


def test_infnet_protocol_equals_metric_functions_on_quantised_maps():
    rng = np.random.default_rng(0)
    gts = [rng.uniform(size=(8, 9)) > 0.6 for _ in range(3)]
    maps = [np.clip(g * 0.7 + rng.uniform(0, 0.4, g.shape), 0, 1) for g in gts]
    got = evaluation.infnet_protocol(maps, gts)
    per = [infnet_metrics.infnet_image_scores(infnet_metrics.minmax_normalise(np.round(m * 255) / 255), g) for m, g in zip(maps, gts)]
    want = infnet_metrics.infnet_summary(per)
    for key in ("meanDic", "Sm", "meanEm", "MAE"):
        assert got[key] == pytest.approx(want[key])
    with pytest.raises(ValueError):
        evaluation.infnet_protocol(maps, gts[:2])


def test_paper_table_formats_mean_and_interval():
    scores = pd.DataFrame({"image": ["a", "b"], "class": ["infection"] * 2, "dice": [0.5, 0.7],
                           "iou": [0.3, 0.5], "recall": [1.0, 1.0], "precision": [0.4, 0.6], "auc": [0.9, 0.8]})
    table = evaluation.paper_table({"m": scores}, classes=["infection"], columns=("dice",))
    half = 1.96 * np.std([0.5, 0.7], ddof=1) / np.sqrt(2)
    assert table.loc[0, "infection dice"] == f"0.600 ± {half:.3f}"


def test_class_maps_and_worst_images():
    p = np.zeros((3, 2, 2)); p[2, 0, 0] = 1; p[1, 1, 1] = 1; p[0, 0, 1] = p[0, 1, 0] = 1
    np.testing.assert_array_equal(evaluation.class_maps([p])[0], [[2, 0], [0, 1]])
    scores = pd.DataFrame({"image": list("abcd"), "class": "infection", "dice": [0.9, 0.1, np.nan, 0.5],
                           "recall": 1.0, "precision": 1.0})
    assert list(evaluation.worst_images(scores, n=2).image) == ["b", "d"]


def test_init_effect_pairs_present_only():
    res = {"ssinfnet": {"meanDic": 0.5}, "sinfnet": {"meanDic": 0.6}, "unet": {"meanDic": 0.4}}
    out = evaluation.init_effect(res, [("ssinfnet", "sinfnet"), ("ssinfnet_cutout40", "sinfnet_cutout40")])
    assert out == {"ssinfnet - sinfnet": pytest.approx(-0.1)}
