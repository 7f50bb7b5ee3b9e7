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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunetv2_uda.pseudolabels.label_io import (
    copy_atomically,
    image_channel_files,
    label_files,
    label_like,
    read_label_matching,
    read_reference,
    require_cases,
    write_atomically,
    write_image_atomically,
    write_text_atomically,
)
from nnunetv2_uda.pseudolabels.snapshots import load_record, resolve_snapshot_folder, snapshot_folder_name
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


def _snapshot_epochs(snapshot_folder: Path) -> list[int]:
    record = load_record(snapshot_folder)
    missing = [e for e in record.epochs if e not in record.complete]
    if missing:
        raise ValueError(f"{snapshot_folder}: snapshots of epoch(s) {missing} are not complete (training not "
                         f"finished? continue it with nnUNetv2_train ... --c)")
    for epoch in record.epochs:
        if not (snapshot_folder / snapshot_folder_name(epoch)).is_dir():
            raise FileNotFoundError(f"snapshot folder {snapshot_folder / snapshot_folder_name(epoch)} is missing")
    return record.epochs


def _read_snapshots(case: str, reference: sitk.Image, snapshot_folder: Path, epochs: list[int]) -> list[np.ndarray]:
    snapshots = []
    for epoch in epochs:
        path = snapshot_folder / snapshot_folder_name(epoch) / f"{case}.nii.gz"
        if not path.is_file():
            raise FileNotFoundError(f"case '{case}': snapshot {path} is missing")
        snapshots.append(sitk.GetArrayFromImage(read_label_matching(path, reference, case)))
    return snapshots


def _channel_names(images_folder: Path) -> dict[str, str]:
    """The target dataset's channel names if its dataset.json sits next to the images folder, else MRI."""
    dataset_json = images_folder.parent / "dataset.json"
    if dataset_json.is_file():
        channel_names = json.loads(dataset_json.read_text()).get("channel_names")
        if channel_names:
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
    write_text_atomically(buffer.getvalue(), path)


def read_uncertainty_csv(path: Path) -> dict[str, float]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"case", "u"} <= set(rows[0]):
        raise ValueError(f"{path} must have the columns 'case' and 'u'")
    return {row["case"]: float(row["u"]) for row in rows}


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
    write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=100))
    plt.close(figure)


def filter_pseudolabels(snapshot_folder: Path | str, output_dataset_folder: Path | str,
                        threshold: float | None = None, keep_fraction: float | None = None,
                        images_folder: Path | str | None = None) -> FilterResult:
    """Scores every target case, writes the CSV and histogram, then the raw dataset of the kept cases.

    ``snapshot_folder`` is a ``pseudolabel_snapshots`` folder (or the fold folder holding it); ``images_folder``
    defaults to the record's ``target_images``. Without threshold and keep_fraction, the most certain half is kept.
    """
    snapshot_folder = resolve_snapshot_folder(Path(snapshot_folder))
    record = load_record(snapshot_folder)
    epochs = _snapshot_epochs(snapshot_folder)
    images_folder = Path(images_folder or record.target_images)
    images = image_channel_files(images_folder)
    require_cases(images, images_folder, "target images")
    output = Path(output_dataset_folder)

    uncertainty = {}
    for case, channel_files in tqdm(images.items(), desc="snapshot uncertainty"):
        reference = read_reference(channel_files[0])
        uncertainty[case] = snapshot_uncertainty(_read_snapshots(case, reference, snapshot_folder, epochs))
    kept, cut = select_cases(uncertainty, threshold, keep_fraction)
    output.mkdir(parents=True, exist_ok=True)
    write_uncertainty_csv(uncertainty, kept, output / UNCERTAINTY_CSV)
    plot_uncertainty_histogram(uncertainty, cut, kept, output / HISTOGRAM_PNG)
    if not kept and not any(math.isfinite(u) for u in uncertainty.values()):
        raise ValueError(f"every snapshot pseudo-label in {snapshot_folder} is empty: the network segmented no organ "
                         f"in any of the {len(uncertainty)} target cases within its training budget. Train longer "
                         f"(more epochs or iterations), or use a trainer meant for short schedules "
                         f"(nnUNetTrainerUDAQuick); see {output / UNCERTAINTY_CSV}")
    if not kept:
        raise ValueError(f"no case passed the filter (cut u = {cut}); see {output / UNCERTAINTY_CSV}")

    for case in tqdm(kept, desc="union ensemble of kept cases"):
        reference = read_reference(images[case][0])
        ensemble = union_ensemble(_read_snapshots(case, reference, snapshot_folder, epochs))
        write_image_atomically(label_like(ensemble, reference), output / "labelsTr" / f"{case}.nii.gz")
        for channel_file in images[case]:
            copy_atomically(channel_file, output / "imagesTr" / channel_file.name)
    stale = set(label_files(output / "labelsTr")) - set(kept)
    for case in stale:  # a previous run's kept cases would otherwise slip into this dataset
        (output / "labelsTr" / f"{case}.nii.gz").unlink()
        for channel_file in image_channel_files(output / "imagesTr").get(case, []):
            channel_file.unlink()
    labels = record.dataset_json.get("labels")
    if not labels:
        raise ValueError(f"{snapshot_folder / 'snapshots.json'} has no dataset_json.labels")
    dataset_json = {"channel_names": _channel_names(images_folder), "labels": labels, "numTraining": len(kept),
                    "file_ending": ".nii.gz",
                    "description": f"pseudo-labels of {images_folder}: union ensemble of snapshots {epochs}, "
                                   f"cases with snapshot uncertainty u < {cut:.6g}"}
    write_text_atomically(json.dumps(dataset_json, indent=2), output / "dataset.json")
    return FilterResult(uncertainty, kept, cut, output)
