"""nnUNetTrainerUDASmall: the paper's protocol, trained and used for prediction with nnU-Net's own commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from commands import run_in_process
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

from nnunetv2_uda.training.small_trainer import nnUNetTrainerUDASmall


@pytest.fixture(scope="module")
def initialized_trainer(tiny_plans) -> nnUNetTrainerUDASmall:
    plans = {**json.loads(tiny_plans.read_text()), "continue_training": False}  # nnUNetv2_train adds this key
    dataset_json = json.loads((tiny_plans.parent / "dataset.json").read_text())
    trainer = nnUNetTrainerUDASmall(plans, "2d", 0, dataset_json, torch.device("cpu"))
    trainer.initialize()
    return trainer


def test_protocol_is_the_papers_table_4(initialized_trainer):
    trainer = initialized_trainer
    assert trainer.num_epochs == 1000
    assert trainer.initial_lr == 0.01
    assert trainer.enable_deep_supervision
    assert trainer.oversample_foreground_percent > 0
    optimizer = trainer.optimizer
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.99 and optimizer.defaults["nesterov"]
    assert isinstance(trainer.lr_scheduler, PolyLRScheduler) and trainer.lr_scheduler.exponent == 0.9
    assert isinstance(trainer.loss, DeepSupervisionWrapper)
    assert type(trainer.loss.loss).__name__ == "DC_and_CE_loss"


def test_he_initialization(initialized_trainer):
    """nnU-Net's InitWeights_He(1e-2): kaiming-normal weights, zero biases."""
    conv = next(m for m in initialized_trainer.network.modules() if isinstance(m, torch.nn.Conv2d))
    fan_in = conv.weight[0].numel()
    expected_std = (2 / (1 + 0.01 ** 2) / fan_in) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.15)
    assert torch.count_nonzero(conv.bias) == 0


def test_training_keeps_mirroring_but_inference_does_not(initialized_trainer):
    _, _, _, mirror_axes = initialized_trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert mirror_axes == (0, 1)
    assert initialized_trainer.inference_allowed_mirroring_axes is None


def test_3d_fullres_trains_at_the_papers_patch_size(tiny_plans, tiny_dataset, run_command, nnunet_env):
    """One iteration at 40x224x192 (the tiny volumes are padded): the paper's configuration runs end to end."""
    run_command(["nnUNetv2_preprocess", "-d", tiny_dataset.dataset_id, "-plans_name", "nnUNetPlansUDASmall",
                 "-c", "3d_fullres", "-np", "1"])
    trainer = "nnUNetTrainerUDASmall_1epochs_1iters_noval"  # the final validation is 2d's (tiny_trained_model)
    run_command(["nnUNetv2_train", tiny_dataset.dataset_id, "3d_fullres", "all", "-tr", trainer,
                 "-p", "nnUNetPlansUDASmall", "-device", "cpu"])
    fold = Path(nnunet_env["nnUNet_results"]) / tiny_dataset.name / f"{trainer}__nnUNetPlansUDASmall__3d_fullres"
    assert (fold / "fold_all" / "checkpoint_final.pth").is_file()


def test_unknown_trainer_is_an_error_naming_it(tiny_plans, tiny_dataset, nnunet_env):
    result = run_in_process("nnUNetv2_train", tiny_dataset.dataset_id, "2d", "all", "-tr", "nnUNetTrainerUDATypo",
                            "-p", "nnUNetPlansUDASmall", "-device", "cpu", env=nnunet_env)
    assert result.returncode != 0
    assert "nnUNetTrainerUDATypo" in result.stderr and "nnunetv2_uda.training" in result.stderr


def test_unknown_plans_name_is_an_error(tiny_plans, tiny_dataset, nnunet_env):
    result = run_in_process("nnUNetv2_train", tiny_dataset.dataset_id, "2d", "all", "-tr", "nnUNetTrainerUDASmall",
                            "-p", "nnUNetPlansTypo", "-device", "cpu", env=nnunet_env)
    assert result.returncode != 0
    assert "nnUNetPlansTypo" in result.stderr
