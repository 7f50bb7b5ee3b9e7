"""The trainers with SLAug's location-scale augmentation instead of the random intensity networks: CT-trained
networks for which no organ's brightness, relative to the others or to fat, is a cue
(:mod:`nnunetv2_uda.training.location_scale`)."""

from __future__ import annotations

from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform

from nnunetv2_uda.training.location_scale import with_location_scale
from nnunetv2_uda.training.pseudolabel_trainer import nnUNetTrainerUDAPseudoLabel
from nnunetv2_uda.training.quick_trainer import nnUNetTrainerUDAQuick, nnUNetTrainerUDAQuickPseudoLabel
from nnunetv2_uda.training.small_trainer import nnUNetTrainerUDASmall


class nnUNetTrainerUDASmallLocationScale(nnUNetTrainerUDASmall):
    """``nnUNetTrainerUDASmall`` with the global or class-level location-scale augmentation (half of the samples
    each) after the spatial augmentation; validation and inference see the images as they are."""

    @staticmethod
    def get_training_transforms(patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False,
                                foreground_labels=None, regions=None, ignore_label=None) -> BasicTransform:
        return with_location_scale(nnUNetTrainerUDASmall.get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm, is_cascaded, foreground_labels, regions, ignore_label))


class nnUNetTrainerUDAQuickLocationScale(nnUNetTrainerUDAQuick, nnUNetTrainerUDASmallLocationScale):
    """``nnUNetTrainerUDAQuick`` (Adam, organ-centred patches: short CPU schedules) with the location-scale
    augmentation."""


class nnUNetTrainerUDAPseudoLabelLocationScale(nnUNetTrainerUDAPseudoLabel, nnUNetTrainerUDASmallLocationScale):
    """``nnUNetTrainerUDAPseudoLabel`` with the location-scale augmentation, its class level driven by the
    pseudo-labels."""


class nnUNetTrainerUDAQuickPseudoLabelLocationScale(nnUNetTrainerUDAQuickPseudoLabel,
                                                    nnUNetTrainerUDAQuickLocationScale):
    """``nnUNetTrainerUDAQuickPseudoLabel`` with the location-scale augmentation."""
