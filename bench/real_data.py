"""What the real-data benchmarks share: where the data is, their common flags, and nnU-Net's folders for a run."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
CT_DATASET = "Dataset801_BTCVCT"
MRI_DATASET = "Dataset802_CHAOST2"
ORGANS = ("liver", "right kidney", "left kidney", "spleen")


def add_data_argument(parser: argparse.ArgumentParser, flag: str = "--data") -> None:
    """The real-data folder flag, explained the same way in every benchmark that reads ../shared/data."""
    parser.add_argument(flag, type=Path, default=DEFAULT_DATA,
                        help=f"folder holding {CT_DATASET} and {MRI_DATASET}. Default: {DEFAULT_DATA}")


def add_common_arguments(parser: argparse.ArgumentParser, default_output: str) -> None:
    """--data, --output and --device, explained the same way in every real-data benchmark."""
    add_data_argument(parser)
    parser.add_argument("--output", type=Path, default=None,
                        help=f"output folder (nnU-Net folders unless nnUNet_* are set, results, logs). "
                             f"Default: bench_output/{default_output}")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"), help="Default: cpu")


def real_data_present(data: Path, script: str) -> bool:
    """False, after saying so, where the real data is absent (CI): the benchmarks then exit successfully."""
    if (data / CT_DATASET).is_dir() and (data / MRI_DATASET).is_dir():
        return True
    print(f"{script}: {data} does not hold {CT_DATASET} and {MRI_DATASET}; this benchmark needs the real data and "
          f"is not run in CI. Nothing to do.")
    return False


def nnunet_environment(output: Path) -> dict[str, str]:
    """The environment for nnU-Net's commands: its folders under ``output`` unless already set, augmentation in
    the trainer's process and 2 worker processes (a 2-core machine)."""
    env = dict(os.environ)
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        if not env.get(variable):
            env[variable] = str(output / variable)
        Path(env[variable]).mkdir(parents=True, exist_ok=True)
    env.setdefault("nnUNet_n_proc_DA", "0")
    env.setdefault("nnUNet_def_n_proc", "2")
    return env
