"""Ranks a finished run's MRI sequences by how plausible their pseudo-labels' organ volumes are, beside the snapshot
uncertainty ranking that MDM used: an offline check of a candidate ranking, on pseudo-labels only.

    python3 bench/sequence_plausibility.py PIPELINE_FOLDER [--source ct]

The criterion, fixed before it was computed on any run (2026-12-07): for each trained organ (the config's ``organs``,
else every label of the CT dataset), the CT training labels give the mean and standard deviation of the organ's log
volume (mL). A pseudo-label's organ scores ``|log v - mean| / std`` capped at 3, and 3 when the organ is absent; a
case scores the mean over organs; a sequence the median over its cases. Lower is more plausible, and ranks first.
Nothing here reads evaluation labels. Not run in CI (it needs a finished run with several sequences).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np

from nnunetv2_uda.command_line import command
from nnunetv2_uda.images import read_label_map
from nnunetv2_uda.pipeline.datasets import nnunet_folders
from nnunetv2_uda.pipeline.manifest import Manifest
from nnunetv2_uda.pseudolabels.label_io import label_files
from nnunetv2_uda.pseudolabels.matching import organ_volumes_ml

CAP = 3.0  # standard deviations: beyond this an organ is simply implausible (an absent organ scores it too)


def organ_ids(ct_dataset: Path, organs: list[str] | None) -> dict[str, int]:
    labels = json.loads((ct_dataset / "dataset.json").read_text())["labels"]
    return {name: int(value) for name, value in labels.items()
            if name != "background" and (not organs or name in organs)}


def log_volume_reference(ct_labels: Path, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each organ's log volume (mL) over the CT cases where it is present."""
    volumes = np.array([organ_volumes_ml(read_label_map(path), ids) for path in label_files(ct_labels).values()])
    logs = np.where(volumes > 0, np.log(np.maximum(volumes, 1e-9)), np.nan)
    return np.nanmean(logs, axis=0), np.nanstd(logs, axis=0)


def implausibility(volumes: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float:
    scores = np.where(volumes > 0, np.abs(np.log(np.maximum(volumes, 1e-9)) - mean) / std, CAP)
    return float(np.minimum(scores, CAP).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", type=Path, help="the output_folder of a finished nnUNetv2_uda_run")
    parser.add_argument("--source", default="ct", help="whose pseudo-labels: step pseudolabel_<source> (default: ct)")
    args = parser.parse_args()
    run = json.loads((args.pipeline / "run.json").read_text())
    config, sequences = run["config"], run["sequences"]
    pseudolabels = Path(Manifest(args.pipeline, roots=nnunet_folders()).stages[f"pseudolabel_{args.source}"]
                        ["outputs"]["labels"])
    ids = organ_ids(Path(config["ct_dataset"]), config.get("organs"))
    mean, std = log_volume_reference(Path(config["ct_dataset"]) / "labelsTr", list(ids.values()))
    per_case = {case: implausibility(organ_volumes_ml(read_label_map(path), list(ids.values())), mean, std)
                for case, path in label_files(pseudolabels).items()}
    uncertainty_csv = args.pipeline / f"mdm_{args.source}_sequence_ranking" / "uncertainty.csv"
    u = {}
    if uncertainty_csv.is_file():
        with open(uncertainty_csv) as handle:
            u = {row["case"]: float(row["u"]) for row in csv.DictReader(handle)}
    print(f"organs: {', '.join(ids)}")
    print(f"{'sequence':<12}{'cases':>6}{'implausibility (median)':>26}{'mean u (finite)':>18}")
    table = []
    for sequence in sorted(set(sequences.values())):
        cases = [case for case, tag in sequences.items() if tag == sequence and case in per_case]
        finite = [u[case] for case in cases if case in u and math.isfinite(u[case])]
        mean_u = sum(finite) / len(finite) if finite else math.nan
        table.append((sequence, float(np.median([per_case[case] for case in cases])), mean_u))
        print(f"{sequence:<12}{len(cases):>6}{table[-1][1]:>26.2f}{mean_u:>18.3f}")
    print("ranking by plausibility:", [row[0] for row in sorted(table, key=lambda row: (row[1], row[0]))])
    if u:
        print("ranking by uncertainty: ", [row[0] for row in sorted(table, key=lambda row: (row[2], row[0]))])


if __name__ == "__main__":
    command(main)()
