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
from nnunetv2_uda.pseudolabels.matching import MATCHES_PNG, multi_domain_matching, nearest_by_volume
from nnunetv2_uda.pseudolabels.sequences import (
    UNKNOWN,
    assign_sequences,
    mean_uncertainty,
    median_implausibility,
    order_sub_domains,
    sequence_from_name,
)

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


def test_a_sidecar_that_is_not_a_json_object_is_named_in_one_line(tmp_path):
    for text, problem in (("{", "not valid JSON"), ('["T2"]', "holds a list")):
        (tmp_path / "x_0001.json").write_text(text)
        with pytest.raises(PseudoLabelError, match=f"x_0001.json: {problem}.*not the sidecar of case 'x_0001'"):
            assign_sequences(["x_0001"], tmp_path)
    (tmp_path / "x_0001.json").write_text('{"patient": 3}')
    with pytest.raises(PseudoLabelError, match="x_0001.json has no 'sequence'"):
        assign_sequences(["x_0001"], tmp_path)


def test_nearest_case():
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
    assert mean_uncertainty(sequences, u) == {"T1": 0.3, "T2": 0.1, "DWI": 0.2}  # finite u only
    assert order_sub_domains(sequences, scores=mean_uncertainty(sequences, u)) == ["T2", "DWI", "T1"]
    assert mean_uncertainty(sequences, {**u, "a": math.inf})["T1"] == math.inf
    with pytest.raises(PseudoLabelError, match=r"\['d'\] are not in the --uncertainty_csv"):
        mean_uncertainty(sequences, {case: value for case, value in u.items() if case != "d"})
    implausibility = {"a": 0.5, "b": 2.9, "c": 1.0, "d": 0.2}  # T1's median 1.7; no value for a case: left out
    assert median_implausibility(sequences, implausibility) == {"T1": 1.7, "T2": 1.0, "DWI": 0.2}
    assert median_implausibility(sequences, {"a": 0.5})["T2"] == math.inf
    assert order_sub_domains(sequences, scores=median_implausibility(sequences, implausibility)) == \
        ["DWI", "T2", "T1"]
    assert order_sub_domains(sequences, order=["T1", "T2", "DWI"]) == ["T1", "T2", "DWI"]
    with pytest.raises(PseudoLabelError, match=r"\['FLAIR'\] of --order have no cases"):
        order_sub_domains(sequences, order=["T2", "FLAIR", "T1", "DWI"])
    with pytest.raises(PseudoLabelError, match="missing from --order"):
        order_sub_domains(sequences, order=["T2", "T1"])
    with pytest.raises(PseudoLabelError, match=r"\['T2'\] appear more than once"):
        order_sub_domains(sequences, order=["T2", "T1", "T2", "DWI"])
    with pytest.raises(PseudoLabelError, match="--ct_labels.*--uncertainty_csv"):
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


def write_ct_labels(folder: Path, scales: list[float]) -> Path:
    folder.mkdir()
    for index, scale in enumerate(scales):
        image = sitk.GetImageFromArray(organ_map(scale))
        image.SetSpacing((1.5, 1.5, 3.0))
        sitk.WriteImage(image, str(folder / f"ct_{index:03d}.nii.gz"))
    return folder


def test_ct_labels_rank_the_sub_domain_with_plausible_volumes_first(two_domains, tmp_path):
    """T2 holds a case of scale 1.0 and one of 1.35, T1 one of 1.3: CT organs near 1.3 put T1 first, near 1.0 T2."""
    images, labels = two_domains
    large = write_ct_labels(tmp_path / "ct_large", [1.25, 1.3, 1.35, 1.4])
    result = subprocess.run(["nnUNetv2_uda_mdm", str(images), str(labels), str(tmp_path / "out"), "--ct_labels",
                             str(large)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "sub-domains best first: ['T1', 'T2'] (organ-volume implausibility: T1 " in result.stdout
    assert result.stderr.strip() == ("warning: the best-ranked sub-domain T1 holds 1 case(s), so its rank rests on it "
                                     "alone, and the 2 other cases take labels from it; check mdm_matches.png or give "
                                     "--order")
    with open(tmp_path / "out" / "mdm_matches.csv", newline="") as handle:
        matches = {row["case"]: row["matched_case"] for row in csv.DictReader(handle)}
    assert matches == {"mri_T1_0003": "", "mri_T2_0001": "mri_T1_0003", "mri_T2_0002": "mri_T1_0003"}

    small = write_ct_labels(tmp_path / "ct_small", [0.95, 1.0, 1.05])
    records = multi_domain_matching(images, labels, tmp_path / "out_small", ct_labels=small)
    assert {record.case: record.matched_case for record in records}["mri_T1_0003"] == "mri_T2_0002"

    both = subprocess.run(["nnUNetv2_uda_mdm", str(images), str(labels), str(tmp_path / "out2"), "--ct_labels",
                           str(small), "--uncertainty_csv", str(tmp_path / "u.csv")], capture_output=True, text=True)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    assert not (tmp_path / "out2").exists()


def test_a_case_keeps_its_own_label_where_it_is_more_plausible_than_its_match(two_domains, tmp_path):
    """CT organs the size of T2_0002's (scale 1.35): with T1 (1.3) put first, T2_0002 keeps its own label, while
    T2_0001 (1.0, implausibly small) still takes T1's; without --ct_labels the flag is refused in one line."""
    images, labels = two_domains
    ct = write_ct_labels(tmp_path / "ct", [1.35, 1.35])
    result = subprocess.run(["nnUNetv2_uda_mdm", str(images), str(labels), str(tmp_path / "out"), "--order", "T1",
                             "T2", "--ct_labels", str(ct), "--keep_more_plausible"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "mri_T2_0002 (T2) keeps its own pseudo-label: mri_T1_0003 (T1) is no more plausible" in result.stdout
    assert "1 of 3 pseudo-labels replaced" in result.stdout
    with open(tmp_path / "out" / "mdm_matches.csv", newline="") as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    assert [rows[case]["kept_own"] for case in ("mri_T2_0002", "mri_T2_0001", "mri_T1_0003")] == ["True", "False",
                                                                                                   "False"]
    assert rows["mri_T1_0003"]["same_patient"] == "False" and rows["mri_T1_0003"]["own_implausibility"] == "nan"
    assert rows["mri_T2_0002"]["matched_case"] == rows["mri_T2_0001"]["matched_case"] == "mri_T1_0003"
    assert float(rows["mri_T2_0002"]["own_implausibility"]) < float(rows["mri_T2_0002"]["match_implausibility"]) < \
        float(rows["mri_T2_0001"]["own_implausibility"])

    def written(case: str, folder: Path) -> np.ndarray:
        return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{case}.nii.gz")))
    np.testing.assert_array_equal(written("mri_T2_0002", tmp_path / "out"), written("mri_T2_0002", labels))
    assert (written("mri_T2_0001", tmp_path / "out") != written("mri_T2_0001", labels)).any()

    refused = subprocess.run(["nnUNetv2_uda_mdm", str(images), str(labels), str(tmp_path / "out2"), "--order", "T1",
                              "T2", "--keep_more_plausible"], capture_output=True, text=True)
    assert refused.returncode == 2 and "needs the CT labels" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "out2").exists()


@pytest.mark.slow  # three matchings and two fresh interpreters
def test_a_series_of_the_same_patient_is_matched_before_closer_volumes(two_domains, tmp_path):
    """T1_0003's organ volumes are closest to T2_0002's; told that T2_0001 is the same patient, it takes that one."""
    images, labels = two_domains
    (images / "mri_T1_0003.json").write_text(json.dumps({"sequence": "T1", "patient": 7}))
    (images / "mri_T2_0001.json").write_text(json.dumps({"sequence": "T2", "patient": "7"}))
    records = {record.case: record for record in multi_domain_matching(images, labels, tmp_path / "sidecars",
                                                                       order=["T2", "T1"])}
    assert records["mri_T1_0003"].matched_case == "mri_T2_0001" and records["mri_T1_0003"].same_patient

    (images / "mri_T2_0001.json").write_text(json.dumps({"sequence": "T2", "patient": "8"}))  # no series of patient 7
    records = {record.case: record for record in multi_domain_matching(images, labels, tmp_path / "other",
                                                                       order=["T2", "T1"])}
    assert records["mri_T1_0003"].matched_case == "mri_T2_0002" and not records["mri_T1_0003"].same_patient

    (tmp_path / "cases.csv").write_text("case,sequence,patient\nmri_T1_0003,T1,p1\nmri_T2_0001,T2,p1\n"
                                        "mri_T2_0002,T2,\n")  # the CSV's patients, not the sidecars'
    result = subprocess.run(["nnUNetv2_uda_mdm", str(images), str(labels), str(tmp_path / "csv"), "--order", "T2",
                             "T1", "--sequences_csv", str(tmp_path / "cases.csv")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "mri_T1_0003 (T1) <- mri_T2_0001 (T2, same patient)" in result.stdout
    with open(tmp_path / "csv" / "mdm_matches.csv", newline="") as handle:
        assert {row["case"]: row["same_patient"] for row in csv.DictReader(handle)}["mri_T1_0003"] == "True"

    (images / "mri_T2_0001.json").write_text(json.dumps({"sequence": "T2", "patient": ["7"]}))
    result = subprocess.run(["nnUNetv2_uda_mdm", str(images), str(labels), str(tmp_path / "bad"), "--order", "T2",
                             "T1"], capture_output=True, text=True)
    assert result.returncode == 2 and "mri_T2_0001.json has 'patient' ['7']" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def organ_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Mean DSC over liver, kidneys and spleen (FLARE ids 1, 2, 3, 13)."""
    return float(np.mean([2 * np.sum((a == i) & (b == i)) / max(1, np.sum(a == i) + np.sum(b == i))
                          for i in (1, 2, 3, 13)]))


@pytest.mark.slow  # phantoms and three matchings
def test_world_carries_a_series_label_as_the_scanner_placed_it(tmp_path):
    """Phantom subjects with a T1, a T2 and a DWI series each, on grids of their own: the DWI label resampled in world
    coordinates fits the other series of its subject, whatever their own labels say; a series whose subject has none
    in a better sub-domain is refused with one line, the others are still written."""
    from nnunetv2_uda.phantoms.datasets import make_phantom_datasets

    mri = make_phantom_datasets(tmp_path / "phantoms", num_ct=1, num_mri=7, shape=(16, 48, 48),
                                series_per_patient=3).mri_folder
    truth = {path.name[:-7]: path for path in (mri / "labelsEval").glob("*.nii.gz")}
    labels = tmp_path / "labels"
    labels.mkdir()
    for case, path in truth.items():  # DWI keeps its true label, the others get a wrong one: one voxel of liver
        label = sitk.ReadImage(str(path))
        if "DWI" not in case:
            array = np.zeros_like(sitk.GetArrayFromImage(label))
            array[0, 0, 0] = 1
            label = sitk.GetImageFromArray(array)
            label.CopyInformation(sitk.ReadImage(str(path)))
        sitk.WriteImage(label, str(labels / f"{case}.nii.gz"))
    with pytest.raises(FailedCasesError) as failed:
        multi_domain_matching(mri / "imagesTr", labels, tmp_path / "world", order=["DWI", "T1", "T2"],
                              registration_on="world")
    assert list(failed.value.failures) == ["PhantomMRI_T1_0006"]  # subject 2 has no DWI series
    assert "no series of its patient (2)" in failed.value.failures["PhantomMRI_T1_0006"]
    written = sorted(path.name for path in (tmp_path / "world").glob("*.nii.gz"))
    assert written == sorted(f"{case}.nii.gz" for case in truth if case != "PhantomMRI_T1_0006")
    for case in ("PhantomMRI_T1_0000", "PhantomMRI_T2_0001", "PhantomMRI_T1_0003", "PhantomMRI_T2_0004"):
        carried = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "world" / f"{case}.nii.gz")))
        # 0.6-0.8 at this coarse grid; the same label placed by voxel index instead of position scores 0.1-0.5
        assert organ_dice(carried, sitk.GetArrayFromImage(sitk.ReadImage(str(truth[case])))) > 0.55, case
    with open(tmp_path / "world" / "mdm_matches.csv", newline="") as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    assert rows["PhantomMRI_T2_0004"]["matched_case"] in ("PhantomMRI_DWI_0005", "PhantomMRI_T1_0003")
    assert rows["PhantomMRI_T2_0004"]["same_patient"] == "True"
    before, after = (float(rows["PhantomMRI_T2_0004"][key]) for key in ("metric_before", "metric_after"))
    assert before == after > 0  # nothing registered: the label maps' mean squares as they lie, before and after

    for sidecar in (mri / "imagesTr").glob("*.json"):  # no patients known: refused before anything is read
        sidecar.write_text(json.dumps({"sequence": json.loads(sidecar.read_text())["sequence"]}))
    with pytest.raises(PseudoLabelError, match="no case names its patient"):
        multi_domain_matching(mri / "imagesTr", labels, tmp_path / "none", order=["DWI", "T1", "T2"],
                              registration_on="world")
    assert not (tmp_path / "none").exists()
