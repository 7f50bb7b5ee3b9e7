"""Organs are paired by dataset.json name; tolerances and dataset.json lookup."""

import json

import pytest

from nnunetv2_uda.evaluation.organ_matching import find_dataset_json, match_organs, read_dataset_labels


def test_organs_matched_by_name_with_differing_ids():
    specs = match_organs({"spleen": 1, "liver": 2, "aorta": 3}, {"liver": 1, "spleen": 3, "aorta": 5})
    assert [(s.name, s.gt_label, s.pred_label, s.tolerance_mm, s.z_range_only) for s in specs] == [
        ("liver", 1, 2, 5.0, False),
        ("spleen", 3, 1, 3.0, False),
        ("aorta", 5, 3, 2.0, True),
    ]


def test_ground_truth_with_fewer_organs_and_restriction():
    specs = match_organs({"liver": 1, "spleen": 3, "pancreas": 4}, {"liver": 1, "left kidney": 13})
    assert [(s.name, s.pred_label) for s in specs] == [("liver", 1), ("left kidney", None)]
    assert [s.name for s in match_organs({"liver": 1}, {"liver": 1, "spleen": 3}, organs=["spleen"])] == ["spleen"]
    with pytest.raises(ValueError, match="stomach"):
        match_organs({"liver": 1}, {"liver": 1}, organs=["stomach"])


def test_organ_without_tolerance_needs_a_default():
    with pytest.raises(ValueError, match="'tumour'.*--default_tolerance"):
        match_organs({"tumour": 1}, {"tumour": 1})
    assert match_organs({"tumour": 1}, {"tumour": 1}, default_tolerance_mm=4.0)[0].tolerance_mm == 4.0


def test_dataset_json_lookup(tmp_path):
    labels_eval = tmp_path / "Dataset900_X" / "labelsEval"
    labels_eval.mkdir(parents=True)
    dataset_json = tmp_path / "Dataset900_X" / "dataset.json"
    dataset_json.write_text(json.dumps({"labels": {"background": 0, "liver": 1}, "file_ending": ".nii.gz"}))
    assert find_dataset_json(labels_eval, search_parent=True) == dataset_json
    with pytest.raises(ValueError, match="no dataset.json"):
        find_dataset_json(labels_eval, search_parent=False)
    labels = read_dataset_labels(dataset_json)
    assert labels.labels == {"liver": 1} and labels.file_ending == ".nii.gz"
    dataset_json.write_text(json.dumps({"labels": {"background": 0, "whole": [1, 2]}}))
    with pytest.raises(ValueError, match="region"):
        read_dataset_labels(dataset_json)
