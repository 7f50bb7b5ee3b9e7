"""nnU-Net's preprocessing of a case for prediction, in torch on the compute device.

``DefaultPreprocessor.run_case_npy`` does, on the CPU: transpose, crop to the nonzero region (whose mask it fills
with scipy's ``binary_fill_holes`` first), normalize, resample the image *and* a segmentation of the nonzero mask
that prediction never uses. Here the same steps run on the device the network runs on, and only what prediction
needs: the crop box is the nonzero box (filling holes cannot change a box: every hole lies inside it), the
segmentation is not resampled, and the common normalization schemes are computed in torch with nnU-Net's formulas
(others, and the filled mask where ``use_mask_for_norm`` asks for it, go through nnU-Net's own code). The input is
resampled with nnU-Net's torch function, as before.
"""

from __future__ import annotations

import os

import nnunetv2
import numpy as np
import torch
from nnunetv2.preprocessing.cropping.cropping import create_nonzero_mask
from nnunetv2.preprocessing.normalization.default_normalization_schemes import (
    CTNormalization,
    ImageNormalization,
    NoNormalization,
    ZScoreNormalization,
)
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape
from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

TORCH_NORMALIZATIONS = (ZScoreNormalization, CTNormalization, NoNormalization)


def normalization_class(scheme: str) -> type[ImageNormalization]:
    """The class nnU-Net's preprocessor uses for a scheme name."""
    return recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "preprocessing", "normalization"), scheme,
                                       "nnunetv2.preprocessing.normalization")


def nonzero_box(data: torch.Tensor) -> list[list[int]]:
    """Half-open [start, end) per spatial axis of the voxels nonzero in any channel; the whole image if there are
    none (as nnU-Net's ``get_bbox_from_mask``)."""
    nonzero = (data != 0).any(0)
    box = []
    for axis in range(nonzero.ndim):
        others = tuple(a for a in range(nonzero.ndim) if a != axis)
        present = torch.nonzero(nonzero.any(others) if others else nonzero).flatten()
        box.append([int(present[0]), int(present[-1]) + 1] if len(present) else [0, nonzero.shape[axis]])
    return box


def normalize_channel(image: torch.Tensor, normalizer: ImageNormalization, mask: torch.Tensor | None) -> torch.Tensor:
    """``normalizer.run`` for one channel: in torch for nnU-Net's z-score, CT and no-normalization schemes (the
    same formulas), otherwise nnU-Net's numpy code on the CPU. ``mask``: the filled nonzero mask, where
    ``use_mask_for_norm`` is set."""
    eps = 1e-8
    if type(normalizer) is ZScoreNormalization:
        if mask is not None:
            std, mean = torch.std_mean(image[mask], correction=0)
            image[mask] = (image[mask] - mean) / max(float(std), eps)
            return image
        std, mean = torch.std_mean(image, correction=0)
        return image.sub_(mean).div_(max(float(std), eps))
    if type(normalizer) is CTNormalization:
        properties = normalizer.intensityproperties
        image.clamp_(properties["percentile_00_5"], properties["percentile_99_5"])
        return image.sub_(properties["mean"]).div_(max(properties["std"], eps))
    if type(normalizer) is NoNormalization:
        return image
    seg = None if mask is None else np.where(mask.cpu().numpy(), np.int8(0), np.int8(-1))
    return torch.from_numpy(normalizer.run(image.cpu().numpy(), seg)).to(image.device)


class TorchCasePreprocessor:
    """Prediction-time ``run_case_npy`` on ``device`` (see the module docstring); ``resampling_configuration`` holds
    the input resampling function (nnU-Net's torch one, bound to the device)."""

    def __init__(self, plans_manager: PlansManager, resampling_configuration: ConfigurationManager,
                 device: torch.device):
        self.plans_manager = plans_manager
        self.configuration = resampling_configuration
        self.device = device
        intensities = plans_manager.foreground_intensity_properties_per_channel
        self.normalizers = [
            normalization_class(scheme)(use_mask_for_norm=use_mask, intensityproperties=intensities[str(channel)])
            for channel, (scheme, use_mask) in enumerate(zip(resampling_configuration.normalization_schemes,
                                                            resampling_configuration.use_mask_for_norm, strict=True))]

    @staticmethod
    def handles(configuration: ConfigurationManager) -> bool:
        """Whether this preprocessing equals the configuration's: nnU-Net's own preprocessor (a subclass may do
        more)."""
        return configuration.preprocessor_class is DefaultPreprocessor

    @torch.inference_mode()
    def run(self, images: np.ndarray, properties: dict) -> torch.Tensor:
        """(C, z, y, x) image array as read by the plans' reader -> network input on the device; fills in the
        properties the export needs, as nnU-Net does."""
        transpose = self.plans_manager.transpose_forward
        data = torch.from_numpy(images).to(self.device, torch.float32).permute(0, *[i + 1 for i in transpose])
        spacing = [properties["spacing"][i] for i in transpose]
        properties["shape_before_cropping"] = tuple(data.shape[1:])
        box = nonzero_box(data)
        properties["bbox_used_for_cropping"] = box
        data = data[(slice(None), *(slice(start, end) for start, end in box))].contiguous()
        properties["shape_after_cropping_and_before_resampling"] = tuple(data.shape[1:])

        mask = None
        if any(self.configuration.use_mask_for_norm):
            mask = torch.from_numpy(create_nonzero_mask(data.cpu().numpy())).to(self.device)
        for channel, normalizer in enumerate(self.normalizers):
            data[channel] = normalize_channel(data[channel], normalizer,
                                              mask if normalizer.use_mask_for_norm else None)

        target_spacing = list(self.configuration.spacing)
        if len(target_spacing) < len(spacing):  # 2d: the spacing between slices stays
            target_spacing = [spacing[0], *target_spacing]
        new_shape = compute_new_shape(data.shape[1:], spacing, target_spacing)
        return self.configuration.resampling_fn_data(data, new_shape, spacing, target_spacing).contiguous()
