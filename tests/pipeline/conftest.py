"""Small runs of ``nnUNetv2_uda_run`` on phantoms, shared by the tests that drive the whole command (cluster,
reliability): one set of phantoms per test module, and the config of a run on them that trains for seconds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

EPOCHS, ITERATIONS = 2, 4  # of every network a phantom run trains


@dataclass(frozen=True)
class Phantoms:
    """``nnUNetv2_uda_make_phantoms`` output in ``root/inputs``: 3 CT and ``mri_cases`` MRI cases of 16 x 48 x 48."""

    root: Path
    mri_cases: int

    def config(self, name: str, base: int, **overrides) -> Path:
        """Writes ``root/<name>.yaml``: row "only CT" into ``root/<name>`` under dataset ids from ``base``, on the CPU
        with the short-schedule trainer for EPOCHS x ITERATIONS; ``overrides`` replace or add keys."""
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
            "source_training": {"epochs": EPOCHS, "iterations_per_epoch": ITERATIONS},
            **overrides,
        }
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        return path


@pytest.fixture(scope="module")
def phantoms(run_command, tmp_path_factory) -> Phantoms:
    """Phantoms with 6 MRI cases (three per prediction part when a run predicts in two parts)."""
    phantoms = Phantoms(tmp_path_factory.mktemp("phantom_runs"), mri_cases=6)
    run_command(["nnUNetv2_uda_make_phantoms", phantoms.root / "inputs", "--num_ct", 3, "--num_mri",
                 phantoms.mri_cases, "--shape", 16, 48, 48, "--seed", 1])
    return phantoms
