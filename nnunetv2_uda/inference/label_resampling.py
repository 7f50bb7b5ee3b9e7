"""Resampling of a label map (not of C class channels) to another grid, in torch on the tensor's device.

Stock nnU-Net resamples every class channel to the original geometry before the argmax; resampling the one uint8
label map instead is what makes export cheap. ``nearest`` keeps labels as they are; ``linear`` interpolates each
label's one-hot mask and keeps the label with the largest value (smoother borders when upsampling), one label at a
time so that memory stays at two float maps of the target size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from nnunetv2_uda.inference.options import LABEL_RESAMPLING_MODES


def resample_label_map(labels: torch.Tensor, target_shape: Sequence[int], mode: str = "nearest") -> torch.Tensor:
    """``labels``: integer map (x, y[, z]) on any device; returns the map at ``target_shape``, same dtype/device.

    Pixel centres are aligned (``nearest-exact``, ``align_corners=False``), as in nnU-Net's own resampling, so an
    integer upsampling factor replicates each voxel and the identity geometry returns the input unchanged.
    """
    if mode not in LABEL_RESAMPLING_MODES:
        raise ValueError(f"label resampling mode must be one of {LABEL_RESAMPLING_MODES}, got '{mode}'")
    target_shape = tuple(int(i) for i in target_shape)
    if len(target_shape) != labels.ndim:
        raise ValueError(f"target shape {target_shape} does not match the label map's shape {tuple(labels.shape)}")
    if tuple(labels.shape) == target_shape:
        return labels
    if mode == "nearest":
        return F.interpolate(labels[None, None], target_shape, mode="nearest-exact")[0, 0]

    interpolation = "trilinear" if labels.ndim == 3 else "bilinear"
    work_dtype = torch.float16 if labels.device.type == "cuda" else torch.float32
    best_score = torch.full(target_shape, -1.0, dtype=work_dtype, device=labels.device)
    result = torch.zeros(target_shape, dtype=labels.dtype, device=labels.device)
    for value in torch.unique(labels):
        mask = (labels == value).to(work_dtype)[None, None]
        score = F.interpolate(mask, target_shape, mode=interpolation, align_corners=False)[0, 0]
        better = score > best_score
        result[better] = value
        best_score = torch.where(better, score, best_score)
    return result
