"""The fast export step: decision at network resolution, label map to original geometry, un-crop, transpose."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunetv2_uda.inference import export
from nnunetv2_uda.inference.export import segmentation_from_logits_fast

REGION_DATASET_JSON = {  # BraTS-style: overlapping regions, painted in regions_class_order
    "channel_names": {"0": "MRI"}, "file_ending": ".nii.gz", "numTraining": 1,
    "labels": {"background": 0, "whole": [1, 2], "core": 2}, "regions_class_order": [1, 2],
}
LABEL_DATASET_JSON = {"channel_names": {"0": "CT"}, "file_ending": ".nii.gz", "numTraining": 1,
                      "labels": {"background": 0, "a": 1, "b": 2, "c": 3}}


def plans_manager(transpose_forward=(0, 1, 2)) -> PlansManager:
    backward = [int(i) for i in np.argsort(transpose_forward)]
    return PlansManager({"plans_name": "test", "transpose_forward": list(transpose_forward),
                         "transpose_backward": backward, "configurations": {}})


def properties(network_shape, cropped_shape, full_shape, bbox):
    return {"shape_after_cropping_and_before_resampling": cropped_shape, "shape_before_cropping": full_shape,
            "bbox_used_for_cropping": bbox, "spacing": [1.0, 1.0, 1.0]}


def test_region_model_sigmoid_threshold_upsampling_and_uncropping():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)  # (whole, core) at network resolution
    props = properties((3, 4, 5), (3, 8, 10), (5, 10, 12), [[1, 4], [2, 10], [0, 10]])
    pm = plans_manager()
    segmentation = segmentation_from_logits_fast(torch.from_numpy(logits), pm,
                                                 pm.get_label_manager(REGION_DATASET_JSON), props)
    at_network = np.where(logits[1] > 0, 2, np.where(logits[0] > 0, 1, 0))  # sigmoid > 0.5 <=> logit > 0
    upsampled = np.repeat(np.repeat(at_network, 2, axis=1), 2, axis=2)
    expected = np.zeros((5, 10, 12), dtype=np.uint8)
    expected[1:4, 2:10, 0:10] = upsampled
    assert segmentation.dtype == np.uint8
    np.testing.assert_array_equal(segmentation, expected)


def test_softmax_model_argmax_and_transpose():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 6, 3, 5)).astype(np.float16)
    pm = plans_manager(transpose_forward=(2, 0, 1))
    props = properties((6, 3, 5), (6, 3, 5), (6, 3, 5), [[0, 6], [0, 3], [0, 5]])
    segmentation = segmentation_from_logits_fast(logits, pm, pm.get_label_manager(LABEL_DATASET_JSON), props)
    expected = logits.astype(np.float32).argmax(0).transpose(pm.transpose_backward)
    np.testing.assert_array_equal(segmentation, expected)


def test_decision_takes_the_first_of_equal_maxima_like_argmax():
    """fp16 logits tie often; the running maximum must break ties as argmax does (first class), not the last."""
    logits = torch.from_numpy(np.random.default_rng(2).integers(-2, 3, size=(5, 7, 8, 9)).astype(np.float16))
    labels = export.decide_labels(logits, plans_manager().get_label_manager({**LABEL_DATASET_JSON, "labels": {
        "background": 0, "a": 1, "b": 2, "c": 3, "d": 4}}))
    assert labels.dtype == torch.uint8
    assert torch.equal(labels.long(), logits.float().argmax(0))
    assert torch.equal(logits, torch.from_numpy(np.random.default_rng(2).integers(
        -2, 3, size=(5, 7, 8, 9)).astype(np.float16)))  # the logits are left as they were


def test_region_decision_in_slabs_matches_one_pass(monkeypatch):
    logits = torch.from_numpy(np.random.default_rng(3).normal(size=(2, 6, 4, 5)).astype(np.float32))
    label_manager = plans_manager().get_label_manager(REGION_DATASET_JSON)
    whole = export.decide_labels(logits, label_manager)
    monkeypatch.setattr(export, "DECISION_SLAB_VOXELS", 7)  # several slabs on this small array
    assert torch.equal(export.decide_labels(logits, label_manager), whole)


WRITE_UNDER_FILE_SIZE_LIMIT = """
import resource, signal, sys
import numpy as np
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from nnunetv2_uda.images import ImageFileError
from nnunetv2_uda.inference.export import write_segmentation

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing the process
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
pm = PlansManager({"image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2],
                   "transpose_backward": [0, 1, 2]})
props = {"sitk_stuff": {"spacing": (1.0, 1.0, 1.0), "origin": (0.0, 0.0, 0.0),
                        "direction": (1, 0, 0, 0, 1, 0, 0, 0, 1)}, "spacing": [1.0, 1.0, 1.0]}
segmentation = np.random.default_rng(0).integers(0, 255, (32, 32, 32), dtype=np.uint8)  # 32 kB, incompressible
try:
    write_segmentation(segmentation, props, sys.argv[1] + "/case", pm, {"file_ending": ".nii.gz"})
except ImageFileError as error:
    sys.exit(f"refused: {error}")
"""


@pytest.mark.slow
def test_write_cut_short_leaves_nothing_behind(tmp_path):
    """A write that stops after 4 kB (a file size limit; a full disk does the same): ITK's writer reports success
    and its reader would read the cut file as zeros. Nothing may be left: no file under the final name (the written
    file is read back before it is renamed) and no partial file in a staging folder (the clean-up)."""
    result = subprocess.run([sys.executable, "-c", WRITE_UNDER_FILE_SIZE_LIMIT, str(tmp_path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "case.nii.gz: not written completely" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_write_segmentation_writes_the_file_with_its_geometry(tmp_path):
    import SimpleITK as sitk

    pm = PlansManager({"image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2],
                       "transpose_backward": [0, 1, 2]})
    props = {"sitk_stuff": {"spacing": (1.0, 2.0, 3.0), "origin": (0.0, 0.0, 0.0),
                            "direction": (1, 0, 0, 0, 1, 0, 0, 0, 1)}, "spacing": [3.0, 2.0, 1.0]}
    seg = np.zeros((3, 4, 5), dtype=np.uint8)
    seg[1, 2, 3] = 2
    path = export.write_segmentation(seg, props, str(tmp_path / "case"), pm, LABEL_DATASET_JSON)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.nii.gz"]
    written = sitk.ReadImage(path)
    assert written.GetSpacing() == pytest.approx((1.0, 2.0, 3.0))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), seg)


@pytest.mark.parametrize("dataset_json", [LABEL_DATASET_JSON, REGION_DATASET_JSON], ids=["softmax", "regions"])
def test_decision_stays_on_a_non_cpu_device(dataset_json):
    """Logits on a GPU never go through numpy (which cannot take them); the meta device fails the same way."""
    label_manager = plans_manager().get_label_manager(dataset_json)
    logits = torch.empty((label_manager.num_segmentation_heads, 3, 4, 5), device="meta")
    with pytest.raises((TypeError, RuntimeError, NotImplementedError)):
        logits.numpy()
    labels = export.decide_labels(logits, label_manager)
    assert labels.device.type == "meta" and tuple(labels.shape) == (3, 4, 5)
