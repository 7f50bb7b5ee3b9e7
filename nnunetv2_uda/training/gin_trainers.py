"""The trainers with random intensity networks (GIN) in their training augmentation: CT-trained networks that
segment by shape, for an MRI they never saw (:mod:`nnunetv2_uda.training.random_intensity_networks`)."""

from __future__ import annotations

from nnunetv2_uda.training.augmentation import training_transforms_with
from nnunetv2_uda.training.pseudolabel_trainer import nnUNetTrainerUDAPseudoLabel
from nnunetv2_uda.training.quick_trainer import nnUNetTrainerUDAQuick, nnUNetTrainerUDAQuickPseudoLabel
from nnunetv2_uda.training.random_intensity_networks import with_random_intensity_networks
from nnunetv2_uda.training.small_trainer import nnUNetTrainerUDASmall


class nnUNetTrainerUDASmallGIN(nnUNetTrainerUDASmall):
    """``nnUNetTrainerUDASmall`` with a random intensity network applied to every training sample after the
    spatial augmentation; validation and inference see the images as they are."""

    get_training_transforms = training_transforms_with(with_random_intensity_networks)


class nnUNetTrainerUDAQuickGIN(nnUNetTrainerUDAQuick, nnUNetTrainerUDASmallGIN):
    """``nnUNetTrainerUDAQuick`` (Adam, organ-centred patches: short CPU schedules) with the random intensity
    networks of ``nnUNetTrainerUDASmallGIN``."""


class nnUNetTrainerUDAPseudoLabelGIN(nnUNetTrainerUDAPseudoLabel, nnUNetTrainerUDASmallGIN):
    """``nnUNetTrainerUDAPseudoLabel`` (snapshot pseudo-labels of the target set) with random intensity
    networks."""


class nnUNetTrainerUDAQuickPseudoLabelGIN(nnUNetTrainerUDAQuickPseudoLabel, nnUNetTrainerUDAQuickGIN):
    """``nnUNetTrainerUDAQuickPseudoLabel`` with random intensity networks."""
