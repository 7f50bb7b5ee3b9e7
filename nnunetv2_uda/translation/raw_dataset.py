"""Reading and writing nnU-Net raw datasets for the translation stage, with clear errors and atomic writes."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk


class DatasetError(ValueError):
    """A raw dataset that cannot be used; the message names the dataset or file and what is wrong."""


@dataclass(frozen=True)
class RawDataset:
    folder: Path
    dataset_json: dict
    file_ending: str
    cases: tuple[str, ...]

    @property
    def channel_names(self) -> dict:
        return self.dataset_json["channel_names"]

    def image_file(self, case: str, channel: int = 0) -> Path:
        return self.folder / "imagesTr" / f"{case}_{channel:04d}{self.file_ending}"

    def label_file(self, case: str) -> Path | None:
        path = self.folder / "labelsTr" / f"{case}{self.file_ending}"
        return path if path.is_file() else None


def open_raw_dataset(folder: str | os.PathLike, expected_channels: int | None = 1) -> RawDataset:
    """Checks the layout (dataset.json, imagesTr, channel count) and lists the cases of a raw dataset."""
    folder = Path(folder)
    json_file = folder / "dataset.json"
    if not json_file.is_file():
        raise DatasetError(f"Dataset '{folder}': no dataset.json (is this an nnU-Net raw dataset folder?)")
    try:
        dataset_json = json.loads(json_file.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"Dataset '{folder}': dataset.json is not valid JSON ({error})") from error
    channels = dataset_json.get("channel_names", dataset_json.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise DatasetError(f"Dataset '{folder}': dataset.json has no 'channel_names'")
    dataset_json.setdefault("channel_names", channels)
    if expected_channels is not None and len(channels) != expected_channels:
        raise DatasetError(f"Dataset '{folder}' has {len(channels)} channels {channels}, but translation needs "
                           f"{expected_channels} (one CT or MRI image per case)")
    file_ending = dataset_json.get("file_ending", ".nii.gz")
    images = folder / "imagesTr"
    suffix = f"_0000{file_ending}"
    cases = tuple(sorted(p.name[: -len(suffix)] for p in images.glob(f"*{suffix}"))) if images.is_dir() else ()
    if not cases:
        raise DatasetError(f"Dataset '{folder}' is empty: no '*{suffix}' images in {images}")
    for case in cases:
        for channel in range(1, len(channels)):
            path = images / f"{case}_{channel:04d}{file_ending}"
            if not path.is_file():
                raise DatasetError(f"Dataset '{folder}': case '{case}' lacks channel {channel} ({path.name})")
    return RawDataset(folder, dataset_json, file_ending, cases)


def read_image(path: str | os.PathLike) -> sitk.Image:
    """Reads one image; an unreadable or missing file raises a DatasetError naming it."""
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else ""
        raise DatasetError(f"Cannot read image '{path}': {first_line}") from error


def read_volume(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float, float], sitk.Image]:
    """The (Z, Y, X) array, its (z, y, x) spacing and the image (for its geometry)."""
    image = read_image(path)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DatasetError(f"Image '{path}' is not a single-channel 3D image "
                           f"(dimension {image.GetDimension()}, {image.GetNumberOfComponentsPerPixel()} components)")
    return sitk.GetArrayFromImage(image), tuple(image.GetSpacing()[::-1]), image


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".tmp_{os.getpid()}_{path.name}")


def write_volume_like(array: np.ndarray, reference: sitk.Image, path: str | os.PathLike) -> None:
    """Writes ``array`` with the reference's spacing, origin and direction; atomically (temporary name, rename)."""
    path = Path(path)
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    temporary = _temporary_name(path)
    sitk.WriteImage(image, str(temporary), True)
    os.replace(temporary, path)


def copy_file_atomic(source: str | os.PathLike, target: str | os.PathLike) -> None:
    target = Path(target)
    temporary = _temporary_name(target)
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def write_json_atomic(data: dict, path: str | os.PathLike) -> None:
    path = Path(path)
    temporary = _temporary_name(path)
    temporary.write_text(json.dumps(data, indent=2))
    os.replace(temporary, path)


def prepare_output_dataset(output_folder: str | os.PathLike, input_folder: Path, overwrite: bool) -> Path:
    """Creates imagesTr/labelsTr of an output dataset; refuses to write into its own input or a non-empty folder."""
    output = Path(output_folder)
    if output.resolve() == Path(input_folder).resolve():
        raise DatasetError(f"Output dataset '{output}' is the input dataset; choose another folder")
    if (output / "dataset.json").exists() and not overwrite:
        raise DatasetError(f"Output dataset '{output}' already exists (has a dataset.json); pass --overwrite to "
                           f"replace it")
    (output / "imagesTr").mkdir(parents=True, exist_ok=True)
    (output / "labelsTr").mkdir(parents=True, exist_ok=True)
    return output
