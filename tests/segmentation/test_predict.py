"""Tests of the ``predict`` tool: exported models, readers of every input format, written maps, CLI."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssinfnet.evaluation import infnet_metrics, paper_metrics
from ssinfnet.cli import main as cli_main
from ssinfnet.data.io import DataError, read_image
from ssinfnet.data.phantoms import LUNG_WINDOW, window_hu
from ssinfnet.evaluation.folders import evaluate_folders
from ssinfnet.models.registry import build_model
from ssinfnet.training.export import EXPORT_FORMAT, LoadedModel, export_model, load_exported
from ssinfnet.segmentation.folders import OUTPUT_MARKER, class_colour_map, predict_folder, read_slices
from ssinfnet.segmentation.pipeline import MODEL_ONLY, predict_slices
from ssinfnet.segmentation.predict import predict_probabilities

SIZE = 32  # network input side (px)
TINY = {"base_width": 4, "depth": 2}

# name -> (H, W) of the 2-D inputs written by ``mixed_folder`` (all sizes differ)
SIZES = {"grey": (40, 50), "rgb": (36, 44), "rgba": (48, 33), "deep": (30, 41), "photo": (45, 38),
         "ct": (34, 46)}
NIFTI_XYZ = (28, 22, 3)  # slices come out transposed: (H, W) = (22, 28)


def _ramp(h: int, w: int, seed: int) -> np.ndarray:
    """uint8 image with structure (a ramp plus noise), so models give non-constant maps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    return np.clip(xx * 200 / w + yy * 40 / h + rng.normal(0, 12, (h, w)), 0, 255).astype(np.uint8)


def write_dicom(path: Path, stored: np.ndarray, slope: float, intercept: float) -> None:
    """A minimal CT DICOM file (signed 16-bit) with RescaleSlope/Intercept; (F, H, W) gives F frames."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.PatientID = "synthetic"
    ds.Rows, ds.Columns = stored.shape[-2:]
    if stored.ndim == 3:
        ds.NumberOfFrames = stored.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleIntercept = f"{intercept:g}"
    ds.PixelData = stored.astype("<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_mixed_folder(folder: Path) -> dict[str, np.ndarray]:
    """Write one file per supported kind plus a truncated PNG; return the HU arrays of DICOM/NIfTI."""
    import nibabel as nib

    folder.mkdir(parents=True)
    Image.fromarray(_ramp(*SIZES["grey"], 1)).save(folder / "grey.png")
    g = _ramp(*SIZES["rgb"], 2)
    Image.fromarray(np.stack([g, g, g], -1)).save(folder / "rgb.png")
    g = _ramp(*SIZES["rgba"], 3)
    Image.fromarray(np.stack([g, g, g, np.full_like(g, 255)], -1), mode="RGBA").save(folder / "rgba.png")
    deep = Image.fromarray(_ramp(*SIZES["deep"], 4).astype(np.uint16) * 257)
    assert deep.mode == "I;16"
    deep.save(folder / "deep.png")
    Image.fromarray(_ramp(*SIZES["photo"], 5)).save(folder / "photo.jpg", quality=90)
    stored = _ramp(*SIZES["ct"], 6).astype(np.int16) * 4  # 0..1020
    write_dicom(folder / "ct.dcm", stored, slope=2.0, intercept=-1500.0)
    rng = np.random.default_rng(7)
    vol = rng.uniform(-1000, 200, NIFTI_XYZ).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(folder / "vol.nii.gz"))
    good = folder / "grey.png"
    (folder / "broken.png").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    return {"ct": stored.astype(np.float64) * 2.0 - 1500.0, "vol": vol}


def expected_shapes() -> dict[str, tuple[int, int]]:
    shapes = dict(SIZES)
    for k in range(NIFTI_XYZ[2]):
        shapes[f"vol_{k:03d}"] = (NIFTI_XYZ[1], NIFTI_XYZ[0])
    return shapes


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    single = build_model("unet", **TINY)
    multi = build_model("unet_multi", **TINY)
    for m in (single, multi):  # non-trivial batch-norm statistics, so eval-mode outputs vary
        m.train()
        with torch.no_grad():
            m(torch.randn(4, m.in_chans, SIZE, SIZE))
        m.eval()
    with torch.no_grad():  # sharpen and centre the multi head so that all three classes occur
        multi.head.weight.mul_(20)
        multi.head.bias.sub_(multi(torch.randn(4, 2, SIZE, SIZE))["out"].mean((0, 2, 3)))
    return {"single": single, "multi": multi,
            "single_path": export_model(root / "single.pt", single, "unet", TINY, SIZE, {"note": "test"},
                                        task="single"),
            "multi_path": export_model(root / "multi.pt", multi, "unet_multi", TINY, SIZE, task="multi")}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    hu = write_mixed_folder(root / "in")
    return root / "in", hu


@pytest.fixture(scope="module")
def predicted(models, mixed, tmp_path_factory):
    out = tmp_path_factory.mktemp("pred") / "out"
    single = load_exported(models["single_path"])
    csv_path = predict_folder(single, mixed[0], out, progress=False)
    with open(csv_path) as fh:
        return out, list(csv.DictReader(fh))


# ----------------------------------------------------------------------------- exported models

def test_export_round_trip_same_outputs(models):
    loaded = load_exported(models["single_path"])
    assert (loaded.name, loaded.image_size, loaded.kwargs, loaded.extra) == ("unet", SIZE, TINY, {"note": "test"})
    assert not loaded.model.training
    x = torch.randn(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    models["single"].eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(x)["out"], models["single"](x)["out"])


def test_load_exported_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_exported(tmp_path / "nope.pt")


class _Opaque:  # a class an ssinfnet file never holds
    pass


def _foreign_files(folder: Path, models) -> dict[str, Path]:
    """Files that are no loadable model: random bytes, a truncated export, a pickled object, empty, text."""
    files = {k: folder / f"{k}.pt" for k in ("garbage", "truncated", "object", "empty", "text")}
    files["garbage"].write_bytes(np.random.default_rng(0).bytes(2048))
    good = Path(models["single_path"]).read_bytes()
    files["truncated"].write_bytes(good[: len(good) // 2])
    torch.save({"obj": _Opaque()}, files["object"])
    files["empty"].write_bytes(b"")
    files["text"].write_text("hello, this is not a model\n")
    return files


# torch's exception class for each (a truncated zip fails on a seek or on the central directory)
@pytest.mark.parametrize("kind,cls", [("garbage", "UnpicklingError"), ("truncated", "OSError|RuntimeError"),
                                      ("object", "UnpicklingError"), ("empty", "EOFError"), ("text", "KeyError")])
def test_load_exported_foreign_file_says_what_without_unsafe_advice(kind, cls, models, tmp_path):
    path = _foreign_files(tmp_path, models)[kind]
    with pytest.raises(DataError) as err:
        load_exported(path)
    msg = str(err.value)
    assert re.match(re.escape(f"{path}: not a loadable ssinfnet model file (corrupt, truncated, or written by "
                              f"another program; ") + f"({cls})", msg), msg
    assert "weights_only" not in msg and "trust" not in msg and "\n" not in msg
    if kind == "object":
        assert "_Opaque" in msg  # the offending class is named


def test_load_exported_plain_state_dict(tmp_path, models):
    plain = tmp_path / "plain.pt"
    torch.save(models["single"].state_dict(), plain)
    with pytest.raises(DataError, match="not an ssinfnet exported model"):
        load_exported(plain)


def test_load_exported_mismatched_weights(tmp_path, models):
    wrong = export_model(tmp_path / "wrong.pt", models["single"], "unet", {"base_width": 8, "depth": 2}, SIZE,
                         task="single")
    with pytest.raises(DataError, match="wrong.pt: exported model cannot be rebuilt"):
        load_exported(wrong)


# ----------------------------------------------------------------------------- readers

def test_read_slices_dicom_applies_rescale_and_window(mixed):
    folder, hu = mixed
    [(name, img)] = read_slices(folder / "ct.dcm")
    assert name == "ct" and img.dtype == np.uint8 and img.shape == SIZES["ct"]
    np.testing.assert_array_equal(img, window_hu(hu["ct"], *LUNG_WINDOW))
    # one pixel by hand: HU = 2 * stored - 1500; lung window (-600, 1500) spans -1350..150 HU
    s = int(_ramp(*SIZES["ct"], 6)[3, 5]) * 4
    assert img[3, 5] == min(255, max(0, round((2 * s - 1500 + 1350) / 1500 * 255)))


def test_read_slices_multiframe_dicom_one_slice_per_frame(tmp_path):
    stored = np.stack([np.full((6, 7), v, dtype=np.int16) for v in (0, 500, 1000)])
    write_dicom(tmp_path / "multi.dcm", stored, slope=1.0, intercept=-1024.0)
    slices = read_slices(tmp_path / "multi.dcm")
    assert [n for n, _ in slices] == ["multi_000", "multi_001", "multi_002"]
    for (_, img), v in zip(slices, (0, 500, 1000)):
        assert img.shape == (6, 7)
        assert (img == window_hu(np.array([v - 1024.0]), *LUNG_WINDOW)[0]).all()


def test_read_slices_garbage_dicom_raises(tmp_path):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not a dicom file" * 20)
    with pytest.raises(DataError, match="bad.dcm: unreadable DICOM"):
        read_slices(bad)


def test_read_slices_nifti_one_slice_per_axial_plane(mixed):
    folder, hu = mixed
    slices = read_slices(folder / "vol.nii.gz")
    assert [n for n, _ in slices] == ["vol_000", "vol_001", "vol_002"]
    for k, (_, img) in enumerate(slices):
        np.testing.assert_array_equal(img, window_hu(hu["vol"][:, :, k].T, *LUNG_WINDOW))


def test_read_slices_png_kinds_agree_with_grey(mixed):
    folder, _ = mixed
    assert read_slices(folder / "deep.png")[0][1].shape == SIZES["deep"]
    np.testing.assert_array_equal(read_slices(folder / "deep.png")[0][1], _ramp(*SIZES["deep"], 4))
    np.testing.assert_array_equal(read_slices(folder / "rgba.png")[0][1], _ramp(*SIZES["rgba"], 3))


def test_read_slices_truncated_png_raises(mixed):
    with pytest.raises(DataError, match="broken.png"):
        read_slices(mixed[0] / "broken.png")


# ----------------------------------------------------------------------------- predict_folder

def test_one_8bit_map_per_slice_at_input_size(predicted):
    out, _ = predicted
    shapes = expected_shapes()
    written = sorted(p.stem for p in out.glob("*.png"))
    assert written == sorted(shapes)
    for name, shape in shapes.items():
        with Image.open(out / f"{name}.png") as img:
            assert img.mode == "L", name
            assert (img.height, img.width) == shape, name


def test_csv_lists_every_slice_and_the_unreadable_file(predicted):
    _, rows = predicted
    ok = {r["slice"]: r for r in rows if r["status"] == "ok"}
    assert set(ok) == set(expected_shapes())
    bad = [r for r in rows if r["status"] != "ok"]
    assert len(rows) == len(expected_shapes()) + 1
    assert [(r["path"], r["status"], r["slice"]) for r in bad] == [("broken.png", "unreadable", "")]
    assert "broken.png" in bad[0]["reason"]
    assert {r["path"] for r in rows} == {"grey.png", "rgb.png", "rgba.png", "deep.png", "photo.jpg", "ct.dcm",
                                         "vol.nii.gz", "broken.png"}
    assert all(r["reason"] == "" for r in ok.values())
    for name, (h, w) in expected_shapes().items():
        assert (int(ok[name]["height"]), int(ok[name]["width"])) == (h, w)
        assert 0.0 <= float(ok[name]["infection_fraction"]) <= 1.0


def test_map_values_are_the_rounded_probabilities(models, mixed, tmp_path):
    # with the input steps and the lung restriction off, the map is the model's probability as it is
    single = load_exported(models["single_path"])
    csv_path = predict_folder(single, mixed[0] / "grey.png", tmp_path / "out", progress=False, options=MODEL_ONLY)
    with open(csv_path) as fh:
        [row] = list(csv.DictReader(fh))
    image = read_image(mixed[0] / "grey.png")
    [prob] = predict_probabilities(single.model, [image], SIZE)
    written = np.asarray(Image.open(tmp_path / "out" / "grey.png"))
    np.testing.assert_array_equal(written, np.round(prob * 255).astype(np.uint8))
    assert float(row["infection_fraction"]) == pytest.approx(float((prob >= 0.5).mean()))
    assert (row["input_steps"], row["lung_restricted"]) == ("", "no")
    assert written.min() < written.max()  # a structured input gives a non-constant map


def test_default_maps_are_the_pipelines(models, mixed, predicted):
    # by default predict writes what the pipeline (input steps, lung restriction) gives, and says what it did
    out, rows = predicted
    single = load_exported(models["single_path"])
    [res] = predict_slices(single, [(read_image(mixed[0] / "grey.png"), "uint8")])
    np.testing.assert_array_equal(np.asarray(Image.open(out / "grey.png")), np.round(res.prob * 255).astype(np.uint8))
    row = next(r for r in rows if r["slice"] == "grey")
    assert {k: row[k] for k in res.record()} == {k: str(v) for k, v in res.record().items()}
    ct = next(r for r in rows if r["slice"] == "ct")
    assert ct["kind"] == "hu" and ct["input_steps"].startswith("HU windowed to level -600, width 1500")


def test_written_maps_score_like_metrics_on_the_same_arrays(predicted, tmp_path):
    out, _ = predicted
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    maps, gts, names = [], [], []
    for k, (name, (h, w)) in enumerate(sorted(expected_shapes().items())):
        gt = np.zeros((h, w), dtype=bool)
        gt[h // 4: h // 4 + h // 2, k % 5: k % 5 + w // 2] = True
        Image.fromarray(gt.astype(np.uint8) * 255).save(gt_dir / f"{name}.png")
        maps.append(np.asarray(Image.open(out / f"{name}.png")).astype(np.float64) / 255.0)
        gts.append(gt)
        names.append(name)

    res = evaluate_folders(out, gt_dir, protocol="infnet")
    assert res["counts"]["scored"] == len(names) and res["counts"]["resized"] == 0
    per = [infnet_metrics.infnet_image_scores(infnet_metrics.minmax_normalise(m), g) for m, g in zip(maps, gts)]
    ref = infnet_metrics.infnet_summary(per)
    for key in ("meanDic", "maxDic", "Sm", "meanEm", "MAE"):
        assert res["metrics"][key] == pytest.approx(ref[key], abs=1e-12), key

    res = evaluate_folders(out, gt_dir, protocol="paper", threshold=0.5)
    table = paper_metrics.paper_scores(maps, gts, image_ids=names, threshold=0.5)
    got = {r["image"]: r for r in res["per_image"]}
    for r in table.itertuples():
        assert got[r.image]["dice"] == pytest.approx(r.dice, abs=1e-12)
        assert got[r.image]["iou"] == pytest.approx(r.iou, abs=1e-12)


def test_multi_model_writes_class_index_and_colour_maps(models, mixed, tmp_path):
    single = load_exported(models["single_path"])
    multi = load_exported(models["multi_path"])
    csv_path = predict_folder(single, mixed[0], tmp_path / "out", multi=multi, progress=False)
    with open(csv_path) as fh:
        rows = [r for r in csv.DictReader(fh) if r["status"] == "ok"]
    assert len(rows) == len(expected_shapes())
    seen = set()
    for r in rows:
        name = r["slice"]
        idx_img = Image.open(tmp_path / "out" / f"{name}_classes.png")
        rgb_img = Image.open(tmp_path / "out" / f"{name}_classes_rgb.png")
        assert idx_img.mode == "L" and rgb_img.mode == "RGB"
        idx = np.asarray(idx_img)
        assert idx.shape == expected_shapes()[name]
        assert set(np.unique(idx).tolist()) <= {0, 1, 2}
        seen |= set(np.unique(idx).tolist())
        np.testing.assert_array_equal(np.asarray(rgb_img), class_colour_map(idx))
        assert float(r["ggo_fraction"]) == pytest.approx(float((idx == 1).mean()))
        assert float(r["consolidation_fraction"]) == pytest.approx(float((idx == 2).mean()))
    assert seen == {0, 1, 2}  # so the colour check above saw red, green and black pixels


def test_class_colour_map_red_green_black():
    idx = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    rgb = class_colour_map(idx)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == [0, 0, 0]
    assert rgb[0, 1].tolist() == rgb[1, 1].tolist() == [255, 0, 0]  # GGO red
    assert rgb[1, 0].tolist() == [0, 204, 0]  # consolidation green


def test_output_equal_to_input_folder_refused(models, mixed):
    single = load_exported(models["single_path"])
    with pytest.raises(DataError, match="must differ from the input folder"):
        predict_folder(single, mixed[0], mixed[0], progress=False)
    with pytest.raises(DataError, match="must differ from the input folder"):
        predict_folder(single, mixed[0] / "grey.png", mixed[0], progress=False)


def test_empty_folder_raises(models, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no supported images"):
        predict_folder(load_exported(models["single_path"]), tmp_path / "empty", tmp_path / "o", progress=False)


def test_models_swapped_are_refused(models, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_ramp(20, 20, 0)).save(folder / "a.png")
    single, multi = load_exported(models["single_path"]), load_exported(models["multi_path"])
    with pytest.raises(DataError, match=r"multi.pt is a multi \(GGO/consolidation\) segmentation model \(task "
                                        r"'multi'\); --checkpoint expects a single \(infection\) segmentation model"):
        predict_folder(multi, folder, tmp_path / "o", progress=False)
    with pytest.raises(DataError, match="single.pt is a single .* --multi-checkpoint expects a multi"):
        predict_folder(single, folder, tmp_path / "o", multi=single, progress=False)
    # a model loaded without its task (built by hand) is still refused on its input channels
    untagged = LoadedModel(multi.model, multi.name, multi.image_size, multi.kwargs, {})
    with pytest.raises(DataError, match="takes 2 input channels; expected 1"):
        predict_folder(untagged, folder, tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


def test_single_model_with_several_outputs_is_refused(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_ramp(20, 20, 0)).save(folder / "a.png")
    three = build_model("unet", out_chans=3, **TINY)
    path = export_model(tmp_path / "three.pt", three, "unet", {"out_chans": 3, **TINY}, SIZE, task="single")
    with pytest.raises(DataError, match="3 output channels; expected 1"):
        predict_folder(load_exported(path), folder, tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()  # checked with a blank image before anything is written


def test_two_inputs_with_the_same_stem_are_not_overwritten(models, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_ramp(20, 24, 0)).save(folder / "a.png")
    Image.fromarray(_ramp(26, 22, 1)).save(folder / "a.jpg")
    csv_path = predict_folder(load_exported(models["single_path"]), folder, tmp_path / "o", progress=False)
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["path"], r["status"]) for r in rows] == [("a.jpg", "ok"), ("a.png", "skipped")]
    bad = rows[1]
    assert bad["reason"] == "its map a.png is already written for a.jpg; rename one of the two"
    ok = next(r for r in rows if r["status"] == "ok")
    with Image.open(tmp_path / "o" / "a.png") as img:  # the map belongs to the file reported ok
        assert (img.height, img.width) == (int(ok["height"]), int(ok["width"]))


# ----------------------------------------------------------------------------- command line

def test_cli_predict_returns_0_and_writes(models, mixed, tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli_main(["predict", "--checkpoint", str(models["single_path"]), "--multi-checkpoint",
                     str(models["multi_path"]), "--input", str(mixed[0]), "--output", str(out), "--no-progress",
                     "--device", "cpu"])
    assert code == 0
    assert (out / "lesions.csv").is_file() and (out / "vol_002_classes.png").is_file()
    captured = capsys.readouterr()
    assert re.search(rf"{len(expected_shapes())} slices predicted \(\d+ out of distribution\); files unreadable 1, "
                     r"unsupported 0, skipped 0", captured.out), captured.out
    # the ramps and random volumes are nothing like CT: one warning line per file names it and says why
    warned = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert {line.split(":")[1].strip() for line in warned} <= {"grey.png", "rgb.png", "rgba.png", "deep.png",
                                                               "photo.jpg", "ct.dcm", "vol.nii.gz"}
    assert warned and all("out of distribution" in line for line in warned)


def test_cli_predict_flip_writes_the_flip_averaged_maps(models, tmp_path, monkeypatch):
    """--flip reaches the pipeline: the written map is the flip-averaged prediction, not the plain one."""
    from ssinfnet.segmentation import folders

    seen = []
    original = folders.predict_slices
    monkeypatch.setattr(folders, "predict_slices", lambda *a, **k: seen.append(a[2].flip) or original(*a, **k))
    image = np.random.default_rng(1).integers(0, 256, (48, 40)).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "x.png")
    maps = {}
    for flag in ([], ["--flip"]):
        out = tmp_path / f"out{len(flag)}"
        assert cli_main(["predict", "--checkpoint", str(models["single_path"]), "--input", str(tmp_path / "x.png"),
                         "--output", str(out), "--no-progress", "--device", "cpu", "--no-lung-mask", *flag]) == 0
        with Image.open(out / "x.png") as img:
            maps[bool(flag)] = np.asarray(img)
    assert seen == [False, True] and not np.array_equal(maps[False], maps[True])


def test_cli_predict_missing_checkpoint_returns_2(mixed, tmp_path, capsys):
    code = cli_main(["predict", "--checkpoint", str(tmp_path / "missing.pt"), "--input", str(mixed[0]),
                     "--output", str(tmp_path / "o"), "--no-progress", "--device", "cpu"])
    assert code == 2
    assert "missing.pt" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_predict_output_is_input_returns_2(models, mixed, capsys):
    code = cli_main(["predict", "--checkpoint", str(models["single_path"]), "--input", str(mixed[0]),
                     "--output", str(mixed[0]), "--no-progress", "--device", "cpu"])
    assert code == 2
    assert "must differ" in capsys.readouterr().err


# ----------------------------------------------------------------------------- what a model file is (defect 2)

def _raw(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_export_records_task_network_classes_and_inputs(models):
    single, multi = _raw(models["single_path"]), _raw(models["multi_path"])
    assert EXPORT_FORMAT == "ssinfnet-model-v2"
    assert {k: single[k] for k in ("format", "task", "network", "head", "classes", "in_chans")} == {
        "format": "ssinfnet-model-v2", "task": "single", "network": "unet", "head": "seg",
        "classes": ("infection",), "in_chans": 1}
    assert {k: multi[k] for k in ("task", "network", "head", "classes", "in_chans")} == {
        "task": "multi", "network": "unet_multi", "head": "seg",
        "classes": ("background", "GGO", "consolidation"), "in_chans": 2}
    assert single["outputs"] == "1 logit channel; sigmoid = infection probability"
    loaded = load_exported(models["multi_path"], expect_task="multi")
    assert (loaded.task, loaded.classes, loaded.in_chans, loaded.path) == (
        "multi", ("background", "GGO", "consolidation"), 2, Path(models["multi_path"]))


def test_export_refuses_unknown_task_and_channels_that_do_not_fit(models, tmp_path):
    with pytest.raises(ValueError, match="task must be one of .*got 'segmentation'"):
        export_model(tmp_path / "a.pt", models["single"], "unet", TINY, SIZE, task="segmentation")
    with pytest.raises(ValueError, match="a multi segmentation model takes 2 input channel"):
        export_model(tmp_path / "b.pt", models["single"], "unet", TINY, SIZE, task="multi")
    with pytest.raises(TypeError, match="task"):  # every caller must say what it exports
        export_model(tmp_path / "c.pt", models["single"], "unet", TINY, SIZE)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """The pretraining exports of a single and a multi (image + prior) pretraining, as the book writes them."""
    from ssinfnet.pretraining.inpainting import PretrainConfig, build_models, save_pretrained

    root = tmp_path_factory.mktemp("runs") / "x" / "pretrain"
    torch.manual_seed(0)
    out = {}
    for kind, cfg in (("single", PretrainConfig(network="unet", model_kwargs=TINY)),
                      ("multi", PretrainConfig(network="unet_multi", model_kwargs=TINY, with_prior=True))):
        out[kind] = save_pretrained(build_models(cfg), cfg, root / kind, SIZE)
    return out


def test_pretraining_exports_say_what_they_are(pretrained):
    assert {k: _raw(p)["task"] for k, p in pretrained["single"].items()} == {"inpainter": "inpainting",
                                                                               "coach": "coach"}
    inp = load_exported(pretrained["multi"]["inpainter"], expect_task="inpainting")
    assert (inp.task, inp.classes, inp.in_chans, inp.kwargs["head"]) == ("inpainting", (), 2, "inpaint")
    assert _raw(pretrained["single"]["coach"])["head"] == "mask"


@pytest.mark.parametrize("which,expect,role,message", [
    ("single/coach", "single", "--checkpoint",
     "is a coach (pretraining) model (task 'coach'); --checkpoint expects a single (infection) segmentation model"),
    ("single/inpainter", "single", "--checkpoint",
     "is an inpainting (pretraining) model (task 'inpainting'); --checkpoint expects a single (infection) "
     "segmentation model"),
    ("multi/inpainter", "multi", "--multi-checkpoint",
     "is an inpainting (pretraining) model (task 'inpainting'); --multi-checkpoint expects a multi "
     "(GGO/consolidation) segmentation model"),
])
def test_load_exported_refuses_a_model_of_another_task(pretrained, which, expect, role, message):
    kind, name = which.split("/")
    path = pretrained[kind][name]
    with pytest.raises(DataError) as err:
        load_exported(path, expect_task=expect, role=role)
    assert str(err.value) == f"{path} {message}"


def test_cli_refuses_pretraining_exports_and_writes_nothing(pretrained, models, mixed, tmp_path, capsys):
    out = tmp_path / "o"
    code = cli_main(["predict", "--checkpoint", str(pretrained["single"]["coach"]), "--input", str(mixed[0]),
                     "--output", str(out), "--no-progress", "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert err == (f"error: {pretrained['single']['coach']} is a coach (pretraining) model (task 'coach'); "
                   f"--checkpoint expects a single (infection) segmentation model\n")
    # the multi pretraining inpainter has the 2 input channels of a multi model: only its task tells
    code = cli_main(["predict", "--checkpoint", str(models["single_path"]), "--multi-checkpoint",
                     str(pretrained["multi"]["inpainter"]), "--input", str(mixed[0]), "--output", str(out),
                     "--no-progress", "--device", "cpu"])
    assert code == 2
    assert "--multi-checkpoint expects a multi (GGO/consolidation)" in capsys.readouterr().err
    assert not out.exists()


def _v1_export(path: Path, model, name: str, extra: dict) -> Path:
    """A file as ``export_model`` wrote it before the format recorded the task."""
    from ssinfnet.training.checkpoint import save_checkpoint

    return save_checkpoint(path, {"format": "ssinfnet-model-v1", "name": name, "kwargs": dict(TINY),
                                  "image_size": SIZE, "state_dict": model.state_dict(), "extra": extra})


def test_v1_exports_take_the_task_from_extra_or_are_refused(models, tmp_path):
    old = load_exported(_v1_export(tmp_path / "seg.pt", models["single"], "unet", {"task": "single"}),
                        expect_task="single")
    assert (old.task, old.classes, old.in_chans) == ("single", ("infection",), 1)
    multi = _v1_export(tmp_path / "multi.pt", models["multi"], "unet_multi", {"task": "multi"})
    with pytest.raises(DataError, match="multi.pt is a multi .*--checkpoint expects a single"):
        load_exported(multi, expect_task="single", role="--checkpoint")
    coach = _v1_export(tmp_path / "coach.pt", models["single"], "unet", {})
    with pytest.raises(DataError, match=r"coach.pt: exported in the old format 'ssinfnet-model-v1', which does "
                                        r"not record what the model is .*re-export it .* or retrain it"):
        load_exported(coach)


def test_training_checkpoint_as_model_is_refused_with_a_hint(models, tmp_path):
    from ssinfnet.training.checkpoint import save_checkpoint

    last = save_checkpoint(tmp_path / "last.pt", {"models": {"net": models["single"].state_dict()}, "epoch": 1})
    with pytest.raises(DataError, match="last.pt: not an ssinfnet exported model .*training checkpoint"):
        load_exported(last)


def test_fit_exports_its_task(tmp_path):
    from ssinfnet.data.phantoms import synthetic_subset
    from ssinfnet.segmentation.fit import fit
    from ssinfnet.segmentation.variants import variant_config

    samples = synthetic_subset("train", 4, size=32, seed=0)
    small = dict(model_kwargs=TINY, epochs=1, batch_size=2, image_size=32, max_steps_per_epoch=1)
    single = fit(variant_config("unet", **small), samples[:2], samples[2:], device="cpu", seed=0,
                 run_dir=tmp_path / "single", progress=False)
    multi = fit(variant_config("multi_unet", **small), samples[:2], samples[2:], device="cpu", seed=0,
                run_dir=tmp_path / "multi", priors_train=[s.prior for s in samples[:2]],
                priors_val=[s.prior for s in samples[2:]], progress=False)
    assert (_raw(single.export_path)["task"], _raw(single.export_path)["classes"]) == ("single", ("infection",))
    assert (_raw(multi.export_path)["task"], _raw(multi.export_path)["in_chans"]) == ("multi", 2)


def test_stages_predict_with_refuses_a_pretraining_export(pretrained, models):
    from ssinfnet.book.stages import variants as stages
    from ssinfnet.data.phantoms import synthetic_subset

    samples = synthetic_subset("train", 1, size=32, seed=0)
    with pytest.raises(DataError, match="coach.pt is a coach .*expected a single"):
        stages.predict_with(pretrained["single"]["coach"], samples, "cpu")
    [p] = stages.predict_with(models["single_path"], samples, "cpu")
    assert p.shape == (32, 32)


def test_export_file_has_the_mode_of_a_new_file(models, tmp_path):
    old = os.umask(0o027)
    try:
        path = export_model(tmp_path / "m.pt", models["single"], "unet", TINY, SIZE, task="single")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640  # 0o666 & ~0o027, not mkstemp's 0o600


# ----------------------------------------------------------------------------- the output folder (defect 1)

def _predict(models, inp, out, *extra) -> int:
    return cli_main(["predict", "--checkpoint", str(models["single_path"]), "--input", str(inp),
                     "--output", str(out), "--no-progress", "--device", "cpu", *extra])


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _ct_folder(folder: Path, names=("18", "21")) -> Path:
    folder.mkdir(parents=True)
    for k, n in enumerate(names):
        Image.fromarray(_ramp(24, 28, k)).save(folder / f"{n}.png")
    return folder


def test_folder_of_other_files_is_not_overwritten(models, tmp_path, capsys):
    images = _ct_folder(tmp_path / "imgs")
    gt = tmp_path / "gt"  # ground-truth masks named like the images: predict would replace them
    gt.mkdir()
    for n in ("18", "21"):
        Image.fromarray((_ramp(24, 28, 9) > 128).astype(np.uint8) * 255).save(gt / f"{n}.png")
    before = _snapshot(gt)
    assert _predict(models, images, gt) == 2
    assert capsys.readouterr().err == (f"error: {gt} is not empty and was not written by predict; choose a new "
                                       f"or empty folder, or use --overwrite to write into it anyway\n")
    assert _snapshot(gt) == before  # nothing written, nothing replaced

    assert _predict(models, images, gt, "--overwrite") == 0  # the user asked for it
    after = _snapshot(gt)
    assert after["18.png"] != before["18.png"] and OUTPUT_MARKER in after


def test_new_empty_and_own_folders_are_written(models, tmp_path, capsys):
    images = _ct_folder(tmp_path / "imgs")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _predict(models, images, empty) == 0
    assert _predict(models, images, tmp_path / "new" / "deeper") == 0
    for out in (empty, tmp_path / "new" / "deeper"):
        assert sorted(_snapshot(out)) == [OUTPUT_MARKER, "18.png", "21.png", "lesions.csv"]
    first = _snapshot(empty)
    assert _predict(models, images, empty) == 0  # its own folder (marker): a rerun needs no --overwrite
    assert _snapshot(empty) == first  # the same maps again


def test_output_inside_or_around_the_input_folder_is_refused(models, tmp_path):
    images = _ct_folder(tmp_path / "imgs")
    single = load_exported(models["single_path"])
    with pytest.raises(DataError, match="output folder is inside the input folder .*choose a folder outside it"):
        predict_folder(single, images, images / "pred", progress=False, overwrite=True)
    with pytest.raises(DataError, match="output folder contains the input folder"):
        predict_folder(single, images, tmp_path, progress=False, overwrite=True)
    assert not (images / "pred").exists() and not (tmp_path / OUTPUT_MARKER).exists()
    # a single file's folder is never descended: an output beside it is fine
    predict_folder(single, images / "18.png", images / "pred", progress=False)
    assert sorted(_snapshot(images / "pred")) == [OUTPUT_MARKER, "18.png", "lesions.csv"]


def test_output_that_is_a_file_is_refused(models, tmp_path, capsys):
    images = _ct_folder(tmp_path / "imgs")
    (tmp_path / "out.png").write_bytes(b"x")
    assert _predict(models, images, tmp_path / "out.png", "--overwrite") == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'out.png'} exists and is not a folder\n"


# ----------------------------------------------------------------------------- subfolders and the table (defect 3)

def test_subfolders_are_read_and_mirrored_and_every_file_gets_a_row(models, tmp_path):
    root = tmp_path / "dataset"
    (root / "p1" / "ct").mkdir(parents=True)
    (root / "p2").mkdir()
    (root / ".cache").mkdir()
    Image.fromarray(_ramp(30, 34, 0)).save(root / "top.png")
    Image.fromarray(_ramp(26, 20, 1)).save(root / "p1" / "ct" / "a.png")
    Image.fromarray(_ramp(22, 25, 2)).save(root / "p2" / "a.png")  # same name, other folder: no clash
    write_dicom(root / "p2" / "s.dcm", _ramp(18, 19, 3).astype(np.int16), slope=1.0, intercept=-1024.0)
    (root / "p2" / "notes.txt").write_text("scanner settings")
    (root / "p1" / "scan").write_bytes(b"\x00" * 10)
    (root / "p1" / "ct" / "bad.png").write_bytes(b"not a png")
    (root / ".DS_Store").write_bytes(b"x")  # hidden: left out silently
    (root / "p1" / "link").symlink_to(root / "p2", target_is_directory=True)  # not followed, but listed
    (root / "p2" / "gone.png").symlink_to(root / "nowhere.png")  # a broken link
    Image.fromarray(_ramp(10, 10, 4)).save(root / ".cache" / "thumb.png")

    out = tmp_path / "out"
    rows = list(csv.DictReader(open(predict_folder(load_exported(models["single_path"]), root, out,
                                                   progress=False, options=MODEL_ONLY))))
    got = [(r["path"], r["slice"], r["status"]) for r in rows]
    assert got == [("p1/ct/a.png", "a", "ok"), ("p1/ct/bad.png", "", "unreadable"), ("p1/link", "", "unsupported"),
                   ("p1/scan", "", "unsupported"), ("p2/a.png", "a", "ok"), ("p2/gone.png", "", "unsupported"),
                   ("p2/notes.txt", "", "unsupported"), ("p2/s.dcm", "s", "ok"), ("top.png", "top", "ok")]
    reason = {r["path"]: r["reason"] for r in rows}
    assert reason["p1/link"] == "link to a folder (not followed)"
    assert reason["p2/gone.png"] == "not a regular file (broken link, pipe or device)"
    assert "bad.png" in reason["p1/ct/bad.png"]
    assert reason["p2/notes.txt"].startswith("file type .txt is not read (supported: png, jpg")
    assert reason["p1/scan"].startswith("file type (no extension) is not read")
    assert sorted(_snapshot(out)) == [OUTPUT_MARKER, "lesions.csv", "p1/ct/a.png", "p2/a.png", "p2/s.png",
                                      "top.png"]
    single = load_exported(models["single_path"])
    [prob] = predict_probabilities(single.model, [read_image(root / "p2" / "a.png")], SIZE)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "p2" / "a.png")),
                                  np.round(prob * 255).astype(np.uint8))
    with Image.open(out / "p1" / "ct" / "a.png") as img:
        assert img.size == (20, 26)


def test_nothing_predicted_exits_1_with_the_table(models, tmp_path, capsys):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(b"truncated")
    (root / "b.dcm").write_bytes(b"not a dicom file" * 20)
    (root / "c.txt").write_text("x")
    out = tmp_path / "out"
    assert _predict(models, root, out) == 1
    captured = capsys.readouterr()
    assert captured.err == (f"error: no slice was predicted (every supported file was unreadable or skipped); "
                            f"see {out / 'lesions.csv'}\n")
    rows = list(csv.DictReader(open(out / "lesions.csv")))
    assert [(r["path"], r["status"]) for r in rows] == [("b.dcm", "unreadable"), ("c.txt", "unsupported"),
                                                        ("sub/a.png", "unreadable")]


def test_no_supported_file_is_refused_before_anything_is_made(models, tmp_path, capsys):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "notes.txt").write_text("x")
    assert _predict(models, root, tmp_path / "out") == 2
    assert capsys.readouterr().err == (f"error: {root}: no supported images (png, jpg, tif, dcm, nii) found "
                                       f"(1 other file, e.g. sub/notes.txt)\n")
    assert _predict(models, root / "sub" / "notes.txt", tmp_path / "out") == 2
    assert "notes.txt: file type .txt is not read" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- device and arguments (defects 4, 6)

def test_resolve_device(monkeypatch):
    from ssinfnet.training.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match=r"^--device cuda: CUDA is not available here .*use --device cpu$"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match=r"^--device 'gpu' is not a device; use auto, cpu, cuda or cuda:N$"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match="is not a device"):
        resolve_device("cuda:x")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match=r"--device cuda:2: this machine has 2 CUDA device\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("args,message", [
    (["--device", "cuda"], "error: --device cuda: CUDA is not available here"),
    (["--device", "tpu"], "error: --device 'tpu' is not a device"),
    (["--checkpoint", "{tmp}/missing.pt"], "error: {tmp}/missing.pt: model file not found"),
    (["--checkpoint", "{tmp}/garbage.pt"], "error: {tmp}/garbage.pt: not a loadable ssinfnet model file"),
])
def test_cli_refusals_are_one_line_and_create_nothing(args, message, models, mixed, tmp_path, capsys,
                                                      monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a GPU machine
    (tmp_path / "garbage.pt").write_bytes(np.random.default_rng(0).bytes(2048))
    base = {"--checkpoint": str(models["single_path"]), "--input": str(mixed[0]),
            "--output": str(tmp_path / "o"), "--device": "cpu"}
    base.update(dict(zip(args[::2], [a.format(tmp=tmp_path) for a in args[1::2]])))
    code = cli_main(["predict", "--no-progress", *[x for kv in base.items() for x in kv]])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(message.format(tmp=tmp_path)) and err.count("\n") == 1, err
    assert "weights_only" not in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_cli_batch_size_below_1_is_a_usage_error(value, models, mixed, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _predict(models, mixed[0], tmp_path / "o", "--batch-size", value)
    assert exc.value.code == 2
    assert "argument --batch-size: must be an integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_predict_folder_checks_batch_size_before_making_the_folder(models, mixed, tmp_path):
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        predict_folder(load_exported(models["single_path"]), mixed[0], tmp_path / "o", batch_size=0,
                       progress=False)
    assert not (tmp_path / "o").exists()


def test_model_that_fails_on_its_own_input_size_is_refused_before_writing(models, tmp_path):
    # a U-Net of depth 2 needs sides of at least 4 px; this export claims it was trained at 2 px
    path = export_model(tmp_path / "tiny.pt", models["single"], "unet", TINY, 2, task="single")
    folder = _ct_folder(tmp_path / "in")
    with pytest.raises(DataError, match=r"single model .unet. fails on a blank 2 x 2 image \((Runtime|Value)Error: "):
        predict_folder(load_exported(path), folder, tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()
