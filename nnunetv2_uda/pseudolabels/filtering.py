"""``nnUNetv2_uda_filter_pseudolabels``: keep the target cases the snapshots agree on, as an nnU-Net raw dataset.

Each case's uncertainty u (eq. 7, :mod:`.uncertainty`) is computed from its snapshots in training order; the cases
below a threshold, or the best fraction, are kept; their label is the union ensemble of their snapshots. The
output is a raw dataset (imagesTr, labelsTr, dataset.json) ready for ``nnUNetv2_plan_and_preprocess``, plus
``uncertainty.csv`` (case, u, kept) and ``uncertainty_histogram.png`` showing where the cut fell.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunetv2_uda.command_line import EXPECTED_ERRORS, one_line
from nnunetv2_uda.images import ImageFileError, verify_voxels
from nnunetv2_uda.json_files import read_json_object
from nnunetv2_uda.output_folders import check_output_folder, new_output_folder
from nnunetv2_uda.pseudolabels.label_io import (
    FailedCasesError,
    PseudoLabelError,
    image_channel_files,
    label_like,
    read_csv_rows,
    read_label_matching,
    read_reference,
    require_cases,
)
from nnunetv2_uda.pseudolabels.snapshots import (
    SnapshotRecord,
    load_record,
    resolve_snapshot_folder,
    snapshot_folder_name,
)
from nnunetv2_uda.pseudolabels.uncertainty import snapshot_uncertainty, union_ensemble

DEFAULT_KEEP_FRACTION = 0.5
UNCERTAINTY_CSV = "uncertainty.csv"
HISTOGRAM_PNG = "uncertainty_histogram.png"


@dataclass
class FilterResult:
    uncertainty: dict[str, float]  # every case, inf for a case with an empty snapshot
    kept: list[str]  # kept cases, most certain first
    cut: float  # cases with u below this were kept
    output_dataset_folder: Path


def select_cases(uncertainty: dict[str, float], threshold: float | None = None,
                 keep_fraction: float | None = None) -> tuple[list[str], float]:
    """Cases with u < threshold, or the ``keep_fraction`` most certain ones (never a case with infinite u).

    Returns the kept cases (most certain first) and the cut: the threshold, or a value between the last kept and
    the first rejected u.
    """
    if threshold is not None and keep_fraction is not None:
        raise ValueError("give either threshold or keep_fraction, not both")
    if threshold is None and keep_fraction is None:
        keep_fraction = DEFAULT_KEEP_FRACTION
    ranked = sorted(uncertainty, key=lambda case: (uncertainty[case], case))
    finite = [case for case in ranked if math.isfinite(uncertainty[case])]
    if threshold is not None:
        return [case for case in finite if uncertainty[case] < threshold], float(threshold)
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    kept = finite[: math.ceil(keep_fraction * len(ranked))]
    rejected = [uncertainty[case] for case in ranked[len(kept):]]
    last_kept = uncertainty[kept[-1]] if kept else 0.0
    first_rejected = rejected[0] if rejected and math.isfinite(rejected[0]) else None
    cut = (last_kept + first_rejected) / 2 if first_rejected is not None else math.nextafter(last_kept, math.inf)
    return kept, cut


def _snapshot_epochs(snapshot_folder: Path, record: SnapshotRecord) -> list[int]:
    missing = [e for e in record.epochs if e not in record.complete]
    if missing:
        raise PseudoLabelError(f"{snapshot_folder}: snapshots of epoch(s) {missing} are not complete (training not "
                               f"finished? continue it with nnUNetv2_train ... --c)")
    for epoch in record.epochs:
        if not (snapshot_folder / snapshot_folder_name(epoch)).is_dir():
            raise PseudoLabelError(f"snapshot folder {snapshot_folder / snapshot_folder_name(epoch)} is missing")
    return record.epochs


def _read_snapshots(case: str, reference: sitk.Image, snapshot_folder: Path, epochs: list[int]) -> list[np.ndarray]:
    snapshots = []
    for epoch in epochs:
        path = snapshot_folder / snapshot_folder_name(epoch) / f"{case}.nii.gz"
        if not path.is_file():
            raise PseudoLabelError(f"case '{case}': snapshot {path} is missing")
        snapshots.append(sitk.GetArrayFromImage(read_label_matching(path, reference, case)))
    return snapshots


def _check_images(channel_files: list[Path]) -> None:
    """The images go into a training dataset as they are: each must be complete and finite."""
    for path in channel_files:
        bad = verify_voxels(path)
        if bad is not None:
            raise ImageFileError(f"{path}: {int(bad.sum())} voxel(s) are NaN or infinite; fix the image (it would "
                                 f"be copied into the training dataset as it is)")


def _score_case(case: str, channel_files: list[Path], snapshot_folder: Path, epochs: list[int]) -> float:
    reference = read_reference(channel_files[0])
    _check_images(channel_files)
    return snapshot_uncertainty(_read_snapshots(case, reference, snapshot_folder, epochs))


def _channel_names(images_folder: Path) -> dict[str, str]:
    """The target dataset's channel names if its dataset.json sits next to the images folder, else MRI."""
    dataset_json = images_folder.parent / "dataset.json"
    if dataset_json.is_file():
        channel_names = read_json_object(dataset_json, "not an nnU-Net dataset.json").get("channel_names")
        if channel_names is not None:
            if not isinstance(channel_names, dict) or not channel_names:
                raise PseudoLabelError(f"{dataset_json}: 'channel_names' must map channel numbers to names, such as "
                                       f'{{"0": "MRI"}}, not {json.dumps(channel_names)[:80]}')
            return channel_names
    return {"0": "MRI"}


def write_uncertainty_csv(uncertainty: dict[str, float], kept: list[str], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["case", "u", "kept"])
    kept_set = set(kept)
    for case in sorted(uncertainty, key=lambda c: (uncertainty[c], c)):
        writer.writerow([case, repr(float(uncertainty[case])) if math.isfinite(uncertainty[case]) else "inf",
                         case in kept_set])
    path.write_text(buffer.getvalue(), encoding="utf-8")


def read_uncertainty_csv(path: Path) -> dict[str, float]:
    """u per case from an ``uncertainty.csv``; a value that is not a number (or is NaN) is an error naming the row."""
    uncertainty = {}
    for number, row in enumerate(read_csv_rows(path, ("case", "u"), "--uncertainty_csv"), start=1):
        try:
            u = float(row["u"])
        except ValueError:
            u = math.nan
        if math.isnan(u) or u < 0:
            raise PseudoLabelError(f"--uncertainty_csv {path}, row {number}: u = '{row['u']}' is not a number >= 0")
        uncertainty[row["case"]] = u
    return uncertainty


def plot_uncertainty_histogram(uncertainty: dict[str, float], cut: float, kept: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.array([u for u in uncertainty.values() if math.isfinite(u)])
    rejected_empty = len(uncertainty) - len(values)
    figure, axis = plt.subplots(figsize=(6, 4))
    if len(values):
        axis.hist(values, bins=max(5, min(30, len(values))), color="tab:blue", edgecolor="white")
    axis.axvline(cut, color="tab:red", linestyle="--", label=f"cut u = {cut:.4g}: {len(kept)} kept")
    axis.set_xlabel("snapshot uncertainty u (eq. 7)")
    axis.set_ylabel("cases")
    axis.set_title(f"{len(uncertainty)} cases, {rejected_empty} with an empty snapshot (u = inf, rejected)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _nothing_kept(uncertainty: dict[str, float], cut: float, snapshot_folder: Path) -> PseudoLabelError:
    finite = {case: u for case, u in uncertainty.items() if math.isfinite(u)}
    if not finite:
        return PseudoLabelError(f"every snapshot pseudo-label in {snapshot_folder} is empty: the network segmented "
                                f"no organ in any of the {len(uncertainty)} target cases within its training "
                                f"budget. Train longer (more epochs or iterations), or use a trainer meant for short "
                                f"schedules (nnUNetTrainerUDAQuick); nothing was written")
    best = min(finite, key=lambda case: (finite[case], case))
    return PseudoLabelError(f"--threshold {cut:g}: no case has u below it (the lowest is u = {finite[best]:.6g}, case "
                            f"'{best}'; {len(finite)} of {len(uncertainty)} cases have a finite u); raise "
                            f"--threshold or use --keep_fraction; nothing was written")


def filter_pseudolabels(snapshot_folder: Path | str, output_dataset_folder: Path | str,
                        threshold: float | None = None, keep_fraction: float | None = None,
                        images_folder: Path | str | None = None, overwrite: bool = False) -> FilterResult:
    """Scores every target case, then writes the raw dataset of the kept cases with the CSV and histogram.

    ``snapshot_folder`` is a ``pseudolabel_snapshots`` folder (or the fold folder holding it); ``images_folder``
    defaults to the record's ``target_images``. Without threshold and keep_fraction, the most certain half is kept.
    The output folder must be new or empty unless ``overwrite`` (then it is replaced once the new one is complete).
    A case whose files cannot be read is left out and the others are scored and written; then
    :class:`FailedCasesError` names the failed files.
    """
    snapshot_folder = resolve_snapshot_folder(Path(snapshot_folder))
    record = load_record(snapshot_folder)
    epochs = _snapshot_epochs(snapshot_folder, record)
    labels = record.dataset_json.get("labels")
    if not labels:
        raise PseudoLabelError(f"{snapshot_folder / 'snapshots.json'} has no dataset_json.labels")
    images_folder = Path(images_folder or record.target_images)
    images = image_channel_files(images_folder)
    require_cases(images, images_folder, "target images", "<case>_0000.nii.gz")
    channel_names = _channel_names(images_folder)
    output = Path(output_dataset_folder)
    inputs = (snapshot_folder, images_folder)
    check_output_folder(output, inputs, overwrite)  # before the work, not after it

    uncertainty: dict[str, float] = {}
    failures: dict[str, str] = {}
    for case, channel_files in tqdm(images.items(), desc="snapshot uncertainty", disable=None):
        try:
            uncertainty[case] = _score_case(case, channel_files, snapshot_folder, epochs)
        except EXPECTED_ERRORS as error:
            failures[case] = one_line(error)
    if not uncertainty:
        raise FailedCasesError(failures, len(images), None)
    kept, cut = select_cases(uncertainty, threshold, keep_fraction)
    if not kept:
        raise _nothing_kept(uncertainty, cut, snapshot_folder)

    with new_output_folder(output, inputs, overwrite) as staging:
        write_uncertainty_csv(uncertainty, kept, staging / UNCERTAINTY_CSV)
        plot_uncertainty_histogram(uncertainty, cut, kept, staging / HISTOGRAM_PNG)
        (staging / "labelsTr").mkdir()
        (staging / "imagesTr").mkdir()
        for case in tqdm(kept, desc="union ensemble of kept cases", disable=None):
            reference = read_reference(images[case][0])
            ensemble = union_ensemble(_read_snapshots(case, reference, snapshot_folder, epochs))
            sitk.WriteImage(label_like(ensemble, reference), str(staging / "labelsTr" / f"{case}.nii.gz"), True)
            for channel_file in images[case]:
                shutil.copyfile(channel_file, staging / "imagesTr" / channel_file.name)
        dataset_json = {"channel_names": channel_names, "labels": labels, "numTraining": len(kept),
                        "file_ending": ".nii.gz",
                        "description": f"pseudo-labels of {images_folder}: union ensemble of snapshots {epochs}, "
                                       f"cases with snapshot uncertainty u < {cut:.6g}"}
        (staging / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    if failures:
        raise FailedCasesError(failures, len(images), output)
    return FilterResult(uncertainty, kept, cut, output)
