"""The prepared GPU check runs on the CPU with small sizes (its numbers mean nothing there)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_check_quick_on_cpu_writes_every_section(tmp_path):
    out = tmp_path / "gpu.json"
    assert _script("gpu_check").main(["--device", "cpu", "--quick", "--no-compile", "--repeats", "1",
                                      "--budget-s", "3600", "--output", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["meta"]["skipped"] == [] and got["meta"]["device_name"].startswith("cpu")
    for kind in ("device_data", "dataloader"):
        for loop in ("finetune", "pretraining"):
            row = got["loops"][f"{loop}_{kind}"]
            assert row["device_data"] == (kind == "device_data") and row["real_over_bare"] > 0
    for setting in got["profiler"].values():
        assert setting["top_ops"] and 0 < setting["shares"]["convolution"] <= 1


def test_gpu_check_skips_sections_past_its_budget(tmp_path, monkeypatch):
    gc = _script("gpu_check")
    monkeypatch.setattr(gc, "step_table", lambda *a: [{"batch": 4, "setting": "fp32+channels_last (loop default)",
                                                      "train_ms_per_image": 10.0}])
    monkeypatch.setattr(gc, "profile_steps", lambda *a: {})
    out = tmp_path / "gpu.json"
    assert gc.main(["--device", "cpu", "--quick", "--budget-s", "0", "--output", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["meta"]["skipped"] == ["finetune device_data", "pretraining device_data", "finetune dataloader",
                                      "pretraining dataloader"]
    assert got["paper_projection"]["ms_per_image"] == 10.0


def test_bench_models_times_each_setting_in_one_run(tmp_path):
    out = tmp_path / "settings.json"
    assert _script("bench_models").main(["--quick", "--models", "unet_w32", "--settings", "fp32", "fp32-cl", "bf16-cl",
                                         "--output", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["meta"]["settings"] == ["fp32", "fp32-cl", "bf16-cl"]
    rows = got["results"]
    assert [(r["setting"], r["amp_bf16"], r["channels_last"]) for r in rows] == [
        ("fp32", False, False), ("fp32-cl", False, True), ("bf16-cl", True, True)]
    assert all(r["size"] == 64 and r["kwargs"] == {"base_width": 8} and r["train_ms_per_image"] > 0 for r in rows)
    assert len({r["params"] for r in rows}) == 1  # the same network each time


def test_bench_models_refuses_an_unknown_setting(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _script("bench_models").main(["--quick", "--settings", "fp16", "--output", str(tmp_path / "x.json")])
    assert "invalid choice: 'fp16'" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_finetune_cap_trains_each_cap_and_scores_the_test_slices(tmp_path, monkeypatch):
    monkeypatch.delenv("SSINFNET_DATA", raising=False)  # the embedded synthetic data
    out = tmp_path / "cap.json"
    got = _script("finetune_cap").main(["--profile", "smoke", "--caps", "1", "2", "--variants", "sinfnet",
                                        "--run-dir", str(tmp_path / "runs"), "--output", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(got, default=float))
    assert [(r["variant"], r["cap"], r["image_size"]) for r in got["runs"]] == [("sinfnet", 1, 64), ("sinfnet", 2, 64)]
    for r in got["runs"]:
        assert 1 <= r["epochs_run"] <= r["cap"] and 0.0 <= r["test_meanDic"] <= r["test_maxDic"] <= 1.0


def test_finetune_cap_trains_each_input_size_and_seed(tmp_path, monkeypatch):
    monkeypatch.delenv("SSINFNET_DATA", raising=False)
    got = _script("finetune_cap").main(["--profile", "smoke", "--caps", "1", "--image-sizes", "48", "64",
                                        "--seeds", "0", "1", "--variants", "sinfnet",
                                        "--run-dir", str(tmp_path / "runs")])
    assert [(r["image_size"], r["seed"]) for r in got["runs"]] == [(48, 0), (48, 1), (64, 0), (64, 1)]
    assert got["seeds"] == [0, 1]
    # each (size, seed) trains in its own folder, with the size it was asked for
    configs = sorted((tmp_path / "runs").rglob("config.json"))
    assert len(configs) == 4
    assert sorted(json.loads(c.read_text())["config"]["image_size"] for c in configs) == [48, 48, 64, 64]


def test_finetune_cap_amp_trains_under_bf16_in_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("SSINFNET_DATA", raising=False)
    import ssinfnet.segmentation.fit as fit_module

    seen, real_train = [], fit_module.train

    def spy(*args, **kwargs):
        seen.append((kwargs["amp"], kwargs["channels_last"]))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(fit_module, "train", spy)
    got = _script("finetune_cap").main(["--profile", "smoke", "--caps", "1", "--variants", "sinfnet", "--amp",
                                        "--channels-last", "--run-dir", str(tmp_path / "runs")])
    assert seen == [(True, True)] and got["amp_bf16"] and got["channels_last"]
    assert [p.parents[2].name for p in (tmp_path / "runs").glob("*/finetune/sinfnet/seed0")] == ["cap1-sizeprofile-bf16-cl"]
    [run] = got["runs"]
    assert 0.0 <= run["test_meanDic"] <= 1.0


def test_finetune_cap_flip_scores_the_same_model_twice(tmp_path, monkeypatch):
    monkeypatch.delenv("SSINFNET_DATA", raising=False)
    args = ["--profile", "smoke", "--caps", "1", "--variants", "sinfnet", "--run-dir", str(tmp_path / "runs")]
    plain = _script("finetune_cap").main(args)
    flipped = _script("finetune_cap").main(args + ["--flip"])  # the finished run is reloaded, not retrained
    [a], [b] = plain["runs"], flipped["runs"]
    assert not plain["flip"] and flipped["flip"] and "test_meanDic_flip" not in a
    assert b["test_meanDic"] == a["test_meanDic"] and b["test_maxDic"] == a["test_maxDic"]
    assert 0.0 <= b["test_meanDic_flip"] <= b["test_maxDic_flip"] <= 1.0
    assert b["test_meanDic_flip"] != b["test_meanDic"]  # an untrained smoke model is not mirror-symmetric
    assert a["fit"] == ["trained"] and b["fit"] == ["reused"]
    assert 0.0 <= b["val_meanDic"] <= 1.0 and 0.0 <= b["val_meanDic_flip"] <= 1.0
    assert b["val_meanDic_flip"] != b["val_meanDic"] and "val_meanDic" not in a


def test_finetune_cap_ensemble_scores_the_mean_map_of_the_seeds():
    """Known maps: the ensemble's scores are the Inf-Net protocol's of the seeds' mean probability map."""
    from ssinfnet.evaluation.tables import infnet_protocol

    mod = _script("finetune_cap")
    rng = np.random.default_rng(0)
    gts = [rng.random((20, 24)) > 0.6 for _ in range(3)]
    seeds = [{(split, flip): [rng.random((20, 24)).astype(np.float32) for _ in gts]
              for split in ("val", "test") for flip in (False, True)} for _ in range(2)]
    got = mod._ensemble_scores(seeds, gts, gts, flip=True)
    for key, split, flip in (("test_meanDic", "test", False), ("val_meanDic_flip", "val", True)):
        mean = [(a + b) / 2 for a, b in zip(seeds[0][split, flip], seeds[1][split, flip])]
        assert got[key] == round(float(infnet_protocol(mean, gts)["meanDic"]), mod.DIGITS)
    alone = mod._ensemble_scores(seeds[:1], gts, gts, flip=False)
    assert alone == {"val_meanDic": round(float(infnet_protocol(seeds[0]["val", False], gts)["meanDic"]), mod.DIGITS),
                     "test_meanDic": round(float(infnet_protocol(seeds[0]["test", False], gts)["meanDic"]), mod.DIGITS),
                     "test_maxDic": round(float(infnet_protocol(seeds[0]["test", False], gts)["maxDic"]), mod.DIGITS)}


def test_finetune_cap_ensemble_runs_one_entry_per_variant(tmp_path, monkeypatch):
    monkeypatch.delenv("SSINFNET_DATA", raising=False)
    got = _script("finetune_cap").main(["--profile", "smoke", "--caps", "1", "--seeds", "0", "1", "--variants",
                                        "sinfnet", "--ensemble", "--run-dir", str(tmp_path / "runs")])
    [e] = got["ensembles"]
    assert (e["variant"], e["seeds"], e["image_size"]) == ("sinfnet", [0, 1], 64)
    assert 0.0 <= e["test_meanDic"] <= e["test_maxDic"] <= 1.0 and 0.0 <= e["val_meanDic"] <= 1.0
    assert "test_meanDic_flip" not in e and "val_meanDic" not in got["runs"][0]


def test_finetune_cap_refuses_an_inpainting_variant_without_its_inpainter(tmp_path, monkeypatch):
    monkeypatch.delenv("SSINFNET_DATA", raising=False)
    with pytest.raises(SystemExit, match="ssinfnet.*needs --inpainter"):
        _script("finetune_cap").main(["--profile", "smoke", "--caps", "1", "--variants", "ssinfnet",
                                      "--run-dir", str(tmp_path / "runs")])
    assert not list((tmp_path / "runs").rglob("ssinfnet"))  # refused before any training folder


def test_parallel_fits_trains_both_arms_and_reports_their_ratio(tmp_path, monkeypatch):
    monkeypatch.delenv("SSINFNET_DATA", raising=False)
    out = tmp_path / "parallel.json"
    got = _script("parallel_fits").main(["--profile", "smoke", "--epochs", "1", "--seeds", "0", "1",
                                         "--run-dir", str(tmp_path / "runs"), "--output", str(out)])
    assert json.loads(out.read_text()) == got
    assert got["speedup"] == pytest.approx(got["serial_s"] / got["parallel_s"], abs=5.1e-4)  # 3 decimals
    assert [f["run"] for f in got["fits"]] == ["finetune/sinfnet", "sinfnet/seed1"]
    for arm in ("serial", "parallel"):
        assert (tmp_path / "runs" / arm / "finetune" / "sinfnet" / "seed1" / "model.pt").is_file()
    for f in got["fits"]:
        assert 0.0 <= f["val_dice_serial"] <= 1.0 and 0.0 <= f["val_dice_parallel"] <= 1.0


def test_multi_flip_scores_each_multi_seed_plain_and_flipped_on_validation_and_test(tmp_path, monkeypatch):
    monkeypatch.delenv("SSINFNET_DATA", raising=False)
    out = tmp_path / "multi.json"
    got = _script("multi_flip").main(["--profile", "smoke", "--seeds", "0", "1", "--run-dir", str(tmp_path / "runs"),
                                      "--output", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(got, default=float))
    assert (got["stage1"], got["variant"], [r["seed"] for r in got["runs"]]) == ("sinfnet", "multi_sinfnet", [0, 1])
    assert got["stage1_fit"]["variant"] == "sinfnet" and got["machine"].startswith("cpu (")
    # one stage-1 model and its out-of-fold priors (cv_folds folds), one multi model per seed
    assert sorted(p.parent.relative_to(tmp_path / "runs").as_posix() for p in (tmp_path / "runs").rglob("model.pt")) \
        == ["cv/sinfnet/fold0", "cv/sinfnet/fold1", "finetune/multi_sinfnet/seed0", "finetune/multi_sinfnet/seed1",
            "finetune/sinfnet"]
    keys = [f"{s}_{c}_meanDic{f}" for s in ("val", "test") for c in ("ggo", "consolidation") for f in ("", "_flip")]
    for r in got["runs"]:
        assert all(0.0 <= r[k] <= 1.0 for k in keys)
    assert any(r["val_ggo_meanDic"] != r["val_ggo_meanDic_flip"] for r in got["runs"])  # untrained: not symmetric


def test_multi_flip_refuses_an_inpainting_variant_without_its_inpainter(tmp_path, monkeypatch):
    monkeypatch.delenv("SSINFNET_DATA", raising=False)
    with pytest.raises(SystemExit, match="'ssinfnet' starts from a pretrained inpainter"):
        _script("multi_flip").main(["--profile", "smoke", "--stage1", "ssinfnet", "--run-dir", str(tmp_path / "r")])
    assert not (tmp_path / "r" / "cv").exists()


def test_multi_flip_refuses_the_oracle_prior_variant_before_training(tmp_path, monkeypatch):
    monkeypatch.delenv("SSINFNET_DATA", raising=False)
    with pytest.raises(SystemExit, match="'multi_ssinfnet_gt_prior': a multi-class variant trained on stage-1"):
        _script("multi_flip").main(["--profile", "smoke", "--variant", "multi_ssinfnet_gt_prior",
                                    "--run-dir", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()
