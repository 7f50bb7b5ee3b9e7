"""Score a folder of predictions against a folder of ground truth the way FLARE 2024 does, and write the results.

The answer is only ever for the question asked. Prediction and ground-truth case lists must match: a ground-truth
case without a prediction, or a prediction without ground truth, is an error listing them, unless
``common_subset`` (``--common_subset``) asks for the cases in both, which the output then states. A file that
cannot be read, is truncated or corrupt, holds NaN or non-integer values, or whose geometry differs from its
ground truth is an error naming it, and nothing is written (resampled, flipped or damaged masks would give wrong
numbers silently). Label ids a file holds but its dataset.json does not declare are scored as background and
reported per file.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from tqdm import tqdm

from nnunetv2_uda.atomic_files import is_hidden, write_json_atomically, written_atomically
from nnunetv2_uda.command_line import UserInputError
from nnunetv2_uda.evaluation.boxplot import plot_metric_boxes
from nnunetv2_uda.evaluation.flare_rules import score_organ
from nnunetv2_uda.evaluation.organ_matching import (
    EvaluationError,
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
from nnunetv2_uda.images import read_label_map

METRICS_CSV = "metrics.csv"
SUMMARY_JSON = "summary.json"
BOXPLOT_PNG = "metrics_boxplot.png"
COMMON_SUBSET_FLAG = "--common_subset"
MAX_COUNTED_LABEL = 1 << 16  # label ids up to this are listed with one bincount pass, others by sorting


@dataclass
class EvaluationResult:
    """Per-case rows ({"case", "organ", "DSC", "NSD"}), the summary {organ | "mean": {metric: stats}} and notes.

    ``missing_predictions`` and ``predictions_without_ground_truth`` are the cases left out (only with
    ``common_subset``); ``undeclared_labels`` maps a file to the label ids it holds that its dataset.json does not
    declare (scored as background).
    """

    rows: list[dict]
    summary: dict
    organs: list[str]
    tolerances_mm: dict[str, float]
    common_subset: bool = False
    missing_predictions: list[str] = field(default_factory=list)
    unannotated_organs: list[str] = field(default_factory=list)
    predictions_without_ground_truth: list[str] = field(default_factory=list)
    undeclared_labels: dict[str, list[int]] = field(default_factory=dict)
    output_folder: Path | None = None

    @property
    def num_cases(self) -> int:
        return len({row["case"] for row in self.rows})

    def scope(self) -> str:
        """What was scored, in words: all ground-truth cases, or the common subset and what it left out."""
        if not self.common_subset:
            return f"all {self.num_cases} ground-truth cases"
        left_out = [f"{len(cases)} {what} ({', '.join(cases)})" for what, cases in (
            ("ground-truth case(s) without a prediction", self.missing_predictions),
            ("prediction(s) without ground truth", self.predictions_without_ground_truth)) if cases]
        return (f"only the {self.num_cases} cases with both a prediction and a ground truth ({COMMON_SUBSET_FLAG})"
                + (f"; left out: {'; '.join(left_out)}" if left_out else ""))

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


def _integer_labels(image: sitk.Image, path: Path) -> np.ndarray:
    """The label map as integers; a floating-point file must hold whole numbers (else it is no label map)."""
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.integer):
        return array
    rounded = np.rint(array)
    if not np.array_equal(rounded, array):
        raise EvaluationError(f"{path}: holds non-integer values (pixel type {image.GetPixelIDTypeAsString()}); "
                              f"not a label map")
    return rounded.astype(np.int32)


def _label_ids(labels: np.ndarray) -> set[int]:
    """The label ids present in an integer array."""
    if labels.size == 0:
        return set()
    low, high = int(labels.min()), int(labels.max())
    if low >= 0 and high <= MAX_COUNTED_LABEL:
        return set(np.flatnonzero(np.bincount(labels.ravel().astype(np.intp, copy=False))).tolist())
    return set(np.unique(labels).tolist())


def _undeclared(path: Path, labels: np.ndarray, declared: frozenset[int]) -> dict[str, list[int]]:
    ids = sorted(_label_ids(labels) - declared - {0})
    return {str(path): ids} if ids else {}


def _union(box_a: tuple[slice, ...] | None, box_b: tuple[slice, ...] | None) -> tuple[slice, ...] | None:
    if box_a is None or box_b is None:
        return box_a if box_b is None else box_b
    return tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(box_a, box_b, strict=True))


def _box(boxes: list, label: int | None) -> tuple[slice, ...] | None:
    return boxes[label - 1] if label is not None and 0 < label <= len(boxes) else None


def _read_labels(path: Path) -> tuple[sitk.Image, np.ndarray]:
    image = read_label_map(path)
    return image, _integer_labels(image, path)


def score_case(case: str, gt_file: Path, pred_file: Path, organs: Sequence[OrganSpec],
               declared: tuple[frozenset[int], frozenset[int]]) -> dict:
    """{"scores": [(organ, DSC, NSD, gt_present)], "undeclared": {file: [ids]}, "error": str | None} for one case
    (cropped to each organ); ``declared`` holds the ground truth's and the predictions' declared label ids."""
    try:
        gt_image, gt = _read_labels(gt_file)
        pred_image, pred = _read_labels(pred_file)
    except UserInputError as error:
        return {"scores": [], "undeclared": {}, "error": str(error)}
    problem = _geometry_problem(gt_image, pred_image)
    if problem is not None:
        return {"scores": [], "undeclared": {}, "error": f"{pred_file}: geometry differs from {gt_file}: {problem}"}
    undeclared = {**_undeclared(gt_file, gt, declared[0]), **_undeclared(pred_file, pred, declared[1])}
    gt_boxes = ndimage.find_objects(gt, max_label=max(spec.gt_label for spec in organs))
    pred_ids = [spec.pred_label for spec in organs if spec.pred_label is not None]
    pred_boxes = ndimage.find_objects(pred, max_label=max(pred_ids)) if pred_ids else []
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
    return {"scores": scores, "undeclared": undeclared, "error": None}


def _score_case_star(arguments: tuple) -> dict:
    return score_case(*arguments)


def _cases(folder: Path, file_ending: str) -> dict[str, Path]:
    return {p.name[: -len(file_ending)]: p for p in sorted(folder.iterdir())
            if p.name.endswith(file_ending) and not is_hidden(p)}


def _listed(cases: Sequence[str]) -> str:
    return f"{len(cases)}: {', '.join(cases)}"


def _matched_cases(pred_cases: dict[str, Path], gt_cases: dict[str, Path], pred_dir: Path, gt_dir: Path,
                   common_subset: bool) -> tuple[list[str], list[str], list[str]]:
    """(cases to score, ground-truth cases without a prediction, predictions without ground truth); lists that
    differ are an error unless ``common_subset``."""
    missing = sorted(set(gt_cases) - set(pred_cases))
    extra = sorted(set(pred_cases) - set(gt_cases))
    common = [case for case in gt_cases if case in pred_cases]
    if (missing or extra) and not common_subset:
        problems = ([f"ground-truth cases without a prediction in {pred_dir} ({_listed(missing)})"] if missing else [])
        problems += [f"predictions without ground truth in {gt_dir} ({_listed(extra)})"] if extra else []
        raise EvaluationError(f"the prediction and ground-truth case lists differ: {'; '.join(problems)}; score the "
                              f"{len(common)} case(s) in both with {COMMON_SUBSET_FLAG}, or complete the predictions")
    if not common:
        raise EvaluationError(f"no case has both a prediction in {pred_dir} and a ground truth in {gt_dir}")
    return common, missing, extra


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
    common_subset: bool = False,
) -> EvaluationResult:
    """Score every ground-truth case; write metrics.csv, summary.json and metrics_boxplot.png to ``output_folder``.

    ``output_folder`` defaults to ``pred_dir``. Organs that no ground-truth case contains (declared but not
    annotated, like CHAOS's non-abdominal-four organs) are left out and listed unless ``keep_unannotated``. Case
    lists that differ are an error unless ``common_subset`` (see the module docstring).
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for folder, what in ((pred_dir, "prediction"), (gt_dir, "ground truth")):
        if not folder.is_dir():
            raise EvaluationError(f"{what} folder {folder} does not exist")
    output_folder = _check_output_folder(Path(output_folder) if output_folder is not None else pred_dir, pred_dir,
                                         gt_dir)
    pred_labels = read_dataset_labels(pred_dataset_json or find_dataset_json(pred_dir, search_parent=False))
    gt_labels = read_dataset_labels(gt_dataset_json or find_dataset_json(gt_dir, search_parent=True))
    specs = match_organs(pred_labels.labels, gt_labels.labels, organs, default_tolerance_mm)
    if not specs:
        raise EvaluationError(f"{gt_labels.path} declares no organ to score (only background)")
    gt_cases = _cases(gt_dir, gt_labels.file_ending)
    if not gt_cases:
        raise EvaluationError(f"no ground truth files ending with {gt_labels.file_ending} in {gt_dir}")
    pred_cases = _cases(pred_dir, pred_labels.file_ending)
    cases, missing, extra = _matched_cases(pred_cases, gt_cases, pred_dir, gt_dir, common_subset)
    declared = (gt_labels.declared_ids, pred_labels.declared_ids)
    tasks = [(case, gt_cases[case], pred_cases[case], specs, declared) for case in cases]

    bar = dict(total=len(tasks), desc="Scoring cases", disable=not progress)
    if num_processes <= 1:
        outcomes = [_score_case_star(task) for task in tqdm(tasks, **bar)]
    else:
        with multiprocessing.get_context("spawn").Pool(min(num_processes, len(tasks))) as pool:
            outcomes = list(tqdm(pool.imap(_score_case_star, tasks), **bar))
    errors = [outcome["error"] for outcome in outcomes if outcome["error"]]
    if errors:
        raise EvaluationError(f"{len(errors)} case(s) cannot be scored, nothing was written: " + "; ".join(errors))

    annotated = {name for outcome in outcomes for name, _, _, present in outcome["scores"] if present}
    unannotated = [spec.name for spec in specs if spec.name not in annotated]
    kept = [spec for spec in specs if keep_unannotated or spec.name in annotated]
    if not kept:
        raise EvaluationError(f"no organ of {[s.name for s in specs]} appears in any ground truth case in {gt_dir}")
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
        common_subset=common_subset,
        missing_predictions=missing,
        unannotated_organs=[] if keep_unannotated else unannotated,
        predictions_without_ground_truth=extra,
        undeclared_labels={file: ids for outcome in outcomes for file, ids in outcome["undeclared"].items()},
        output_folder=output_folder,
    )
    _write_outputs(result, pred_labels.path, gt_labels.path)
    return result


OUTPUT_FILES = (METRICS_CSV, SUMMARY_JSON, BOXPLOT_PNG)
OWN_SUMMARY_KEYS = ("scored", "tolerances_mm", "gt_dataset_json")
"""Keys of a summary.json this command wrote (nnU-Net's own summary.json has none of them)."""


def _written_by_evaluate(summary_file: Path) -> bool:
    try:
        content = json.loads(summary_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(content, dict) and all(key in content for key in OWN_SUMMARY_KEYS)


def _check_output_folder(output_folder: Path, pred_dir: Path, gt_dir: Path) -> Path:
    """The ground truth is never written, and files of the same names that this command did not write (nnU-Net's
    summary.json in a prediction folder, a user's metrics.csv) are never replaced; checked before any scoring."""
    if pred_dir.resolve() == gt_dir.resolve():
        raise EvaluationError(f"the prediction and ground-truth folders are the same ({pred_dir}): nothing to compare")
    resolved, truth = output_folder.resolve(), gt_dir.resolve()
    if resolved == truth or truth in resolved.parents:
        raise EvaluationError(f"output folder {output_folder} is or lies inside the ground-truth folder {gt_dir}, "
                              f"which is never written; choose another with -o")
    if output_folder.exists() and not output_folder.is_dir():
        raise EvaluationError(f"output folder {output_folder} exists and is not a folder; choose another with -o")
    if not _written_by_evaluate(output_folder / SUMMARY_JSON):
        foreign = [output_folder / name for name in OUTPUT_FILES if (output_folder / name).exists()]
        if foreign:
            raise EvaluationError(f"{foreign[0]} exists and was not written by this command; it is never replaced: "
                                  f"choose another output folder with -o")
    return output_folder


def _summarize(rows: list[dict], organs: Sequence[str]) -> dict:
    summary = {
        organ: {metric: summary_statistics(r[metric] for r in rows if r["organ"] == organ) for metric in METRICS}
        for organ in organs
    }
    summary[AVERAGE_KEY] = average_statistics(rows)
    return summary


def average_statistics(rows: list[dict]) -> dict[str, dict[str, float]]:
    """The "average" column: statistics over the cases of ``rows`` of each case's mean over its scored organs."""
    per_case_mean = _per_case_means(rows)
    return {metric: summary_statistics(per_case_mean[metric]) for metric in METRICS}


def _per_case_means(rows: list[dict]) -> dict[str, list[float]]:
    """Each case's mean over the scored organs: the "average" column's per-case values."""
    cases = list(dict.fromkeys(r["case"] for r in rows))
    return {
        metric: [float(np.mean([r[metric] for r in rows if r["case"] == case])) for case in cases] for metric in METRICS
    }


def _write_outputs(result: EvaluationResult, pred_dataset_json: Path, gt_dataset_json: Path) -> None:
    folder = result.output_folder
    folder.mkdir(parents=True, exist_ok=True)
    with written_atomically(folder / METRICS_CSV) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case", "organ", "DSC", "NSD"])
        writer.writeheader()
        writer.writerows({**row, "DSC": f"{row['DSC']:.6f}", "NSD": f"{row['NSD']:.6f}"} for row in result.rows)
    content = {
        "summary": result.summary,
        "organs": result.organs,
        "tolerances_mm": result.tolerances_mm,
        "num_cases": result.num_cases,
        "scored": result.scope(),
        "common_subset": result.common_subset,
        "missing_predictions": result.missing_predictions,
        "unannotated_organs": result.unannotated_organs,
        "predictions_without_ground_truth": result.predictions_without_ground_truth,
        "undeclared_labels": result.undeclared_labels,
        "pred_dataset_json": str(pred_dataset_json),
        "gt_dataset_json": str(gt_dataset_json),
    }
    write_json_atomically(content, folder / SUMMARY_JSON)
    per_case_mean = _per_case_means(result.rows)
    values = {
        metric: {
            **{organ: [r[metric] for r in result.rows if r["organ"] == organ] for organ in result.organs},
            "Average": per_case_mean[metric],
        }
        for metric in METRICS
    }
    plot_metric_boxes(values, folder / BOXPLOT_PNG)
