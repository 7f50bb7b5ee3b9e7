"""evaluate_folder and nnUNetv2_uda_evaluate on tiny NIfTI folders, checked against surface-distance."""

import csv
import json
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk
import surface_distance
from commands import run_in_process

from nnunetv2_uda.evaluation.evaluate import evaluate_folder
from nnunetv2_uda.evaluation.organ_matching import EvaluationError

SPACING_ZYX = (3.0, 1.2, 0.9)
GT_LABELS = {"background": 0, "liver": 1, "spleen": 3, "aorta": 5, "pancreas": 4}
PRED_LABELS = {"background": 0, "aorta": 1, "liver": 2, "spleen": 7, "pancreas": 9}  # same organs, other ids


def write(array: np.ndarray, path, spacing_zyx=SPACING_ZYX, dtype=np.uint8) -> None:
    image = sitk.GetImageFromArray(array.astype(dtype))
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
    """GT folder inside a dataset (dataset.json one level up), predictions with their own label ids; 3 cases."""
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
        write(label_map(pred, PRED_LABELS), pred_dir / f"case_{i}.nii.gz")
    return gt_dir, pred_dir, cases


def run_evaluate(*args) -> subprocess.CompletedProcess:
    return run_in_process("nnUNetv2_uda_evaluate", *args, "-np", "1", "--disable_progress_bar")


def assert_one_line_error(result: subprocess.CompletedProcess, *named: str) -> None:
    """Exit code 2, one line on stderr that names what is wrong, no traceback."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnUNetv2_uda_evaluate: error: "), result.stderr
    assert all(name in lines[0] for name in named), result.stderr


def assert_nothing_written(folder) -> None:
    assert not any((folder / name).exists() for name in ("metrics.csv", "summary.json", "metrics_boxplot.png"))


def test_scores_match_reference_with_name_mapping_and_rules(folders, tmp_path):
    gt_dir, pred_dir, cases = folders
    result = evaluate_folder(pred_dir, gt_dir, tmp_path / "out", num_processes=1, progress=False)
    assert result.organs == ["liver", "spleen", "aorta"]  # GT order; pancreas is in no GT case
    assert result.unannotated_organs == ["pancreas"]
    assert result.missing_predictions == [] and not result.common_subset and result.undeclared_labels == {}
    scores = {(r["case"], r["organ"]): (r["DSC"], r["NSD"]) for r in result.rows}
    assert len(scores) == 9
    tolerances = {"liver": 5.0, "spleen": 3.0, "aorta": 2.0}
    for case in ("case_0", "case_1", "case_2"):
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

    liver_dsc = [scores[c, "liver"][0] for c in ("case_0", "case_1", "case_2")]
    assert result.summary["liver"]["DSC"]["mean"] == pytest.approx(np.mean(liver_dsc))
    case_means = [np.mean([scores[c, o][1] for o in tolerances]) for c in ("case_0", "case_1", "case_2")]
    assert result.summary["mean"]["NSD"]["mean"] == pytest.approx(np.mean(case_means))
    assert result.summary["mean"]["NSD"]["std"] == pytest.approx(np.std(case_means))

    with open(tmp_path / "out" / "metrics.csv") as handle:
        written = list(csv.DictReader(handle))
    assert list(written[0]) == ["case", "organ", "DSC", "NSD"] and len(written) == 9
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["scored"] == "all 3 ground-truth cases" and summary["common_subset"] is False
    assert summary["missing_predictions"] == [] and summary["summary"]["liver"]["DSC"]["p50"] >= 0
    assert (tmp_path / "out" / "metrics_boxplot.png").stat().st_size > 1000


def test_keep_unannotated_and_organs_flag(folders, tmp_path):
    gt_dir, pred_dir, _ = folders
    kept = evaluate_folder(pred_dir, gt_dir, tmp_path / "a", keep_unannotated=True, num_processes=1, progress=False)
    assert kept.organs == ["liver", "spleen", "pancreas", "aorta"]  # ground-truth id order
    assert [r["DSC"] for r in kept.rows if r["organ"] == "pancreas"] == [1.0, 1.0, 1.0]  # both empty
    only = evaluate_folder(pred_dir, gt_dir, tmp_path / "b", organs=["spleen"], num_processes=1, progress=False)
    assert only.organs == ["spleen"] and len(only.rows) == 3


def test_geometry_mismatch_names_the_file(folders, tmp_path):
    gt_dir, pred_dir, cases = folders
    gt, pred = cases["case_1"]
    write(label_map(pred, PRED_LABELS), pred_dir / "case_1.nii.gz", spacing_zyx=(2.0, 1.2, 0.9))
    with pytest.raises(EvaluationError, match=r"case_1\.nii\.gz.*spacing"):
        evaluate_folder(pred_dir, gt_dir, tmp_path / "out", num_processes=1, progress=False)
    write(label_map(pred, PRED_LABELS)[:-1], pred_dir / "case_1.nii.gz")
    with pytest.raises(EvaluationError, match=r"case_1\.nii\.gz.*size"):
        evaluate_folder(pred_dir, gt_dir, tmp_path / "out", num_processes=1, progress=False)
    assert not (tmp_path / "out" / "metrics.csv").exists()


@pytest.mark.slow
def test_cli_end_to_end(folders, tmp_path, run_command):
    gt_dir, pred_dir, _ = folders
    result = run_command(["nnUNetv2_uda_evaluate", pred_dir, gt_dir, "-np", "2", "--disable_progress_bar"])
    assert "Scored all 3 ground-truth cases" in result.stdout
    assert "Table 5" in result.stdout and "Average" in result.stdout and "25%" in result.stdout
    for name in ("metrics.csv", "summary.json", "metrics_boxplot.png"):
        assert (pred_dir / name).is_file()


def test_cli_reports_bad_input(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    assert_one_line_error(run_evaluate(tmp_path / "pred", tmp_path / "gt"), "no dataset.json")
    assert_one_line_error(run_evaluate(tmp_path / "absent", tmp_path / "gt"), "absent", "does not exist")


def test_differing_case_lists_are_an_error_listing_the_cases(folders, tmp_path):
    """A missing prediction is no longer scored 0 behind the user's back, nor an extra one silently ignored."""
    gt_dir, pred_dir, _ = folders
    (pred_dir / "case_2.nii.gz").rename(pred_dir / "case_9.nii.gz")
    with pytest.raises(EvaluationError, match=r"without a prediction .*\(1: case_2\).*without ground truth .*"
                                              r"\(1: case_9\).*--common_subset"):
        evaluate_folder(pred_dir, gt_dir, tmp_path / "out", num_processes=1, progress=False)
    assert_nothing_written(tmp_path / "out")
    assert_one_line_error(run_evaluate(pred_dir, gt_dir, "-o", tmp_path / "cli"), "case_2", "case_9",
                          "--common_subset")
    assert_nothing_written(tmp_path / "cli")


def test_common_subset_scores_the_cases_in_both_and_says_so(folders, tmp_path):
    gt_dir, pred_dir, _ = folders
    (pred_dir / "case_2.nii.gz").rename(pred_dir / "case_9.nii.gz")
    result = evaluate_folder(pred_dir, gt_dir, tmp_path / "out", num_processes=1, progress=False,
                             common_subset=True)
    assert sorted({r["case"] for r in result.rows}) == ["case_0", "case_1"]
    assert result.missing_predictions == ["case_2"] and result.predictions_without_ground_truth == ["case_9"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["common_subset"] is True and summary["num_cases"] == 2
    assert summary["missing_predictions"] == ["case_2"] and summary["predictions_without_ground_truth"] == ["case_9"]
    assert "only the 2 cases" in summary["scored"] and "case_2" in summary["scored"]

    cli = run_evaluate(pred_dir, gt_dir, "-o", tmp_path / "cli", "--common_subset")
    assert cli.returncode == 0, cli.stderr
    assert "Scored only the 2 cases with both a prediction and a ground truth (--common_subset)" in cli.stdout
    assert "case_2" in cli.stdout and "case_9" in cli.stdout


def test_common_subset_still_needs_a_case_in_both(folders, tmp_path):
    gt_dir, pred_dir, _ = folders
    for case in range(3):
        (pred_dir / f"case_{case}.nii.gz").rename(pred_dir / f"other_{case}.nii.gz")
    with pytest.raises(EvaluationError, match="no case has both"):
        evaluate_folder(pred_dir, gt_dir, tmp_path / "out", num_processes=1, progress=False, common_subset=True)


def test_labels_not_declared_in_dataset_json_are_warned_per_file(folders, tmp_path):
    gt_dir, pred_dir, cases = folders
    gt, pred = cases["case_0"]
    with_stray = label_map(gt, GT_LABELS)
    with_stray[0, 0, :3] = 17
    write(with_stray, gt_dir / "case_0.nii.gz")
    with_stray = label_map(cases["case_1"][1], PRED_LABELS)
    with_stray[-1, -1, -2:] = (42, 43)
    write(with_stray, pred_dir / "case_1.nii.gz")
    result = evaluate_folder(pred_dir, gt_dir, tmp_path / "out", num_processes=1, progress=False)
    expected = {str(gt_dir / "case_0.nii.gz"): [17], str(pred_dir / "case_1.nii.gz"): [42, 43]}
    assert result.undeclared_labels == expected
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["undeclared_labels"] == expected

    cli = run_evaluate(pred_dir, gt_dir, "-o", tmp_path / "cli")
    assert cli.returncode == 0, cli.stderr
    assert f"warning: {pred_dir / 'case_1.nii.gz'}: label id(s) 42, 43 not declared" in cli.stderr
    assert f"warning: {gt_dir / 'case_0.nii.gz'}: label id(s) 17 not declared" in cli.stderr


def test_corrupt_truncated_nan_and_non_integer_files_are_named(folders, tmp_path):
    """Each would have been scored as (partly) empty before: SimpleITK reads a cut file with zero fill and NaN as 0,
    and non-integer values were rounded."""
    gt_dir, pred_dir, cases = folders
    truncated = pred_dir / "case_0.nii.gz"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    with_nan = label_map(cases["case_1"][1], PRED_LABELS).astype(np.float32)
    with_nan[0, 0, 0] = np.nan
    write(with_nan, pred_dir / "case_1.nii.gz", dtype=np.float32)
    not_labels = gt_dir / "case_2.nii.gz"
    write(label_map(cases["case_2"][0], GT_LABELS) + 0.5, not_labels, dtype=np.float32)
    with pytest.raises(EvaluationError) as raised:
        evaluate_folder(pred_dir, gt_dir, tmp_path / "out", num_processes=1, progress=False)
    message = str(raised.value)
    assert message.startswith("3 case(s) cannot be scored, nothing was written")
    assert f"{truncated}: truncated" in message
    assert f"{pred_dir / 'case_1.nii.gz'}: 1 voxel(s) are NaN or infinite; a label map must hold label ids" in message
    assert "--allow_nonfinite" not in message  # no such flag here: no value could stand in for a label id
    assert f"{not_labels}: holds non-integer values" in message
    assert_nothing_written(tmp_path / "out")

    (pred_dir / "case_1.nii.gz").write_text("not an image")
    assert_one_line_error(run_evaluate(pred_dir, gt_dir, "-o", tmp_path / "cli", "-np", "2"),
                          f"{pred_dir / 'case_1.nii.gz'}: cannot be read as an image", f"{truncated}: truncated")
    assert_nothing_written(tmp_path / "cli")


def test_hidden_files_are_not_cases(folders, tmp_path):
    gt_dir, pred_dir, _ = folders
    (gt_dir / ".case_0.nii.gz").write_text("an editor's or a killed writer's file")
    (pred_dir / "._case_7.nii.gz").write_text("macOS metadata")
    result = evaluate_folder(pred_dir, gt_dir, tmp_path / "out", num_processes=1, progress=False)
    assert sorted({r["case"] for r in result.rows}) == ["case_0", "case_1", "case_2"]


@pytest.mark.parametrize("flag, value", [("--default_tolerance", "-5"), ("--default_tolerance", "nan"), ("-np", "0")])
def test_nonsense_numbers_are_refused_at_parsing(folders, tmp_path, flag, value):
    gt_dir, pred_dir, _ = folders
    result = run_in_process("nnUNetv2_uda_evaluate", pred_dir, gt_dir, "-o", tmp_path / "out", flag, value)
    assert result.returncode == 2 and f"argument {flag}" in result.stderr and value in result.stderr, result.stderr
    assert_nothing_written(tmp_path / "out")


def test_the_ground_truth_and_files_this_command_did_not_write_are_never_written(folders, tmp_path):
    gt_dir, pred_dir, _ = folders
    ground_truth = {path: path.read_bytes() for path in gt_dir.iterdir()}
    assert_one_line_error(run_evaluate(pred_dir, gt_dir, "-o", gt_dir), str(gt_dir), "never written")
    assert_one_line_error(run_evaluate(pred_dir, gt_dir, "-o", gt_dir / "scores"), "lies inside the ground-truth")
    assert_one_line_error(run_evaluate(gt_dir, gt_dir), "the prediction and ground-truth folders are the same")
    assert {path: path.read_bytes() for path in gt_dir.iterdir()} == ground_truth

    nnunet_summary = pred_dir / "summary.json"  # what nnUNetv2_evaluate_folder leaves in a prediction folder
    nnunet_summary.write_text(json.dumps({"foreground_mean": {"Dice": 0.9}, "metric_per_case": []}))
    assert_one_line_error(run_evaluate(pred_dir, gt_dir), str(nnunet_summary), "not written by this command", "-o")
    (tmp_path / "scores.txt").write_text("mine")
    assert_one_line_error(run_evaluate(pred_dir, gt_dir, "-o", tmp_path / "scores.txt"), "is not a folder")
    assert json.loads(nnunet_summary.read_text())["foreground_mean"] == {"Dice": 0.9}
    assert not (pred_dir / "metrics.csv").exists() and (tmp_path / "scores.txt").read_text() == "mine"

    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.csv").write_text("my own table")
    assert_one_line_error(run_evaluate(pred_dir, gt_dir, "-o", out), str(out / "metrics.csv"))
    assert (out / "metrics.csv").read_text() == "my own table"
    (out / "metrics.csv").unlink()
    evaluate_folder(pred_dir, gt_dir, out, num_processes=1, progress=False)
    evaluate_folder(pred_dir, gt_dir, out, num_processes=1, progress=False)  # its own results are replaced
    assert json.loads((out / "summary.json").read_text())["num_cases"] == 3
