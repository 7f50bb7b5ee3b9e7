"""The trainers with SLAug's location-scale augmentation instead of the random intensity networks: CT-trained
networks for which no organ's brightness, relative to the others or to fat, is a cue
(:mod:`nnunetv2_uda.training.location_scale`)."""

from __future__ import annotations

from nnunetv2_uda.training.augmentation import training_transforms_with
from nnunetv2_uda.training.location_scale import with_location_scale
from nnunetv2_uda.training.pseudolabel_trainer import nnUNetTrainerUDAPseudoLabel
from nnunetv2_uda.training.quick_trainer import nnUNetTrainerUDAQuick, nnUNetTrainerUDAQuickPseudoLabel
from nnunetv2_uda.training.small_trainer import nnUNetTrainerUDASmall


class nnUNetTrainerUDASmallLocationScale(nnUNetTrainerUDASmall):
    """``nnUNetTrainerUDASmall`` with the global or class-level location-scale augmentation (half of the samples
    each) after the spatial augmentation; validation and inference see the images as they are."""

    get_training_transforms = training_transforms_with(with_location_scale)


class nnUNetTrainerUDAQuickLocationScale(nnUNetTrainerUDAQuick, nnUNetTrainerUDASmallLocationScale):
    """``nnUNetTrainerUDAQuick`` (Adam, organ-centred patches: short CPU schedules) with the location-scale
    augmentation."""


class nnUNetTrainerUDAPseudoLabelLocationScale(nnUNetTrainerUDAPseudoLabel, nnUNetTrainerUDASmallLocationScale):
    """``nnUNetTrainerUDAPseudoLabel`` with the location-scale augmentation, its class level driven by the
    pseudo-labels."""


class nnUNetTrainerUDAQuickPseudoLabelLocationScale(nnUNetTrainerUDAQuickPseudoLabel,
                                                    nnUNetTrainerUDAQuickLocationScale):
    """``nnUNetTrainerUDAQuickPseudoLabel`` with the location-scale augmentation."""
