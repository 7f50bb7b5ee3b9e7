"""Converts a raw dataset to an anatomy-space raw dataset (what ``nnUNetv2_uda_sobel`` runs)."""

from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from nnunetv2_uda.translation.anatomy_space import anatomy_space, modality_of_channel
from nnunetv2_uda.translation.raw_dataset import (
    copy_file_atomic,
    open_raw_dataset,
    prepare_output_dataset,
    read_volume,
    write_json_atomic,
    write_volume_like,
)


def convert_dataset_to_anatomy_space(input_dataset_folder: str | os.PathLike, output_dataset_folder: str | os.PathLike,
                                     device: str = "cpu", overwrite: bool = False) -> Path:
    """Every image normalized per its channel's modality and mapped to anatomy space; labels copied unchanged.

    Geometry (spacing, origin, direction) is copied from each input image. dataset.json is written last, so a run
    that stopped half-way leaves a folder nnU-Net does not take for a dataset.
    """
    dataset = open_raw_dataset(input_dataset_folder, expected_channels=None)
    output = prepare_output_dataset(output_dataset_folder, dataset.folder, overwrite)
    channel_modalities = {int(c): modality_of_channel(name) for c, name in dataset.channel_names.items()}
    for case in tqdm(dataset.cases, desc="anatomy space", unit="case"):
        for channel, modality in channel_modalities.items():
            source = dataset.image_file(case, channel)
            volume, spacing, image = read_volume(source)
            write_volume_like(anatomy_space(volume, spacing, modality, device), image,
                              output / "imagesTr" / source.name)
        label = dataset.label_file(case)
        if label is not None:
            copy_file_atomic(label, output / "labelsTr" / label.name)
    dataset_json = dict(dataset.dataset_json)
    dataset_json["channel_names"] = {str(c): f"anatomy_{m}" for c, m in channel_modalities.items()}
    dataset_json["uda_anatomy_space"] = {"source": str(dataset.folder.resolve()),
                                         "modalities": {str(c): m for c, m in channel_modalities.items()}}
    write_json_atomic(dataset_json, output / "dataset.json")
    return output
