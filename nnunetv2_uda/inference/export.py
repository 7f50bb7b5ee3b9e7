"""The export step in the paper's order: class decision at network resolution, then resample the label map only.

nnU-Net's ``convert_predicted_logits_to_segmentation_with_correct_shape`` resamples all C logit channels to the
original spacing (in float, on the CPU) and only then takes the argmax. Here the decision is made first, on the
device the logits are on, in slabs so that no full-size float or int64 copy of the logits is ever made; the uint8
map is resampled in torch, and un-cropping, transposition and the writer are nnU-Net's, so files open exactly like
stock ones.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image
from nnunetv2.utilities.label_handling.label_handling import LabelManager
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunetv2_uda.inference.label_resampling import resample_label_map

DECISION_SLAB_VOXELS = 2 ** 24  # voxels per slab for the class decision: bounds the temporary float/int64 tensors


def label_dtypes(label_manager: LabelManager) -> tuple[torch.dtype, np.dtype]:
    """torch has no uint16: int16 holds up to 32767 labels, more than nnU-Net's uint16 ever needs in practice."""
    if len(label_manager.foreground_labels) < 255:
        return torch.uint8, np.dtype(np.uint8)
    return torch.int16, np.dtype(np.uint16)


@torch.inference_mode()
def decide_labels(logits: torch.Tensor | np.ndarray, label_manager: LabelManager) -> torch.Tensor:
    """Argmax (softmax models) or sigmoid + threshold in ``regions_class_order`` (region models) of (C, x, y[, z])
    logits, slab by slab along the first spatial axis; returns the label map on the logits' device."""
    logits = torch.as_tensor(logits)
    torch_dtype, _ = label_dtypes(label_manager)
    labels = torch.empty(logits.shape[1:], dtype=torch_dtype, device=logits.device)
    slab = max(1, DECISION_SLAB_VOXELS // max(1, int(np.prod(logits.shape[2:]))))
    for start in range(0, logits.shape[1], slab):
        chunk = logits[:, start:start + slab]
        # nnU-Net's softmax branch goes through numpy, which cannot read GPU tensors: argmax in torch on every device
        labels[start:start + slab] = (label_manager.convert_logits_to_segmentation(chunk) if label_manager.has_regions
                                      else chunk.argmax(0))
    return labels


@torch.inference_mode()
def segmentation_from_logits_fast(logits: torch.Tensor | np.ndarray, plans_manager: PlansManager,
                                  label_manager: LabelManager, properties: dict,
                                  label_resampling: str = "nearest") -> np.ndarray:
    """Logits at network resolution -> segmentation in the original image's geometry (numpy, nnU-Net's dtype)."""
    labels = decide_labels(logits, label_manager)
    del logits
    labels = resample_label_map(labels, properties["shape_after_cropping_and_before_resampling"], label_resampling)
    _, numpy_dtype = label_dtypes(label_manager)
    full = torch.zeros(tuple(properties["shape_before_cropping"]), dtype=labels.dtype, device=labels.device)
    full = insert_crop_into_image(full, labels, properties["bbox_used_for_cropping"])
    del labels
    return full.cpu().numpy().astype(numpy_dtype, copy=False).transpose(plans_manager.transpose_backward)


def write_segmentation(segmentation: np.ndarray, properties: dict, output_file_truncated: str,
                       plans_manager: PlansManager, dataset_json: dict) -> str:
    """Writes with nnU-Net's writer under a temporary name in the same folder, then renames: an interrupted run
    never leaves a half-written file under the final name. Returns the final path."""
    file_ending = dataset_json["file_ending"]
    final_path = output_file_truncated + file_ending
    folder, name = os.path.split(os.path.abspath(final_path))
    partial_path = os.path.join(folder, f".partial{os.getpid()}_{name}")
    try:
        plans_manager.image_reader_writer_class().write_seg(segmentation, partial_path, properties)
        os.replace(partial_path, final_path)
    finally:
        if os.path.exists(partial_path):
            os.remove(partial_path)
    return final_path


def export_prediction_from_logits_fast(logits: torch.Tensor | np.ndarray, properties: dict,
                                       plans_manager: PlansManager, dataset_json: dict, output_file_truncated: str,
                                       label_resampling: str = "nearest") -> str:
    """Counterpart of nnU-Net's ``export_prediction_from_logits`` (without probabilities)."""
    label_manager = plans_manager.get_label_manager(dataset_json)
    segmentation = segmentation_from_logits_fast(logits, plans_manager, label_manager, properties, label_resampling)
    return write_segmentation(segmentation, properties, output_file_truncated, plans_manager, dataset_json)
