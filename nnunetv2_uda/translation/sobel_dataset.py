"""Converts a raw dataset to an anatomy-space raw dataset (what ``nnUNetv2_uda_sobel`` runs)."""

from __future__ import annotations

import os
from pathlib import Path

from nnunetv2_uda.atomic_files import write_json_atomically
from nnunetv2_uda.translation.anatomy_space import anatomy_space, modality_of_channel
from nnunetv2_uda.translation.raw_dataset import (
    build_dataset,
    check_label,
    copy_label,
    open_raw_dataset,
    read_volume,
    write_volume_like,
)


def convert_dataset_to_anatomy_space(input_dataset_folder: str | os.PathLike, output_dataset_folder: str | os.PathLike,
                                     device: str = "cpu", overwrite: bool = False,
                                     allow_nonfinite: bool = False) -> Path:
    """Every image normalized per its channel's modality and mapped to anatomy space; labels copied unchanged.

    Geometry (spacing, origin, direction) is copied from each input image. The dataset is built beside the output
    folder and put in place when complete (see ``raw_dataset.build_dataset``: a case with a bad image is left out
    and named, the others are kept).
    """
    dataset = open_raw_dataset(input_dataset_folder, expected_channels=None)
    channel_modalities = {int(c): modality_of_channel(name) for c, name in dataset.channel_names.items()}

    def write_case(case: str, output: Path) -> None:
        volumes = {channel: read_volume(dataset.image_file(case, channel), allow_nonfinite)
                   for channel in channel_modalities}
        label = dataset.label_file(case)
        if label is not None:
            check_label(label)
        for channel, (volume, spacing, image) in volumes.items():
            write_volume_like(anatomy_space(volume, spacing, channel_modalities[channel], device), image,
                              output / "imagesTr" / dataset.image_file(case, channel).name)
        copy_label(label, output)

    def finish(output: Path, cases: list[str]) -> None:
        dataset_json = dict(dataset.dataset_json)
        dataset_json["channel_names"] = {str(c): f"anatomy_{m}" for c, m in channel_modalities.items()}
        dataset_json["numTraining"] = len(cases)
        dataset_json["uda_anatomy_space"] = {"source": str(dataset.folder.resolve()),
                                             "modalities": {str(c): m for c, m in channel_modalities.items()}}
        write_json_atomically(dataset_json, output / "dataset.json")

    return build_dataset(dataset, output_dataset_folder, (), overwrite, write_case, finish, "anatomy space")
