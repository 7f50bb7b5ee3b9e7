"""Which organs to score and under which label id in prediction and ground truth, matched by dataset.json name.

Predictions and ground truth may number organs differently (another model's dataset, CHAOS's four organs), so
organs are paired by their label names, never by id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nnunetv2_uda.command_line import UserInputError
from nnunetv2_uda.evaluation.flare_rules import FLARE_NSD_TOLERANCES_MM, Z_RANGE_ORGANS
from nnunetv2_uda.json_files import read_json_object


class EvaluationError(UserInputError):
    """Predictions, ground truth or their dataset.json that cannot answer the question asked (the message names
    the file, case or flag): nothing is scored rather than a number for another question."""


@dataclass(frozen=True)
class OrganSpec:
    """One organ to score: its name, label ids on both sides (None: the predictions' dataset lacks it), rules."""

    name: str
    gt_label: int
    pred_label: int | None
    tolerance_mm: float
    z_range_only: bool


@dataclass(frozen=True)
class DatasetLabels:
    """The organ names -> label ids of a dataset.json (background left out), every id it declares (background
    included) and its file ending."""

    path: Path
    labels: dict[str, int]
    file_ending: str
    declared_ids: frozenset[int]


def read_dataset_labels(dataset_json: str | Path) -> DatasetLabels:
    path = Path(dataset_json)
    content = read_json_object(path, "not a dataset.json with a 'labels' mapping of names to ids", EvaluationError)
    raw_labels = content.get("labels")
    if not isinstance(raw_labels, dict):
        raise EvaluationError(f"{path}: dataset.json has no 'labels' mapping of names to ids")
    labels = {}
    for name, value in raw_labels.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise EvaluationError(f"{path}: label '{name}' is {value!r}, not an integer id (regions are not "
                                  f"scored)")
        if value != 0:
            labels[name] = value
    file_ending = content.get("file_ending", ".nii.gz")
    if not isinstance(file_ending, str) or not file_ending:
        raise EvaluationError(f"{path}: 'file_ending' is {file_ending!r}, not a file ending such as '.nii.gz'")
    return DatasetLabels(path, labels, file_ending, frozenset(raw_labels.values()))


def find_dataset_json(folder: str | Path, search_parent: bool) -> Path:
    """``folder/dataset.json``, else (with ``search_parent``, for labelsEval inside a dataset) the parent's."""
    folder = Path(folder)
    candidates = [folder / "dataset.json"] + ([folder.parent / "dataset.json"] if search_parent else [])
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise EvaluationError(
        f"no dataset.json found for {folder} (looked at {', '.join(str(c) for c in candidates)}); "
        "pass it with --pred_dataset_json / --gt_dataset_json"
    )


def match_organs(
    pred_labels: dict[str, int],
    gt_labels: dict[str, int],
    organs: Sequence[str] | None = None,
    default_tolerance_mm: float | None = None,
) -> list[OrganSpec]:
    """The organs of the ground truth (or ``organs``), in the ground truth's id order, with both sides' ids.

    An organ the predictions' dataset.json does not name is kept with ``pred_label`` None (scored as an empty
    prediction). Organs without a FLARE tolerance need ``default_tolerance_mm``.
    """
    names = sorted(gt_labels, key=gt_labels.__getitem__)
    if organs is not None:
        unknown = [organ for organ in organs if organ not in gt_labels]
        if unknown:
            raise EvaluationError(f"--organs {unknown} are not labels of the ground truth's dataset.json ({names})")
        names = [name for name in names if name in organs]
    specs = []
    for name in names:
        tolerance = FLARE_NSD_TOLERANCES_MM.get(name, default_tolerance_mm)
        if tolerance is None:
            raise EvaluationError(
                f"organ '{name}' has no FLARE NSD tolerance; give --default_tolerance or leave it out with --organs"
            )
        specs.append(OrganSpec(name, gt_labels[name], pred_labels.get(name), float(tolerance), name in Z_RANGE_ORGANS))
    return specs
