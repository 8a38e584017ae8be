"""Chapters 1 and 2 as one call each: the files they write are the contract's, recorded, and a rerun
loads what is there instead of training again. Smoke profile, synthetic phantoms, a temporary run folder."""
import pandas as pd
import pytest
import torch

from ssinfnet.book import artifacts as A
from ssinfnet.book.context import RunContext
from ssinfnet.book.stages import data, pretraining, stage_function
from ssinfnet.data.splits import load_split
from ssinfnet.training.export import load_exported

pytestmark = pytest.mark.slow  # whole stages: run in the first CI round (default kernels), see .ci/run


def _open(folder) -> RunContext:
    return RunContext.open("smoke", "synthetic", str(folder), device="cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One run folder in which chapters 1 and 2 have run once: (ctx, data stage, pretraining stage)."""
    ctx = _open(tmp_path_factory.mktemp("stages") / "run")
    return ctx, data.run(ctx, progress=False), pretraining.run(ctx, progress=False)


def _assert_written_and_recorded(ctx, stage: str) -> dict:
    expected = A.expected_outputs(stage, ctx.profile)
    recorded = ctx.manifest()["stages"][stage]["artifacts"]
    assert recorded == expected
    for rel in expected.values():
        assert (ctx.run_dir / rel).is_file(), rel
    return expected


def test_the_registry_finds_both_stages():
    assert stage_function("01") is data.run and stage_function("pretraining") is pretraining.run


def test_data_stage_writes_the_split_manifest_it_records(run):
    ctx, stage, _ = run
    assert _assert_written_and_recorded(ctx, "01_data") == {"split_manifest": "splits/train_val.csv"}
    assert stage.split_path == ctx.run_dir / "splits" / "train_val.csv"
    train = stage.subsets["train"]
    assert load_split(train, A.require(ctx, "split_manifest", "03_single")) == (stage.train_idx, stage.val_idx)
    table = pd.read_csv(stage.split_path)
    assert list(table.columns) == ["slice_id", "group", "source", "subset", "split", "path"]
    # smoke: 12 training slices, val_fraction 0.2 -> 2 in validation
    assert table.split.value_counts().to_dict() == {"train": 10, "val": 2}
    entry = ctx.manifest()["stages"]["01_data"]
    assert entry["counts"] == ctx.profile.synthetic_counts
    assert entry["split"] == {"train": 10, "val": 2}
    assert entry["duplicates"]["test slices"] == len(stage.subsets["test"]) == len(stage.pairs)
    assert entry["clinical"] == "synthetic clinical cohort" and entry["patients"] == len(stage.clinical)


def test_data_stage_again_writes_the_same_split(run):
    ctx, stage, _ = run
    before = stage.split_path.read_bytes()
    again = data.run(ctx, progress=False)
    assert again.split_path.read_bytes() == before
    assert (again.train_idx, again.val_idx) == (stage.train_idx, stage.val_idx)


def test_pretraining_stage_writes_and_records_its_artifacts(run):
    ctx, _, stage = run
    written = _assert_written_and_recorded(ctx, "02_pretraining")
    assert set(written) == {"inpainter", "coach", "pretrain_history", "coach_masks"}
    assert {k: p.relative_to(ctx.run_dir).as_posix() for k, p in stage.paths.items()} == written
    assert A.require(ctx, "inpainter", "03_single") == stage.paths["inpainter"]
    assert load_exported(stage.paths["inpainter"], "cpu", expect_task="inpainting").task == "inpainting"
    history = pd.read_csv(stage.paths["pretrain_history"])
    phases = ["inpainter", "coach", "inpainter_adv_r1", "coach_adv_r1"]  # smoke: one alternation
    assert list(history[history.kind == "epoch"].phase) == phases
    saved = torch.load(stage.paths["coach_masks"], map_location="cpu", weights_only=True)
    assert list(saved["masks"]) == ["init", *phases] == list(stage.masks)
    assert torch.equal(saved["x"], stage.fixed) and stage.fixed.shape == (4, 1, 64, 64)
    entry = ctx.manifest()["stages"]["02_pretraining"]
    assert entry["final_losses"] == stage.final_losses().round(4).to_dict()
    assert entry["config"]["rotation"] == stage.cfg.rotation == 10.0
    assert entry["pool"]["total"] == len(stage.samples)


def test_pretraining_stage_reports_the_coach_budget_and_the_transfer(run):
    _, _, stage = run
    erased = stage.erased.set_index("keep")
    assert list(erased.index) == list(pretraining.KEEPS)
    assert (erased.erased_mean - erased.target).abs().max() < 0.02  # alpha 100: nearly binary masks
    single, multi = stage.transfer["single"], stage.transfer["multi"]
    assert (len(single.skipped_shape), len(single.missing)) == (0, 0)
    # the multi network's first convolution takes image + prior: its weights cannot be copied
    assert len(multi.skipped_shape) > 0 and len(multi.copied) < len(single.copied)
    assert len(single.skipped_head) == len(multi.skipped_head) > 0


def test_pretraining_stage_run_again_loads_instead_of_training(run):
    ctx, _, stage = run
    checkpoint = ctx.run_dir / "pretrain" / "single" / "checkpoints" / "last.pt"
    stamp = checkpoint.stat().st_mtime_ns
    again = pretraining.run(_open(ctx.run_dir), progress=False)
    pd.testing.assert_frame_equal(again.history, stage.history)
    assert checkpoint.stat().st_mtime_ns == stamp
    for name in ("inpainter", "coach"):
        ours, theirs = stage.models[name].state_dict(), again.models[name].state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    entry = ctx.manifest()["stages"]["02_pretraining"]
    assert "pretrain/single" in entry["reused"] and entry["trained"] == []


def test_chapter_three_cannot_start_before_the_pretraining(tmp_path):
    ctx = _open(tmp_path / "run")
    data.run(ctx, progress=False)
    with pytest.raises(A.MissingArtifact, match=r"'inpainter' .*chapter 02_pretraining.*python -m ssinfnet stage 02"):
        A.require(ctx, "inpainter", "03_single")
