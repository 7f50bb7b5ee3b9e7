"""evaluate_folder and nnUNetv2_uda_evaluate on tiny NIfTI folders, checked against surface-distance."""

import csv
import json
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk
import surface_distance

from nnunetv2_uda.evaluation.evaluate import evaluate_folder

SPACING_ZYX = (3.0, 1.2, 0.9)
GT_LABELS = {"background": 0, "liver": 1, "spleen": 3, "aorta": 5, "pancreas": 4}
PRED_LABELS = {"background": 0, "aorta": 1, "liver": 2, "spleen": 7, "pancreas": 9}  # same organs, other ids


def write(array: np.ndarray, path, spacing_zyx=SPACING_ZYX) -> None:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(tuple(reversed(spacing_zyx)))
    image.SetOrigin((10.0, -5.0, 3.0))
    sitk.WriteImage(image, str(path))


def ellipsoid(shape, centre, radii) -> np.ndarray:
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) < 1


def make_case(seed: int, shape=(16, 32, 30)) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Ground-truth and predicted organ masks (pancreas never present, aorta predicted beyond its z-range)."""
    rng = np.random.default_rng(seed)
    gt = {
        "liver": ellipsoid(shape, (8, 12, 10), (5, 8, 7)),
        "spleen": ellipsoid(shape, (8, 20, 22), (4, 5, 4)),
        "aorta": ellipsoid(shape, (8, 24, 14), (4, 2, 2)),
    }
    pred = {
        "liver": ellipsoid(shape, (8 + rng.integers(-1, 2), 12.5, 10.5), (5, 7.5, 7.2)),
        "spleen": ellipsoid(shape, (8, 20 + rng.integers(0, 2), 22), (4, 4.5, 4)),
        "aorta": ellipsoid(shape, (8, 24, 14.5), (7.5, 2, 2)),
    }
    return gt, pred


def label_map(masks: dict[str, np.ndarray], labels: dict[str, int]) -> np.ndarray:
    array = np.zeros(next(iter(masks.values())).shape, np.uint8)
    for organ, mask in masks.items():
        array[mask] = labels[organ]
    return array


def reference_scores(gt: np.ndarray, pred: np.ndarray, tolerance: float) -> tuple[float, float]:
    spacing = SPACING_ZYX
    dsc = surface_distance.compute_dice_coefficient(gt, pred)
    nsd = surface_distance.compute_surface_dice_at_tolerance(
        surface_distance.compute_surface_distances(gt, pred, spacing), tolerance
    )
    return dsc, (nsd if dsc >= 0.2 else 0.0)


@pytest.fixture
def folders(tmp_path):
    """GT folder inside a dataset (dataset.json one level up), predictions with their own label ids; 3 cases,
    the third without a prediction."""
    gt_dir, pred_dir = tmp_path / "Dataset900_T" / "labelsEval", tmp_path / "pred"
    gt_dir.mkdir(parents=True)
    pred_dir.mkdir()
    (gt_dir.parent / "dataset.json").write_text(json.dumps({"labels": GT_LABELS, "file_ending": ".nii.gz"}))
    (pred_dir / "dataset.json").write_text(json.dumps({"labels": PRED_LABELS, "file_ending": ".nii.gz"}))
    cases = {}
    for i in range(3):
        gt, pred = make_case(i)
        cases[f"case_{i}"] = (gt, pred)
        write(label_map(gt, GT_LABELS), gt_dir / f"case_{i}.nii.gz")
        if i < 2:
            write(label_map(pred, PRED_LABELS), pred_dir / f"case_{i}.nii.gz")
    return gt_dir, pred_dir, cases


def test_scores_match_reference_with_name_mapping_and_rules(folders, tmp_path):
    gt_dir, pred_dir, cases = folders
    result = evaluate_folder(pred_dir, gt_dir, tmp_path / "out", num_processes=1, progress=False)
    assert result.organs == ["liver", "spleen", "aorta"]  # GT order; pancreas is in no GT case
    assert result.unannotated_organs == ["pancreas"]
    assert result.missing_predictions == ["case_2"]
    scores = {(r["case"], r["organ"]): (r["DSC"], r["NSD"]) for r in result.rows}
    assert len(scores) == 9
    tolerances = {"liver": 5.0, "spleen": 3.0, "aorta": 2.0}
    for case in ("case_0", "case_1"):
        gt, pred = cases[case]
        for organ in ("liver", "spleen"):
            assert scores[case, organ] == pytest.approx(
                reference_scores(gt[organ], pred[organ], tolerances[organ]), abs=1e-3
            )
        z = np.flatnonzero(gt["aorta"].any(axis=(1, 2)))
        zs = slice(z[0], z[-1] + 1)
        cropped = reference_scores(gt["aorta"][zs], pred["aorta"][zs], 2.0)
        assert scores[case, "aorta"] == pytest.approx(cropped, abs=1e-3)
        assert scores[case, "aorta"][0] > reference_scores(gt["aorta"], pred["aorta"], 2.0)[0] + 0.1
    assert all(scores["case_2", organ] == (0.0, 0.0) for organ in tolerances)

    liver_dsc = [scores[c, "liver"][0] for c in ("case_0", "case_1", "case_2")]
    assert result.summary["liver"]["DSC"]["mean"] == pytest.approx(np.mean(liver_dsc))
    case_means = [np.mean([scores[c, o][1] for o in tolerances]) for c in ("case_0", "case_1", "case_2")]
    assert result.summary["mean"]["NSD"]["mean"] == pytest.approx(np.mean(case_means))
    assert result.summary["mean"]["NSD"]["std"] == pytest.approx(np.std(case_means))

    with open(tmp_path / "out" / "metrics.csv") as handle:
        written = list(csv.DictReader(handle))
    assert list(written[0]) == ["case", "organ", "DSC", "NSD"] and len(written) == 9
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["missing_predictions"] == ["case_2"] and summary["summary"]["liver"]["DSC"]["p50"] >= 0
    assert (tmp_path / "out" / "metrics_boxplot.png").stat().st_size > 1000


def test_keep_unannotated_and_organs_flag(folders, tmp_path):
    gt_dir, pred_dir, _ = folders
    kept = evaluate_folder(pred_dir, gt_dir, tmp_path / "a", keep_unannotated=True, num_processes=1, progress=False)
    assert kept.organs == ["liver", "spleen", "pancreas", "aorta"]  # ground-truth id order
    assert [r["DSC"] for r in kept.rows if r["organ"] == "pancreas"] == [1.0, 1.0, 0.0]  # both empty; missing
    only = evaluate_folder(pred_dir, gt_dir, tmp_path / "b", organs=["spleen"], num_processes=1, progress=False)
    assert only.organs == ["spleen"] and len(only.rows) == 3


def test_geometry_mismatch_names_the_file(folders, tmp_path):
    gt_dir, pred_dir, cases = folders
    gt, pred = cases["case_1"]
    write(label_map(pred, PRED_LABELS), pred_dir / "case_1.nii.gz", spacing_zyx=(2.0, 1.2, 0.9))
    with pytest.raises(ValueError, match=r"case_1\.nii\.gz.*spacing"):
        evaluate_folder(pred_dir, gt_dir, tmp_path / "out", num_processes=1, progress=False)
    write(label_map(pred, PRED_LABELS)[:-1], pred_dir / "case_1.nii.gz")
    with pytest.raises(ValueError, match=r"case_1\.nii\.gz.*size"):
        evaluate_folder(pred_dir, gt_dir, tmp_path / "out", num_processes=1, progress=False)
    assert not (tmp_path / "out" / "metrics.csv").exists()


def test_cli_end_to_end(folders, tmp_path, run_command):
    gt_dir, pred_dir, _ = folders
    result = run_command(["nnUNetv2_uda_evaluate", pred_dir, gt_dir, "-np", "2", "--disable_progress_bar"])
    assert "MISSING PREDICTIONS (scored 0): case_2" in result.stdout
    assert "Table 5" in result.stdout and "Average" in result.stdout and "25%" in result.stdout
    for name in ("metrics.csv", "summary.json", "metrics_boxplot.png"):
        assert (pred_dir / name).is_file()


def test_cli_reports_bad_input(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    result = subprocess.run(
        ["nnUNetv2_uda_evaluate", str(tmp_path / "pred"), str(tmp_path / "gt")], capture_output=True, text=True
    )
    assert result.returncode != 0 and "no dataset.json" in result.stderr
