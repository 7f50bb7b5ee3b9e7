"""The pseudo-label commands on bad and hostile input, run as a user runs them: nothing of the user's is deleted or
replaced, every bad input gets one line naming the file or flag (no traceback), bad cases are named while the good
ones are still written, and temporaries of a killed run never become cases."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from commands import run_in_process
from pseudolabels.test_filtering import SHAPE, _image, make_snapshot_setup
from pseudolabels.test_largest_component import two_organs_with_islands, write_label

from nnunetv2_uda.pseudolabels.label_io import image_channel_files, label_files

FILTER = "nnUNetv2_uda_filter_pseudolabels"
MDM = "nnUNetv2_uda_mdm"
LARGEST = "nnUNetv2_uda_largest_component"


def run(*args) -> subprocess.CompletedProcess:
    return run_in_process(*args)


def contents(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def error_line(result: subprocess.CompletedProcess, *names: str) -> str:
    """The one stderr line of a failed command, which must name each of ``names``."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


def argparse_error(result: subprocess.CompletedProcess, flag: str) -> None:
    """Refused at parsing: exit 2, after the usage one error line naming the flag."""
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"argument {flag}" in errors[0], result.stderr


def truncate(path: Path) -> None:
    """Cuts the end off, as a killed copy does: the header survives, and SimpleITK alone reads what is missing as 0."""
    path.write_bytes(path.read_bytes()[:-20])


def write_float_image(path: Path, like: Path, nan: bool) -> None:
    reference = sitk.ReadImage(str(like))
    array = sitk.GetArrayFromImage(reference).astype(np.float32)
    if nan:
        array[0, 0, 0] = np.nan
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path))


@pytest.fixture
def snapshots(tmp_path) -> tuple[Path, Path]:
    return make_snapshot_setup(tmp_path)


@pytest.fixture
def label_maps(tmp_path) -> Path:
    folder = tmp_path / "data" / "labels"
    folder.mkdir(parents=True)
    write_label(folder / "case_a.nii.gz", two_organs_with_islands())
    write_label(folder / "case_b.nii.gz", np.roll(two_organs_with_islands(), 1, axis=2))
    return folder


def user_dataset(folder: Path) -> Path:
    """A user's own raw dataset, with a note of theirs."""
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    sitk.WriteImage(_image(np.ones(SHAPE, dtype=np.float32)), str(folder / "imagesTr" / "own_000_0000.nii.gz"))
    sitk.WriteImage(_image(np.ones(SHAPE, dtype=np.uint8)), str(folder / "labelsTr" / "own_000.nii.gz"))
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "labels": {"background": 0}}))
    (folder / "notes.txt").write_text("hand-corrected labels, the only copy")
    return folder


# --- nothing of the user's is deleted or replaced ---------------------------------------------------------------

def test_filter_refuses_an_existing_dataset_and_leaves_it_as_it_was(snapshots, tmp_path):
    snapshot_folder, _ = snapshots
    dataset = user_dataset(tmp_path / "Dataset900_Own")
    before = contents(dataset)
    line = error_line(run(FILTER, snapshot_folder, dataset, "--keep_fraction", "1"), dataset, "--overwrite")
    assert "not empty" in line
    assert contents(dataset) == before


def test_filter_never_writes_into_its_inputs(snapshots, tmp_path):
    snapshot_folder, images = snapshots
    target = images.parent  # the target dataset holds the images folder
    before = {folder: contents(folder) for folder in (target, snapshot_folder)}
    for output, where in ((target, "holds the input"), (snapshot_folder, "is the input"),
                          (snapshot_folder / "epoch_0003", "lies inside the input"), (images / "x", "lies inside")):
        error_line(run(FILTER, snapshot_folder, output, "--overwrite"), output, where)
    assert {folder: contents(folder) for folder in (target, snapshot_folder)} == before


def test_filter_overwrite_replaces_the_whole_dataset(snapshots, tmp_path):
    snapshot_folder, _ = snapshots
    output = tmp_path / "Dataset851_Pseudo"
    assert run(FILTER, snapshot_folder, output, "--keep_fraction", "1").returncode == 0
    (output / "notes.txt").write_text("stale")
    assert len(label_files(output / "labelsTr")) == 3
    result = run(FILTER, snapshot_folder, output, "--threshold", "1e-9", "--overwrite")
    assert result.returncode == 0, result.stderr
    assert sorted(label_files(output / "labelsTr")) == ["mri_000"]  # no stale case survives
    assert sorted(image_channel_files(output / "imagesTr")) == ["mri_000"]
    assert not (output / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset850_Target", "Dataset851_Pseudo", "fold_all"]


def test_mdm_never_writes_into_its_inputs(two_domains, tmp_path):
    images, labels = two_domains
    csv_folder = tmp_path / "tables"
    csv_folder.mkdir()
    (csv_folder / "sequences.csv").write_text("case,sequence\n")
    before = {folder: contents(folder) for folder in (images, labels, csv_folder)}
    for output, where in ((labels, "is the input"), (images, "is the input"), (labels / "mdm", "lies inside"),
                          (csv_folder, "holds the input")):
        result = run(MDM, images, labels, output, "--order", "T2", "T1", "--sequences_csv",
                     csv_folder / "sequences.csv", "--overwrite")
        error_line(result, output, where)
    assert {folder: contents(folder) for folder in (images, labels, csv_folder)} == before


def test_mdm_refuses_a_non_empty_output_and_replaces_it_only_with_overwrite(two_domains, tmp_path):
    images, labels = two_domains
    output = tmp_path / "own_labels"
    output.mkdir()
    (output / "mri_T1_0003.nii.gz").write_bytes(b"the user's own label")
    error_line(run(MDM, images, labels, output, "--order", "T2", "T1"), output, "--overwrite")
    assert contents(output) == {"mri_T1_0003.nii.gz": b"the user's own label"}
    result = run(MDM, images, labels, output, "--order", "T2", "T1", "--overwrite")
    assert result.returncode == 0, result.stderr
    assert sorted(label_files(output)) == ["mri_T1_0003", "mri_T2_0001", "mri_T2_0002"]
    assert sitk.ReadImage(str(output / "mri_T1_0003.nii.gz")).GetSize() == sitk.ReadImage(
        str(images / "mri_T1_0003_0000.nii.gz")).GetSize()


def test_largest_component_never_writes_into_its_input_or_over_a_users_folder(label_maps, tmp_path):
    data = label_maps.parent
    (data / "case_a.nii.gz").write_bytes(b"the user's original of case_a")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "case_b.nii.gz").write_bytes(b"another file of the user")
    before = {folder: contents(folder) for folder in (data, elsewhere)}
    for output, where in ((label_maps, "is the input"), (data, "holds the input"),
                          (label_maps / "cleaned", "lies inside the input"), (elsewhere, "--overwrite")):
        error_line(run(LARGEST, label_maps, output), output, where)
    assert {folder: contents(folder) for folder in (data, elsewhere)} == before
    assert run(LARGEST, label_maps, elsewhere, "--overwrite").returncode == 0
    assert sorted(p.name for p in elsewhere.iterdir()) == ["case_a.nii.gz", "case_b.nii.gz", "largest_component.csv"]
    assert (sitk.GetArrayFromImage(sitk.ReadImage(str(elsewhere / "case_b.nii.gz"))) == 1).sum() == 28


# --- temporaries of a killed run are never cases ----------------------------------------------------------------

def test_hidden_files_are_never_listed_as_cases(tmp_path):
    for name in ("case_0000.nii.gz", ".case_0000.nii.gz", ".tmp_other_0000.nii.gz", "case.nii.gz", ".case.nii.gz"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".partial-123-case.nii.gz-abc").mkdir()
    (tmp_path / ".partial-123-case.nii.gz-abc" / "other.nii.gz").write_bytes(b"x")
    assert list(image_channel_files(tmp_path)) == ["case"]
    assert sorted(label_files(tmp_path)) == ["case", "case_0000"]


def test_temporaries_left_by_a_killed_run_are_not_processed(snapshots, label_maps, tmp_path):
    (label_maps / ".tmp_case_c.nii.gz").write_bytes(gzip.compress(b"half a file")[:10])
    result = run(LARGEST, label_maps, tmp_path / "cleaned")
    assert result.returncode == 0, result.stderr
    assert sorted(label_files(tmp_path / "cleaned")) == ["case_a", "case_b"]
    snapshot_folder, images = snapshots
    (images / ".mri_009_0000.nii.gz").write_bytes(b"")
    result = run(FILTER, snapshot_folder, tmp_path / "filtered", "--keep_fraction", "1")
    assert result.returncode == 0, result.stderr
    assert "of 4 cases" in result.stdout


# --- one line naming the file or flag for every bad input -------------------------------------------------------

@pytest.mark.parametrize(("flags", "flag"), [
    (["--keep_fraction", "0"], "--keep_fraction"), (["--keep_fraction", "1.5"], "--keep_fraction"),
    (["--threshold", "nan"], "--threshold"), (["--threshold", "-1"], "--threshold"),
])
def test_filter_refuses_nonsense_numbers_at_parsing(flags, flag, tmp_path):
    argparse_error(run(FILTER, tmp_path, tmp_path / "out", *flags), flag)


def test_filter_names_a_bad_snapshot_folder(snapshots, tmp_path):
    snapshot_folder, images = snapshots
    out = tmp_path / "out"
    error_line(run(FILTER, tmp_path / "missing", out), tmp_path / "missing", "does not exist")
    (tmp_path / "empty").mkdir()
    error_line(run(FILTER, tmp_path / "empty", out), tmp_path / "empty", "no snapshots.json")
    error_line(run(FILTER, snapshot_folder, out, "--images", tmp_path / "empty"), tmp_path / "empty", "no cases")
    error_line(run(FILTER, snapshot_folder, out, "--images", tmp_path / "nope"), tmp_path / "nope", "does not exist")
    (tmp_path / "a_file").write_text("x")
    error_line(run(FILTER, snapshot_folder, tmp_path / "a_file"), tmp_path / "a_file", "not a folder")
    for epoch_folder in snapshot_folder.glob("epoch_*"):  # a record whose snapshots are gone
        for path in epoch_folder.iterdir():
            path.unlink()
        epoch_folder.rmdir()
    error_line(run(FILTER, snapshot_folder, out), snapshot_folder / "epoch_0003", "is missing")
    for record, problem in (("[1, 2", "not valid JSON"), ("[1, 2]", "holds a list"),
                            ('{"epochs": [1]}', "lacks 'target_images'"),
                            ('{"target_images": "x", "epochs": ["last"]}', "must be lists of epoch numbers")):
        (snapshot_folder / "snapshots.json").write_text(record)
        error_line(run(FILTER, snapshot_folder, out), snapshot_folder / "snapshots.json", problem,
                   "not the record nnUNetTrainerUDAPseudoLabel writes")
    assert not out.exists()


def test_target_images_not_named_as_cases_are_named_as_such(snapshots, tmp_path):
    snapshot_folder, images = snapshots
    for image in images.glob("*_0000.nii.gz"):  # images named like labels: no channel suffix
        image.rename(image.with_name(image.name.replace("_0000", "")))
    error_line(run(FILTER, snapshot_folder, tmp_path / "out"), images, "holds no cases",
               "expected files named <case>_0000.nii.gz")
    assert not (tmp_path / "out").exists()


def test_filter_names_bad_cases_and_writes_the_others(snapshots, tmp_path):
    snapshot_folder, images = snapshots
    misplaced = snapshot_folder / "epoch_0007" / "mri_001.nii.gz"
    sitk.WriteImage(_image(sitk.GetArrayFromImage(sitk.ReadImage(str(misplaced))), origin=(0.0, 0.0, 0.0)),
                    str(misplaced))
    truncate(snapshot_folder / "epoch_0011" / "mri_003.nii.gz")
    write_float_image(images / "mri_002_0000.nii.gz", images / "mri_002_0000.nii.gz", nan=True)
    truncate(images / "mri_000_0000.nii.gz")
    result = run(FILTER, snapshot_folder, tmp_path / "out", "--keep_fraction", "1")
    line = error_line(result, "4 of 4 case(s) failed (nothing was written)", f"{misplaced} does not match",
                      f"{snapshot_folder / 'epoch_0011' / 'mri_003.nii.gz'}: truncated",
                      f"{images / 'mri_002_0000.nii.gz'}: 1 voxel(s) are NaN",
                      f"{images / 'mri_000_0000.nii.gz'}: truncated")
    assert line.startswith(f"{FILTER}: error: ") and not (tmp_path / "out").exists()
    sitk.WriteImage(_image(np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)),
                    str(images / "mri_000_0000.nii.gz"))
    result = run(FILTER, snapshot_folder, tmp_path / "out", "--keep_fraction", "1")
    assert result.returncode == 1
    error_line(result, "3 of 4 case(s) failed (the other 1 were written to")
    assert sorted(label_files(tmp_path / "out" / "labelsTr")) == ["mri_000"]


def test_mdm_names_bad_inputs(two_domains, tmp_path):
    images, labels = two_domains
    out = tmp_path / "out"
    error_line(run(MDM, tmp_path / "missing", labels, out), tmp_path / "missing", "does not exist")
    (tmp_path / "empty").mkdir()
    error_line(run(MDM, images, tmp_path / "empty", out), tmp_path / "empty", "no cases")
    error_line(run(MDM, images, labels, out, "--order", "T2", "FLAIR", "T1"), "['FLAIR']", "--order")
    error_line(run(MDM, images, labels, out), "--order", "--uncertainty_csv")
    error_line(run(MDM, images, labels, out, "--uncertainty_csv", tmp_path / "u.csv"), "--uncertainty_csv",
               tmp_path / "u.csv", "does not exist")
    result = run(MDM, images, labels, out, "--order", "T2", "T1", "--sequences_csv", tmp_path / "s.csv")
    assert result.returncode == 2  # bad input, as every other bad flag
    error_line(result, "--sequences_csv", tmp_path / "s.csv", "does not exist")
    (tmp_path / "u.csv").write_text("case,u\nmri_T2_0001,0.1\nmri_T2_0002,abc\n")
    error_line(run(MDM, images, labels, out, "--uncertainty_csv", tmp_path / "u.csv"), tmp_path / "u.csv",
               "row 2", "'abc'")
    (tmp_path / "seq.csv").write_bytes(b"\xff\xfe\x00binary\x00")
    error_line(run(MDM, images, labels, out, "--sequences_csv", tmp_path / "seq.csv"), tmp_path / "seq.csv",
               "--sequences_csv")
    (tmp_path / "seq.csv").write_text("name,kind\nmri_T2_0001,T2\n")
    error_line(run(MDM, images, labels, out, "--sequences_csv", tmp_path / "seq.csv"), tmp_path / "seq.csv",
               "case, sequence")
    argparse_error(run(MDM, images, labels, out, "--registration_on", "both"), "--registration_on")
    assert not out.exists()


def test_mdm_names_bad_cases_and_writes_the_others(two_domains, tmp_path):
    images, labels = two_domains
    (labels / "mri_T2_0001.nii.gz").write_bytes(b"not an image")
    label = sitk.ReadImage(str(labels / "mri_T1_0003.nii.gz"))
    label.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(label, str(labels / "mri_T1_0003.nii.gz"))
    result = run(MDM, images, labels, tmp_path / "out", "--order", "T2", "T1")
    assert result.returncode == 1
    error_line(result, "2 of 3 case(s) failed (the other 1 were written to",
               f"{labels / 'mri_T2_0001.nii.gz'}: cannot be read as an image",
               f"{labels / 'mri_T1_0003.nii.gz'} does not match its image's geometry")
    assert sorted(label_files(tmp_path / "out")) == ["mri_T2_0002"]


def test_mdm_images_with_nan_need_allow_nonfinite(two_domains, tmp_path):
    images, labels = two_domains
    image_file = images / "mri_T1_0003_0000.nii.gz"
    write_float_image(image_file, image_file, nan=True)
    result = run(MDM, images, labels, tmp_path / "out", "--order", "T2", "T1", "--registration_on", "images")
    error_line(result, f"{image_file}: 1 voxel(s) are NaN or infinite", "--allow_nonfinite")
    assert sorted(label_files(tmp_path / "out")) == ["mri_T2_0001", "mri_T2_0002"]
    result = run(MDM, images, labels, tmp_path / "out2", "--order", "T2", "T1", "--registration_on", "images",
                 "--allow_nonfinite")
    assert result.returncode == 0 and "replaced" in result.stderr and str(image_file) in result.stderr
    assert sorted(label_files(tmp_path / "out2")) == ["mri_T1_0003", "mri_T2_0001", "mri_T2_0002"]


def test_label_maps_with_nan_are_named_without_offering_a_flag_to_replace_them(two_domains, label_maps, tmp_path):
    images, labels = two_domains
    label_file = labels / "mri_T2_0001.nii.gz"
    write_float_image(label_file, label_file, nan=True)
    result = run(MDM, images, labels, tmp_path / "out", "--order", "T2", "T1", "--allow_nonfinite")
    line = error_line(result, "1 of 3 case(s) failed", f"{label_file}: 1 voxel(s) are NaN or infinite",
                      "a label map must hold label ids")
    assert "pass --allow_nonfinite" not in line  # the flag is for images: no value could stand in for a label id
    write_float_image(label_maps / "case_a.nii.gz", label_maps / "case_a.nii.gz", nan=True)
    line = error_line(run(LARGEST, label_maps, tmp_path / "lcc"), "1 of 2 case(s) failed",
                      f"{label_maps / 'case_a.nii.gz'}: 1 voxel(s) are NaN or infinite", "label ids")
    assert "--allow_nonfinite" not in line
    assert sorted(label_files(tmp_path / "lcc")) == ["case_b"]


def test_largest_component_warns_of_labels_in_no_label_map(label_maps, tmp_path):
    result = run(LARGEST, label_maps, tmp_path / "out", "--labels", "2", "99", "77")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: --labels 77 99: in no label map of {label_maps}; nothing done for them"]


@pytest.mark.parametrize(("flags", "flag"), [
    (["--labels", "-1"], "--labels"), (["--labels", "0"], "--labels"), (["-np", "0"], "-np/--num_processes"),
])
def test_largest_component_refuses_nonsense_numbers_at_parsing(flags, flag, tmp_path):
    argparse_error(run(LARGEST, tmp_path, tmp_path / "out", *flags), flag)


def test_largest_component_names_bad_inputs(label_maps, tmp_path):
    error_line(run(LARGEST, tmp_path / "missing", tmp_path / "out"), tmp_path / "missing", "does not exist")
    truncate(label_maps / "case_b.nii.gz")
    write_float_image(label_maps / "case_c.nii.gz", label_maps / "case_a.nii.gz", nan=False)
    result = run(LARGEST, label_maps, tmp_path / "out")
    assert result.returncode == 1
    error_line(result, "2 of 3 case(s) failed", f"{label_maps / 'case_b.nii.gz'}: truncated",
               f"{label_maps / 'case_c.nii.gz'}: voxel type float32 is not a label map")
    assert sorted(label_files(tmp_path / "out")) == ["case_a"]
    (label_maps / "case_a.nii.gz").write_bytes(b"")
    result = run(LARGEST, label_maps, tmp_path / "out2")
    error_line(result, "3 of 3 case(s) failed (nothing was written)")
    assert not (tmp_path / "out2").exists()
