"""Warm starts that keep the segmentation heads nnU-Net's ``-pretrained_weights`` drops, and that never run code
from a crafted checkpoint (nnU-Net 2.8 itself unpickles ``-pretrained_weights`` with ``weights_only=False``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

from nnunetv2_uda.command_line import TRACEBACK_VARIABLE
from nnunetv2_uda.training.warm_start import (
    HEAD_KEY,
    PRETRAINED_HEADS_VARIABLE,
    PretrainedHeadsError,
    load_segmentation_heads,
    pretrained_weights_argument,
    refused_in_one_line,
)

WARM_TRAINER = "nnUNetTrainerUDAQuick_1epochs_1iters_noval"


def small_unet(num_classes: int = 4, seed: int = 0) -> PlainConvUNet:
    torch.manual_seed(seed)
    return PlainConvUNet(1, 3, (4, 8, 16), torch.nn.Conv2d, 3, (1, 2, 2), (1, 1, 1), num_classes, (1, 1),
                         conv_bias=True, norm_op=torch.nn.InstanceNorm2d, nonlin=torch.nn.LeakyReLU,
                         deep_supervision=True)


class RunsCommand:
    """A pickle that runs ``touch <marker>`` when unpickled without ``weights_only``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted_checkpoint(path: Path, network_weights: dict) -> Path:
    """An nnU-Net-shaped checkpoint (real weights) that also carries a command; the marker shows whether it ran."""
    torch.save({"network_weights": network_weights, "trainer_name": RunsCommand(path.with_suffix(".ran"))}, path)
    return path


@pytest.fixture
def pretrained_file(tmp_path):
    network = small_unet(seed=1)
    file = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": network.state_dict()}, file)
    return network, file


def test_nnunets_warm_start_drops_the_heads_and_ours_restores_them(pretrained_file):
    pretrained, file = pretrained_file
    network = small_unet(seed=2)
    load_pretrained_weights(network, str(file))  # what nnUNetv2_train -pretrained_weights does
    heads = [key for key in network.state_dict() if HEAD_KEY in key]
    assert heads and all(not torch.equal(network.state_dict()[k], pretrained.state_dict()[k]) for k in heads)

    loaded = load_segmentation_heads(network, file)

    assert sorted(loaded) == sorted(heads)
    image = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(network(image)[0], pretrained(image)[0])  # the same network, outputs included


def test_a_network_not_initialized_from_the_file_is_refused(pretrained_file):
    _, file = pretrained_file
    with pytest.raises(PretrainedHeadsError, match="not initialized from this file"):
        load_segmentation_heads(small_unet(seed=3), file)


def test_another_label_count_is_refused(pretrained_file):
    _, file = pretrained_file
    network = small_unet(num_classes=6, seed=2)
    load_pretrained_weights(network, str(file))  # nnU-Net allows this: its heads are not transferred
    with pytest.raises(PretrainedHeadsError, match="another number of labels"):
        load_segmentation_heads(network, file)


def test_missing_unreadable_and_foreign_files_are_named(tmp_path):
    with pytest.raises(PretrainedHeadsError, match=f"{PRETRAINED_HEADS_VARIABLE}: .*absent.pth: .*does not exist"):
        load_segmentation_heads(small_unet(), tmp_path / "absent.pth")
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedHeadsError, match=f"{PRETRAINED_HEADS_VARIABLE}: {broken}: "):
        load_segmentation_heads(small_unet(), broken)
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": small_unet().state_dict()}, foreign)
    with pytest.raises(PretrainedHeadsError, match=f"{foreign}: not an nnU-Net checkpoint"):
        load_segmentation_heads(small_unet(), foreign)


def test_a_crafted_heads_checkpoint_is_refused_without_running_it(tmp_path):
    network = small_unet(seed=1)
    file = crafted_checkpoint(tmp_path / "crafted.pth", network.state_dict())
    with pytest.raises(PretrainedHeadsError, match=f"{PRETRAINED_HEADS_VARIABLE}: {file}: refused"):
        load_segmentation_heads(network, file)
    assert not file.with_suffix(".ran").exists()


@pytest.mark.parametrize("argv, expected", [
    (["900", "2d", "all", "-tr", "T", "-p", "P", "-pretrained_weights", "w.pth", "-device", "cpu"], "w.pth"),
    (["900", "2d", "all", "-pretrained_weights=w.pth", "--c"], "w.pth"),
    (["900", "2d", "all", "-pP", "-device", "cpu"], None),  # -p with its value attached is the plans, not weights
    (["900", "2d", "all", "-p", "-pretrained"], None),  # nnUNetv2_train's own parser refuses this
])
def test_the_pretrained_weights_argument_is_read_as_nnunet_reads_it(argv, expected):
    assert pretrained_weights_argument(argv) == expected


def warm_start(tiny_dataset, nnunet_env, trainer: str, checkpoint: Path, heads: bool) -> subprocess.CompletedProcess:
    """``nnUNetv2_train -pretrained_weights CHECKPOINT`` with our trainer, as a user (or the pipeline) runs it."""
    env = {key: value for key, value in nnunet_env.items() if key != PRETRAINED_HEADS_VARIABLE}
    if heads:
        env[PRETRAINED_HEADS_VARIABLE] = str(checkpoint)
    args = ["nnUNetv2_train", str(tiny_dataset.dataset_id), "2d", "all", "-tr", trainer, "-p", "nnUNetPlansUDASmall",
            "-device", "cpu", "-pretrained_weights", str(checkpoint)]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("heads", [True, False], ids=["with_heads_variable", "flag_only"])
def test_a_crafted_checkpoint_is_refused_by_a_real_warm_start(tiny_dataset, tiny_plans, nnunet_env, tmp_path, heads):
    """nnU-Net would unpickle the file with weights_only=False (running its command, whatever the weights); our
    trainer refuses it first, naming it, and nothing runs."""
    crafted = crafted_checkpoint(tmp_path / "crafted.pth", small_unet().state_dict())

    result = warm_start(tiny_dataset, nnunet_env, "nnUNetTrainerUDAQuick_1epochs_2iters_noval", crafted, heads)

    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("nnUNetv2_train: error: "), result.stderr[-3000:]
    assert f"-pretrained_weights: {crafted}: refused: loading it would call" in errors[0]
    assert not crafted.with_suffix(".ran").exists(), "the checkpoint's pickle ran a command"


@pytest.mark.slow
def test_a_real_checkpoint_still_warm_starts_with_its_heads(tiny_trained_model, nnunet_env, tiny_dataset):
    """Our safe loader reads what nnU-Net writes: the warm start runs and carries the heads."""
    source = tiny_trained_model.model_folder / "fold_all" / "checkpoint_final.pth"
    result = warm_start(tiny_dataset, nnunet_env, WARM_TRAINER, source, heads=True)
    assert result.returncode == 0, result.stderr[-3000:]
    log = next((Path(nnunet_env["nnUNet_results"]) / tiny_dataset.name / f"{WARM_TRAINER}__nnUNetPlansUDASmall__2d"
                / "fold_all").glob("training_log_*.txt")).read_text()
    assert f"segmentation head weights loaded from {source}" in log


def test_a_refused_warm_start_ends_nnunets_command_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/nnUNetv2_train", "900", "2d", "all"])
    monkeypatch.delenv(TRACEBACK_VARIABLE, raising=False)
    crafted = crafted_checkpoint(tmp_path / "crafted.pth", small_unet().state_dict())
    with pytest.raises(SystemExit) as exited, refused_in_one_line():
        load_segmentation_heads(small_unet(), crafted)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"nnUNetv2_train: error: {PRETRAINED_HEADS_VARIABLE}: {crafted}: refused: loading it "
                            f"would call {os.system.__module__}.system") and error.count("\n") == 1, error
    assert not crafted.with_suffix(".ran").exists()
