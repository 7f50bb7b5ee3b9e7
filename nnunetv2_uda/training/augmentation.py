"""Where our intensity augmentations go in nnU-Net's training transforms: right after the spatial augmentation.

There the label map is aligned with the image and not yet downsampled for deep supervision, and nnU-Net's own
intensity augmentations (noise, blur, brightness, contrast, gamma) still act on the new contrast.
"""

from __future__ import annotations

from collections.abc import Callable

from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.pseudo2d import Convert2DTo3DTransform

from nnunetv2_uda.training.small_trainer import nnUNetTrainerUDASmall


def after_spatial_augmentation(transforms: BasicTransform, step: BasicTransform) -> ComposeTransforms:
    """nnU-Net's training transforms with ``step`` inserted after the spatial augmentation (after its return to 3D
    where nnU-Net augments a 3D patch slice by slice)."""
    if not isinstance(transforms, ComposeTransforms):
        raise TypeError(f"expected nnU-Net's ComposeTransforms of training transforms, got {type(transforms).__name__}")
    steps = list(transforms.transforms)
    spatial = [i for i, existing in enumerate(steps)
               if isinstance(existing, (SpatialTransform, Convert2DTo3DTransform))]
    if not spatial:
        raise ValueError(f"nnU-Net's training transforms have no SpatialTransform to insert "
                         f"{type(step).__name__} after")
    steps.insert(spatial[-1] + 1, step)
    return ComposeTransforms(steps)


def training_transforms_with(add: Callable[[BasicTransform], ComposeTransforms]) -> staticmethod:
    """A ``get_training_transforms`` for a trainer of ours: ``nnUNetTrainerUDASmall``'s transforms (nnU-Net's own),
    then ``add`` (e.g. ``with_random_intensity_networks``); nnU-Net passes its arguments through unchanged."""
    def get_training_transforms(*args, **kwargs) -> BasicTransform:
        return add(nnUNetTrainerUDASmall.get_training_transforms(*args, **kwargs))

    return staticmethod(get_training_transforms)
