"""Two nnU-Net trainings at once on one machine: OpenMP's default (spinning) waits against passive waits, in one run.

nnU-Net's ``nnUNetv2_train`` on the CPU uses as many torch threads as the machine has cores. When two trainings (or a
training and a prediction) run at once, libgomp's threads spin while they wait and steal the cores the other
process computes on. This benchmark trains the small network on phantoms with the real commands, four ways, and
prints each wall time and the ratios measured side by side:

1. one training alone (default waits);
2. two trainings at once (default waits);
3. two trainings at once with ``OMP_WAIT_POLICY=PASSIVE``, what the pipeline's local Dask cluster and the test
   workers set (:func:`nnunetv2_uda.pipeline.cluster.wait_passively_on_shared_cores`);
4. one training alone with ``OMP_WAIT_POLICY=PASSIVE``.

    python bench/shared_cores.py                    # about 5 minutes on 2 CPU cores
    python bench/shared_cores.py --iterations 40

Not run in CI.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

PHANTOM_CT_ID = 991
PLANS = "nnUNetPlansUDASmall"
TARGET_SPACING = (10, 4, 4)  # the demo recipe's: 96 x 96 slices of these phantoms (the paper's 0.81 mm gives 512)


def run(args: list, env: dict[str, str]) -> None:
    subprocess.run([str(a) for a in args], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def trainings(env: dict[str, str], names: list[str], wait_policy: str | None) -> float:
    """Wall seconds of ``nnUNetv2_train`` of each budget trainer in ``names``, all started at once."""
    env = dict(env)
    env.pop("OMP_WAIT_POLICY", None)
    if wait_policy is not None:
        env["OMP_WAIT_POLICY"] = wait_policy
    start = time.perf_counter()
    processes = [subprocess.Popen(["nnUNetv2_train", str(PHANTOM_CT_ID), "2d", "all", "-tr", name, "-p", PLANS,
                                   "-device", "cpu"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
                 for name in names]
    if any(process.wait() != 0 for process in processes):
        raise SystemExit(f"shared_cores: nnUNetv2_train failed for one of {names}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20,
                        help="training iterations of each run, in one epoch (default 20)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        env = {**os.environ, "nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "preprocessed"),
               "nnUNet_results": str(root / "results"), "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1"}
        print(f"shared_cores: phantoms and plans in {root} ({os.cpu_count()} cores)")
        run(["nnUNetv2_uda_make_phantoms", root / "raw", "--num_ct", 6, "--num_mri", 3, "--shape", 32, 96, 96], env)
        run(["nnUNetv2_plan_and_preprocess", "-d", PHANTOM_CT_ID, "-pl", "nnUNetPlannerUDASmall", "-c", "2d",
             "-np", 1, "-overwrite_target_spacing", *TARGET_SPACING], env)
        trainer = "nnUNetTrainerUDAQuick_1epochs_{}iters_noval"
        names = iter(trainer.format(args.iterations + offset) for offset in range(8))  # one results folder each
        times = {
            "one alone": trainings(env, [next(names)], None),
            "two at once": trainings(env, [next(names), next(names)], None),
            "two at once, PASSIVE": trainings(env, [next(names), next(names)], "PASSIVE"),
            "one alone, PASSIVE": trainings(env, [next(names)], "PASSIVE"),
        }
    print(f"\nnnUNetv2_train, {args.iterations} iterations of the small 2d network, wall time (s):")
    for name, seconds in times.items():
        print(f"  {name:<22}{seconds:8.1f}")
    print(f"two at once / one alone: default {times['two at once'] / times['one alone']:.2f}, "
          f"PASSIVE {times['two at once, PASSIVE'] / times['one alone, PASSIVE']:.2f}")
    print(f"two at once, default / PASSIVE: {times['two at once'] / times['two at once, PASSIVE']:.2f}")


if __name__ == "__main__":
    main()
