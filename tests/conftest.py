"""Shared fixtures: nnU-Net folders, a tiny labeled dataset, and one tiny model trained with the real commands.

Everything that trains or predicts goes through the installed ``nnUNetv2_*`` commands as subprocesses, the way a
user runs them; only the nnU-Net folder variables (and nnU-Net's CPU knobs) are set for them.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_uda.flare_labels import FLARE_LABELS
from nnunetv2_uda.pipeline.cluster import wait_passively_on_shared_cores

if os.environ.get("PYTEST_XDIST_WORKER"):  # with -n, test workers (and the commands they start) share the cores
    wait_passively_on_shared_cores()  # before torch starts its threads in this worker

TINY_DATASET_ID = 900
TINY_DATASET_NAME = f"Dataset{TINY_DATASET_ID:03d}_TinyCT"
TINY_SHAPE = (32, 64, 64)  # z, y, x
TINY_SPACING = (2.5, 0.81, 0.81)  # z, y, x: the paper's target spacing, so preprocessing does not resample
TINY_NUM_CASES = 4
# the short-schedule trainer (Adam, organ-centred patches; a subclass of nnUNetTrainerUDASmall): the paper's SGD
# learns only the liver in 120 iterations, and not always (liver Dice 0.30 in one CI run), which made every test
# that reads this model flaky
TINY_TRAINER = "nnUNetTrainerUDAQuick_3epochs_40iters"
# organ -> HU (FLARE ids 1, 2, 3): well apart, since nnU-Net's CT normalization clips everything outside the organs'
# intensity range (fat, air) to its lower end: the liver, whose Dice the tests check, sits well above that end
TINY_ORGANS = {"liver": 190.0, "right kidney": 250.0, "spleen": 140.0}
TINY_LABELS = {name: FLARE_LABELS[name] for name in ("background", *TINY_ORGANS)}


@dataclass(frozen=True)
class TinyDataset:
    dataset_id: int
    name: str
    folder: Path

    @property
    def images_folder(self) -> Path:
        return self.folder / "imagesTr"

    @property
    def labels_folder(self) -> Path:
        return self.folder / "labelsTr"


@dataclass(frozen=True)
class TinyModel:
    dataset_id: int
    configuration: str
    trainer: str
    plans: str
    fold: str
    model_folder: Path
    images_folder: Path
    labels_folder: Path


def _completed_or_fail(result: subprocess.CompletedProcess, args: list[str]) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        tail = lambda text: "\n".join(text.splitlines()[-60:])  # noqa: E731
        pytest.fail(f"command failed ({result.returncode}): {' '.join(map(str, args))}\n"
                    f"--- stdout ---\n{tail(result.stdout)}\n--- stderr ---\n{tail(result.stderr)}")
    return result


NNUNET_FIXTURES = {"tiny_plans", "train_tiny", "tiny_trained_model"}  # they run nnUNetv2_plan_and_preprocess/train
PHANTOM_RUN_FIXTURES = {"phantoms", "two_branch_run"}  # tests/pipeline/conftest.py: runs shared by two modules


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs nnU-Net to plan or train, through a fixture, is in the slow tier (``-m "not slow"`` skips
    it) like the tests marked slow by hand.

    With ``-n`` (pytest-xdist, ``--dist loadgroup``), every test is in one group that runs on one worker: the tests of
    a session fixture that trains (the tiny model, the phantom runs) together, every other test with its module, so
    that no worker repeats another's module-scoped run. The groups with the most slow tests come first: xdist hands
    groups to workers in collection order, and a long group handed out last would run alone at the end."""
    groups: dict[str, str] = {}
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if NNUNET_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)
            group = "tiny_model"
        elif PHANTOM_RUN_FIXTURES & fixtures:
            group = "phantom_runs"
        else:
            group = item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
        groups[item.nodeid] = group
    if os.environ.get("PYTEST_XDIST_WORKER"):
        slow_tests = Counter(groups[item.nodeid] for item in items if item.get_closest_marker("slow"))
        items.sort(key=lambda item: -slow_tests[groups[item.nodeid]])  # stable: a group keeps its tests' order


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a test module: on a shared 2-core machine, multi-threaded small convolutions mostly wait
    on each other. Use with ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def nnunet_env(tmp_path_factory) -> dict[str, str]:
    """nnU-Net's folder variables in a session tmp dir, exported for in-process use and returned for subprocesses.

    ``nnUNet_n_proc_DA=0`` keeps data augmentation in the trainer's process: on a 2-core machine, nnU-Net's
    default of many augmentation workers only adds start-up time.
    """
    root = tmp_path_factory.mktemp("nnunet")
    env = {
        "nnUNet_raw": str(root / "raw"),
        "nnUNet_preprocessed": str(root / "preprocessed"),
        "nnUNet_results": str(root / "results"),
        "nnUNet_n_proc_DA": "0",
        "nnUNet_def_n_proc": "1",
    }
    for folder in ("raw", "preprocessed", "results"):
        (root / folder).mkdir()
    os.environ.update(env)
    return {**os.environ, **env}


@pytest.fixture(scope="session")
def run_command(nnunet_env):
    """Runs a command line like a user would; fails the test with the command's output if it exits non-zero."""

    def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
        args = [str(a) for a in args]
        result = subprocess.run(args, env=env or nnunet_env, capture_output=True, text=True, timeout=timeout)
        return _completed_or_fail(result, args)

    return run


def make_tiny_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like volume with three organs as ellipsoids that move and change size from case to case."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in TINY_SHAPE], indexing="ij")
    image = np.full(TINY_SHAPE, -1000.0)
    body = (y / 0.85) ** 2 + (x / 0.95) ** 2 < 1
    image[body] = -80.0  # fat
    label = np.zeros(TINY_SHAPE, dtype=np.uint8)
    centres = {"liver": (0.2, -0.1, -0.4), "spleen": (0.25, 0.1, 0.55), "right kidney": (-0.3, 0.45, -0.45)}
    radii = {"liver": (0.6, 0.4, 0.35), "spleen": (0.4, 0.3, 0.25), "right kidney": (0.4, 0.22, 0.2)}
    for organ, centre in centres.items():
        c = np.array(centre) + rng.uniform(-0.06, 0.06, 3)
        r = np.array(radii[organ]) * rng.uniform(0.9, 1.1, 3)
        inside = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 < 1
        label[inside & (label == 0)] = FLARE_LABELS[organ]
        image[inside] = TINY_ORGANS[organ]
    image += rng.normal(0, 8, TINY_SHAPE)
    return image.astype(np.float32), label


def write_nifti(array: np.ndarray, path: Path, spacing_zyx: tuple[float, ...] = TINY_SPACING) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    sitk.WriteImage(image, str(path))


def write_tiny_dataset(folder: Path, num_cases: int = TINY_NUM_CASES, seed: int = 0) -> Path:
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    for i in range(num_cases):
        image, label = make_tiny_case(seed + i)
        write_nifti(image, folder / "imagesTr" / f"tiny_{i:03d}_0000.nii.gz")
        write_nifti(label, folder / "labelsTr" / f"tiny_{i:03d}.nii.gz")
    dataset_json = {"channel_names": {"0": "CT"}, "labels": TINY_LABELS, "numTraining": num_cases,
                    "file_ending": ".nii.gz"}
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return folder


@pytest.fixture(scope="session")
def tiny_dataset(nnunet_env) -> TinyDataset:
    folder = write_tiny_dataset(Path(nnunet_env["nnUNet_raw"]) / TINY_DATASET_NAME)
    return TinyDataset(TINY_DATASET_ID, TINY_DATASET_NAME, folder)


@pytest.fixture(scope="session")
def tiny_plans(tiny_dataset, run_command) -> Path:
    """The tiny dataset planned with our planner and preprocessed for 2d; returns the plans file."""
    run_command(["nnUNetv2_plan_and_preprocess", "-d", tiny_dataset.dataset_id, "-pl", "nnUNetPlannerUDASmall",
                 "-c", "2d", "-np", "1"])
    return Path(os.environ["nnUNet_preprocessed"]) / tiny_dataset.name / "nnUNetPlansUDASmall.json"


@pytest.fixture
def train_tiny(tiny_dataset, tiny_plans, run_command) -> Callable[[str], Path]:
    """Trains a trainer by name with nnUNetv2_train on the tiny dataset (2d, fold 'all', CPU), as a user would;
    returns its fold folder."""

    def train(trainer: str) -> Path:
        run_command(["nnUNetv2_train", tiny_dataset.dataset_id, "2d", "all", "-tr", trainer,
                     "-p", "nnUNetPlansUDASmall", "-device", "cpu"])
        return (Path(os.environ["nnUNet_results"]) / tiny_dataset.name / f"{trainer}__nnUNetPlansUDASmall__2d"
                / "fold_all")

    return train


@pytest.fixture(scope="session")
def tiny_trained_model(tiny_dataset, tiny_plans, run_command) -> TinyModel:
    """nnUNetTrainerUDAQuick (a budget variant) trained on the tiny dataset in 2d, fold 'all', on the CPU."""
    run_command(["nnUNetv2_train", tiny_dataset.dataset_id, "2d", "all", "-tr", TINY_TRAINER,
                 "-p", "nnUNetPlansUDASmall", "-device", "cpu"])
    model_folder = (Path(os.environ["nnUNet_results"]) / tiny_dataset.name
                    / f"{TINY_TRAINER}__nnUNetPlansUDASmall__2d")
    return TinyModel(tiny_dataset.dataset_id, "2d", TINY_TRAINER, "nnUNetPlansUDASmall", "all", model_folder,
                     tiny_dataset.images_folder, tiny_dataset.labels_folder)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    denominator = a.sum() + b.sum()
    return 1.0 if denominator == 0 else float(2 * np.logical_and(a, b).sum() / denominator)
