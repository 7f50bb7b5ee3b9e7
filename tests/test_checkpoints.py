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


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"model": RunsACommand(marker)}, tmp_path / "crafted.pth")
    with pytest.raises(CheckpointError, match="crafted.pth: refused"):
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


@pytest.mark.parametrize(("content", "message"), [(b"junk", "not a readable checkpoint"), (None, "checkpoint file does not exist")])
def test_unreadable_files_are_named(tmp_path, content, message):
    path = tmp_path / "model.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"model.pth: {message}"):
        load_checkpoint(path)


def test_a_checkpoint_must_be_a_dict(tmp_path):
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "list.pth")
