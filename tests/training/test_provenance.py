"""Tests for ssinfnet.training.provenance: fingerprints of data, settings and code, the stale-run check, run notes."""

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from ssinfnet.training import provenance
from ssinfnet.data.dataset import SliceDataset
from ssinfnet.data.phantoms import synthetic_subset
from ssinfnet.data.sample import Sample
from ssinfnet.data.transforms import eval_transform, train_transform
from ssinfnet.training.provenance import (CODE_FILES, StaleRunError, StaleRunWarning, check_key, code_files,
                                          code_fingerprint, config_fingerprint, dataset_fingerprint,
                                          loader_fingerprint, note_run, note_stale, samples_fingerprint, take_runs)
from ssinfnet.training.loader import make_loader


# ------------------------------------------------------------------------------------------ code

def _fake_package(root):
    """One file per CODE_FILES pattern (models/ gets two), plus files that are not training code."""
    for pattern in CODE_FILES:
        names = ["models/a.py", "models/b.py"] if pattern == "models/*.py" else [pattern]
        for name in names:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(f"# {name}\n")
    (root / "plots.py").write_text("# not training code\n")
    (root / "models" / "notes.txt").write_text("not python\n")
    return root


def test_code_fingerprint_is_the_documented_hash_of_the_listed_files(tmp_path):
    pkg = _fake_package(tmp_path / "pkg")
    files = code_files(pkg)
    rel = [p.relative_to(pkg).as_posix() for p in files]
    assert rel == sorted(rel) and "models/a.py" in rel and "plots.py" not in rel and "models/notes.txt" not in rel
    assert len(rel) == len(CODE_FILES) + 1
    h = hashlib.sha256()
    for name in rel:
        data = f"# {name}\n".encode()
        h.update(f"{name}\n{len(data)}\n".encode() + data)
    assert code_fingerprint(pkg) == h.hexdigest()[:16]
    before = code_fingerprint(pkg)
    (pkg / "plots.py").write_text("# changed, not training code\n")
    assert code_fingerprint(pkg) == before
    (pkg / "training" / "losses.py").write_text("# changed\n")
    assert code_fingerprint(pkg) != before
    (pkg / "training" / "optimisers.py").unlink()
    with pytest.raises(FileNotFoundError, match=r"no file matches 'training/optimisers.py' of provenance.CODE_FILES"):
        code_fingerprint(pkg)


def test_every_listed_training_module_exists_in_the_package():
    rel = {p.relative_to(provenance.PACKAGE_DIR).as_posix() for p in code_files()}
    assert {"training/loop.py", "training/phases.py", "training/optimisers.py", "training/losses.py",
            "pretraining/inpainting.py", "segmentation/variants.py", "segmentation/fit.py", "models/infnet.py",
            "data/dataset.py", "data/transforms.py", "data/semiseg.py", "data/phantoms.py"} <= rel
    assert not rel & {"evaluation/folders.py", "book/results_page.py", "book/context.py", "training/provenance.py",
                      "training/export.py", "data/sources.py"}
    assert len(code_fingerprint()) == 16


# ------------------------------------------------------------------------------------------ data

def test_samples_fingerprint_of_a_hand_built_sample():
    image = np.arange(6, dtype=np.uint8).reshape(2, 3)
    prior = np.full((2, 3), 0.5, dtype=np.float32)
    s = Sample(image=image, slice_id="a", source="x", subset="train", prior=prior)
    h = hashlib.sha256(b"samples:1\n")
    h.update(b"slice:a\n")
    h.update(b"image:|u1:(2, 3)\n" + image.tobytes())
    h.update(b"infection:none\n")
    h.update(b"classes:none\n")
    h.update(b"prior:<f4:(2, 3)\n" + prior.tobytes())  # float32, as the training reads it
    assert samples_fingerprint([s]) == h.hexdigest()[:16]


def test_samples_fingerprint_follows_what_training_reads():
    samples = synthetic_subset("train", 3, size=48, seed=0)
    fp = samples_fingerprint(samples)
    assert samples_fingerprint(list(samples)) == fp
    # not part of what the training reads: paths, metadata, groups, edges, pseudo labels
    moved = [replace(s, path="/elsewhere/" + s.slice_id, meta={"x": 1}, group_id="g", edge=None,
                     pseudo_label=np.zeros(s.shape, np.float32)) for s in samples]
    assert samples_fingerprint(moved) == fp
    one_pixel = samples[1].image.copy()
    one_pixel[10, 10] ^= 1
    assert samples_fingerprint([samples[0], replace(samples[1], image=one_pixel), samples[2]]) != fp
    assert samples_fingerprint(samples[::-1]) != fp
    assert samples_fingerprint([replace(samples[0], slice_id="other"), *samples[1:]]) != fp
    assert samples_fingerprint([replace(samples[0], infection=~samples[0].infection), *samples[1:]]) != fp
    assert samples_fingerprint(synthetic_subset("train", 3, size=48, seed=1)) != fp  # another generator seed
    assert samples_fingerprint(synthetic_subset("train", 3, size=64, seed=0)) != fp  # another generator size
    # priors are read as float32 (not quantised): any change of a float32 value is another key,
    # a float64 copy of the same values is not
    priors = [np.full(s.shape, 0.2, np.float32) for s in samples]
    with_priors = samples_fingerprint(samples, priors)
    assert with_priors != fp
    assert samples_fingerprint(samples, [p.astype(np.float64) for p in priors]) == with_priors
    assert samples_fingerprint(samples, [p + np.float32(1e-4) for p in priors]) != with_priors
    assert samples_fingerprint([replace(s, prior=p) for s, p in zip(samples, priors)]) == with_priors
    with pytest.raises(ValueError, match="priors has 1 maps for 3 samples"):
        samples_fingerprint(samples, priors[:1])


def test_dataset_and_loader_fingerprints():
    samples = synthetic_subset("unlabelled", 3, size=48, seed=0)
    ds = SliceDataset(samples, 32, eval_transform(32))
    fp = dataset_fingerprint(ds)
    assert fp == dataset_fingerprint(SliceDataset(samples, 32, eval_transform(32)))
    assert dataset_fingerprint(SliceDataset(samples, 40, eval_transform(40))) != fp
    assert dataset_fingerprint(SliceDataset(samples, 32, train_transform(32, rotation=10.0))) != fp
    assert dataset_fingerprint(SliceDataset(samples[:2], 32, eval_transform(32))) != fp
    x = torch.arange(8.0).reshape(2, 4)
    assert dataset_fingerprint(TensorDataset(x)) == dataset_fingerprint(TensorDataset(x.clone()))
    assert dataset_fingerprint(TensorDataset(x)) != dataset_fingerprint(TensorDataset(x + 1))
    assert dataset_fingerprint(torch.utils.data.Subset(TensorDataset(x), [1])) != dataset_fingerprint(TensorDataset(x))

    class Opaque(Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return x[i]

    assert dataset_fingerprint(Opaque()) is None and loader_fingerprint(make_loader(Opaque(), 1, False, 0)) is None
    assert loader_fingerprint([x]) is None  # a plain iterable of batches
    lf = loader_fingerprint(make_loader(ds, 2, True, 0))
    assert lf == loader_fingerprint(make_loader(ds, 2, True, 5))  # the shuffling seed is the run's seed, not data
    assert lf != loader_fingerprint(make_loader(ds, 3, True, 0))
    assert lf != loader_fingerprint(make_loader(ds, 2, False, 0))


def test_config_fingerprint_ignores_fields_at_their_default():
    assert config_fingerprint({"a": 1, "b": 2}, {"b": 2}) == config_fingerprint({"a": 1})
    assert config_fingerprint({"a": 1, "b": 3}, {"b": 2}) != config_fingerprint({"a": 1})
    assert config_fingerprint({"b": 2, "a": 1}) == config_fingerprint({"a": 1, "b": 2})  # key order
    expected = hashlib.sha256(json.dumps({"a": 1}).encode()).hexdigest()[:16]
    assert config_fingerprint({"a": 1}) == expected


# ------------------------------------------------------------------------------------------ check

def test_check_key_refuses_with_one_line_naming_folder_differences_and_remedy(monkeypatch):
    monkeypatch.delenv(provenance.ENV_ALLOW_STALE, raising=False)
    assert check_key("runs/x", {"data": "a1", "code": "c1"}, {"code": "c1", "data": "a1"}) is None
    with pytest.raises(StaleRunError) as exc:
        check_key("runs/x", {"data": "a1", "config": "s1", "code": "c1"}, {"data": "a2", "config": "s1", "code": "c2"})
    assert str(exc.value) == (
        "run folder runs/x holds a run trained with other data/code (data a1 -> a2; code c1 -> c2); delete the "
        "folder or use a new run_dir to retrain (or set SSINFNET_ALLOW_STALE=1 to reuse it knowingly; the "
        "manifest records that)")
    assert isinstance(exc.value, ValueError) and "\n" not in str(exc.value)
    with pytest.raises(StaleRunError, match=r"other settings/code \(config epochs 1 -> 2; code not recorded -> c1\)"):
        check_key("runs/x", {}, {"code": "c1"}, extra=["config epochs 1 -> 2"])


@pytest.mark.parametrize("value, allowed", [("1", True), ("yes", True), ("TRUE", True), ("0", False), ("", False)])
def test_allow_stale_reads_the_environment(monkeypatch, value, allowed):
    monkeypatch.setenv(provenance.ENV_ALLOW_STALE, value)
    assert provenance.allow_stale() is allowed


def test_check_key_with_allow_stale_warns_and_returns_a_note(monkeypatch):
    monkeypatch.setenv(provenance.ENV_ALLOW_STALE, "1")
    monkeypatch.setattr(provenance, "git_state", lambda repo=None: {"git_commit": "abc", "dirty": False})
    with pytest.warns(StaleRunWarning, match=r"runs/x .*data a1 -> a2\); reused anyway because SSINFNET_ALLOW_STALE"):
        note = check_key("runs/x", {"data": "a1"}, {"data": "a2"})
    assert note["differs"] == ["data a1 -> a2"] and note["git_commit"] == "abc" and note["dirty"] is False
    assert "time" in note


# ------------------------------------------------------------------------------------------ notes

def test_take_runs_merges_notes_and_keeps_other_folders(tmp_path):
    run = tmp_path / "run"
    rec_a = {"key": {"data": "d"}, "trained_at": {"git_commit": "A"}}
    note_run(run / "pretrain", "trained", rec_a)
    note_run(run / "pretrain", "resumed", rec_a)
    note_run(run / "pretrain", "reused", rec_a)
    note_run(run / "finetune" / "x", "reused", rec_a)
    note_stale(run / "finetune" / "x", {"differs": ["data d -> e"]})
    note_run(tmp_path / "elsewhere", "trained", rec_a)
    runs = take_runs(run)
    assert set(runs) == {"pretrain", "finetune/x"}
    assert runs["pretrain"]["action"] == "trained" and runs["pretrain"]["record"] == rec_a
    assert runs["finetune/x"]["action"] == "reused" and runs["finetune/x"]["stale"] == [{"differs": ["data d -> e"]}]
    assert take_runs(run) == {}  # taken once
    assert set(take_runs(tmp_path)) == {"elsewhere"}
    with pytest.raises(ValueError, match="action must be"):
        note_run(run, "done", rec_a)
