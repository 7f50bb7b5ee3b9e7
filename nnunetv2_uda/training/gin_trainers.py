"""The trainers with random intensity networks (GIN) in their training augmentation: CT-trained networks that
segment by shape, for an MRI they never saw (:mod:`nnunetv2_uda.training.random_intensity_networks`)."""

from __future__ import annotations

from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform

from nnunetv2_uda.training.pseudolabel_trainer import nnUNetTrainerUDAPseudoLabel
from nnunetv2_uda.training.quick_trainer import nnUNetTrainerUDAQuick, nnUNetTrainerUDAQuickPseudoLabel
from nnunetv2_uda.training.random_intensity_networks import with_random_intensity_networks
from nnunetv2_uda.training.small_trainer import nnUNetTrainerUDASmall


class nnUNetTrainerUDASmallGIN(nnUNetTrainerUDASmall):
    """``nnUNetTrainerUDASmall`` with a random intensity network applied to every training sample after the
    spatial augmentation; validation and inference see the images as they are."""

    @staticmethod
    def get_training_transforms(patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False,
                                foreground_labels=None, regions=None, ignore_label=None) -> BasicTransform:
        return with_random_intensity_networks(nnUNetTrainerUDASmall.get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm, is_cascaded, foreground_labels, regions, ignore_label))


class nnUNetTrainerUDAQuickGIN(nnUNetTrainerUDAQuick, nnUNetTrainerUDASmallGIN):
    """``nnUNetTrainerUDAQuick`` (Adam, organ-centred patches: short CPU schedules) with the random intensity
    networks of ``nnUNetTrainerUDASmallGIN``."""


class nnUNetTrainerUDAPseudoLabelGIN(nnUNetTrainerUDAPseudoLabel, nnUNetTrainerUDASmallGIN):
    """``nnUNetTrainerUDAPseudoLabel`` (snapshot pseudo-labels of the target set) with random intensity
    networks."""


class nnUNetTrainerUDAQuickPseudoLabelGIN(nnUNetTrainerUDAQuickPseudoLabel, nnUNetTrainerUDAQuickGIN):
    """``nnUNetTrainerUDAQuickPseudoLabel`` with random intensity networks."""
