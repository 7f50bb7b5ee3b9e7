"""Which organs to score and under which label id in prediction and ground truth, matched by dataset.json name.

Predictions and ground truth may number organs differently (another model's dataset, CHAOS's four organs), so
organs are paired by their label names, never by id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nnunetv2_uda.evaluation.flare_rules import FLARE_NSD_TOLERANCES_MM, Z_RANGE_ORGANS


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
    """The organ names -> label ids of a dataset.json (background left out) and its file ending."""

    path: Path
    labels: dict[str, int]
    file_ending: str


def read_dataset_labels(dataset_json: str | Path) -> DatasetLabels:
    path = Path(dataset_json)
    try:
        content = json.loads(path.read_text())
        raw_labels = content["labels"]
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read dataset.json ({error})") from error
    except KeyError as error:
        raise ValueError(f"{path}: dataset.json has no 'labels'") from error
    labels = {}
    for name, value in raw_labels.items():
        if not isinstance(value, int):
            raise ValueError(f"{path}: label '{name}' is a region ({value}); only plain integer labels are scored")
        if value != 0:
            labels[name] = value
    return DatasetLabels(path, labels, content.get("file_ending", ".nii.gz"))


def find_dataset_json(folder: str | Path, search_parent: bool) -> Path:
    """``folder/dataset.json``, else (with ``search_parent``, for labelsEval inside a dataset) the parent's."""
    folder = Path(folder)
    candidates = [folder / "dataset.json"] + ([folder.parent / "dataset.json"] if search_parent else [])
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ValueError(
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
            raise ValueError(f"organs {unknown} are not labels of the ground truth's dataset.json ({names})")
        names = [name for name in names if name in organs]
    specs = []
    for name in names:
        tolerance = FLARE_NSD_TOLERANCES_MM.get(name, default_tolerance_mm)
        if tolerance is None:
            raise ValueError(
                f"organ '{name}' has no FLARE NSD tolerance; give --default_tolerance or leave it out with --organs"
            )
        specs.append(OrganSpec(name, gt_labels[name], pred_labels.get(name), float(tolerance), name in Z_RANGE_ORGANS))
    return specs
