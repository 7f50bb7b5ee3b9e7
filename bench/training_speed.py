"""Training speed of environment settings side by side: augmentation workers, CPU mixed precision.

    python3 bench/training_speed.py PREPROCESSED_FOLDER DATASET [--compare SETTING [SETTING ...]] [--iterations 20]

A SETTING is one or more environment assignments joined by commas, e.g. ``nnUNet_uda_cpu_bf16=0`` or
``nnUNet_n_proc_DA=1,nnUNet_uda_cpu_bf16=0``. For each, one after the other, the script trains one budget trainer
(2 epochs of N iterations, no final validation) on a dataset nnU-Net has already preprocessed (e.g. a finished or
running benchmark's) into a scratch results folder, and prints its seconds per iteration in the second epoch (the
first pays for start-up) and its speed against the first setting. Every setting starts from
``nnUNet_n_proc_DA=0`` (the pipeline's default) and the rest of the caller's environment.

- ``nnUNet_n_proc_DA``: 0 augments in the training process between iterations; k > 0 starts k worker processes that
  prepare batches while the network trains.
- ``nnUNet_uda_cpu_bf16``: 0 trains in float32; unset, our trainers train under bfloat16 autocast on a CPU with
  bfloat16 units (:mod:`nnunetv2_uda.training.cpu_precision`).

Default comparison: ``nnUNet_uda_cpu_bf16=0`` against ``nnUNet_uda_cpu_bf16=1``. Not run in CI.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_TRAINER = "nnUNetTrainerUDAQuickLocationScaleNoMirroring"
DEFAULT_COMPARISON = ["nnUNet_uda_cpu_bf16=0", "nnUNet_uda_cpu_bf16=1"]
EPOCH_TIME = re.compile(r"Epoch time: ([0-9.]+) s")


def parse_setting(text: str) -> dict[str, str]:
    """``NAME=VALUE[,NAME=VALUE ...]`` as a mapping; raises ``ValueError`` naming the part without ``=``."""
    assignments = {}
    for part in text.split(","):
        name, equals, value = part.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"{part!r} is not NAME=VALUE")
        assignments[name.strip()] = value.strip()
    return assignments


def seconds_per_iteration(log: str, iterations: int) -> float:
    """The second epoch's time over its training and validation iterations (max(1, N // 5) of the latter, which
    cost a forward pass each: counted as iterations too, the same for every setting)."""
    times = [float(value) for value in EPOCH_TIME.findall(log)]
    if len(times) < 2:
        raise RuntimeError(f"expected two 'Epoch time' lines in nnUNetv2_train's output, found {len(times)}")
    return times[1] / (iterations + max(1, iterations // 5))


def train(preprocessed: Path, dataset: str, trainer: str, configuration: str, plans: str, iterations: int,
          setting: dict[str, str], results: Path) -> float:
    env = {**os.environ, "nnUNet_preprocessed": str(preprocessed), "nnUNet_results": str(results),
           "nnUNet_raw": str(results), "nnUNet_n_proc_DA": "0", **setting}
    command = ["nnUNetv2_train", dataset, configuration, "all", "-tr", f"{trainer}_2epochs_{iterations}iters_noval",
               "-p", plans, "-device", "cpu"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"training_speed: {' '.join(command)} failed with {setting}:\n{result.stderr[-2000:]}")
    return seconds_per_iteration(result.stdout, iterations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preprocessed", type=Path, help="nnU-Net's preprocessed folder holding the dataset")
    parser.add_argument("dataset", help="dataset id or name, as nnUNetv2_train takes it")
    parser.add_argument("--compare", nargs="+", default=DEFAULT_COMPARISON, metavar="SETTING",
                        help="environment settings to compare, NAME=VALUE[,NAME=VALUE ...] each; the first is the "
                             f"reference (default: {' '.join(DEFAULT_COMPARISON)})")
    parser.add_argument("--iterations", type=int, default=20, help="training iterations per epoch (default: 20)")
    parser.add_argument("--trainer", default=DEFAULT_TRAINER, help=f"trainer class (default: {DEFAULT_TRAINER})")
    parser.add_argument("--configuration", default="2d", help="default: 2d")
    parser.add_argument("--plans", default="nnUNetPlansUDASmall", help="default: nnUNetPlansUDASmall")
    args = parser.parse_args()
    if not args.preprocessed.is_dir():
        parser.error(f"preprocessed folder {args.preprocessed} does not exist")
    if args.iterations < 1:
        parser.error("--iterations must be >= 1")
    try:
        settings = [parse_setting(text) for text in args.compare]
    except ValueError as error:
        parser.error(f"--compare: {error}")
    timings = []
    with tempfile.TemporaryDirectory(prefix="training_speed_") as scratch:
        for index, (text, setting) in enumerate(zip(args.compare, settings, strict=True)):
            timings.append(train(args.preprocessed, args.dataset, args.trainer, args.configuration, args.plans,
                                 args.iterations, setting, Path(scratch) / f"results_{index}"))
            print(f"{text}: {timings[-1]:.2f} s per iteration", flush=True)
    print(f"\n{args.trainer}, {args.configuration}, {os.cpu_count()} CPU cores, {args.iterations} iterations per "
          f"epoch, second epoch:")
    for text, seconds in zip(args.compare, timings, strict=True):
        print(f"  {text}: {seconds:.2f} s per iteration, {timings[0] / seconds:.2f}x the speed of {args.compare[0]}")


if __name__ == "__main__":
    main()
