"""How many augmentation worker processes a CPU training should use: nnU-Net's ``nnUNet_n_proc_DA``, side by side.

    python3 bench/augmentation_workers.py PREPROCESSED_FOLDER DATASET [--workers 0 1 2] [--iterations 20]

Trains one budget trainer (2 epochs of N iterations, no final validation) once per worker count, one after the
other, on a dataset nnU-Net has already preprocessed (e.g. a finished or running benchmark's), into a scratch
results folder, and prints each count's seconds per iteration in the second epoch (the first pays for start-up)
and its ratio to the first count. With 0, augmentation runs in the training process between iterations; with k > 0,
k worker processes prepare batches while the network trains. The pipeline and the benchmarks set 0 by default; this
says whether that is right on the machine at hand. Not run in CI.
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
EPOCH_TIME = re.compile(r"Epoch time: ([0-9.]+) s")


def seconds_per_iteration(log: str, iterations: int) -> float:
    """The second epoch's time over its training and validation iterations (max(1, N // 5) of the latter, which
    cost a forward pass each: counted as iterations too, the same for every worker count)."""
    times = [float(value) for value in EPOCH_TIME.findall(log)]
    if len(times) < 2:
        raise RuntimeError(f"expected two 'Epoch time' lines in nnUNetv2_train's output, found {len(times)}")
    return times[1] / (iterations + max(1, iterations // 5))


def train(preprocessed: Path, dataset: str, trainer: str, configuration: str, plans: str, iterations: int,
          workers: int, results: Path) -> float:
    env = {**os.environ, "nnUNet_preprocessed": str(preprocessed), "nnUNet_results": str(results),
           "nnUNet_raw": str(results), "nnUNet_n_proc_DA": str(workers)}
    command = ["nnUNetv2_train", dataset, configuration, "all", "-tr", f"{trainer}_2epochs_{iterations}iters_noval",
               "-p", plans, "-device", "cpu"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"augmentation_workers: {' '.join(command)} failed with nnUNet_n_proc_DA={workers}:\n"
                 f"{result.stderr[-2000:]}")
    return seconds_per_iteration(result.stdout, iterations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preprocessed", type=Path, help="nnU-Net's preprocessed folder holding the dataset")
    parser.add_argument("dataset", help="dataset id or name, as nnUNetv2_train takes it")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2],
                        help="values of nnUNet_n_proc_DA to compare; the first is the reference (default: 0 1 2)")
    parser.add_argument("--iterations", type=int, default=20, help="training iterations per epoch (default: 20)")
    parser.add_argument("--trainer", default=DEFAULT_TRAINER, help=f"trainer class (default: {DEFAULT_TRAINER})")
    parser.add_argument("--configuration", default="2d", help="default: 2d")
    parser.add_argument("--plans", default="nnUNetPlansUDASmall", help="default: nnUNetPlansUDASmall")
    args = parser.parse_args()
    if not args.preprocessed.is_dir():
        parser.error(f"preprocessed folder {args.preprocessed} does not exist")
    if any(workers < 0 for workers in args.workers) or args.iterations < 1:
        parser.error("--workers must be >= 0 and --iterations >= 1")
    timings = {}
    with tempfile.TemporaryDirectory(prefix="augmentation_workers_") as scratch:
        for workers in args.workers:
            timings[workers] = train(args.preprocessed, args.dataset, args.trainer, args.configuration, args.plans,
                                     args.iterations, workers, Path(scratch) / f"results_{workers}")
            print(f"nnUNet_n_proc_DA={workers}: {timings[workers]:.2f} s per iteration", flush=True)
    reference = timings[args.workers[0]]
    print(f"\n{args.trainer}, {args.configuration}, {os.cpu_count()} CPU cores, {args.iterations} iterations per "
          f"epoch, second epoch:")
    for workers, seconds in timings.items():
        print(f"  nnUNet_n_proc_DA={workers}: {seconds:.2f} s per iteration, {reference / seconds:.2f}x the speed of "
              f"nnUNet_n_proc_DA={args.workers[0]}")


if __name__ == "__main__":
    main()
