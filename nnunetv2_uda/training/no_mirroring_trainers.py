"""Our trainers without mirroring augmentation, through nnU-Net's own ``nnUNetTrainerNoMirroring``.

A mirrored training patch shows the right kidney on the patient's left with its label, so a network trained with
mirroring must tell the two kidneys (and liver from spleen) apart by context alone. Where every image is stored in
one orientation, as in BTCV and CHAOS, that invariance is never needed, and across modalities the context is what the
domain gap blurs: position is the cue that survives it. Inference already runs without mirroring in every trainer.
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import (
    nnUNetTrainerNoMirroring,
)

from nnunetv2_uda.training.gin_trainers import (
    nnUNetTrainerUDAPseudoLabelGIN,
    nnUNetTrainerUDAQuickGIN,
    nnUNetTrainerUDAQuickPseudoLabelGIN,
    nnUNetTrainerUDASmallGIN,
)
from nnunetv2_uda.training.location_scale_trainers import (
    nnUNetTrainerUDAPseudoLabelLocationScale,
    nnUNetTrainerUDAPseudoLabelLocationScaleInnerAir,
    nnUNetTrainerUDAQuickLocationScale,
    nnUNetTrainerUDAQuickLocationScaleInnerAir,
    nnUNetTrainerUDAQuickPseudoLabelLocationScale,
    nnUNetTrainerUDAQuickPseudoLabelLocationScaleInnerAir,
    nnUNetTrainerUDASmallLocationScale,
    nnUNetTrainerUDASmallLocationScaleInnerAir,
)
from nnunetv2_uda.training.pseudolabel_trainer import nnUNetTrainerUDAPseudoLabel
from nnunetv2_uda.training.quick_trainer import nnUNetTrainerUDAQuick, nnUNetTrainerUDAQuickPseudoLabel
from nnunetv2_uda.training.small_trainer import nnUNetTrainerUDASmall


class nnUNetTrainerUDASmallNoMirroring(nnUNetTrainerNoMirroring, nnUNetTrainerUDASmall):
    """The paper's protocol without mirroring augmentation."""


class nnUNetTrainerUDAPseudoLabelNoMirroring(nnUNetTrainerNoMirroring, nnUNetTrainerUDAPseudoLabel):
    """Snapshot pseudo-labels, without mirroring augmentation."""


class nnUNetTrainerUDAQuickNoMirroring(nnUNetTrainerNoMirroring, nnUNetTrainerUDAQuick):
    """The short-schedule trainer without mirroring augmentation."""


class nnUNetTrainerUDAQuickPseudoLabelNoMirroring(nnUNetTrainerNoMirroring, nnUNetTrainerUDAQuickPseudoLabel):
    """Short-schedule snapshot pseudo-labels, without mirroring augmentation."""


class nnUNetTrainerUDASmallGINNoMirroring(nnUNetTrainerNoMirroring, nnUNetTrainerUDASmallGIN):
    """The paper's protocol with random intensity networks, without mirroring augmentation."""


class nnUNetTrainerUDAPseudoLabelGINNoMirroring(nnUNetTrainerNoMirroring, nnUNetTrainerUDAPseudoLabelGIN):
    """Snapshot pseudo-labels with random intensity networks, without mirroring augmentation."""


class nnUNetTrainerUDAQuickGINNoMirroring(nnUNetTrainerNoMirroring, nnUNetTrainerUDAQuickGIN):
    """The short-schedule trainer with random intensity networks, without mirroring augmentation."""


class nnUNetTrainerUDAQuickPseudoLabelGINNoMirroring(nnUNetTrainerNoMirroring, nnUNetTrainerUDAQuickPseudoLabelGIN):
    """Short-schedule snapshot pseudo-labels with random intensity networks, without mirroring augmentation."""


class nnUNetTrainerUDASmallLocationScaleNoMirroring(nnUNetTrainerNoMirroring, nnUNetTrainerUDASmallLocationScale):
    """The paper's protocol with the location-scale augmentation, without mirroring augmentation."""


class nnUNetTrainerUDAPseudoLabelLocationScaleNoMirroring(nnUNetTrainerNoMirroring,
                                                          nnUNetTrainerUDAPseudoLabelLocationScale):
    """Snapshot pseudo-labels with the location-scale augmentation, without mirroring augmentation."""


class nnUNetTrainerUDAQuickLocationScaleNoMirroring(nnUNetTrainerNoMirroring, nnUNetTrainerUDAQuickLocationScale):
    """The short-schedule trainer with the location-scale augmentation, without mirroring augmentation."""


class nnUNetTrainerUDAQuickPseudoLabelLocationScaleNoMirroring(nnUNetTrainerNoMirroring,
                                                               nnUNetTrainerUDAQuickPseudoLabelLocationScale):
    """Short-schedule snapshot pseudo-labels with the location-scale augmentation, without mirroring
    augmentation."""


class nnUNetTrainerUDASmallLocationScaleInnerAirNoMirroring(nnUNetTrainerNoMirroring,
                                                           nnUNetTrainerUDASmallLocationScaleInnerAir):
    """The paper's protocol with the location-scale augmentation remapping the air inside the body, without
    mirroring augmentation."""


class nnUNetTrainerUDAPseudoLabelLocationScaleInnerAirNoMirroring(nnUNetTrainerNoMirroring,
                                                                  nnUNetTrainerUDAPseudoLabelLocationScaleInnerAir):
    """Snapshot pseudo-labels with the location-scale augmentation remapping the air inside the body, without
    mirroring augmentation."""


class nnUNetTrainerUDAQuickLocationScaleInnerAirNoMirroring(nnUNetTrainerNoMirroring,
                                                           nnUNetTrainerUDAQuickLocationScaleInnerAir):
    """The short-schedule trainer with the location-scale augmentation remapping the air inside the body, without
    mirroring augmentation."""


class nnUNetTrainerUDAQuickPseudoLabelLocationScaleInnerAirNoMirroring(
        nnUNetTrainerNoMirroring, nnUNetTrainerUDAQuickPseudoLabelLocationScaleInnerAir):
    """Short-schedule snapshot pseudo-labels with the location-scale augmentation remapping the air inside the
    body, without mirroring augmentation."""
