"""Test-time ensembles of a finished ``bench/ct2mr_real.py`` run: its networks' probabilities averaged, then scored.

    python3 bench/test_time_ensemble.py OUTPUT                # OUTPUT: the --output of a finished run
    python3 bench/test_time_ensemble.py OUTPUT --name ct      # another self-training than the row only CT + PLF's

Each network of one self-training (the CT network, the self-training network, the final network) predicts the run's
validation images with ``nnUNetv2_predict_fast --save_probabilities``; ``nnUNetv2_ensemble`` averages each variant's
probabilities (a single network goes through it too, so every variant is decided the same way, at the image's
geometry); ``nnUNetv2_uda_largest_component`` and ``nnUNetv2_uda_evaluate`` follow as in the run. Writes
``OUTPUT/test_time_ensemble/`` and prints the Table 7 form. The validation labels score only; nothing is chosen here.
Not run in CI (it needs a finished real-data run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

from nnunetv2_uda.command_line import command
from nnunetv2_uda.evaluation.tables import format_table7
from nnunetv2_uda.pipeline.datasets import NNUNET_FOLDERS, nnunet_folders
from nnunetv2_uda.pipeline.manifest import Manifest

NETWORKS = {  # name -> the run step that trained it
    "CT network": "train_{source}", "self-training network": "selftrain_{name}", "final network": "final_{name}",
}
VARIANTS = {  # name -> networks averaged; the first is the baseline, the second the pre-registered primary
    "final network": ["final network"],
    "CT + self-training + final": ["CT network", "self-training network", "final network"],
    "CT + final": ["CT network", "final network"],
    "self-training + final": ["self-training network", "final network"],
}


def run(arguments: list, env: dict[str, str]) -> None:
    returncode = subprocess.run([str(argument) for argument in arguments], env=env).returncode
    if returncode:
        raise SystemExit(f"{arguments[0]} failed (exit {returncode}); its output is above")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="the --output folder of a finished bench/ct2mr_real.py run (its "
                                                  "nnU-Net folders: nnUNet_* where set, as for the run, else under it)")
    parser.add_argument("--name", default="ct",
                        help="the self-training whose networks are ensembled: 'ct' (rows only CT + PLF), 'asit', "
                             "... as in the run's step names final_<name> (default: ct)")
    parser.add_argument("--source", default="ct",
                        help="the network the self-training started from, as in train_<source> (default: ct)")
    args = parser.parse_args()
    env = {**os.environ, **{name: str(args.output / name) for name in NNUNET_FOLDERS if not os.environ.get(name)}}
    pipeline = args.output / "pipeline"
    stages = Manifest(pipeline, roots=nnunet_folders(env)).stages
    config = json.loads((pipeline / "run.json").read_text())["config"]
    steps = {network: step.format(source=args.source, name=args.name) for network, step in NETWORKS.items()}
    unfinished = [step for step in steps.values() if not stages.get(step, {}).get("finished")]
    if unfinished:
        raise SystemExit(f"{pipeline}: step(s) {', '.join(unfinished)} not finished; finish the run first")
    images = pipeline / "inputs" / "validation_images"
    work = args.output / "test_time_ensemble"
    seconds: dict[str, float] = {}
    for network, step in steps.items():
        model = stages[step]["outputs"]
        start = time.perf_counter()
        run(["nnUNetv2_predict_fast", "-i", images, "-o", work / "probabilities" / step, "-d", model["dataset"],
             "-tr", model["trainer"], "-p", model["plans"], "-c", model["configuration"], "-f", model["fold"],
             "-device", config["device"], "--save_probabilities", "--continue_prediction"], env)
        seconds[f"predict, {network}"] = time.perf_counter() - start
    summaries = {}
    for variant, networks in VARIANTS.items():
        folder = work / variant.replace(" + ", "_").replace(" ", "_")
        start = time.perf_counter()
        if not (folder / "labels").is_dir():
            run(["nnUNetv2_ensemble", "-i", *[work / "probabilities" / steps[network] for network in networks],
                 "-o", folder / "labels", "-np", config["num_processes"]], env)
        if not (folder / "labels_largest_component").is_dir():
            run(["nnUNetv2_uda_largest_component", folder / "labels", folder / "labels_largest_component",
                 "-np", config["num_processes"]], env)
        seconds[f"ensemble, {variant}"] = time.perf_counter() - start
        if not (folder / "evaluation" / "summary.json").is_file():
            run(["nnUNetv2_uda_evaluate", folder / "labels_largest_component", config["validation_labels"], "-o",
                 folder / "evaluation", "-np", config["num_processes"]], env)
        summaries[variant] = json.loads((folder / "evaluation" / "summary.json").read_text())["summary"]
    table = format_table7(summaries, digits=1, markdown=True)
    times = "\n".join(f"- {what}: {value:.1f} s" for what, value in seconds.items())
    (work / "report.md").write_text(f"# Test-time ensembles, self-training '{args.name}'\n\n{table}\n\n"
                                    f"Wall times (a step found done counts ~0 s):\n{times}\n")
    print(f"{table}\n\n{times}\n\nreport: {work / 'report.md'}")


if __name__ == "__main__":
    command(main)()
