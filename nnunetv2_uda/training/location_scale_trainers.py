"""The trainers with SLAug's location-scale augmentation instead of the random intensity networks: CT-trained
networks for which no organ's brightness, relative to the others or to fat, is a cue
(:mod:`nnunetv2_uda.training.location_scale`)."""

from __future__ import annotations

from functools import partial

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


class nnUNetTrainerUDASmallLocationScaleInnerAir(nnUNetTrainerUDASmallLocationScale):
    """``nnUNetTrainerUDASmallLocationScale`` whose class level remaps the air inside the body (lungs, bowel gas)
    with the background instead of keeping it as dark as the air around the body."""

    get_training_transforms = training_transforms_with(partial(with_location_scale, keep_inner_air=False))


class nnUNetTrainerUDAQuickLocationScaleInnerAir(nnUNetTrainerUDAQuickLocationScale,
                                                 nnUNetTrainerUDASmallLocationScaleInnerAir):
    """``nnUNetTrainerUDAQuick`` with the location-scale augmentation, the air inside the body remapped."""


class nnUNetTrainerUDAPseudoLabelLocationScaleInnerAir(nnUNetTrainerUDAPseudoLabelLocationScale,
                                                       nnUNetTrainerUDASmallLocationScaleInnerAir):
    """``nnUNetTrainerUDAPseudoLabel`` with the location-scale augmentation, the air inside the body remapped."""


class nnUNetTrainerUDAQuickPseudoLabelLocationScaleInnerAir(nnUNetTrainerUDAQuickPseudoLabelLocationScale,
                                                            nnUNetTrainerUDAQuickLocationScaleInnerAir):
    """``nnUNetTrainerUDAQuickPseudoLabel`` with the location-scale augmentation, the air inside the body
    remapped."""
