"""Organs are paired by dataset.json name; tolerances and dataset.json lookup."""

import json

import pytest

from nnunetv2_uda.evaluation.organ_matching import (
    EvaluationError,
    find_dataset_json,
    match_organs,
    read_dataset_labels,
)


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
    with pytest.raises(EvaluationError, match="stomach"):
        match_organs({"liver": 1}, {"liver": 1}, organs=["stomach"])


def test_organ_without_tolerance_needs_a_default():
    with pytest.raises(EvaluationError, match="'tumour'.*--default_tolerance"):
        match_organs({"tumour": 1}, {"tumour": 1})
    assert match_organs({"tumour": 1}, {"tumour": 1}, default_tolerance_mm=4.0)[0].tolerance_mm == 4.0


def test_dataset_json_lookup(tmp_path):
    labels_eval = tmp_path / "Dataset900_X" / "labelsEval"
    labels_eval.mkdir(parents=True)
    dataset_json = tmp_path / "Dataset900_X" / "dataset.json"
    dataset_json.write_text(json.dumps({"labels": {"background": 0, "liver": 1}, "file_ending": ".nii.gz"}))
    assert find_dataset_json(labels_eval, search_parent=True) == dataset_json
    with pytest.raises(EvaluationError, match="no dataset.json"):
        find_dataset_json(labels_eval, search_parent=False)
    labels = read_dataset_labels(dataset_json)
    assert labels.labels == {"liver": 1} and labels.file_ending == ".nii.gz" and labels.declared_ids == {0, 1}
    dataset_json.write_text(json.dumps({"labels": {"background": 0, "whole": [1, 2]}}))
    with pytest.raises(EvaluationError, match="region"):
        read_dataset_labels(dataset_json)


@pytest.mark.parametrize("content, message", [
    ([{"labels": {"liver": 1}}], "holds a list, not a dataset.json with a 'labels' mapping"),
    ({"labels": ["background", "liver"]}, "dataset.json has no 'labels' mapping"),
    ({"labels": {"background": 0, "liver": True}}, "label 'liver' is True, not an integer id"),
    ({"labels": {"background": 0, "liver": "1"}}, "label 'liver' is '1', not an integer id"),
    ({"labels": {"background": 0, "liver": 1}, "file_ending": 5}, "'file_ending' is 5"),
])
def test_malformed_dataset_json_is_named(tmp_path, content, message):
    dataset_json = tmp_path / "dataset.json"
    dataset_json.write_text(json.dumps(content))
    with pytest.raises(EvaluationError, match=f"{dataset_json}: {message}"):
        read_dataset_labels(dataset_json)
