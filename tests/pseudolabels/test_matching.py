"""Multi-domain matching: sequences, ordering, nearest-volume choice and the written labels."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_uda.pseudolabels.label_io import FailedCasesError, PseudoLabelError, same_geometry
from nnunetv2_uda.pseudolabels.matching import (
    MATCHES_PNG,
    multi_domain_matching,
    nearest_by_volume,
    organ_volumes_ml,
)
from nnunetv2_uda.pseudolabels.sequences import UNKNOWN, assign_sequences, order_sub_domains, sequence_from_name

SHAPE = (12, 28, 28)


def organ_map(scale: float, shift: float = 0.0) -> np.ndarray:
    """Two organs whose size grows with ``scale``."""
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[((z / 0.6) ** 2 + ((y - shift) / (0.35 * scale)) ** 2 + ((x + 0.35) / (0.3 * scale)) ** 2) < 1] = 1
    label[((z / 0.5) ** 2 + ((y + shift) / 0.2) ** 2 + ((x - 0.5) / (0.15 * scale)) ** 2) < 1] = 3
    return label


def write_case(folder: Path, images: Path, case: str, label: np.ndarray, origin=(0.0, 0.0, 0.0),
               spacing=(1.5, 1.5, 3.0)) -> None:
    for array, path in ((label.astype(np.float32) * 100, images / f"{case}_0000.nii.gz"),
                        (label, folder / f"{case}.nii.gz")):
        image = sitk.GetImageFromArray(array)
        image.SetOrigin(origin)
        image.SetSpacing(spacing)
        sitk.WriteImage(image, str(path))


def test_volumes_and_nearest_case():
    label = sitk.GetImageFromArray(np.array([[[0, 1, 1], [2, 2, 2]]], dtype=np.uint8))
    label.SetSpacing((2.0, 5.0, 10.0))  # 100 mm^3 = 0.1 mL per voxel
    np.testing.assert_allclose(organ_volumes_ml(label, [1, 2, 3]), [0.2, 0.3, 0.0])
    candidates = {"a": np.array([10.0, 5.0]), "b": np.array([14.0, 1.0]), "c": np.array([11.0, 7.0])}
    assert nearest_by_volume(np.array([12.0, 6.0]), candidates) == ("c", 2.0)  # a: 3, b: 7, c: 2


def test_sequences_from_csv_sidecar_and_name(tmp_path):
    assert sequence_from_name("PhantomMRI_T2_0003") == "T2" and sequence_from_name("chaos_0002") is None
    (tmp_path / "x_0002.json").write_text(json.dumps({"sequence": "DWI"}))
    (tmp_path / "seq.csv").write_text("case,sequence\nx_T2_0001,T1\n")
    sequences = assign_sequences(["x_T2_0001", "x_0002", "x_T1_0003"], tmp_path, tmp_path / "seq.csv")
    assert sequences == {"x_T2_0001": "T1", "x_0002": "DWI", "x_T1_0003": "T1"}
    assert assign_sequences(["chaos_0002", "chaos_0003"], tmp_path) == {"chaos_0002": UNKNOWN,
                                                                        "chaos_0003": UNKNOWN}
    with pytest.raises(PseudoLabelError, match="chaos_0002"):
        assign_sequences(["chaos_0002", "x_T1_0003"], tmp_path)


def test_order_of_sub_domains():
    sequences = {"a": "T1", "b": "T1", "c": "T2", "d": "DWI"}
    u = {"a": 0.3, "b": math.inf, "c": 0.1, "d": 0.2}
    assert order_sub_domains(sequences, uncertainty=u) == ["T2", "DWI", "T1"]
    assert order_sub_domains(sequences, order=["T1", "T2", "DWI"]) == ["T1", "T2", "DWI"]
    with pytest.raises(PseudoLabelError, match=r"\['FLAIR'\] of --order have no cases"):
        order_sub_domains(sequences, order=["T2", "FLAIR", "T1", "DWI"])
    with pytest.raises(PseudoLabelError, match="missing from --order"):
        order_sub_domains(sequences, order=["T2", "T1"])
    with pytest.raises(PseudoLabelError, match=r"\['T2'\] appear more than once"):
        order_sub_domains(sequences, order=["T2", "T1", "T2", "DWI"])
    with pytest.raises(PseudoLabelError, match="--uncertainty_csv"):
        order_sub_domains(sequences)


def test_matching_picks_nearest_volume_case_and_keeps_geometry(two_domains, tmp_path):
    images, labels = two_domains
    output = tmp_path / "out"
    records = multi_domain_matching(images, labels, output, order=["T2", "T1"])

    by_case = {record.case: record for record in records}
    assert by_case["mri_T1_0003"].matched_case == "mri_T2_0002"
    assert by_case["mri_T1_0003"].metric_after < by_case["mri_T1_0003"].metric_before
    assert by_case["mri_T2_0001"].matched_case == ""
    for case in by_case:
        written = sitk.ReadImage(str(output / f"{case}.nii.gz"))
        assert same_geometry(written, sitk.ReadImage(str(images / f"{case}_0000.nii.gz"))), case
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(output / "mri_T2_0001.nii.gz"))),
                                  organ_map(1.0))
    warped = sitk.GetArrayFromImage(sitk.ReadImage(str(output / "mri_T1_0003.nii.gz")))
    assert set(np.unique(warped)) == {0, 1, 3}
    own = sitk.GetArrayFromImage(sitk.ReadImage(str(labels / "mri_T1_0003.nii.gz")))
    assert 2 * np.sum((warped == own) & (own > 0)) / (np.sum(warped > 0) + np.sum(own > 0)) > 0.85
    with open(output / "mdm_matches.csv", newline="") as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    assert rows["mri_T1_0003"]["matched_sequence"] == "T2" and float(rows["mri_T1_0003"]["volume_L1_mL"]) > 0
    matched = [record for record in records if record.matched_case]
    figure = plt.imread(output / MATCHES_PNG)  # one row of two panels per matched case
    assert matched and figure.shape[0] == 320 * len(matched) and figure.shape[1] == 700


def test_single_sub_domain_copies_unchanged(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    write_case(labels, images, "chaos_0002", organ_map(1.0))
    write_case(labels, images, "chaos_0003", organ_map(1.2))
    result = subprocess.run(["nnUNetv2_uda_mdm", str(images), str(labels), str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "single sub-domain" in result.stdout
    for case in ("chaos_0002", "chaos_0003"):
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / f"{case}.nii.gz"))),
                                      sitk.GetArrayFromImage(sitk.ReadImage(str(labels / f"{case}.nii.gz"))))


def test_bad_inputs_name_the_case(two_domains, tmp_path):
    images, labels = two_domains
    label = sitk.ReadImage(str(labels / "mri_T2_0002.nii.gz"))
    label.SetOrigin((5.0, 0.0, 0.0))
    sitk.WriteImage(label, str(labels / "mri_T2_0002.nii.gz"))
    with pytest.raises(FailedCasesError, match=r"1 of 3 case\(s\) failed.*mri_T2_0002.nii.gz does not match"):
        multi_domain_matching(images, labels, tmp_path / "out", order=["T2", "T1"])
    # the misplaced case is no candidate: the T1 case takes the other T2 case's label
    with open(tmp_path / "out" / "mdm_matches.csv", newline="") as handle:
        matches = {row["case"]: row["matched_case"] for row in csv.DictReader(handle)}
    assert matches == {"mri_T2_0001": "", "mri_T1_0003": "mri_T2_0001"}
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz")) == ["mri_T1_0003.nii.gz", "mri_T2_0001.nii.gz"]
    (images / "mri_T1_0003_0000.nii.gz").unlink()
    with pytest.raises(PseudoLabelError, match="mri_T1_0003"):
        multi_domain_matching(images, labels, tmp_path / "out2", order=["T2", "T1"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PseudoLabelError, match="no cases"):
        multi_domain_matching(images, tmp_path / "empty", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
