"""Chapter 7's image branch end to end: iCTCF CT images -> class maps -> per-patient phenotypes -> mediation.

The fixture is a data root in the real layout, written from phantoms: a small COVID-SemiSeg tree (the
labelled slices chapter 7 measures), the iCTCF clinical table (12 patients) and CT slices of 10 of them
under ``ictcf-images/Patient <N>/``. Chapters 3 and 4 are stood in for by two tiny U-Nets trained here for
a few seconds on phantoms (the smoke chapters' models predict no lesion at all; see the report of this
branch), recorded under the contract's names ``model:ssinfnet`` and ``model:multi_ssinfnet``, and chapter
5 by its manifest record ``selected`` naming them (the models chosen on validation).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from ssinfnet.book import artifacts
from ssinfnet.book.context import RunContext
from ssinfnet.book.profiles import get_profile
from ssinfnet.book.stages import ictcf_images, statistics
from ssinfnet.data.io import DataError
from ssinfnet.data.maps import load_maps
from ssinfnet.data.phantoms import edge_of, make_phantom_hu, synthetic_subset, window_hu
from ssinfnet.data.transforms import normalize
from ssinfnet.models.registry import build_model
from ssinfnet.training.export import export_model

pytestmark = pytest.mark.slow  # chapter 7 run whole, several times: the first CI round (see .ci/run)

STAGE = "07_radiomics_mediation"
PATIENTS_WITH_IMAGES = tuple(range(1, 11))
PATIENTS = tuple(range(1, 13))
SLICES_PER_PATIENT = 2
CT_SIZE = 96
TINY = {"base_width": 8, "depth": 2}
NET_SIZE = 48

DS = Path("COVID-SemiSeg/Dataset")
TRAIN, MULTI_TRAIN = DS / "TrainingSet/LungInfection-Train/Doctor-label", DS / "TrainingSet/MultiClassInfection-Train"
TEST, MULTI_TEST = DS / "TestingSet/LungInfection-Test", DS / "TestingSet/MultiClassInfection-Test"
POOL = DS / "TrainingSet/LungInfection-Train/Pseudo-label"


def save(arr, path: Path, suffix=".png") -> None:
    path = path.with_suffix(suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, np.uint8)).save(path, **({"quality": 95} if suffix == ".jpg" else {}))


def write_phantom_semiseg(root: Path, n_train=6, n_test=4, n_pool=2, size=64) -> None:
    """Phantoms in the COVID-SemiSeg release layout (PNG images, binary, class, edge and prior masks)."""
    for s in synthetic_subset("train", n_train, size):
        save(s.image, root / TRAIN / "Imgs" / s.slice_id)
        save(s.infection * 255, root / TRAIN / "GT" / s.slice_id)
        save(edge_of(s.infection) * 255, root / TRAIN / "Edge" / s.slice_id)
        save(s.classes, root / MULTI_TRAIN / "GT" / s.slice_id)
        save(np.round(s.prior * 255), root / MULTI_TRAIN / "Prior" / s.slice_id)
    for s in synthetic_subset("test", n_test, size):
        save(s.image, root / TEST / "Imgs" / s.slice_id)
        save(s.infection * 255, root / TEST / "GT" / s.slice_id)
        save(s.classes, root / MULTI_TEST / "GT" / s.slice_id)
    for i, s in enumerate(synthetic_subset("unlabelled", n_pool, size)):
        save(s.image, root / POOL / "Imgs" / f"Data-1_phantomvolume_{i}")
        save(np.full(s.image.shape, 128), root / POOL / "GT" / f"Data-1_phantomvolume_{i}")


def lesion_load(pid: int) -> float:
    return 0.25 + 0.07 * pid


def ct_slice(pid: int, k: int):
    """The phantom CT slice ``k`` of patient ``pid``: (uint8 image, true classes)."""
    hu, classes, _ = make_phantom_hu(k, CT_SIZE, seed=30_000 + pid, lesion_load=lesion_load(pid))
    return window_hu(hu), classes


def write_ictcf(root: Path, clinical: bool = True, patients_with_images=PATIENTS_WITH_IMAGES) -> None:
    """CT slices in the iCTCF layout (``ictcf-images/Patient <N>/<k>.jpg``) and the raw clinical table."""
    for pid in patients_with_images:
        for k in range(SLICES_PER_PATIENT):
            save(ct_slice(pid, k)[0], root / "ictcf-images" / f"Patient {pid}" / str(k), ".jpg")
    if not clinical:
        return
    rng = np.random.default_rng(7)
    rows = [{"Patient ID": pid, "Age": float(40 + 3 * pid), "Gender": "Male" if pid % 2 else "Female",
             "Underlying diseases": ["No underlying disease", "Hypertension", "Hypertension, Diabetes"][pid % 3],
             "Morbidity outcome": "Severe" if rng.uniform() < lesion_load(pid) else "Control",
             "Mortality outcome": "Cured"} for pid in PATIENTS]
    path = root / "iCTCF-HUST19-clinical" / "raw_cf_data.csv"
    path.parent.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def train_tiny_models(folder: Path) -> dict[str, Path]:
    """A stage-1 and a multi U-Net trained for 100 full-batch Adam steps on 16 phantoms (a few seconds)."""
    train = synthetic_subset("train", 16, NET_SIZE, seed=0)
    x = normalize(torch.from_numpy(np.stack([s.image for s in train])).float()[:, None] / 255)
    infection = torch.from_numpy(np.stack([s.infection for s in train])).float()[:, None]
    classes = torch.from_numpy(np.stack([s.classes for s in train])).long()
    prior = torch.from_numpy(np.stack([s.prior for s in train])).float()[:, None]
    torch.manual_seed(0)
    single, multi = build_model("unet", **TINY), build_model("unet_multi", **TINY)
    jobs = ((single, x, lambda o: F.binary_cross_entropy_with_logits(o, infection, pos_weight=torch.tensor(3.0))),
            (multi, torch.cat([x, prior], 1), lambda o: F.cross_entropy(o, classes, weight=torch.tensor([1., 3., 3.]))))
    for model, inputs, loss in jobs:
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        model.train()
        for _ in range(100):
            opt.zero_grad()
            loss(model(inputs)["out"]).backward()
            opt.step()
        model.eval()
    return {"stage1": export_model(folder / "stage1.pt", single, "unet", TINY, NET_SIZE, task="single",
                                   extra={"health": HEALTHY}),
            "multi": export_model(folder / "multi.pt", multi, "unet_multi", TINY, NET_SIZE, task="multi",
                                  extra={"prior_source": "predicted", "health": HEALTHY})}


HEALTHY = {"status": "ok", "failed": False}
SELECTED = {"stage1": "ssinfnet", "multi": "multi_ssinfnet"}


def record_models(ctx, models: dict[str, Path], selected: dict | None = SELECTED, select: bool = True) -> None:
    """Copy the models (role -> file) to the declared paths of the variants ``selected`` names (role ->
    variant) and record them as chapters 3 and 4 would; then, unless ``select`` is False, record chapter
    5's choice on validation (``selected``: its manifest keys -> variant, None for "every one failed")."""
    chosen = {"stage1": None, "multi": None} if selected is None else selected
    for role, writer in (("stage1", "03_single"), ("multi", "04_multi")):
        variant = chosen[role] or SELECTED[role]
        art, fields = artifacts.declared(f"model:{variant}", writer=writer)
        path = ctx.run_dir / art.path.format(**fields)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(models[role], path)
        artifacts.record(ctx, writer, {f"model:{variant}": path})
    if select:
        ctx.record("05_evaluation", {}, selected={"test_predictions": chosen["stage1"],
                                                  "test_class_maps": chosen["multi"]})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return train_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_phantom_semiseg(root)
    write_ictcf(root)
    return root


@pytest.fixture(scope="module")
def image_run(data_root, models, tmp_path_factory):
    ctx = RunContext.open("smoke", str(data_root), str(tmp_path_factory.mktemp("runs") / "run"), device="cpu")
    record_models(ctx, models)
    return ctx, statistics.run(ctx, progress=False)


def written_and_recorded(ctx, conditions=()) -> dict:
    expected = artifacts.expected_outputs(STAGE, ctx.profile, conditions)
    assert ctx.manifest()["stages"][STAGE]["artifacts"] == expected
    for rel in expected.values():
        assert (ctx.run_dir / rel).is_file(), rel
    return ctx.manifest()["stages"][STAGE]


# ----------------------------------------------------------------------------- the image branch

def test_images_give_measured_phenotypes_and_the_page_says_so(image_run):
    ctx, stage = image_run
    assert stage.cohort_source == "images" and not stage.simulated
    first = stage.cohort_line().splitlines()[0]
    assert first.startswith("Mediation cohort: MEASURED phenotypes (radiomics of iCTCF CT images")
    assert "real iCTCF clinical table" in first and f"{len(PATIENTS_WITH_IMAGES)} patients" in first
    assert "CT images: 10 patients, 20 CT slices" in stage.cohort_line()
    assert "segmented by ssinfnet + multi_ssinfnet (chapter 5's choice on validation)" in stage.cohort_line()
    entry = written_and_recorded(ctx, {"ictcf_images"})
    assert entry["cohort_source"] == "images" and entry["clinical"] == "real iCTCF clinical table"
    assert entry["ictcf_images"]["patients"] == 10 and entry["ictcf_images"]["slices"] == 20
    assert entry["ictcf_images"]["models"] == {"stage1": "ssinfnet", "multi": "multi_ssinfnet"}


def test_class_maps_are_written_per_slice_inside_the_lungs_and_find_the_lesions(image_run):
    ctx, stage = image_run
    maps = load_maps(ctx.artifact(STAGE, "ictcf_class_maps"), kind="labels")
    ids = {f"{pid}/{k}" for pid in PATIENTS_WITH_IMAGES for k in range(SLICES_PER_PATIENT)}
    assert set(maps) == ids and all(m.shape == (CT_SIZE, CT_SIZE) for m in maps.values())
    table = stage.images.maps.slices
    assert list(table.slice_id) == sorted(ids, key=lambda i: (int(i.split("/")[0]), i))
    for sid, m in maps.items():
        np.testing.assert_array_equal(m, stage.images.maps.class_maps[sid])
    # lesion pixels only inside the lungs: the per-slice counts are those of the saved maps
    np.testing.assert_array_equal(table.ggo_pixels, [int((maps[s] == 1).sum()) for s in table.slice_id])
    # the trained models were applied to the right slices: predicted lesions overlap the phantoms' truth
    pred = np.stack([maps[s] > 0 for s in table.slice_id])
    truth = np.stack([ct_slice(*map(int, s.split("/")))[1] > 0 for s in table.slice_id])
    dice = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    shuffled = np.roll(truth, 1, axis=0)
    assert dice > 0.4 and dice > 2 * (2 * (pred & shuffled).sum() / (pred.sum() + shuffled.sum()))


def test_phenotypes_one_row_per_patient_with_images_joined_to_the_clinical_table(image_run):
    ctx, stage = image_run
    saved = pd.read_csv(ctx.run_dir / "07_radiomics_mediation/ictcf_phenotypes.csv")
    assert saved.patient_id.tolist() == list(PATIENTS_WITH_IMAGES)  # patients 11 and 12 have no images
    assert stage.cohort.patient_id.tolist() == list(PATIENTS_WITH_IMAGES)
    assert {"age", "male", "n_diseases", "severity_binary"} <= set(saved.columns)
    assert "overall_firstorder_Mean" in stage.images.features_all and "ggo_firstorder_Mean" in stage.mediators
    # a patient's feature is the mean over its slices of the slice features
    rows = stage.images.features
    one = rows[(rows.patient_id == "3") & (rows.region == "ggo")].firstorder_Mean.mean()
    assert saved.loc[saved.patient_id == 3, "ggo_firstorder_Mean"].item() == pytest.approx(one)
    assert set(stage.mediators) <= set(stage.images.features_all)
    assert set(stage.mediators) | set(stage.images.excluded) == set(stage.images.features_all)
    assert len(stage.med) == len(statistics.EXPOSURES) * len(stage.mediators)
    assert set(pd.read_csv(ctx.run_dir / "07_radiomics_mediation/mediation.csv").mediator) == set(stage.mediators)


def test_the_sem_is_skipped_with_a_reason_when_no_mediator_is_kept(image_run):
    ctx, stage = image_run
    if stage.kept:
        pytest.skip("a mediator passed on these 10 patients; the SEM was fitted")
    assert stage.fit is None and "no SEM was fitted" in stage.sem_note
    assert "SEM: no mediator" in stage.cohort_line()
    sem = pd.read_csv(ctx.run_dir / "07_radiomics_mediation/sem_estimates.csv")
    assert sem.empty and list(sem.columns) == statistics.SEM_COLUMNS
    forest = stage.forest()
    assert "truth" not in forest and forest.groupby("x").size().max() <= statistics.FOREST_ROWS


# ----------------------------------------------------------------------------- fallbacks and errors

def test_images_without_chapter5_fall_back_and_name_the_chapter(data_root, tmp_path):
    ctx = RunContext.open("smoke", str(data_root), str(tmp_path / "run"), device="cpu")
    stage = statistics.run(ctx, progress=False)
    assert stage.cohort_source == "simulated" and stage.images is None
    line = stage.cohort_line()
    assert line.splitlines()[0].startswith("Mediation cohort: SIMULATED phenotypes")
    assert "iCTCF CT images are present" in line
    assert "chapter 5 has not selected the models on validation" in line
    assert "run chapter 05_evaluation: python -m ssinfnet stage 05" in line
    written_and_recorded(ctx)  # no class maps, no phenotype table


def test_the_branch_takes_the_models_chapter5_selected(models, tmp_path):
    ctx = RunContext.open("smoke", "synthetic", str(tmp_path / "run"), device="cpu")
    # chapter 5 preferred sinfnet and multi_sinfnet on validation (not the default ssinfnet pair)
    record_models(ctx, models, selected={"stage1": "sinfnet", "multi": "multi_sinfnet"})
    paths, why = ictcf_images.usable_models(ctx)
    assert why == []
    assert paths == {"stage1": ctx.run_dir / "finetune/sinfnet/model.pt",
                     "multi": ctx.run_dir / "finetune/multi_sinfnet/model.pt"}


def test_no_usable_model_falls_back_and_says_every_candidate_failed(models, tmp_path):
    ctx = RunContext.open("smoke", "synthetic", str(tmp_path / "run"), device="cpu")
    record_models(ctx, models, selected=None)  # chapter 5: every InfNet-family model failed
    paths, why = ictcf_images.usable_models(ctx)
    assert paths == {} and len(why) == 2
    assert why[0].startswith("chapter 5 found no usable single-class (infection) model: every InfNet-family "
                             "candidate failed its training checks")
    assert "no usable multi-class (GGO/consolidation) model" in why[1]


def test_a_selected_model_whose_training_failed_is_never_used(models, tmp_path):
    ctx = RunContext.open("smoke", "synthetic", str(tmp_path / "run"), device="cpu")
    record_models(ctx, models)
    # retrained after chapter 5 ran, and this time the training failed its checks
    failed = export_model(tmp_path / "failed.pt", build_model("unet", **TINY), "unet", TINY, NET_SIZE, task="single",
                          extra={"health": {"status": "failed: val Dice 0.01 <= floor 0.05", "failed": True}})
    shutil.copy(failed, ctx.run_dir / "finetune/ssinfnet/model.pt")
    paths, why = ictcf_images.usable_models(ctx)
    assert set(paths) == {"multi"}
    assert why == ["the single-class (infection) model chapter 5 selected (ssinfnet) now records a failed training "
                   "(failed: val Dice 0.01 <= floor 0.05; retrained after chapter 5?), and a failed model is never "
                   "used: run chapter 05 again"]
    # a model without a health record cannot be judged: not used either
    bare = export_model(tmp_path / "bare.pt", build_model("unet", **TINY), "unet", TINY, NET_SIZE, task="single")
    shutil.copy(bare, ctx.run_dir / "finetune/ssinfnet/model.pt")
    assert "(no health record;" in ictcf_images.usable_models(ctx)[1][0]


def test_a_selected_model_missing_from_the_run_folder_names_its_chapter(models, tmp_path):
    ctx = RunContext.open("smoke", "synthetic", str(tmp_path / "run"), device="cpu")
    record_models(ctx, models)
    (ctx.run_dir / "finetune/multi_ssinfnet/model.pt").unlink()
    _, why = ictcf_images.usable_models(ctx)
    assert why == ["the multi-class (GGO/consolidation) model chapter 5 selected (multi_ssinfnet) is not in this "
                   "run folder (run chapter 04_multi: python -m ssinfnet stage 04)"]


def test_images_without_the_clinical_table_fall_back(models, tmp_path):
    root = tmp_path / "data"
    write_phantom_semiseg(root)
    write_ictcf(root, clinical=False)
    ctx = RunContext.open("smoke", str(root), str(tmp_path / "run"), device="cpu")
    record_models(ctx, models)
    clinical, label = statistics.clinical_table(ctx)
    cohort = statistics.mediation_cohort(ctx, clinical)
    assert cohort.source == "simulated" and label == "synthetic clinical cohort"
    assert "no iCTCF clinical table (iCTCF-HUST19-clinical/raw_cf_data.csv below the data root)" in cohort.note
    assert "model" not in cohort.note  # the models are there


def test_a_patient_without_a_clinical_row_is_an_error_naming_the_folder(models, tmp_path):
    root = tmp_path / "data"
    write_phantom_semiseg(root)
    write_ictcf(root, patients_with_images=(1, 2, 99))
    ctx = RunContext.open("smoke", str(root), str(tmp_path / "run"), device="cpu")
    record_models(ctx, models)
    clinical, _ = statistics.clinical_table(ctx)
    with pytest.raises(DataError, match=r"ictcf-images: patients \[99\] have CT images but no row in the clinical "
                                        r"table .*raw_cf_data.csv"):
        statistics.mediation_cohort(ctx, clinical)


def test_no_candidate_mediator_falls_back_but_keeps_the_maps(models, tmp_path):
    root = tmp_path / "data"
    write_phantom_semiseg(root)
    write_ictcf(root, patients_with_images=(1, 2, 3))  # fewer patients than a mediator needs
    ctx = RunContext.open("smoke", str(root), str(tmp_path / "run"), device="cpu")
    record_models(ctx, models)
    clinical, _ = statistics.clinical_table(ctx)
    cohort = statistics.mediation_cohort(ctx, clinical)
    assert cohort.source == "simulated" and cohort.images is not None
    assert cohort.images.mediators == [] and "at least 8 patients" in cohort.note
    assert set(cohort.images.excluded.values()) <= {"values in 3 patients (< 8)", "values in 2 patients (< 8)",
                                                     "values in 1 patients (< 8)", "values in 0 patients (< 8)"}
    assert len(load_maps(cohort.images.paths["ictcf_class_maps"])) == 3 * SLICES_PER_PATIENT


def test_the_profile_limits_the_patients_and_chunks_in_processes_measure_the_same(image_run, models, monkeypatch):
    first, stage = image_run
    ctx = RunContext.open("smoke", str(first.data.path), str(first.run_dir.parent / "limited"), device="cpu",
                          ictcf_patient_limit=9)
    record_models(ctx, models)
    clinical, _ = statistics.clinical_table(ctx)
    monkeypatch.setattr(ictcf_images, "RADIOMICS_CHUNK", 7)  # 18 slices: chunks of 7, 7, 4 ...
    monkeypatch.setattr(ictcf_images, "PARALLEL_FROM", 5)  # ... the first two in joblib processes
    images = ictcf_images.image_cohort(ctx, clinical)
    assert images.patients_used == 9 and images.patients_found == 10
    assert "9 patients (the profile's limit; 10 found)" in images.summary_line()
    assert images.phenotypes.patient_id.tolist() == list(range(1, 10))
    whole = stage.images.features.iloc[: len(images.features)]
    pd.testing.assert_frame_equal(images.features, whole)


def test_candidate_mediators_need_enough_patients_and_a_spread():
    table = pd.DataFrame({"a": np.arange(10.0), "b": [1.0] * 10, "c": [np.nan] * 3 + list(np.arange(7.0))})
    keep, excluded = ictcf_images.candidate_mediators(table, ["a", "b", "c"], min_patients=8)
    assert keep == ["a"] and excluded == {"b": "constant", "c": "values in 7 patients (< 8)"}


def test_conditional_artifacts_are_listed_only_under_their_condition():
    smoke = get_profile("smoke")
    plain = artifacts.expected_outputs(STAGE, smoke)
    assert "ictcf_class_maps" not in plain
    full = artifacts.expected_outputs(STAGE, smoke, {"ictcf_images"})
    assert full["ictcf_class_maps"] == "07_radiomics_mediation/ictcf_class_maps.npz"
    assert set(full) - set(plain) == {"ictcf_class_maps", "ictcf_phenotypes"}
    with pytest.raises(ValueError, match="unknown conditions"):
        artifacts.expected_outputs(STAGE, smoke, {"sunshine"})


def test_a_model_file_of_the_wrong_kind_is_an_error_not_a_fallback(data_root, models, tmp_path):
    ctx = RunContext.open("smoke", str(data_root), str(tmp_path / "run"), device="cpu")
    record_models(ctx, {"stage1": models["stage1"], "multi": models["stage1"]})
    clinical, _ = statistics.clinical_table(ctx)
    with pytest.raises(DataError, match=r"multi_ssinfnet/model.pt is a single \(infection\) segmentation model"):
        statistics.mediation_cohort(ctx, clinical)
