"""Prediction parts as Dask tasks (issue #25, item 3): the same pseudo-labels from one process and from two workers.

A small run (row "only CT", as in pipeline/test_reliability.py) first runs in one process (``num_parts: 1``, no
Dask). Rerun with ``num_parts: 2`` and the scheduler address of a ``LocalCluster`` of two workers started here, only
its prediction step reruns (its settings changed; the trained network is kept, so the predictions are comparable:
nnU-Net's CPU training is not seeded), one part on each worker, and must produce the label maps of the single-process
run. The ``LocalCluster`` a run starts itself (no ``scheduler``) is exercised by pipeline/test_reliability.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import dask
import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from distributed import LocalCluster

from nnunetv2_uda.command_line import UserInputError
from nnunetv2_uda.pipeline.cluster import Part, run_parts
from nnunetv2_uda.pipeline.config import ConfigError, config_from_dict

MRI_CASES = 6
BASE = 760


def run(root: Path, env: dict[str, str], **overrides) -> str:
    values = {
        "ct_dataset": str(root / "inputs" / "Dataset991_PhantomCT"),
        "mri_dataset": str(root / "inputs" / "Dataset992_PhantomMRI"),
        "output_folder": str(root / "run"),
        "dataset_id_base": BASE,
        "device": "cpu",
        "configuration": "2d",
        "trainer": "nnUNetTrainerUDAQuick",
        "target_spacing": [15.0, 8.0, 8.0],  # the tiny phantoms' own spacing
        "num_processes": 1,
        "ablation": "only_ct",
        "source_training": {"epochs": 2, "iterations_per_epoch": 4},
        **overrides,
    }
    config_file = root / "run.yaml"
    config_file.write_text(yaml.safe_dump(values))
    result = subprocess.run(["nnUNetv2_uda_run", str(config_file)], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def label_maps(folder: Path) -> dict[str, sitk.Image]:
    return {path.name: sitk.ReadImage(str(path)) for path in sorted(folder.glob("*.nii.gz"))}


def assert_same_label_maps(found: dict[str, sitk.Image], expected: dict[str, sitk.Image]) -> None:
    assert sorted(found) == sorted(expected) and len(expected) == MRI_CASES
    for name, image in expected.items():
        assert np.array_equal(sitk.GetArrayFromImage(found[name]), sitk.GetArrayFromImage(image)), name
        assert found[name].GetSpacing() == image.GetSpacing() and found[name].GetOrigin() == image.GetOrigin()


def workers_used(stdout: str, step: str) -> dict[int, str]:
    return {int(part): worker for part, worker in
            re.findall(rf"{step}: part (\d+) predicted on Dask worker (\S+)", stdout)}


@pytest.fixture(scope="module")
def phantoms(run_command, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cluster")
    run_command(["nnUNetv2_uda_make_phantoms", root / "inputs", "--num_ct", 3, "--num_mri", MRI_CASES,
                 "--shape", 16, 48, 48, "--seed", 1])
    return root


@pytest.mark.slow
def test_parts_on_a_local_cluster_and_on_a_scheduler_give_the_single_process_pseudolabels(phantoms, nnunet_env):
    single = run(phantoms, nnunet_env, num_parts=1)
    assert "Dask" not in single  # one part: predicted in this process, no cluster started
    pseudolabels = phantoms / "run" / "pseudolabels" / "ct"
    expected = label_maps(pseudolabels)

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        workers = set(cluster.scheduler_info["workers"])
        parted = run(phantoms, nnunet_env, num_parts=2, scheduler=address)
    assert "train_ct: skipped" in parted and "pseudolabel_ct: settings changed (num_parts)" in parted, parted[-4000:]
    assert f"on the Dask scheduler {address}" in parted, parted[-4000:]
    used = workers_used(parted, "pseudolabel_ct")
    assert sorted(used) == [0, 1] and set(used.values()) == workers, (used, workers)  # one part on each worker
    assert_same_label_maps(label_maps(pseudolabels), expected)
    parts = sorted((phantoms / "run" / "parts" / "pseudolabel_ct").glob("*/part_*"))
    assert [part.name for part in parts] == ["part_0", "part_1"]  # only the current step's parts are kept
    assert [len(list(part.glob("*.nii.gz"))) for part in parts] == [MRI_CASES // 2] * 2


def test_a_scheduler_that_does_not_answer_is_named_and_nothing_is_predicted(tmp_path):
    part = Part(0, ["nnUNetv2_predict_fast", "-i", str(tmp_path)], str(tmp_path / "part_0"), str(tmp_path / "log"), {})
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), pytest.raises(UserInputError) as raised:
        run_parts([part], "tcp://127.0.0.1:1", "pseudolabel_ct")
    assert str(raised.value).startswith("'scheduler': no Dask scheduler answers at tcp://127.0.0.1:1")
    assert list(tmp_path.iterdir()) == []


def test_a_scheduler_is_an_address_with_its_protocol(tmp_path):
    values = {"ct_dataset": str(tmp_path / "ct"), "mri_dataset": str(tmp_path / "mri"),
              "output_folder": str(tmp_path / "out")}
    assert config_from_dict({**values, "scheduler": "tcp://host:8786"}).scheduler == "tcp://host:8786"
    with pytest.raises(ConfigError, match="'scheduler': 'host:8786' is not a Dask scheduler address such as "
                                          "tcp://host:8786"):
        config_from_dict({**values, "scheduler": "host:8786"})
