"""Checks of a case's files before prediction, so that bad input gets an error naming the file.

nnU-Net itself would read a 2D image as a one-slice volume, stack a wrong number of channels into the network (and
fail deep inside it), and stop the whole run at the first unreadable file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from nnunetv2_uda.command_line import UserInputError
from nnunetv2_uda.images import read_header

# endings whose header SimpleITK reads without loading the pixels; other formats are left to nnU-Net's reader
HEADER_CHECKED_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


class InvalidCaseError(UserInputError):
    """A case whose input files cannot be predicted by this model."""


def expected_channel_names(dataset_json: dict) -> list[str]:
    channels = dataset_json.get("channel_names", dataset_json.get("modality", {}))
    return [channels[key] for key in sorted(channels, key=int)]


def check_case_files(files: Sequence[str], dataset_json: dict) -> None:
    """Raises :class:`InvalidCaseError` (or :class:`~nnunetv2_uda.images.ImageFileError`) if the files do not make
    one case for a model trained on ``dataset_json``."""
    channels = expected_channel_names(dataset_json)
    if len(files) != len(channels):
        names = ", ".join(os.path.basename(f) for f in files)
        raise InvalidCaseError(f"{names}: {len(files)} channel file(s), but the model expects {len(channels)} "
                               f"({', '.join(channels)}; files <case>_0000{dataset_json['file_ending']}, ...)")
    sizes = {}
    for path in files:
        if not os.path.isfile(path):
            raise InvalidCaseError(f"{path}: file does not exist")
        if not path.endswith(HEADER_CHECKED_ENDINGS):
            continue
        reader = read_header(path)
        if reader.GetDimension() != 3:
            raise InvalidCaseError(f"{path}: is a {reader.GetDimension()}D image, the model needs 3D images")
        if reader.GetNumberOfComponents() != 1:
            raise InvalidCaseError(f"{path}: has {reader.GetNumberOfComponents()} components per voxel; give each "
                                   f"channel as its own file (_0000, _0001, ...)")
        sizes[path] = reader.GetSize()
    if len(set(sizes.values())) > 1:
        raise InvalidCaseError("channel files of different sizes: " + ", ".join(
            f"{os.path.basename(path)} {'x'.join(map(str, size))}" for path, size in sizes.items()))
