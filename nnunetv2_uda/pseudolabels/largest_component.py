"""Keep the largest connected component of each label: nnU-Net's own post-processing, decided from anatomy.

Stock nnU-Net measures on its cross-validation whether removing all but the largest component helps a label; on an
unlabeled target domain that cannot be measured, and the organs we segment are each one connected object, so the
rule is applied to every label given (all by default). A network applied across modalities marks scattered islands
that are false positives in the scores and, worse, in the pseudo-labels that self-training learns from.
"""

from __future__ import annotations

import csv
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunetv2_uda.command_line import EXPECTED_ERRORS, one_line
from nnunetv2_uda.images import read_label_map
from nnunetv2_uda.output_folders import new_output_folder
from nnunetv2_uda.pseudolabels.label_io import FailedCasesError, label_files, require_cases

REMOVED_CSV = "largest_component.csv"


@dataclass
class CaseResult:
    """One case's outcome: voxels removed per label and the labels present, or why it was not written (the other
    cases still are)."""

    case: str
    removed_voxels: dict[int, int]
    error: str | None = None
    present: frozenset[int] = frozenset()


def keep_largest_components(segmentation: np.ndarray, labels: list[int] | None = None) -> np.ndarray:
    """Each label (all non-zero labels present when ``labels`` is None) keeps only its largest 3D component
    (full connectivity); the removed voxels become background."""
    # imported here: nnU-Net's module loads torch (seconds), which a command should not wait for to report bad input
    from nnunetv2.postprocessing.remove_connected_components import remove_all_but_largest_component_from_segmentation

    present = [int(v) for v in np.unique(segmentation) if v != 0]
    for label in present if labels is None else [label for label in labels if label in present]:
        segmentation = remove_all_but_largest_component_from_segmentation(segmentation, label)
    return segmentation


def _process_case(case: str, source: Path, destination: Path, labels: list[int] | None) -> CaseResult:
    try:
        image = read_label_map(source)
    except EXPECTED_ERRORS as error:
        return CaseResult(case, {}, one_line(error))
    before = sitk.GetArrayFromImage(image)
    if not np.issubdtype(before.dtype, np.integer):
        return CaseResult(case, {}, f"{source}: voxel type {before.dtype} is not a label map (integers expected)")
    after = keep_largest_components(before, labels)
    removed = {int(label): int(count) for label, count in
               zip(*np.unique(before[after != before], return_counts=True), strict=True)}
    cleaned = sitk.GetImageFromArray(after)
    cleaned.CopyInformation(image)
    sitk.WriteImage(cleaned, str(destination / source.name), True)
    return CaseResult(case, removed, present=frozenset(int(v) for v in np.unique(before) if v != 0))


def _write_table(results: list[CaseResult], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "label", "voxels_removed", "error"])
        for result in results:
            if result.error:
                writer.writerow([result.case, "", "", result.error])
            for label, count in sorted(result.removed_voxels.items()):
                writer.writerow([result.case, label, count, ""])


def largest_component_folder(input_folder: Path | str, output_folder: Path | str, labels: list[int] | None = None,
                             num_processes: int = 1, overwrite: bool = False) -> list[CaseResult]:
    """Post-processes every ``<case>.nii.gz`` of ``input_folder`` into ``output_folder`` (geometry and voxel type
    kept; ``dataset.json`` copied) and writes ``largest_component.csv`` (voxels removed per case and label).

    The output folder must be new or empty unless ``overwrite`` (then it is replaced once the new one is complete).
    A case that cannot be read is named in the CSV and left out; the other cases are still written, then
    :class:`FailedCasesError` names the failed files.
    """
    input_folder, output_folder = Path(input_folder), Path(output_folder)
    cases = label_files(input_folder)
    require_cases(cases, input_folder, "label maps")
    with new_output_folder(output_folder, [input_folder], overwrite) as staging:
        arguments = [(case, path, staging, labels) for case, path in cases.items()]
        if num_processes > 1:
            with ProcessPoolExecutor(num_processes) as pool:
                results = list(tqdm(pool.map(_process_case, *zip(*arguments, strict=True)), total=len(arguments),
                                    desc="largest component", disable=None))
        else:
            results = [_process_case(*argument) for argument in tqdm(arguments, desc="largest component",
                                                                     disable=None)]
        failures = {result.case: result.error for result in results if result.error}
        if len(failures) == len(results):
            raise FailedCasesError(failures, len(results), None)
        if (input_folder / "dataset.json").is_file():
            shutil.copyfile(input_folder / "dataset.json", staging / "dataset.json")
        _write_table(results, staging / REMOVED_CSV)
    if failures:
        raise FailedCasesError(failures, len(results), output_folder)
    return results
