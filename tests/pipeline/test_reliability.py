"""``nnUNetv2_uda_run`` killed for real, and two runs meeting on the same dataset ids (issue #23, items 3 and 9).

A small run (row "only CT": plan, train the CT network for a few epochs, pseudo-label the MRI in two prediction
parts) is killed with SIGKILL (its whole process group, as a crash or an out-of-memory kill would) in the middle of
``nnUNetv2_train`` and again in the middle of a prediction part, and rerun with the same command each time. It must
continue the training from nnU-Net's checkpoint, never take a part for done that was not complete, and end with what
an uninterrupted run has: the "only CT" branch of the shared two-branch run (tests/pipeline/conftest.py), under other
dataset ids. A run with that run's ``dataset_id_base`` must be refused before doing anything.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_uda.atomic_files import STAGING_PREFIX, is_hidden
from nnunetv2_uda.pipeline.datasets import OWNER_KEY
from nnunetv2_uda.pipeline.manifest import Manifest
from nnunetv2_uda.pipeline.nnunet_commands import PLANS

pytestmark = pytest.mark.slow

STEPS = ["copy_ct", "plan", "train_ct", "pseudolabel_ct"]
KILLED_BASE = 740
POLL_SECONDS = 0.05


def config(phantoms, name: str, base: int) -> Path:
    """The run in two prediction parts (three MRI cases each: a part is killed after its first case is written)."""
    return phantoms.config(name, base, num_parts=2)


def fold_folder(phantoms, env: dict[str, str], base: int) -> Path:
    return (Path(env["nnUNet_results"]) / f"Dataset{base:03d}_UDASourceCT" / f"{phantoms.trainer}__{PLANS}__2d"
            / "fold_all")


def run_and_kill_when(config_file: Path, env: dict[str, str], log: Path, ready) -> object:
    """Starts the run in a process group of its own, calls ``ready()`` until it returns something, then SIGKILLs
    the whole group (the pipeline and the stage command it runs) and returns that."""
    with open(log, "w") as output:
        process = subprocess.Popen(["nnUNetv2_uda_run", str(config_file)], env=env, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        deadline, seen = time.time() + 600, None
        while time.time() < deadline and process.poll() is None and not (seen := ready()):
            time.sleep(POLL_SECONDS)
        if seen:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert seen, f"the moment to kill never came; the run said:\n{log.read_text()[-4000:]}"
    return seen


def visible_files(folder: Path) -> set[str]:
    """Relative paths of the files under ``folder`` outside hidden (staging) folders."""
    return {str(path.relative_to(folder)) for path in folder.rglob("*")
            if path.is_file() and not any(is_hidden(part) for part in path.relative_to(folder).parts)}


def comparable(files: set[str]) -> set[str]:
    """File names as an uninterrupted and a resumed run share them: nnU-Net names each training log by its start
    time (a resumed training writes a second one) and parts folders carry the step's hash and the network's
    fingerprint. The CycleGAN branch of the two-branch run is left out."""
    names = {re.sub(r"^parts/([^/]+)/[^/]+/", r"parts/\1/*/", name) for name in files if "cyclegan" not in name}
    return {re.sub(r"training_log_[\d_]+\.txt", "training_log.txt", name) for name in names}


def epochs_logged(training_log: Path) -> list[int]:
    return [int(epoch) for epoch in re.findall(r"^\S+ \S+: Epoch (\d+) *$", training_log.read_text(), re.MULTILINE)]


def test_sigkill_in_training_and_in_a_prediction_part_then_rerun_ends_as_an_uninterrupted_run(
        phantoms, two_branch_run, nnunet_env, run_command):
    config_file = config(phantoms, "killed", KILLED_BASE)
    out, fold = phantoms.root / "killed", fold_folder(phantoms, nnunet_env, KILLED_BASE)

    # 1. SIGKILL while nnUNetv2_train is in its second (last) epoch (the first has ended: its checkpoint is there)
    def training_underway() -> bool:
        logs = sorted(fold.glob("training_log_*.txt"))
        return bool(logs) and 1 in epochs_logged(logs[0])

    run_and_kill_when(config_file, nnunet_env, phantoms.root / "kill1.log", training_underway)
    assert not (fold / "checkpoint_final.pth").exists(), "the training ended before the kill"
    assert (fold / "checkpoint_best.pth").is_file()

    # 2. rerun: the training continues from nnU-Net's checkpoint (--c), epochs are not restarted; then SIGKILL while
    # the second prediction part is being written (the parts run at once, as Dask tasks in worker processes of the
    # run's process group, so the first may be complete or not)
    manifest = Manifest(out)
    parts_step = out / "parts" / "pseudolabel_ct"

    def second_part_underway() -> tuple[list[str]] | None:
        staged = [path for path in parts_step.rglob("*.nii.gz") if STAGING_PREFIX in str(path)
                  and "-part_1-" in str(path)]
        return (sorted(path.name for path in parts_step.glob("*/part_*")),) if staged else None

    (done_at_kill,) = run_and_kill_when(config_file, nnunet_env, phantoms.root / "kill2.log", second_part_underway)
    second = (phantoms.root / "kill2.log").read_text()
    match = re.search(r"train_ct: continuing nnU-Net's training from (\S+) \(epochs done: (\d+)\)", second)
    assert match and Path(match[1]) == fold / "checkpoint_best.pth", second[-4000:]
    continued_at = int(match[2])
    assert continued_at >= 1
    train_log = (out / "logs" / "train_ct.log").read_text()
    commands = [line for line in train_log.splitlines() if line.startswith("$ nnUNetv2_train")]
    assert len(commands) == 2 and commands[1].endswith(" --c") and not commands[0].endswith(" --c"), commands
    training_logs = sorted(fold.glob("training_log_*.txt"), key=lambda path: path.stat().st_mtime)
    assert len(training_logs) == 2
    assert epochs_logged(training_logs[1]) == list(range(continued_at, phantoms.epochs))  # from the checkpoint on
    assert (fold / "checkpoint_final.pth").is_file()
    manifest.reload()
    assert manifest.stages["train_ct"]["finished"] and not manifest.stages["pseudolabel_ct"]["finished"]
    assert "part_1" not in done_at_kill  # part 1 was still being written: not under its final name
    for part in parts_step.glob("*/part_*"):  # a part under its final name is complete
        assert len(list(part.glob("*.nii.gz"))) == phantoms.mri_cases // 2, part

    # 3. rerun to the end: complete parts are kept, the killed ones are predicted again
    statuses = run_command(["nnUNetv2_uda_run", config_file]).stdout
    assert "[4/4] pseudolabel_ct: resuming" in statuses and "[3/4] train_ct: skipped" in statuses
    for part in (0, 1):
        log = (out / "logs" / f"pseudolabel_ct_part{part}.log").read_text()
        assert log.count("$ nnUNetv2_predict_fast") == (1 if f"part_{part}" in done_at_kill else 2), part

    # the same outcome as the uninterrupted run: the same steps finished and the same files produced, here and in
    # nnU-Net's folders (network weights differ: nnU-Net's CPU training is not seeded, so the resumed network is
    # compared by its files, and its predictions with a fresh prediction by the same network)
    uninterrupted = two_branch_run.out
    reference = Manifest(uninterrupted)
    manifest.reload()
    assert {s for s, r in manifest.stages.items() if r["finished"]} == set(STEPS)
    assert {s for s, r in reference.stages.items() if r["finished"] and "cyclegan" not in s} == set(STEPS)
    assert comparable(visible_files(out)) == comparable(visible_files(uninterrupted))
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        folder = Path(nnunet_env[variable])
        assert comparable(visible_files(folder / f"Dataset{KILLED_BASE}_UDASourceCT")) == comparable(
            visible_files(folder / f"Dataset{two_branch_run.dataset_id_base}_UDASourceCT")), variable
    assert {"checkpoint_final.pth", "checkpoint_best.pth"} <= {p.name for p in fold.iterdir()}
    assert not (fold / "checkpoint_latest.pth").exists()
    reference_prediction = phantoms.root / "killed_run_reference_prediction"
    run_command(["nnUNetv2_predict_fast", "-i", phantoms.root / "inputs" / "Dataset992_PhantomMRI" / "imagesTr",
                 "-o", reference_prediction, "-d", KILLED_BASE, "-c", "2d", "-tr", phantoms.trainer, "-p", PLANS,
                 "-f", "all", "-device", "cpu", "-npp", 1, "-nps", 1])
    predicted = sorted((out / "pseudolabels" / "ct").glob("*.nii.gz"))
    assert len(predicted) == phantoms.mri_cases
    for label_map in predicted:
        fresh = sitk.ReadImage(str(reference_prediction / label_map.name))
        merged = sitk.ReadImage(str(label_map))
        assert np.array_equal(sitk.GetArrayFromImage(merged), sitk.GetArrayFromImage(fresh)), label_map.name
        assert merged.GetSpacing() == fresh.GetSpacing() and merged.GetOrigin() == fresh.GetOrigin()


def snapshot(folders: list[Path]) -> dict[str, tuple[int, int]]:
    return {str(path): (path.stat().st_size, path.stat().st_mtime_ns) for folder in folders
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_second_run_with_the_same_dataset_id_base_is_refused_and_the_first_keeps_its_data(
        phantoms, two_branch_run, nnunet_env):
    uninterrupted, base = two_branch_run.out, two_branch_run.dataset_id_base
    raw = Path(nnunet_env["nnUNet_raw"]) / f"Dataset{base}_UDASourceCT"
    owner = json.loads((raw / "dataset.json").read_text())[OWNER_KEY]
    assert owner == {"output_folder": str(uninterrupted), "run_id": Manifest(uninterrupted).run_id}
    first_run = [Path(nnunet_env[variable]) / raw.name
                 for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")] + [uninterrupted]
    before = snapshot(first_run)
    second = config(phantoms, "second", base)
    for check in (["--check"], []):
        result = subprocess.run(["nnUNetv2_uda_run", str(second), *check], env=nnunet_env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        for expected in (f"{raw} belongs to the nnUNetv2_uda_run run in {uninterrupted}", owner["run_id"],
                         f"'dataset_id_base' (now {base}"):
            assert expected in result.stderr, result.stderr
    assert not (phantoms.root / "second").exists()
    assert snapshot(first_run) == before
