"""Tests for ssinfnet.training.checkpoint: atomic writes, weights_only loads, RNG snapshots."""

import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from ssinfnet.training.checkpoint import (capture_rng_state, load_checkpoint, new_file_mode,
                                          restore_rng_state, save_checkpoint)


def _state(value: float) -> dict:
    return {"weights": torch.full((3, 2), value), "epoch": 2, "name": "phase", "best": None, "lst": [1, 2.5]}


def test_round_trip(tmp_path):
    path = save_checkpoint(tmp_path / "sub" / "a.pt", _state(1.5))
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["weights"], torch.full((3, 2), 1.5))
    assert loaded["epoch"] == 2 and loaded["name"] == "phase" and loaded["best"] is None
    assert loaded["lst"] == [1, 2.5]


def test_crash_mid_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1.0))
    real_save = torch.save

    def partial_then_crash(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")  # looks like the start of a torch file
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", partial_then_crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _state(2.0))
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(load_checkpoint(path)["weights"], torch.full((3, 2), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # temp file removed


def test_overwrite_replaces(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1.0))
    save_checkpoint(path, _state(3.0))
    assert torch.equal(load_checkpoint(path)["weights"], torch.full((3, 2), 3.0))


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    path = tmp_path / "trunc.pt"
    save_checkpoint(path, _state(1.0))
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="trunc.pt"):
        load_checkpoint(path)


class _Opaque:
    pass


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": _Opaque()}, path)
    with pytest.raises(ValueError, match="evil.pt"):
        load_checkpoint(path)


def test_non_mapping_state_rejected(tmp_path):
    with pytest.raises(ValueError, match="state"):
        save_checkpoint(tmp_path / "x.pt", [1, 2])


def test_rng_snapshot_restores_every_generator_through_a_file(tmp_path):
    gen = torch.Generator().manual_seed(7)
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's legacy state
    snapshot = capture_rng_state({"g": gen, "absent": None})
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=gen), np.random.standard_normal())
    save_checkpoint(tmp_path / "rng.pt", {"rng": snapshot})
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    gen.manual_seed(99)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"], {"g": gen})
    second = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=gen), np.random.standard_normal())
    assert torch.equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert first[2] == second[2]
    assert torch.equal(first[3], second[3])
    assert first[4] == second[4]


def test_restore_unknown_generator_name_raises():
    snapshot = capture_rng_state({"a": torch.Generator()})
    with pytest.raises(ValueError, match="'b'"):
        restore_rng_state(snapshot, {"b": torch.Generator()})


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_file_has_the_mode_of_a_new_file(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = save_checkpoint(tmp_path / "a.pt", _state(1.0))
        assert new_file_mode() == mode
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode  # not mkstemp's 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]


def test_refused_file_message_has_no_unsafe_advice(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": _Opaque()}, path)
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: not a loadable ssinfnet checkpoint (corrupt, truncated, or written by another "
                          f"program; UnpicklingError: holds a Python object (")
    assert "_Opaque" in msg and "weights_only" not in msg and "trust" not in msg and "\n" not in msg


# torch's unpickler takes "h" for an opcode and fails with a KeyError, which used to escape load_checkpoint
@pytest.mark.parametrize("content,cls", [(b"", "EOFError"), (b"hello world\n", "KeyError"),
                                         (bytes(range(256)) * 8, "UnpicklingError")])
def test_any_unloadable_file_is_a_value_error_naming_it(tmp_path, content, cls):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"x.pt: not a loadable ssinfnet checkpoint .*; {cls}"):
        load_checkpoint(path)
