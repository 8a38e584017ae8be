"""Chapter 2's evidence that the pretraining learns, as the stage computes it: smoke profile, synthetic
phantoms, a temporary run folder in which chapter 1 ran first (so the probe reads its split)."""
import pandas as pd
import pytest

from ssinfnet.book.context import RunContext
from ssinfnet.book.stages import data, pretraining
from ssinfnet.pretraining import evidence as ev

pytestmark = pytest.mark.slow  # whole stages: run in the first CI round (default kernels), see .ci/run


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    ctx = RunContext.open("smoke", "synthetic", str(tmp_path_factory.mktemp("evidence") / "run"), device="cpu")
    data.run(ctx, progress=False)
    return ctx, pretraining.run(ctx, progress=False)


def test_reconstruction_covers_both_held_out_sets_and_both_mask_kinds(stage):
    _, st = stage
    assert "8 further phantoms" in st.held_out_note  # smoke: the pool took all 16 unlabelled phantoms
    counts = st.reconstruction.groupby(["set", "masks"], sort=False).size()
    assert counts.to_dict() == {("held-out unlabelled", "random blocks"): ev.N_EXTRA_PHANTOMS,
                                ("held-out unlabelled", "coach"): ev.N_EXTRA_PHANTOMS,
                                ("test (images only)", "random blocks"): 6, ("test (images only)", "coach"): 6}
    summary = st.reconstruction_summary
    assert list(summary.n) == list(counts)
    for method in ("inpainter", "mean-fill", "blur"):
        assert summary[method].between(0, 255).all()
    assert list(st.reconstruction_table().columns)[:3] == ["held-out set", "masks", "slices"]


def test_probe_uses_chapter_one_split_and_compares_the_two_encoders(stage):
    _, st = stage
    assert st.probe_split == {"training slices": 10, "validation slices": 2,
                              "split": "read from splits/train_val.csv"}
    assert list(st.probe.summary.encoder) == ["pretrained", "random"]
    assert st.probe.difference["compared"] == "pretrained - random" and st.probe.difference["n"] <= 2
    assert st.probe.seconds < 60
    assert list(st.probe_table().index) == ["pretrained", "random", "difference (pretrained - random)"]


def test_coach_table_follows_every_training_point_and_the_references(stage):
    _, st = stage
    assert list(st.coach.masks) == ["init", "inpainter", "coach", "inpainter_adv_r1", "coach_adv_r1",
                                    "random blocks", "evenly spread"]
    coach = st.coach.set_index("masks")
    assert pd.isna(coach.loc["init", "loss_first_step"]) and coach.loc["coach", "loss_last_step"] > 0
    # the coach does not train in an inpainter phase: its masks stay as they were
    assert coach.loc["inpainter", "top_share"] == coach.loc["init", "top_share"]
    assert coach.loc["evenly spread", "top_share"] == pytest.approx(2 / 16)  # 64 px: 4 x 4 regions


def test_the_manifest_carries_the_evidence(stage):
    ctx, st = stage
    evidence = ctx.manifest()["stages"]["02_pretraining"]["evidence"]
    assert evidence["held_out"] == st.held_out_note
    assert set(evidence["reconstruction"]) == {f"{s} / {m}" for s, m in zip(st.reconstruction_summary.set,
                                                                              st.reconstruction_summary.masks)}
    assert set(evidence["probe_dice"]) == {"pretrained", "random"}
