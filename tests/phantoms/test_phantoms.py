"""Tests of nnunetv2_uda.phantoms: layout, nnU-Net validity, determinism, shared anatomy, the domain gap, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from commands import run_in_process

from nnunetv2_uda.flare_labels import FLARE_LABELS, FLARE_ORGANS
from nnunetv2_uda.output_folders import OutputFolderError
from nnunetv2_uda.phantoms import make_ct_case, make_mri_case, make_phantom_datasets, mri_case_name
from nnunetv2_uda.phantoms.datasets import PhantomArgumentError

TINY = (32, 64, 64)
SEED = 7
NUM_CT, NUM_MRI = 3, 3
LIVER, SPLEEN, GALLBLADDER = FLARE_ORGANS["liver"], FLARE_ORGANS["spleen"], FLARE_ORGANS["gallbladder"]
RIGHT_KIDNEY, LEFT_KIDNEY = FLARE_ORGANS["right kidney"], FLARE_ORGANS["left kidney"]


@pytest.fixture(scope="module")
def phantom_env(tmp_path_factory, nnunet_env) -> dict[str, str]:
    """nnU-Net folders of this module's own, so dataset ids 991/992 cannot clash with other tests."""
    root = tmp_path_factory.mktemp("phantoms")
    env = dict(nnunet_env)
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[key] = str(root / key)
        Path(env[key]).mkdir()
    return env


@pytest.fixture(scope="module")
def phantoms(phantom_env):
    return make_phantom_datasets(phantom_env["nnUNet_raw"], num_ct=NUM_CT, num_mri=NUM_MRI, shape=TINY, seed=SEED)


def read(path: Path) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


def organ_mean(image: np.ndarray, label: np.ndarray, organ: int) -> float:
    return float(image[label == organ].mean())


def test_layout_and_dataset_json(phantoms):
    assert phantoms.ct_folder.name == "Dataset991_PhantomCT"
    assert phantoms.mri_folder.name == "Dataset992_PhantomMRI"
    ct_json = json.loads((phantoms.ct_folder / "dataset.json").read_text())
    mri_json = json.loads((phantoms.mri_folder / "dataset.json").read_text())
    assert ct_json["channel_names"] == {"0": "CT"} and mri_json["channel_names"] == {"0": "MRI"}
    assert ct_json["labels"] == FLARE_LABELS and mri_json["labels"] == FLARE_LABELS
    assert (ct_json["numTraining"], mri_json["numTraining"]) == (NUM_CT, NUM_MRI)
    assert ct_json["file_ending"] == mri_json["file_ending"] == ".nii.gz"

    assert sorted(p.name for p in (phantoms.ct_folder / "labelsTr").iterdir()) == [
        f"PhantomCT_{i:04d}.nii.gz" for i in range(NUM_CT)]
    assert not (phantoms.mri_folder / "labelsTr").exists()
    assert [mri_case_name(i) for i in range(NUM_MRI)] == ["PhantomMRI_T1_0000", "PhantomMRI_T2_0001",
                                                           "PhantomMRI_DWI_0002"]
    for case in range(NUM_MRI):
        name = mri_case_name(case)
        sidecar = json.loads((phantoms.mri_folder / "imagesTr" / f"{name}.json").read_text())
        assert sidecar == {"sequence": name.split("_")[1], "patient": case}
        image, image_itk = read(phantoms.mri_folder / "imagesTr" / f"{name}_0000.nii.gz")
        label, label_itk = read(phantoms.mri_folder / "labelsEval" / f"{name}.nii.gz")
        assert image.shape == label.shape and image_itk.GetSpacing() == label_itk.GetSpacing()
        assert set(np.unique(label)) <= set(FLARE_LABELS.values())

    ct_image, ct_itk = read(phantoms.ct_folder / "imagesTr" / "PhantomCT_0000_0000.nii.gz")
    mri_image, mri_itk = read(phantoms.mri_folder / "imagesTr" / "PhantomMRI_T1_0000_0000.nii.gz")
    assert ct_image.shape == TINY and ct_image.dtype == np.int16
    assert ct_itk.GetDirection() == mri_itk.GetDirection()
    assert mri_itk.GetSpacing()[2] > 1.5 * ct_itk.GetSpacing()[2]  # thicker MRI slices
    assert ct_image.min() >= -1024 and 80 < organ_mean(ct_image, read(
        phantoms.ct_folder / "labelsTr" / "PhantomCT_0000.nii.gz")[0], LIVER) < 140  # enhanced liver in HU
    assert phantoms.contact_sheet.stat().st_size > 10_000 and phantoms.contact_sheet.suffix == ".png"


@pytest.mark.slow
def test_ct_dataset_passes_nnunet_integrity_check(phantoms):
    """nnU-Net's own check behind ``--verify_dataset_integrity`` (labels, geometry, file names, dataset.json)."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(phantoms.ct_folder), num_processes=1)  # raises on any problem


def test_deterministic_from_seed(phantoms, tmp_path):
    again = make_phantom_datasets(tmp_path, num_ct=1, num_mri=2, shape=TINY, seed=SEED)
    for first, second in [(phantoms.ct_folder / "imagesTr" / "PhantomCT_0000_0000.nii.gz",
                           again.ct_folder / "imagesTr" / "PhantomCT_0000_0000.nii.gz"),
                          (phantoms.mri_folder / "imagesTr" / "PhantomMRI_T2_0001_0000.nii.gz",
                           again.mri_folder / "imagesTr" / "PhantomMRI_T2_0001_0000.nii.gz")]:
        (a, a_itk), (b, b_itk) = read(first), read(second)
        np.testing.assert_array_equal(a, b)
        assert a_itk.GetSpacing() == b_itk.GetSpacing() and a_itk.GetOrigin() == b_itk.GetOrigin()
    assert not np.array_equal(make_ct_case(0, TINY, SEED).image, make_ct_case(0, TINY, SEED + 1).image)


def test_anatomy_is_plausible():
    label = make_ct_case(2, (48, 96, 96), SEED).label
    assert set(np.unique(label)) == set(FLARE_LABELS.values())
    centroid = {organ: np.argwhere(label == i).mean(axis=0) for organ, i in FLARE_ORGANS.items()}  # (z, y, x)
    # x grows to the patient's left, y to posterior, z to superior
    assert centroid["liver"][2] < centroid["aorta"][2] < centroid["spleen"][2]
    assert centroid["right kidney"][2] < centroid["aorta"][2] < centroid["left kidney"][2]
    assert centroid["inferior vena cava"][2] < centroid["aorta"][2]
    assert centroid["liver"][0] > centroid["right kidney"][0]
    for side in ("right", "left"):
        assert centroid[f"{side} adrenal gland"][0] > centroid[f"{side} kidney"][0]
        assert centroid[f"{side} kidney"][1] > centroid["pancreas"][1]  # kidneys behind the pancreas
    assert centroid["gallbladder"][0] < centroid["liver"][0]
    assert (label == LIVER).sum() > (label == SPLEEN).sum() > (label == GALLBLADDER).sum()


def resampled_onto(moving: sitk.Image, reference: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.Resample(moving, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


def test_same_subject_shares_anatomy_but_not_intensities(phantoms):
    ct_label, ct_itk = read(phantoms.ct_folder / "labelsTr" / "PhantomCT_0001.nii.gz")
    mri_label_itk = sitk.ReadImage(str(phantoms.mri_folder / "labelsEval" / "PhantomMRI_T2_0001.nii.gz"))
    on_ct_grid = resampled_onto(mri_label_itk, ct_itk)
    other_subject = resampled_onto(sitk.ReadImage(str(phantoms.mri_folder / "labelsEval" /
                                                      "PhantomMRI_T1_0000.nii.gz")), ct_itk)
    covered = np.isin(np.arange(ct_label.shape[0]), np.nonzero(on_ct_grid.any(axis=(1, 2)))[0])
    for organ in (LIVER, SPLEEN, RIGHT_KIDNEY, LEFT_KIDNEY):
        same = dice(ct_label[covered] == organ, on_ct_grid[covered] == organ)
        other = dice(ct_label[covered] == organ, other_subject[covered] == organ)
        assert same > 0.75, f"organ {organ}: CT and MRI of one subject disagree (Dice {same:.2f})"
        assert same > other + 0.05, f"organ {organ}: another subject matches as well ({other:.2f} vs {same:.2f})"

    ct_image, _ = read(phantoms.ct_folder / "imagesTr" / "PhantomCT_0001_0000.nii.gz")
    mri_image, _ = read(phantoms.mri_folder / "imagesTr" / "PhantomMRI_T2_0001_0000.nii.gz")
    mri_label = sitk.GetArrayFromImage(mri_label_itk)
    # bile is water: darker than liver on CT, the brightest organ on T2
    assert organ_mean(ct_image, ct_label, GALLBLADDER) < organ_mean(ct_image, ct_label, LIVER)
    assert organ_mean(mri_image, mri_label, GALLBLADDER) > organ_mean(mri_image, mri_label, LIVER)


def test_sequences_differ_in_organ_contrast_order():
    means = {}
    for case in range(3):
        scan = make_mri_case(case, TINY, SEED)
        means[scan.modality] = {o: organ_mean(scan.image, scan.label, o) for o in (LIVER, SPLEEN, GALLBLADDER)}
    t1, t2, dwi = means["T1"], means["T2"], means["DWI"]
    assert t1[GALLBLADDER] < t1[LIVER] and t2[GALLBLADDER] > t2[LIVER]  # fluid dark on T1, bright on T2
    assert t2[SPLEEN] > t2[LIVER] and dwi[SPLEEN] > dwi[LIVER]
    assert dwi[GALLBLADDER] < dwi[SPLEEN]
    orders = {name: tuple(sorted(m, key=m.get)) for name, m in means.items()}
    assert len(set(orders.values())) == 3, orders


@pytest.mark.parametrize("kwargs, message", [
    ({"shape": (4, 64, 64)}, "shape"),
    ({"shape": (32, 64)}, "shape"),
    ({"num_ct": 0}, "num_ct"),
    ({"num_mri": -2}, "num_mri"),
    ({"mri_dataset_id": 991}, "must differ"),
    ({"ct_dataset_id": 1000}, "ct_dataset_id"),
    ({"seed": -1}, "seed"),
])
def test_impossible_arguments_fail_before_writing(tmp_path, kwargs, message):
    target = tmp_path / "out"
    with pytest.raises(PhantomArgumentError, match=message):
        make_phantom_datasets(target, **{"num_ct": 1, "num_mri": 1, "shape": TINY, **kwargs})
    assert not target.exists()


def test_existing_dataset_is_refused_unless_overwrite(tmp_path):
    make_phantom_datasets(tmp_path, num_ct=1, num_mri=1, shape=TINY, seed=1)
    marker = tmp_path / "Dataset991_PhantomCT" / "user_file.txt"
    marker.write_text("keep me")
    with pytest.raises(OutputFolderError, match="Dataset991_PhantomCT exists and is not empty.*--overwrite"):
        make_phantom_datasets(tmp_path, num_ct=1, num_mri=1, shape=TINY, seed=1)
    assert marker.exists()
    (tmp_path / "Dataset993_Other").mkdir()
    with pytest.raises(PhantomArgumentError, match="Dataset993_Other already uses dataset id 993"):
        make_phantom_datasets(tmp_path, num_ct=1, num_mri=1, shape=TINY, mri_dataset_id=993, overwrite=True)
    assert marker.exists()
    make_phantom_datasets(tmp_path, num_ct=2, num_mri=1, shape=TINY, seed=1, overwrite=True)
    assert not marker.exists()
    assert len(list((tmp_path / "Dataset991_PhantomCT" / "labelsTr").iterdir())) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset991_PhantomCT", "Dataset992_PhantomMRI",
                                                          "Dataset993_Other", "phantoms_991_992.png"]


def test_an_existing_contact_sheet_is_refused_unless_overwrite(tmp_path):
    sheet = tmp_path / "phantoms_991_992.png"
    sheet.write_text("a user's file of that name")
    with pytest.raises(OutputFolderError, match="phantoms_991_992.png already exists.*--overwrite"):
        make_phantom_datasets(tmp_path, num_ct=1, num_mri=1, shape=TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phantoms_991_992.png"]
    assert sheet.read_text() == "a user's file of that name"


def run_make_phantoms(*args, env) -> subprocess.CompletedProcess:
    return run_in_process("nnUNetv2_uda_make_phantoms", *args, env=env)


@pytest.mark.slow
def test_command_line(tmp_path, nnunet_env, run_command):
    result = run_command(["nnUNetv2_uda_make_phantoms", tmp_path, "--num_ct", "1", "--num_mri", "2", "--shape",
                          "16", "48", "48", "--seed", "3", "--ct_id", "501", "--mri_id", "502"])
    assert "Dataset501_PhantomCT" in result.stdout
    assert len(list((tmp_path / "Dataset502_PhantomMRI" / "labelsEval").iterdir())) == 2
    for args, named in [((tmp_path / "new", "--shape", "2", "8", "8"), "shape (2, 8, 8) is impossible"),
                        ((tmp_path, "--num_ct", "1", "--num_mri", "2", "--shape", "16", "48", "48", "--ct_id", "501",
                          "--mri_id", "502"), "Dataset501_PhantomCT exists and is not empty")]:
        refused = run_make_phantoms(*args, env=nnunet_env)
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 2 and len(lines) == 1 and named in lines[0], refused.stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("args, message", [
    (["--num_ct", "0"], "argument --num_ct: must be a positive integer, got '0'"),
    (["--shape", "0", "64", "64"], "argument --shape: must be a positive integer, got '0'"),
    (["--ct_id", "-1"], "argument --ct_id: must be a positive integer, got '-1'"),
    (["--mri_id", "1000"], "argument --mri_id: must be an nnU-Net dataset id from 1 to 999, got '1000'"),
])
def test_nonsense_numbers_are_refused_at_parsing(tmp_path, nnunet_env, args, message):
    result = run_make_phantoms(tmp_path / "out", *args, env=nnunet_env)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_killed_overwrite_leaves_the_old_datasets_and_nothing_else(tmp_path, nnunet_env):
    """SIGTERM while the MRI dataset is being written: the old CT and MRI datasets stay as they were (a pair of one
    seed), no staging folder is left, and nothing else in the output folder is touched."""
    make_phantom_datasets(tmp_path, num_ct=1, num_mri=1, shape=TINY, seed=1)
    user_files = [tmp_path / "Dataset991_PhantomCT" / "user_file.txt", tmp_path / "Dataset500_Mine" / "notes.txt"]
    for file in user_files:
        file.parent.mkdir(exist_ok=True)
        file.write_text("keep me")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    process = subprocess.Popen(["nnUNetv2_uda_make_phantoms", str(tmp_path), "--overwrite", "--seed", "2", "--num_ct",
                                "1", "--num_mri", "200", "--shape", *map(str, TINY)], env=nnunet_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(p.is_file() for p in tmp_path.glob(".*Dataset992_PhantomMRI*/imagesTr/*")):
            assert process.poll() is None and time.monotonic() < deadline, "the MRI dataset was never begun"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode != 0
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, stderr
    assert all(file.read_text() == "keep me" for file in user_files)
    assert "seed 1" in json.loads((tmp_path / "Dataset991_PhantomCT" / "dataset.json").read_text())["description"]


@pytest.mark.slow  # two datasets written and resampled: seconds
def test_series_of_one_patient_share_its_anatomy_and_name_it(tmp_path):
    """With three series per patient, MRI cases 0-2 are T1, T2 and DWI of subject 0 (CT case 0's anatomy) on grids
    of their own, and their sidecars say so; case 3 is the next subject."""
    made = make_phantom_datasets(tmp_path, num_ct=2, num_mri=4, shape=TINY, seed=SEED, series_per_patient=3)
    names = [mri_case_name(case) for case in range(4)]
    patients = [json.loads((made.mri_folder / "imagesTr" / f"{name}.json").read_text())["patient"] for name in names]
    assert patients == [0, 0, 0, 1]
    ct_label, ct_itk = read(made.ct_folder / "labelsTr" / "PhantomCT_0000.nii.gz")
    grids = set()
    for name in names[:3]:
        series = sitk.ReadImage(str(made.mri_folder / "labelsEval" / f"{name}.nii.gz"))
        grids.add((series.GetOrigin(), series.GetSpacing()))
        on_ct_grid = resampled_onto(series, ct_itk)
        covered = np.isin(np.arange(ct_label.shape[0]), np.nonzero(on_ct_grid.any(axis=(1, 2)))[0])
        assert dice(ct_label[covered] == LIVER, on_ct_grid[covered] == LIVER) > 0.75, name
    assert len(grids) == 3  # each series its own coverage and position
    with pytest.raises(PhantomArgumentError, match="series_per_patient"):
        make_phantom_datasets(tmp_path / "bad", num_ct=1, num_mri=1, shape=TINY, series_per_patient=4)
