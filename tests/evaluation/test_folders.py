"""Folder evaluation (both protocols), GT/prediction readers, the CLI entry and the evaluation plots."""

import argparse
import json
import re
from pathlib import Path

import numpy as np
from realdata import real_data_root
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from ssinfnet.evaluation import infnet_metrics as IM, paper_metrics as M
from ssinfnet.data.io import DataError
from ssinfnet.evaluation.folders import add_arguments, evaluate_folders, main, read_gt, read_prediction
from ssinfnet.evaluation.imresize import imresize


def _png(path: Path, arr: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    img.save(path)


@pytest.fixture
def folders(tmp_path):
    """pred/ and gt/ with: a normal pair, a pair whose prediction must be resized, an empty GT,
    a prediction without GT and a GT without prediction."""
    rng = np.random.default_rng(0)
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gts, preds = {}, {}
    g = np.zeros((12, 10), np.uint8)
    g[3:8, 2:6] = 255
    gts["1"], preds["1"] = g, rng.integers(20, 230, (12, 10)).astype(np.uint8)
    g = np.zeros((10, 14), np.uint8)
    g[2:6, 5:12] = 255
    gts["2"], preds["2"] = g, rng.integers(0, 256, (5, 7)).astype(np.uint8)  # half size -> resized
    gts["10"], preds["10"] = np.zeros((8, 8), np.uint8), rng.integers(0, 100, (8, 8)).astype(np.uint8)
    for k, a in gts.items():
        _png(gt_dir / f"{k}.png", a)
    for k, a in preds.items():
        _png(pred_dir / f"{k}.png", a)
    _png(pred_dir / "99.png", np.zeros((4, 4), np.uint8))
    _png(gt_dir / "7.png", np.zeros((4, 4), np.uint8))
    return pred_dir, gt_dir, gts, preds


def _snapshot(*dirs):
    return {p: p.stat().st_mtime_ns for d in dirs for p in sorted(Path(d).iterdir())}


def test_infnet_folders_equal_direct_metric_calls(folders):
    pred_dir, gt_dir, gts, preds = folders
    before = _snapshot(pred_dir, gt_dir)
    res = evaluate_folders(pred_dir, gt_dir, protocol="infnet")
    assert _snapshot(pred_dir, gt_dir) == before  # nothing written into the inputs
    assert res["counts"] == {"scored": 3, "pred_without_gt": 1, "gt_without_pred": 1, "empty_gt": 1,
                             "full_gt": 0, "resized": 1}
    assert res["pred_without_gt"] == ["99"] and res["gt_without_pred"] == ["7"] and res["resized"] == ["2"]
    per = []
    for k in ("1", "2", "10"):  # natural order
        g = gts[k] > 128
        p = preds[k] if preds[k].shape == g.shape else imresize(preds[k], g.shape)
        per.append(IM.infnet_image_scores(IM.minmax_normalise(p / 255.0), g))
    want = IM.infnet_summary(per)
    for key in ("meanDic", "maxDic", "meanSen", "meanSpe", "Sm", "meanEm", "maxEm", "MAE", "adpDice"):
        assert res["metrics"][key] == pytest.approx(want[key], abs=1e-15), key
    assert [r["image"] for r in res["per_image"]] == ["1", "2", "10"]
    assert res["per_image"][2]["meanDic"] == 0.0  # empty GT: TP = 0 at every threshold
    json.dumps(res, allow_nan=False)


def test_paper_folders_equal_direct_metric_calls(folders):
    pred_dir, gt_dir, gts, preds = folders
    res = evaluate_folders(pred_dir, gt_dir, protocol="paper", threshold=0.4)
    probs, masks = [], []
    for k in ("1", "2", "10"):
        g = gts[k] > 128
        p = preds[k] if preds[k].shape == g.shape else imresize(preds[k], g.shape)
        probs.append(p / 255.0)
        masks.append(g)
    table = M.paper_scores(probs, masks, image_ids=["1", "2", "10"], threshold=0.4)
    summ = M.summarise(table).set_index("metric")
    for metric in M.PAPER_METRICS:
        got = res["metrics"]["infection"][metric]
        assert got["mean"] == pytest.approx(summ.loc[metric, "mean"])
        assert got["n"] == 2 and got["n_excluded"] == 1  # the empty-GT image is excluded and counted
    assert res["per_image"][2]["dice"] is None  # NaN written as JSON null
    counted = evaluate_folders(pred_dir, gt_dir, protocol="paper", ignore_empty=False)
    assert counted["metrics"]["infection"]["dice"]["n"] == 3
    assert counted["per_image"][2]["dice"] == 1.0  # image 10 maps are < 100/255: nothing predicted
    low = evaluate_folders(pred_dir, gt_dir, protocol="paper", threshold=0.2, ignore_empty=False)
    assert low["per_image"][2]["dice"] == 0.0  # false positives on an empty GT


def test_gt_reader_rules(tmp_path):
    lab = np.array([[0, 1], [2, 0]], np.uint8)
    _png(tmp_path / "label.png", lab)
    with pytest.raises(DataError, match="label-index"):
        read_gt(tmp_path / "label.png")
    pal = Image.fromarray(lab, mode="L").convert("P")
    pal.save(tmp_path / "pal.png")
    with pytest.raises(DataError, match="palette"):
        read_gt(tmp_path / "pal.png")
    onebit = np.array([[True, False], [False, True]])
    Image.fromarray(onebit).save(tmp_path / "bit.png")
    assert Image.open(tmp_path / "bit.png").mode == "1"
    np.testing.assert_array_equal(read_gt(tmp_path / "bit.png"), onebit)
    rgb = np.zeros((8, 8, 3), np.uint8)  # 2 grey pixels in 64: 3 %, within the tolerated share
    rgb[0, 0] = (129, 0, 0)  # first channel > 128 is foreground
    rgb[0, 1] = (128, 255, 255)  # 128 is not
    rgb[5, 5] = (255, 0, 0)
    _png(tmp_path / "rgb.png", rgb)
    want = np.zeros((8, 8), bool)
    want[0, 0] = want[5, 5] = True
    np.testing.assert_array_equal(read_gt(tmp_path / "rgb.png"), want)
    _png(tmp_path / "empty.png", np.zeros((2, 2), np.uint8))
    assert not read_gt(tmp_path / "empty.png").any()  # an all-zero GT is a valid empty mask
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="broken.png"):
        read_gt(tmp_path / "broken.png")


def _grey_gt(n_mid: int, mid_value: int = 100, size: int = 10) -> np.ndarray:
    """A size x size GT: first half 0, second half 255, then ``n_mid`` pixels set to ``mid_value``."""
    a = np.zeros(size * size, np.uint8)
    a[size * size // 2:] = 255
    a[:n_mid] = mid_value
    return a.reshape(size, size)


@pytest.mark.parametrize("n_mid, ok", [(0, True), (5, True), (6, False), (37, False), (100, False)])
def test_gt_with_grey_values_is_refused_beyond_5_percent(tmp_path, n_mid, ok):
    _png(tmp_path / "g.png", _grey_gt(n_mid))
    if ok:
        assert read_gt(tmp_path / "g.png").sum() == 50
        return
    with pytest.raises(DataError) as exc:
        read_gt(tmp_path / "g.png")
    distinct = 1 + (n_mid < 50) + (n_mid < 100)
    assert str(exc.value) == (f"{tmp_path / 'g.png'}: not a binary mask: {distinct} distinct grey values, {n_mid}% of "
                              f"pixels between 16 and 239 (binary GT holds 0 and 255; at most 5% in between is "
                              f"tolerated). Is this an image folder?")


@pytest.mark.parametrize("values", [(0, 1), (0, 1, 2), (0, 10), (0, 15)])
def test_low_label_values_are_refused(tmp_path, values):
    a = np.array(values * 8, np.uint8)[:16].reshape(4, 4)
    _png(tmp_path / "lab.png", a)
    message = f"lab.png: looks like a label-index mask (values {sorted(set(values))})"
    with pytest.raises(DataError, match=re.escape(message)):
        read_gt(tmp_path / "lab.png")


def test_jpeg_compressed_gt_is_accepted(tmp_path):
    g = np.zeros((64, 64), np.uint8)
    g[10:40, 20:50] = 255
    Image.fromarray(g).save(tmp_path / "g.jpg", quality=75)
    raw = np.asarray(Image.open(tmp_path / "g.jpg"))
    assert len(np.unique(raw)) > 2  # JPEG did leave other values
    np.testing.assert_array_equal(read_gt(tmp_path / "g.jpg"), g > 128)


def _real_dataset():
    root = real_data_root()
    ds = None if root is None else Path(root) / "COVID-SemiSeg" / "Dataset"
    return ds if ds is not None and ds.is_dir() else None


@pytest.mark.skipif(_real_dataset() is None, reason="COVID-SemiSeg not found (set SSINFNET_DATA)")
def test_every_real_binary_gt_passes_and_ct_images_are_refused(tmp_path):
    ds = _real_dataset()
    folders = ["TestingSet/LungInfection-Test/GT", "TestingSet/MultiClassInfection-Test/GT-1",
               "TestingSet/MultiClassInfection-Test/GT-2", "TrainingSet/LungInfection-Train/Doctor-label/GT",
               "TrainingSet/LungInfection-Train/Doctor-label/Edge", "TrainingSet/MultiClassInfection-Train/Prior"]
    n = 0
    for folder in folders:
        for f in sorted((ds / folder).iterdir()):
            g = read_gt(f)
            n += 1
            if folder.endswith("LungInfection-Test/GT"):  # and as JPEG at PIL's default quality
                Image.open(f).save(tmp_path / "j.jpg", quality=75)
                assert (read_gt(tmp_path / "j.jpg") != g).mean() < 0.01
    assert n == 48 * 3 + 50 * 3
    for f in sorted((ds / "TestingSet/LungInfection-Test/Imgs").iterdir()):
        with pytest.raises(DataError, match=rf"{f.name}: not a binary mask: \d+ distinct grey values, [\d.]+% of pix"):
            read_gt(f)
    with pytest.raises(DataError, match="palette"):  # the 0/1/2 multi-class GT, as palette PNG
        read_gt(ds / "TestingSet/MultiClassInfection-Test/GT" / "18.png")


@pytest.mark.skipif(_real_dataset() is None, reason="COVID-SemiSeg not found (set SSINFNET_DATA)")
def test_ct_image_folder_as_gt_is_refused_by_the_cli(capsys):
    ds = _real_dataset()
    imgs, gt = ds / "TestingSet/LungInfection-Test/Imgs", ds / "TestingSet/LungInfection-Test/GT"
    assert main(_parse(["--pred", str(gt), "--gt", str(imgs)])) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {imgs}/") and ": not a binary mask: " in err and err.count("\n") == 1


def test_prediction_reader_takes_first_channel(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 1] = 10
    _png(tmp_path / "p.png", rgb)
    out = read_prediction(tmp_path / "p.png")
    assert out.dtype == np.uint8 and (out == 200).all()


def test_label_gt_folder_is_refused_by_evaluate(tmp_path):
    _png(tmp_path / "gt" / "1.png", np.array([[0, 1], [2, 0]], np.uint8))
    _png(tmp_path / "pred" / "1.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(DataError, match="1.png"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")


def test_no_matching_names_and_bad_arguments(tmp_path):
    _png(tmp_path / "gt" / "1.png", np.zeros((2, 2), np.uint8))
    _png(tmp_path / "pred" / "2.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(DataError, match="no prediction"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    with pytest.raises(ValueError, match="protocol"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt", protocol="matlab")
    with pytest.raises(ValueError, match="threshold"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt", protocol="paper", threshold=2)
    _png(tmp_path / "pred" / "2.jpg", np.zeros((2, 2), np.uint8))
    with pytest.raises(DataError, match="share the name"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")


def _parse(argv):
    return add_arguments(argparse.ArgumentParser()).parse_args(argv)


def test_main_prints_json_writes_output_and_exit_codes(folders, tmp_path, capsys):
    pred_dir, gt_dir, _, _ = folders
    out = tmp_path / "res" / "eval.json"
    assert main(_parse(["--pred", str(pred_dir), "--gt", str(gt_dir), "--output", str(out)])) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text()) and printed["protocol"] == "infnet"
    assert main(_parse(["--pred", str(tmp_path / "missing"), "--gt", str(gt_dir)])) == 2
    assert "missing" in capsys.readouterr().err
    inside = pred_dir / "eval.json"
    assert main(_parse(["--pred", str(pred_dir), "--gt", str(gt_dir), "--output", str(inside)])) == 2
    assert not inside.exists()


def test_an_existing_output_file_is_kept_unless_overwrite(folders, tmp_path, capsys):
    pred_dir, gt_dir, _, _ = folders
    mine = tmp_path / "notes.json"
    mine.write_text("a user's file")
    args = ["--pred", str(pred_dir), "--gt", str(gt_dir), "--output", str(mine)]
    assert main(_parse(args)) == 2
    assert capsys.readouterr().err == (f"error: --output {mine}: exists; give a new file name, or --overwrite to "
                                       f"replace it\n")
    assert mine.read_text() == "a user's file"
    assert main(_parse(args + ["--overwrite"])) == 0
    assert json.loads(mine.read_text())["protocol"] == "infnet"


def test_nothing_scored_exits_1(tmp_path, capsys):
    """All-empty GT under the paper protocol (empty images left out): every metric undefined -> exit 1."""
    for k in ("1", "2"):
        _png(tmp_path / "gt" / f"{k}.png", np.zeros((4, 4), np.uint8))
        _png(tmp_path / "pred" / f"{k}.png", np.full((4, 4), 200, np.uint8))
    out = tmp_path / "res.json"
    args = ["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--protocol", "paper"]
    assert main(_parse(args + ["--output", str(out)])) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    assert captured.err == ("error: nothing could be scored: all 2 GT masks are empty and the paper protocol "
                            "leaves empty-GT images out (--count-empty scores them)\n")
    assert main(_parse(args + ["--count-empty"])) == 0  # scored: 0.0 each (everything predicted, nothing there)
    assert json.loads(capsys.readouterr().out)["metrics"]["infection"]["dice"]["mean"] == 0.0
    assert main(_parse(args[:4])) == 0  # infnet protocol: every pair counts, empty GT included
    capsys.readouterr()
    _png(tmp_path / "other" / "3.png", np.zeros((4, 4), np.uint8))
    assert main(_parse(["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "other")])) == 1
    assert capsys.readouterr().err == (f"error: nothing could be scored: {tmp_path / 'pred'}: no prediction has a "
                                       f"ground-truth mask of the same name in {tmp_path / 'other'} (predictions: "
                                       f"2 files, e.g. 1, 2; GT: 1 file, e.g. 3)\n")


def _real_gt_dir():
    root = real_data_root()
    if root is None:
        return None
    test_gt = "TestingSet/LungInfection-Test/GT"
    for sub in (f"COVID-SemiSeg/Dataset/{test_gt}", f"Dataset/{test_gt}", test_gt):
        if (Path(root) / sub).is_dir():
            return Path(root) / sub
    return None


@pytest.mark.skipif(_real_gt_dir() is None, reason="COVID-SemiSeg test GT not found (set SSINFNET_DATA)")
def test_real_test_gt_scored_against_itself():
    gt_dir = _real_gt_dir()
    res = evaluate_folders(gt_dir, gt_dir, protocol="infnet")
    assert res["counts"]["scored"] == 48 and res["counts"]["resized"] == 0
    # A binary map passes map >= t exactly like the GT for the 255 thresholds t > 0; at t = 0 every
    # pixel is predicted: Dice_i = 2P/(P+N). Empty GT images score 0 (TP = 0).
    dice, em = [], []
    for f in sorted(gt_dir.glob("*.png")):
        g = read_gt(f)
        n, p = g.size, int(g.sum())
        dice.append((255 + 2 * p / (p + n)) / 256 if p else 0.0)
        em.append((255 * n + n / 4) / (n - 1) / 256 if p else None)  # t = 1 predicts nothing
    assert res["metrics"]["meanDic"] == pytest.approx(np.mean(dice), abs=1e-12)
    assert res["metrics"]["maxDic"] == pytest.approx(np.mean([d > 0 for d in dice]), abs=1e-12)
    assert res["metrics"]["meanSpe"] == pytest.approx(255 / 256 * np.mean([d > 0 for d in dice]))
    if all(e is not None for e in em):
        assert res["metrics"]["meanEm"] == pytest.approx(np.mean(em), rel=1e-12)
    assert res["metrics"]["MAE"] == 0.0 and res["metrics"]["Sm"] > 0.9999
    assert res["metrics"]["meanDic"] < 1.0  # the t = 0 threshold always costs a little


# ------------------------------------------------------------------ plots (smoke)
def test_plots_return_figures():
    from ssinfnet.plots.evaluation import plot_comparison_grid, plot_metric_distributions, plot_roc

    rng = np.random.default_rng(0)
    gts = [rng.random((8, 8)) < 0.3 for _ in range(3)] + [np.zeros((8, 8), bool)]
    probs = [np.clip(g * 0.6 + rng.random((8, 8)) * 0.5, 0, 1) for g in gts]
    for mode in ("pooled", "mean"):
        fig = plot_roc({"a": (probs, gts), "b": ([1 - p for p in probs], gts)}, mode=mode)
        assert isinstance(fig, Figure) and len(fig.axes[0].lines) == 3
        assert fig.axes[0].get_xlabel().islower()
    with pytest.raises(ValueError):
        plot_roc({"a": (probs, gts)}, mode="median")
    table = pd.concat([M.paper_scores(probs, gts).assign(model=m) for m in ("a", "b")])
    fig = plot_metric_distributions(table, metric="dice")
    assert isinstance(fig, Figure) and "1 NaN" in fig.axes[0].get_xticklabels()[0].get_text()
    labels = [rng.integers(0, 3, (8, 8)) for _ in range(2)]
    fig = plot_comparison_grid([rng.random((8, 8)) for _ in range(2)], labels, {"m": labels})
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * 3
    rgb = fig.axes[1].images[0].get_array()
    ggo = labels[0] == 1
    assert (rgb[ggo][:, 0] >= rgb[ggo][:, 1]).all()  # GGO tinted red
