"""nnU-Net extension classes that train and predict in anatomy space through nnU-Net's own pipeline.

Put ``"preprocessor_name": "AnatomySpacePreprocessor"`` and ``"normalization_schemes": ["CTAnatomySpaceNormalization"]``
(or ``MRIAnatomySpaceNormalization``) in a configuration of a plans file: preprocessing, training and stock
``nnUNetv2_predict`` then all normalize per modality and apply the spacing-aware Sobel to raw input images. nnU-Net
finds these classes by name through the plugin's lookup hook (also in spawned workers).
"""

from __future__ import annotations

import numpy as np
from nnunetv2.preprocessing.normalization.default_normalization_schemes import ImageNormalization
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

from nnunetv2_uda.translation.anatomy_space import anatomy_space, normalize_ct, normalize_mri


class CTAnatomySpaceNormalization(ImageNormalization):
    """Clip to the soft-tissue HU window, z-score (the anatomy space's CT normalization)."""

    leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true = False

    def run(self, image: np.ndarray, seg: np.ndarray = None) -> np.ndarray:
        return normalize_ct(image).astype(self.target_dtype, copy=False)


class MRIAnatomySpaceNormalization(ImageNormalization):
    """Clip to the image's 0.5/99.5 percentiles, z-score (the anatomy space's MRI normalization)."""

    leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true = False

    def run(self, image: np.ndarray, seg: np.ndarray = None) -> np.ndarray:
        return normalize_mri(image).astype(self.target_dtype, copy=False)


class AnatomySpacePreprocessor(DefaultPreprocessor):
    """nnU-Net's preprocessing with the Sobel anatomy transform right after normalization, at the original spacing."""

    def run_case_npy(self, data, seg, properties, plans_manager, configuration_manager, dataset_json):
        # the spacing of the (transposed) image is needed in _normalize, which nnU-Net does not pass it
        self._spacing_zyx = tuple(properties["spacing"][i] for i in plans_manager.transpose_forward)
        return super().run_case_npy(data, seg, properties, plans_manager, configuration_manager, dataset_json)

    def _normalize(self, data, seg, configuration_manager, foreground_intensity_properties_per_channel):
        data = super()._normalize(data, seg, configuration_manager, foreground_intensity_properties_per_channel)
        for channel in range(data.shape[0]):
            data[channel] = anatomy_space(data[channel], self._spacing_zyx, modality=None)
        return data
