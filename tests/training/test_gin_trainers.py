"""The GIN trainers: random intensity networks in training augmentation only, on top of each trainer's settings."""

from __future__ import annotations

import pytest
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from nnunetv2_uda.pipeline.config import TRAINERS
from nnunetv2_uda.training.gin_trainers import nnUNetTrainerUDAQuickGIN, nnUNetTrainerUDASmallGIN
from nnunetv2_uda.training.pseudolabel_trainer import nnUNetTrainerUDAPseudoLabel
from nnunetv2_uda.training.random_intensity_networks import RandomIntensityNetworkTransform


def _has_gin(transforms) -> bool:
    return any(isinstance(step, RandomIntensityNetworkTransform) for step in transforms.transforms)


@pytest.mark.parametrize("trainer_class", [nnUNetTrainerUDASmallGIN, nnUNetTrainerUDAQuickGIN])
def test_training_augmentation_has_it_validation_does_not(trainer_class):
    assert _has_gin(trainer_class.get_training_transforms((64, 64), (-0.5, 0.5), [[1, 1], [0.5, 0.5]], (0, 1),
                                                          False))
    assert not _has_gin(trainer_class.get_validation_transforms([[1, 1], [0.5, 0.5]]))


@pytest.mark.parametrize("trainer", ["nnUNetTrainerUDASmallGIN", "nnUNetTrainerUDAQuickGIN"])
def test_pipeline_pseudolabel_counterparts_keep_gin(trainer):
    found = recursive_find_trainer_class_by_name(TRAINERS[trainer])  # as nnUNetv2_train looks it up
    assert issubclass(found, nnUNetTrainerUDAPseudoLabel) and issubclass(found, nnUNetTrainerUDASmallGIN)
    assert found.get_training_transforms is nnUNetTrainerUDASmallGIN.get_training_transforms

