"""The checkpoint loader runs no code from files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from nnunetv2_uda.checkpoints import CheckpointError, load_checkpoint


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_pickle_that_would_run_code_is_refused_naming_the_function_and_runs_nothing(tmp_path, zip_format):
    marker = tmp_path / "ran"
    torch.save({"model": RunsACommand(marker)}, tmp_path / "crafted.pth", _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError, match=r"crafted.pth: refused: loading it would call \S*system"):
        load_checkpoint(tmp_path / "crafted.pth")
    assert not marker.exists()


def test_tensors_numpy_scalars_and_rng_states_load(tmp_path):
    content = {"weights": {"w": torch.ones(2)}, "dice": [np.float64(0.5), np.float32(0.25)], "epoch": 3,
               "mirror_axes": (0, 1), "device": torch.device("cpu"), "array": np.arange(3),
               "rng": np.random.default_rng(0).bit_generator.state, "torch_rng": torch.get_rng_state()}
    torch.save(content, tmp_path / "ok.pth")
    loaded = load_checkpoint(tmp_path / "ok.pth")
    assert torch.equal(loaded["weights"]["w"], torch.ones(2)) and loaded["dice"] == [0.5, 0.25]
    assert loaded["mirror_axes"] == (0, 1) and loaded["rng"] == content["rng"]


def _cut_checkpoint(path) -> bytes:
    torch.save({"w": torch.ones(4)}, path)
    return path.read_bytes()[:100]


@pytest.mark.parametrize("content", [
    b"junk", b"", b"hello world\n" * 10,
    b"\x80\x04garbage",  # starts like a pickle: torch's unpickler stops at an opcode it does not know
    _cut_checkpoint,
])
def test_a_file_that_is_no_checkpoint_is_not_readable_rather_than_refused_as_code(tmp_path, content):
    path = tmp_path / "model.pth"
    path.write_bytes(content(tmp_path / "whole.pth") if callable(content) else content)
    with pytest.raises(CheckpointError, match="model.pth: not a readable checkpoint") as raised:
        load_checkpoint(path)
    assert "call" not in str(raised.value) and "\n" not in str(raised.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="model.pth: checkpoint file does not exist"):
        load_checkpoint(tmp_path / "model.pth")


def test_a_checkpoint_must_be_a_dict(tmp_path):
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "list.pth")
