"""The artifact contract: declared names, one writer, declared readers, errors naming the chapter."""
import pytest

from ssinfnet.book import artifacts as A
from ssinfnet.book.context import RunContext
from ssinfnet.book.profiles import get_profile


@pytest.fixture
def ctx(tmp_path):
    return RunContext.open("smoke", "synthetic", str(tmp_path / "run"))


def test_every_artifact_has_one_writer_and_known_stages():
    stages = set(A.STAGE_NAMES.values())
    for art in A.ARTIFACTS:
        assert art.writer in stages and set(art.readers) <= stages | {A.PAGE}, art
        assert art.writer not in art.readers
        chapters = [r for r in art.readers if r != A.PAGE]  # the results page reads the finished run
        assert art.writer < min(chapters, default="99"), f"{art.name} is read before it is written"
    keys = [(a.name, a.writer) for a in A.ARTIFACTS]
    assert len(keys) == len(set(keys))


def test_templates_expand_over_the_profile_variants():
    smoke = get_profile("smoke")
    out = A.expected_outputs("03_single", smoke)
    assert out["model:ssinfnet"] == "finetune/ssinfnet/model.pt"
    assert {k for k in out if k.startswith("model:") and "@" not in k} == {f"model:{v}" for v in smoke.single_variants}
    assert A.declared("model:multi_unet", writer="04_multi")[1] == {"variant": "multi_unet"}


def test_seed_models_expand_over_the_compared_variants_and_extra_seeds():
    smoke = get_profile("smoke")  # 2 seeds: seed 0 is model:<variant>, seed 1 the extra one
    out = A.expected_outputs("03_single", smoke)
    assert {k for k in out if "@" in k} == {f"model:{v}@seed1" for v in ("sinfnet", "ssinfnet", "unet", "ssinfnet_encoder")}
    assert out["model:ssinfnet@seed1"] == "finetune/ssinfnet/seed1/model.pt"
    three = smoke.with_overrides(n_seeds=3, seed_variants=("ssinfnet", "multi_sinfnet", "multi_unet"))
    assert {k for k in A.expected_outputs("03_single", three) if "@" in k} == {"model:ssinfnet@seed1",
                                                                               "model:ssinfnet@seed2"}
    # multi_unet is not among smoke's multi variants: no seed of it is expected
    assert {k for k in A.expected_outputs("04_multi", three) if "@" in k} == {"model:multi_sinfnet@seed1",
                                                                              "model:multi_sinfnet@seed2"}
    assert not any("@" in k for k in A.expected_outputs("03_single", smoke.with_overrides(n_seeds=1)))
    assert A.declared("model:unet@seed4", writer="03_single")[1] == {"variant": "unet", "seed": "4"}
    assert A.declared("model:unet", writer="03_single")[0].name == "model:{variant}"


def test_the_results_page_reads_the_comparisons(ctx):
    with pytest.raises(A.MissingArtifact, match=r"'comparisons' .*chapter 05_evaluation"):
        A.require(ctx, "comparisons", A.PAGE)
    with pytest.raises(A.UndeclaredArtifact, match="reads 'comparisons'"):
        A.require(ctx, "comparisons", "06_severity")


def test_conditional_artifacts_are_expected_only_under_their_condition():
    smoke = get_profile("smoke")
    # chapter 5 always writes its comparisons; it hands maps on only from usable models
    assert A.expected_outputs("05_evaluation", smoke) == {"comparisons": "05_evaluation/comparisons.csv"}
    assert set(A.expected_outputs("05_evaluation", smoke, ["usable_single"])) == {"comparisons", "test_predictions"}
    assert set(A.expected_outputs("05_evaluation", smoke, list(A.CONDITIONS))) == {"comparisons", "test_predictions",
                                                                                   "test_class_maps"}
    with pytest.raises(ValueError, match="unknown conditions"):
        A.expected_outputs("05_evaluation", smoke, ["sunny"])


def test_record_refuses_undeclared_names_and_other_paths(ctx):
    path = ctx.path("splits", "train_val.csv")
    path.write_text("slice_id,split\n")
    with pytest.raises(A.UndeclaredArtifact, match="'splits' is not declared for stage '01_data'"):
        A.record(ctx, "01_data", {"splits": path})
    other = ctx.path("elsewhere.csv")
    other.write_text("x\n")
    with pytest.raises(ValueError, match="contract says .*splits/train_val.csv"):
        A.record(ctx, "01_data", {"split_manifest": other})
    with pytest.raises(ValueError, match="unknown stage"):
        A.record(ctx, "08_extra", {})
    A.record(ctx, "01_data", {"split_manifest": path})
    assert A.require(ctx, "split_manifest", "03_single") == path.resolve()


def test_reads_name_the_chapter_to_run(ctx):
    with pytest.raises(A.MissingArtifact, match=r"written by chapter 03_single .*python -m ssinfnet stage 03"):
        A.require(ctx, "train_oof_priors", "04_multi")
    assert A.optional(ctx, "train_oof_priors", "04_multi") is None
    with pytest.raises(A.UndeclaredArtifact, match="'ictcf_predictions' is not declared"):
        A.require(ctx, "ictcf_predictions", "07_radiomics_mediation")
    with pytest.raises(A.UndeclaredArtifact, match="reads 'train_oof_priors'.*no artifact"):
        A.require(ctx, "train_oof_priors", "06_severity")  # not a declared reader


def test_a_recorded_file_that_vanished_is_missing(ctx):
    path = ctx.path("splits", "train_val.csv")
    path.write_text("x\n")
    A.record(ctx, "01_data", {"split_manifest": path})
    path.unlink()
    with pytest.raises(A.MissingArtifact, match="chapter 01_data"):
        A.require(ctx, "split_manifest", "04_multi")


def test_under_torchrun_only_process_0_records(ctx, monkeypatch):
    path = ctx.path("splits", "train_val.csv")  # not written: process 0 writes it
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    entry = A.record(ctx, "01_data", {"split_manifest": path})
    assert entry["artifacts"] == {"split_manifest": "splits/train_val.csv"} and entry["processes"] == 2
    assert not ctx.manifest_path.exists()
    with pytest.raises(ValueError, match="contract says"):  # the contract is still checked
        A.record(ctx, "01_data", {"split_manifest": ctx.path("elsewhere.csv")})
    monkeypatch.setenv("RANK", "0")
    path.write_text("slice_id,split\n")
    A.record(ctx, "01_data", {"split_manifest": path})
    assert ctx.manifest()["stages"]["01_data"]["processes"] == 2
