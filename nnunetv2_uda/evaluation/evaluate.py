"""Score a folder of predictions against a folder of ground truth the way FLARE 2024 does, and write the results.

Every ground-truth case is scored: a case without a prediction gets 0 for every organ and is listed, so a crashed
prediction can never raise the average. A prediction whose geometry differs from its ground truth is an error
naming the file, because resampled or flipped masks would silently give wrong numbers.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from tqdm import tqdm

from nnunetv2_uda.evaluation.boxplot import plot_metric_boxes
from nnunetv2_uda.evaluation.flare_rules import score_organ
from nnunetv2_uda.evaluation.organ_matching import (
    OrganSpec,
    find_dataset_json,
    match_organs,
    read_dataset_labels,
)
from nnunetv2_uda.evaluation.tables import (
    AVERAGE_KEY,
    METRICS,
    format_accuracy_percentiles,
    format_table5,
    summary_statistics,
)

METRICS_CSV = "metrics.csv"
SUMMARY_JSON = "summary.json"
BOXPLOT_PNG = "metrics_boxplot.png"


@dataclass
class EvaluationResult:
    """Per-case rows ({"case", "organ", "DSC", "NSD"}), the summary {organ | "mean": {metric: stats}} and notes."""

    rows: list[dict]
    summary: dict
    organs: list[str]
    tolerances_mm: dict[str, float]
    missing_predictions: list[str] = field(default_factory=list)
    unannotated_organs: list[str] = field(default_factory=list)
    predictions_without_ground_truth: list[str] = field(default_factory=list)
    output_folder: Path | None = None

    def table5(self, markdown: bool = False) -> str:
        return format_table5(self.summary, markdown)

    def percentile_table(self, markdown: bool = False) -> str:
        return format_accuracy_percentiles(self.summary, markdown)


def _geometry_problem(gt: sitk.Image, pred: sitk.Image) -> str | None:
    if gt.GetSize() != pred.GetSize():
        return f"size {pred.GetSize()} != ground truth {gt.GetSize()}"
    for what, get in (("spacing", "GetSpacing"), ("origin", "GetOrigin"), ("direction", "GetDirection")):
        if not np.allclose(getattr(pred, get)(), getattr(gt, get)(), rtol=1e-5, atol=1e-3):
            return f"{what} {getattr(pred, get)()} != ground truth {getattr(gt, get)()}"
    return None


def _integer_labels(image: sitk.Image) -> np.ndarray:
    array = sitk.GetArrayViewFromImage(image)
    return array if np.issubdtype(array.dtype, np.integer) else np.rint(array).astype(np.int32)


def _union(box_a: tuple[slice, ...] | None, box_b: tuple[slice, ...] | None) -> tuple[slice, ...] | None:
    if box_a is None or box_b is None:
        return box_a if box_b is None else box_b
    return tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(box_a, box_b, strict=True))


def _box(boxes: list, label: int | None) -> tuple[slice, ...] | None:
    return boxes[label - 1] if label is not None and 0 < label <= len(boxes) else None


def score_case(case: str, gt_file: Path, pred_file: Path | None, organs: Sequence[OrganSpec]) -> dict:
    """{"scores": [(organ, DSC, NSD, gt_present)], "error": str | None} for one case (cropped to each organ)."""
    gt_image = sitk.ReadImage(str(gt_file))
    gt = _integer_labels(gt_image)
    gt_boxes = ndimage.find_objects(gt)
    if pred_file is None:
        scores = [(spec.name, 0.0, 0.0, _box(gt_boxes, spec.gt_label) is not None) for spec in organs]
        return {"scores": scores, "error": None}
    pred_image = sitk.ReadImage(str(pred_file))
    problem = _geometry_problem(gt_image, pred_image)
    if problem is not None:
        return {"scores": [], "error": f"{pred_file}: geometry differs from {gt_file}: {problem}"}
    pred = _integer_labels(pred_image)
    pred_boxes = ndimage.find_objects(pred)
    spacing = gt_image.GetSpacing()[::-1]
    scores = []
    for spec in organs:
        gt_box, pred_box = _box(gt_boxes, spec.gt_label), _box(pred_boxes, spec.pred_label)
        box = _union(gt_box, pred_box)
        if box is None:
            scores.append((spec.name, 1.0, 1.0, False))
            continue
        if spec.z_range_only and gt_box is not None:
            box = (gt_box[0],) + box[1:]
        gt_mask = gt[box] == spec.gt_label
        pred_mask = pred[box] == spec.pred_label if spec.pred_label is not None else np.zeros_like(gt_mask)
        dsc, nsd = score_organ(gt_mask, pred_mask, spacing, spec.tolerance_mm, spec.z_range_only)
        scores.append((spec.name, dsc, nsd, gt_box is not None))
    return {"scores": scores, "error": None}


def _score_case_star(arguments: tuple) -> dict:
    return score_case(*arguments)


def _cases(folder: Path, file_ending: str) -> dict[str, Path]:
    return {p.name[: -len(file_ending)]: p for p in sorted(folder.iterdir()) if p.name.endswith(file_ending)}


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def evaluate_folder(
    pred_dir: str | Path,
    gt_dir: str | Path,
    output_folder: str | Path | None = None,
    pred_dataset_json: str | Path | None = None,
    gt_dataset_json: str | Path | None = None,
    organs: Sequence[str] | None = None,
    default_tolerance_mm: float | None = None,
    keep_unannotated: bool = False,
    num_processes: int = 2,
    progress: bool = True,
) -> EvaluationResult:
    """Score every ground-truth case; write metrics.csv, summary.json and metrics_boxplot.png to ``output_folder``.

    ``output_folder`` defaults to ``pred_dir``. Organs that no ground-truth case contains (declared but not
    annotated, like CHAOS's non-abdominal-four organs) are left out and listed unless ``keep_unannotated``.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for folder, what in ((pred_dir, "prediction"), (gt_dir, "ground truth")):
        if not folder.is_dir():
            raise ValueError(f"{what} folder {folder} does not exist")
    output_folder = Path(output_folder) if output_folder is not None else pred_dir
    pred_labels = read_dataset_labels(pred_dataset_json or find_dataset_json(pred_dir, search_parent=False))
    gt_labels = read_dataset_labels(gt_dataset_json or find_dataset_json(gt_dir, search_parent=True))
    specs = match_organs(pred_labels.labels, gt_labels.labels, organs, default_tolerance_mm)
    gt_cases = _cases(gt_dir, gt_labels.file_ending)
    if not gt_cases:
        raise ValueError(f"no ground truth files ending with {gt_labels.file_ending} in {gt_dir}")
    pred_cases = _cases(pred_dir, pred_labels.file_ending)
    tasks = [(case, gt_file, pred_cases.get(case), specs) for case, gt_file in gt_cases.items()]

    bar = dict(total=len(tasks), desc="Scoring cases", disable=not progress)
    if num_processes <= 1:
        outcomes = [_score_case_star(task) for task in tqdm(tasks, **bar)]
    else:
        with multiprocessing.get_context("spawn").Pool(min(num_processes, len(tasks))) as pool:
            outcomes = list(tqdm(pool.imap(_score_case_star, tasks), **bar))
    errors = [outcome["error"] for outcome in outcomes if outcome["error"]]
    if errors:
        raise ValueError("predictions that do not match their ground truth:\n" + "\n".join(errors))

    annotated = {name for outcome in outcomes for name, _, _, present in outcome["scores"] if present}
    unannotated = [spec.name for spec in specs if spec.name not in annotated]
    kept = [spec for spec in specs if keep_unannotated or spec.name in annotated]
    if not kept:
        raise ValueError(f"no organ of {[s.name for s in specs]} appears in any ground truth case in {gt_dir}")
    kept_names = [spec.name for spec in kept]
    rows = [
        {"case": case, "organ": name, "DSC": dsc, "NSD": nsd}
        for (case, *_), outcome in zip(tasks, outcomes, strict=True)
        for name, dsc, nsd, _ in outcome["scores"]
        if name in kept_names
    ]
    result = EvaluationResult(
        rows=rows,
        summary=_summarize(rows, kept_names),
        organs=kept_names,
        tolerances_mm={spec.name: spec.tolerance_mm for spec in kept},
        missing_predictions=[case for case, _, pred_file, _ in tasks if pred_file is None],
        unannotated_organs=[] if keep_unannotated else unannotated,
        predictions_without_ground_truth=sorted(set(pred_cases) - set(gt_cases)),
        output_folder=output_folder,
    )
    _write_outputs(result, pred_labels.path, gt_labels.path)
    return result


def _summarize(rows: list[dict], organs: Sequence[str]) -> dict:
    summary = {
        organ: {metric: summary_statistics(r[metric] for r in rows if r["organ"] == organ) for metric in METRICS}
        for organ in organs
    }
    per_case_mean = _per_case_means(rows)
    summary[AVERAGE_KEY] = {metric: summary_statistics(per_case_mean[metric]) for metric in METRICS}
    return summary


def _per_case_means(rows: list[dict]) -> dict[str, list[float]]:
    """Each case's mean over the scored organs: the "average" column's per-case values."""
    cases = list(dict.fromkeys(r["case"] for r in rows))
    return {
        metric: [float(np.mean([r[metric] for r in rows if r["case"] == case])) for case in cases] for metric in METRICS
    }


def _write_outputs(result: EvaluationResult, pred_dataset_json: Path, gt_dataset_json: Path) -> None:
    folder = result.output_folder
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{METRICS_CSV}.tmp"
    with open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case", "organ", "DSC", "NSD"])
        writer.writeheader()
        writer.writerows({**row, "DSC": f"{row['DSC']:.6f}", "NSD": f"{row['NSD']:.6f}"} for row in result.rows)
    os.replace(temporary, folder / METRICS_CSV)
    content = {
        "summary": result.summary,
        "organs": result.organs,
        "tolerances_mm": result.tolerances_mm,
        "num_cases": len({row["case"] for row in result.rows}),
        "missing_predictions": result.missing_predictions,
        "unannotated_organs": result.unannotated_organs,
        "predictions_without_ground_truth": result.predictions_without_ground_truth,
        "pred_dataset_json": str(pred_dataset_json),
        "gt_dataset_json": str(gt_dataset_json),
    }
    _write_atomically(folder / SUMMARY_JSON, json.dumps(content, indent=2))
    per_case_mean = _per_case_means(result.rows)
    values = {
        metric: {
            **{organ: [r[metric] for r in result.rows if r["organ"] == organ] for organ in result.organs},
            "Average": per_case_mean[metric],
        }
        for metric in METRICS
    }
    plot_metric_boxes(values, folder / BOXPLOT_PNG)
