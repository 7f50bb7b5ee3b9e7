"""The export step in the paper's order: class decision at network resolution, then resample the label map only.

nnU-Net's ``convert_predicted_logits_to_segmentation_with_correct_shape`` resamples all C logit channels to the
original spacing (in float, on the CPU) and only then takes the argmax. Here the decision is made first, on the
device the logits are on, without any full-size float or int64 copy of the logits; the uint8 map is resampled in
torch, and un-cropping, transposition and the writer are nnU-Net's, so files open exactly like stock ones. Files
are written through :mod:`nnunetv2_uda.atomic_files`: a final name only ever holds a complete file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image
from nnunetv2.utilities.label_handling.label_handling import LabelManager
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunetv2_uda.atomic_files import write_atomically
from nnunetv2_uda.command_line import one_line
from nnunetv2_uda.images import ImageFileError, verify_voxels
from nnunetv2_uda.inference.label_resampling import resample_label_map

DECISION_SLAB_VOXELS = 2 ** 24  # voxels per slab for region models' decision: bounds the temporary float tensors


def label_dtypes(label_manager: LabelManager) -> tuple[torch.dtype, np.dtype]:
    """torch has no uint16: int16 holds up to 32767 labels, more than nnU-Net's uint16 ever needs in practice."""
    if len(label_manager.foreground_labels) < 255:
        return torch.uint8, np.dtype(np.uint8)
    return torch.int16, np.dtype(np.uint16)


@torch.inference_mode()
def decide_labels(logits: torch.Tensor | np.ndarray, label_manager: LabelManager) -> torch.Tensor:
    """The label map of (C, x, y[, z]) logits on their device: argmax (softmax models; the first of equal maxima,
    as ``argmax``) or sigmoid + threshold in ``regions_class_order`` (region models, slab by slab along the first
    spatial axis)."""
    logits = torch.as_tensor(logits)
    torch_dtype, _ = label_dtypes(label_manager)
    labels = torch.zeros(logits.shape[1:], dtype=torch_dtype, device=logits.device)
    if label_manager.has_regions:
        slab = max(1, DECISION_SLAB_VOXELS // max(1, int(np.prod(logits.shape[2:]))))
        for start in range(0, logits.shape[1], slab):
            labels[start:start + slab] = label_manager.convert_logits_to_segmentation(logits[:, start:start + slab])
        return labels
    # a running maximum over channels: one channel-sized buffer, and on the CPU several times faster than argmax
    # over the first (outermost) axis, which torch reduces with strided reads
    best = logits[0].clone()
    for channel in range(1, logits.shape[0]):
        labels.masked_fill_(logits[channel] > best, channel)
        torch.maximum(best, logits[channel], out=best)
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
    """Writes with the plans' writer, atomically (an interrupted or failed write leaves nothing under the final
    name, and no temporary behind), and reads the written file back to its end before it gets its name: ITK's
    writers report success when the disk is full or a file size limit is hit, leaving a cut file that ITK's reader
    then fills with zeros. Returns the final path."""
    final_path = output_file_truncated + dataset_json["file_ending"]
    writer = plans_manager.image_reader_writer_class()

    def write(temporary: Path) -> None:
        writer.write_seg(segmentation, str(temporary), properties)
        try:
            verify_voxels(temporary)
        except ImageFileError as error:
            raise ImageFileError(f"{final_path}: not written completely, nothing was kept (is the disk full?): "
                                 f"{one_line(error).split(': ', 1)[-1]}") from error

    write_atomically(final_path, write)
    return final_path


def export_prediction_from_logits_fast(logits: torch.Tensor | np.ndarray, properties: dict,
                                       plans_manager: PlansManager, dataset_json: dict, output_file_truncated: str,
                                       label_resampling: str = "nearest") -> str:
    """Counterpart of nnU-Net's ``export_prediction_from_logits`` (without probabilities)."""
    label_manager = plans_manager.get_label_manager(dataset_json)
    segmentation = segmentation_from_logits_fast(logits, plans_manager, label_manager, properties, label_resampling)
    return write_segmentation(segmentation, properties, output_file_truncated, plans_manager, dataset_json)
