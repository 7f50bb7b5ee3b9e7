"""Steps and prediction parts as Dask tasks (issue #25, item 3): the same pseudo-labels from Dask workers and from one
process.

A small run with two independent branches (rows "only CT" and "CycleGAN": the CT network's steps, and the CycleGAN
translator, its fake MRI and the network trained on it) runs with ``parallel_steps: 2`` on the ``LocalCluster`` of
two workers it starts: the branches run at once on the two workers, and each prediction step, itself a task, runs its
two parts as tasks on the same workers. The CycleGAN network's pseudo-labels, at the end of the longest chain of
tasks, must equal that network's prediction in one process (the trained network is the same, so the predictions are
comparable: nnU-Net's CPU training is not seeded). Quick tests run steps that only sleep or write a file on the
workers of a scheduler started here: a join waits for both its branches, a failure lets the running steps finish and
be recorded but starts no other, and a step's parts run on the workers of its own cluster. Parts run from the
pipeline's process are exercised by pipeline/test_reliability.py.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import cloudpickle
import dask
import numpy as np
import pytest
import SimpleITK as sitk
from distributed import Client, LocalCluster

from nnunetv2_uda.command_line import UserInputError
from nnunetv2_uda.pipeline.cluster import Part, dask_client, run_parts, wait_passively_on_shared_cores
from nnunetv2_uda.pipeline.config import ConfigError, PipelineConfig, config_from_dict
from nnunetv2_uda.pipeline.graph import Context, Step
from nnunetv2_uda.pipeline.manifest import Manifest
from nnunetv2_uda.pipeline.runner import PlannedStep, RunResult, StepLog, run_on_dask

BRANCHES = {"only_ct": ["copy_ct", "plan", "train_ct", "pseudolabel_ct"],  # the rows of the two-branch run
            "cyclegan": ["translator_cyclegan", "translate_cyclegan", "train_cyclegan", "pseudolabel_cyclegan"]}

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the quick tests' step actions, for the workers


def label_maps(folder: Path) -> dict[str, sitk.Image]:
    return {path.name: sitk.ReadImage(str(path)) for path in sorted(folder.glob("*.nii.gz"))}


def assert_same_label_maps(found: dict[str, sitk.Image], expected: dict[str, sitk.Image], cases: int) -> None:
    assert sorted(found) == sorted(expected) and len(expected) == cases
    for name, image in expected.items():
        assert np.array_equal(sitk.GetArrayFromImage(found[name]), sitk.GetArrayFromImage(image)), name
        assert found[name].GetSpacing() == image.GetSpacing() and found[name].GetOrigin() == image.GetOrigin()


def parts_workers(stdout: str, step: str) -> dict[int, str]:
    return {int(part): worker for part, worker in
            re.findall(rf"{step}: part (\d+) predicted on Dask worker (\S+)", stdout)}


def steps_finished(stdout: str) -> dict[str, str]:
    """Step -> the Dask worker its finished line names."""
    return dict(re.findall(r"\[\d+/\d+\] (\S+): finished in [\d.]+ s on Dask worker (\S+)", stdout))


def overlap(a: dict, b: dict) -> bool:
    return a["began"] < b["ended"] and b["began"] < a["ended"]


@pytest.mark.slow
def test_branches_on_dask_workers_give_the_single_process_pseudolabels(phantoms, two_branch_run, run_command):
    out, on_dask = two_branch_run.out, two_branch_run.stdout
    steps = [step for branch in BRANCHES.values() for step in branch]
    assert re.search(r"steps as tasks on the Dask scheduler tcp://", on_dask), on_dask[-4000:]
    workers = steps_finished(on_dask)
    assert workers.keys() == set(steps) and len(set(workers.values())) == 2, on_dask[-4000:]
    tasks = json.loads((out / "run.json").read_text())["dask_tasks"]
    assert {step: task["worker"] for step, task in tasks.items()} == workers
    # the branches ran at once: a step of each on the two workers at the same time
    at_once = [(a, b) for a in BRANCHES["only_ct"] for b in BRANCHES["cyclegan"]
               if tasks[a]["worker"] != tasks[b]["worker"] and overlap(tasks[a], tasks[b])]
    assert at_once, tasks
    for step in ("pseudolabel_ct", "pseudolabel_cyclegan"):  # a step on a worker ran its parts on the same workers
        assert sorted(parts_workers(on_dask, step)) == [0, 1], on_dask[-4000:]
        assert set(parts_workers(on_dask, step).values()) <= set(workers.values())
        parts = sorted((out / "parts" / step).glob("*/part_*"))
        assert [len(list(part.glob("*.nii.gz"))) for part in parts] == [phantoms.mri_cases // 2] * 2, step

    # the CycleGAN network, trained and used at the end of the longest chain of tasks, predicts the MRI in one
    # process as the pipeline's single-part prediction does
    model = Manifest(out).stages["train_cyclegan"]["outputs"]
    reference = phantoms.root / "cyclegan_reference_prediction"
    run_command(["nnUNetv2_predict_fast", "-i", phantoms.root / "inputs" / "Dataset992_PhantomMRI" / "imagesTr",
                 "-o", reference, "-d", model["dataset_id"], "-c", "2d", "-tr", model["trainer"], "-p", model["plans"],
                 "-f", "all", "-device", "cpu", "-npp", 1, "-nps", 1])
    assert_same_label_maps(label_maps(out / "pseudolabels" / "cyclegan"), label_maps(reference), phantoms.mri_cases)


def record(context: Context, attempt, name: str, seconds: float = 0.0, upstream: str | None = None) -> dict:
    """A step action that takes ``seconds`` and returns the outputs of ``upstream`` as the task saw them."""
    time.sleep(seconds)
    return {"name": name, "upstream": context.manifest_outputs(upstream) if upstream else None}


def broken(context: Context, attempt) -> dict:
    time.sleep(0.5)
    raise ValueError("this step is broken")


def predict_in_miniature(context: Context, attempt, folder: str) -> dict:
    """A prediction step's parts in miniature: each part's command writes a file named by its parent process's id,
    which is the worker's that ran the part."""
    command = [sys.executable, "-c",
               "import os, pathlib, sys; pathlib.Path(sys.argv[-1], f'{os.getppid()}.nii.gz').touch()"]
    Path(folder).mkdir()
    parts = [Part(index, command, str(Path(folder) / f"part_{index}"), str(Path(folder) / f"part_{index}.log"), {})
             for index in range(2)]
    run_parts(parts, None, "predict")
    return {"written_by": [int(path.name.split(".")[0]) for part in parts for path in Path(part.folder).iterdir()]}


def planned(name: str, action, depends: tuple[str, ...] = (), skipped: bool = False) -> PlannedStep:
    return PlannedStep(Step(name, f"step {name}", action, depends=depends), f"hash-{name}", {}, {},
                       None if skipped else "not run before")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """The address of a ``LocalCluster`` of two single-threaded workers."""
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def run_steps(tmp_path: Path, steps: list[PlannedStep], manifest: Manifest, scheduler: str) -> RunResult:
    """``steps`` as Dask tasks on the workers of ``scheduler``."""
    context = Context(PipelineConfig(output_folder=tmp_path, parallel_steps=2, scheduler=scheduler), {}, {}, {},
                      manifest)
    result = RunResult(["test"])
    run_on_dask(context, steps, StepLog(context, steps, result))
    return result


@pytest.mark.slow
def test_after_a_failure_the_running_steps_finish_and_are_recorded_and_no_step_starts(tmp_path, capsys, scheduler):
    manifest = Manifest(tmp_path)
    manifest.mark_started("earlier", "hash-earlier", {})
    manifest.mark_finished("earlier", {"from": "an earlier run"}, 1.0)
    steps = [planned("earlier", None, skipped=True),
             planned("first", partial(record, name="first", upstream="earlier"), ("earlier",)),
             planned("slow", partial(record, name="slow", seconds=3.0, upstream="first"), ("first",)),
             planned("broken", broken, ("first",)),
             planned("after_slow", partial(record, name="after_slow"), ("slow",)),
             planned("after_broken", partial(record, name="after_broken"), ("broken",))]
    with pytest.raises(ValueError, match="this step is broken"):
        run_steps(tmp_path, steps, manifest, scheduler)
    printed = capsys.readouterr().out
    on_disk = Manifest(tmp_path).stages
    assert on_disk["first"]["outputs"] == {"name": "first", "upstream": {"from": "an earlier run"}}
    assert on_disk["slow"]["finished"] and on_disk["slow"]["outputs"]["upstream"]["name"] == "first"
    assert not on_disk["broken"]["finished"]  # started, so the next run reruns it
    assert "after_slow" not in on_disk and "after_broken" not in on_disk  # nothing submitted after the failure
    lines = [line.split("] ", 2)[2] for line in printed.splitlines() if line.startswith("[nnUNetv2_uda_run] [")]
    assert lines[0] == "earlier: skipped (finished earlier with the same inputs and settings)"
    assert lines.index("broken: failed (this step is broken)") < next(
        i for i, line in enumerate(lines) if line.startswith("slow: finished in"))
    workers = steps_finished(printed)
    assert sorted(workers) == ["first", "slow"]


def test_independent_steps_run_at_once_on_two_workers_and_a_join_waits_for_both(tmp_path, capsys, scheduler):
    steps = [planned("left", partial(record, name="left", seconds=1.0)),
             planned("right", partial(record, name="right", seconds=1.0)),
             planned("join", partial(record, name="join", upstream="right"), ("left", "right"))]
    result = run_steps(tmp_path, steps, Manifest(tmp_path), scheduler)
    assert result.statuses == {"left": "ran", "right": "ran", "join": "ran"}
    printed = capsys.readouterr().out
    workers = steps_finished(printed)
    assert workers["left"] != workers["right"], printed
    assert printed.index("join: not run before") > max(printed.index(f"{step}: finished in")
                                                       for step in ("left", "right"))
    assert Manifest(tmp_path).stages["join"]["outputs"]["upstream"] == {"name": "right", "upstream": None}


def test_a_step_on_a_worker_runs_its_parts_as_tasks_on_its_own_cluster(tmp_path, scheduler):
    run_steps(tmp_path, [planned("predict", partial(predict_in_miniature, folder=str(tmp_path / "parts")))],
              Manifest(tmp_path), scheduler)
    with Client(scheduler) as client:
        worker_processes = set(client.run(os.getpid).values())
    written_by = Manifest(tmp_path).stages["predict"]["outputs"]["written_by"]
    assert len(written_by) == 2 and set(written_by) <= worker_processes, (written_by, worker_processes)


@pytest.mark.slow
def test_commands_on_a_local_cluster_wait_passively_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with dask_client(None, 1) as client:
        assert client.submit(os.environ.get, "OMP_WAIT_POLICY", pure=False).result() == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    wait_passively_on_shared_cores()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_a_scheduler_that_does_not_answer_is_named_and_nothing_is_predicted(tmp_path):
    part = Part(0, ["nnUNetv2_predict_fast", "-i", str(tmp_path)], str(tmp_path / "part_0"), str(tmp_path / "log"), {})
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), pytest.raises(UserInputError) as raised:
        run_parts([part], "tcp://127.0.0.1:1", "pseudolabel_ct")
    assert str(raised.value).startswith("'scheduler': no Dask scheduler answers at tcp://127.0.0.1:1")
    assert list(tmp_path.iterdir()) == []


def test_a_scheduler_is_an_address_with_its_protocol_and_parallel_steps_a_count(tmp_path):
    values = {"ct_dataset": str(tmp_path / "ct"), "mri_dataset": str(tmp_path / "mri"),
              "output_folder": str(tmp_path / "out")}
    config = config_from_dict({**values, "scheduler": "tcp://host:8786", "parallel_steps": 4})
    assert (config.scheduler, config.parallel_steps) == ("tcp://host:8786", 4)
    assert config_from_dict(values).parallel_steps == 1
    with pytest.raises(ConfigError) as raised:
        config_from_dict({**values, "scheduler": "host:8786", "parallel_steps": 0})
    assert raised.value.problems == ["'scheduler': 'host:8786' is not a Dask scheduler address such as "
                                     "tcp://host:8786", "'parallel_steps': must be at least 1, got 0"]
