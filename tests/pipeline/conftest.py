"""Small runs of ``nnUNetv2_uda_run`` on phantoms, shared by the tests that drive the whole command (cluster,
reliability): one set of phantoms, the config of a run on them that trains for seconds, and one run with two
branches on Dask that both modules read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from nnunetv2_uda.pipeline.nnunet_commands import budget


@dataclass(frozen=True)
class Phantoms:
    """``nnUNetv2_uda_make_phantoms`` output in ``root/inputs``: 3 CT and ``mri_cases`` MRI cases of 16 x 48 x 48."""

    root: Path
    mri_cases: int
    epochs: ClassVar[int] = 2  # of every network a phantom run trains (a kill in training waits for the first)
    iterations: ClassVar[int] = 4
    trainer: ClassVar[str] = budget(epochs, iterations, "nnUNetTrainerUDAQuick")  # the CT network's, by that budget

    def config(self, name: str, base: int, **overrides) -> Path:
        """Writes ``root/<name>.yaml``: row "only CT" into ``root/<name>`` under dataset ids from ``base``, on the CPU
        with the short-schedule trainer for ``epochs`` x ``iterations``; ``overrides`` replace or add keys."""
        values = {
            "ct_dataset": str(self.root / "inputs" / "Dataset991_PhantomCT"),
            "mri_dataset": str(self.root / "inputs" / "Dataset992_PhantomMRI"),
            "output_folder": str(self.root / name),
            "dataset_id_base": base,
            "device": "cpu",
            "configuration": "2d",
            "trainer": "nnUNetTrainerUDAQuick",
            "target_spacing": [15.0, 8.0, 8.0],  # the tiny phantoms' own spacing
            "num_processes": 1,
            "ablation": "only_ct",
            "source_training": {"epochs": self.epochs, "iterations_per_epoch": self.iterations},
            **overrides,
        }
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        return path


@pytest.fixture(scope="session")
def phantoms(run_command, tmp_path_factory) -> Phantoms:
    """Phantoms with 6 MRI cases (three per prediction part when a run predicts in two parts)."""
    phantoms = Phantoms(tmp_path_factory.mktemp("phantom_runs"), mri_cases=6)
    run_command(["nnUNetv2_uda_make_phantoms", phantoms.root / "inputs", "--num_ct", 3, "--num_mri",
                 phantoms.mri_cases, "--shape", 16, 48, 48, "--seed", 1])
    return phantoms


@dataclass(frozen=True)
class FinishedRun:
    out: Path
    dataset_id_base: int
    stdout: str


TWO_BRANCH_BASE = 760


@pytest.fixture(scope="session")
def two_branch_run(phantoms, run_command) -> FinishedRun:
    """Rows "only CT" and "CycleGAN" (independent branches) as Dask tasks on two workers (``parallel_steps: 2``),
    each prediction step in two parts, run uninterrupted; its "only CT" steps are a phantom run's defaults, so a
    run of row "only CT" alone ends with the same files."""
    config = phantoms.config("two_branches", TWO_BRANCH_BASE, ablation=["only_ct", "cyclegan"], parallel_steps=2,
                             num_parts=2, translator={"iterations": 1, "batch_size": 2, "slice_size": 48})
    return FinishedRun(phantoms.root / "two_branches", TWO_BRANCH_BASE,
                       run_command(["nnUNetv2_uda_run", config]).stdout)
