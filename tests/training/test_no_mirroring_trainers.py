"""The no-mirroring variants: no mirroring in training augmentation, every other setting of their base trainer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import (
    nnUNetTrainerNoMirroring,
)
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from nnunetv2_uda.pipeline.config import TRAINERS
from nnunetv2_uda.training.gin_trainers import nnUNetTrainerUDAQuickGIN, nnUNetTrainerUDASmallGIN
from nnunetv2_uda.training.pseudolabel_trainer import nnUNetTrainerUDAPseudoLabel
from nnunetv2_uda.training.random_intensity_networks import RandomIntensityNetworkTransform


def training_transforms(trainer) -> list:
    """The training augmentation steps the trainer builds, with the mirror axes it configures for itself."""
    rotation, dummy_2d, _, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    patch_size = trainer.configuration_manager.patch_size
    return trainer.get_training_transforms(patch_size, rotation, trainer._get_deep_supervision_scales(), mirror_axes,
                                           dummy_2d).transforms


def make_trainer(name: str, tiny_plans: Path):
    plans = {**json.loads(tiny_plans.read_text()), "continue_training": False}  # nnUNetv2_train adds this key
    dataset_json = json.loads((tiny_plans.parent / "dataset.json").read_text())
    return recursive_find_trainer_class_by_name(name)(plans, "2d", 0, dataset_json, torch.device("cpu"))


def test_mirroring_is_gone_from_training_only_in_the_variant(tiny_plans):
    with_mirroring = make_trainer("nnUNetTrainerUDAQuickGIN", tiny_plans)
    without = make_trainer("nnUNetTrainerUDAQuickGINNoMirroring", tiny_plans)
    assert any(isinstance(step, MirrorTransform) for step in training_transforms(with_mirroring))
    steps = training_transforms(without)
    assert not any(isinstance(step, MirrorTransform) for step in steps)
    assert any(isinstance(step, RandomIntensityNetworkTransform) for step in steps)  # GIN stays
    assert without.inference_allowed_mirroring_axes is None
    assert isinstance(without, nnUNetTrainerUDAQuickGIN)
    assert without.initial_lr == with_mirroring.initial_lr and without.oversample_foreground_percent == 1.0


@pytest.mark.parametrize("trainer", [name for name in TRAINERS if name.endswith("NoMirroring")])
def test_every_pipeline_trainer_has_a_variant_with_its_pseudolabel_counterpart(trainer):
    base = recursive_find_trainer_class_by_name(trainer.removesuffix("NoMirroring"))
    variant = recursive_find_trainer_class_by_name(trainer)  # as nnUNetv2_train looks it up
    counterpart = recursive_find_trainer_class_by_name(TRAINERS[trainer])
    assert issubclass(variant, base) and issubclass(counterpart, nnUNetTrainerUDAPseudoLabel)
    for trainer_class in (variant, counterpart):  # nnU-Net's override first in the method order, so mirroring is off
        assert (trainer_class.configure_rotation_dummyDA_mirroring_and_inital_patch_size
                is nnUNetTrainerNoMirroring.configure_rotation_dummyDA_mirroring_and_inital_patch_size)
    assert issubclass(counterpart, recursive_find_trainer_class_by_name(TRAINERS[base.__name__]))
    assert (variant.get_training_transforms is nnUNetTrainerUDASmallGIN.get_training_transforms) == ("GIN" in trainer)

