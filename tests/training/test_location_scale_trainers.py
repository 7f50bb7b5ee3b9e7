"""The location-scale trainers: SLAug's augmentation in training only, on top of each trainer's settings."""

from __future__ import annotations

import json

import pytest
import torch
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from nnunetv2_uda.pipeline.config import TRAINERS
from nnunetv2_uda.training.location_scale import LocationScaleTransform
from nnunetv2_uda.training.location_scale_trainers import (
    nnUNetTrainerUDAQuickLocationScale,
    nnUNetTrainerUDASmallLocationScale,
)
from nnunetv2_uda.training.pseudolabel_trainer import nnUNetTrainerUDAPseudoLabel
from nnunetv2_uda.training.quick_trainer import QUICK_INITIAL_LR


def _has_it(transforms) -> bool:
    return any(isinstance(step, LocationScaleTransform) for step in transforms.transforms)


@pytest.mark.parametrize("trainer_class", [nnUNetTrainerUDASmallLocationScale, nnUNetTrainerUDAQuickLocationScale])
def test_training_augmentation_has_it_validation_does_not(trainer_class):
    assert _has_it(trainer_class.get_training_transforms((64, 64), (-0.5, 0.5), [[1, 1], [0.5, 0.5]], (0, 1), False))
    assert not _has_it(trainer_class.get_validation_transforms([[1, 1], [0.5, 0.5]]))


def test_the_quick_variant_keeps_the_quick_settings(tiny_plans):
    plans = {**json.loads(tiny_plans.read_text()), "continue_training": False}  # nnUNetv2_train adds this key
    dataset_json = json.loads((tiny_plans.parent / "dataset.json").read_text())
    trainer = nnUNetTrainerUDAQuickLocationScale(plans, "2d", 0, dataset_json, torch.device("cpu"))
    trainer.initialize()
    assert type(trainer.optimizer) is torch.optim.Adam and trainer.initial_lr == QUICK_INITIAL_LR
    assert trainer.oversample_foreground_percent == 1.0


@pytest.mark.parametrize("trainer", ["nnUNetTrainerUDASmallLocationScale", "nnUNetTrainerUDAQuickLocationScale",
                                     "nnUNetTrainerUDAQuickLocationScaleNoMirroring"])
def test_pipeline_pseudolabel_counterparts_keep_it(trainer):
    found = recursive_find_trainer_class_by_name(TRAINERS[trainer])  # as nnUNetv2_train looks it up
    assert issubclass(found, nnUNetTrainerUDAPseudoLabel) and issubclass(found, nnUNetTrainerUDASmallLocationScale)
    assert found.get_training_transforms is nnUNetTrainerUDASmallLocationScale.get_training_transforms
