"""The location-scale trainers: SLAug's augmentation in training only, on top of each trainer's settings."""

from __future__ import annotations

import pytest
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from nnunetv2_uda.pipeline.config import TRAINERS
from nnunetv2_uda.training.location_scale import LocationScaleTransform
from nnunetv2_uda.training.location_scale_trainers import (
    nnUNetTrainerUDAQuickLocationScale,
    nnUNetTrainerUDASmallLocationScale,
)
from nnunetv2_uda.training.pseudolabel_trainer import nnUNetTrainerUDAPseudoLabel


def _has_it(transforms) -> bool:
    return any(isinstance(step, LocationScaleTransform) for step in transforms.transforms)


@pytest.mark.parametrize("trainer_class", [nnUNetTrainerUDASmallLocationScale, nnUNetTrainerUDAQuickLocationScale])
def test_training_augmentation_has_it_validation_does_not(trainer_class):
    assert _has_it(trainer_class.get_training_transforms((64, 64), (-0.5, 0.5), [[1, 1], [0.5, 0.5]], (0, 1), False))
    assert not _has_it(trainer_class.get_validation_transforms([[1, 1], [0.5, 0.5]]))


@pytest.mark.parametrize("trainer", ["nnUNetTrainerUDASmallLocationScale", "nnUNetTrainerUDAQuickLocationScale",
                                     "nnUNetTrainerUDAQuickLocationScaleNoMirroring"])
def test_pipeline_pseudolabel_counterparts_keep_it(trainer):
    found = recursive_find_trainer_class_by_name(TRAINERS[trainer])  # as nnUNetv2_train looks it up
    assert issubclass(found, nnUNetTrainerUDAPseudoLabel) and issubclass(found, nnUNetTrainerUDASmallLocationScale)
    assert found.get_training_transforms is nnUNetTrainerUDASmallLocationScale.get_training_transforms


@pytest.mark.parametrize("trainer, keeps_inner_air", [
    ("nnUNetTrainerUDAQuickLocationScaleNoMirroring", True),
    ("nnUNetTrainerUDAQuickLocationScaleInnerAirNoMirroring", False),
    (TRAINERS["nnUNetTrainerUDAQuickLocationScaleInnerAirNoMirroring"], False),
    (TRAINERS["nnUNetTrainerUDASmallLocationScaleInnerAir"], False),
])
def test_the_inner_air_trainers_remap_the_air_inside_the_body(trainer, keeps_inner_air):
    found = recursive_find_trainer_class_by_name(trainer)  # as nnUNetv2_train looks it up
    assert issubclass(found, nnUNetTrainerUDASmallLocationScale)
    assert issubclass(found, nnUNetTrainerUDAPseudoLabel) == ("PseudoLabel" in trainer)
    transforms = found.get_training_transforms((64, 64), (-0.5, 0.5), [[1, 1], [0.5, 0.5]], (0, 1), False)
    [transform] = [step for step in transforms.transforms if isinstance(step, LocationScaleTransform)]
    assert transform.keep_inner_air is keeps_inner_air
    assert any(base.__name__ == "nnUNetTrainerNoMirroring" for base in found.__mro__) == trainer.endswith("NoMirroring")
