"""How bright each organ is in each MRI case, against its kidneys: a look at why one case fails, after a run.

    python3 bench/organ_intensity.py IMAGES LABELS [-o figure.png]

For every case with a label map in LABELS, prints the median intensity of liver and spleen divided by that of the
kidneys, which keep their signal where iron overload darkens liver and spleen on T2; with ``-o``, draws each case's
slice where liver and spleen cover most with their outlines. LABELS are evaluation labels (scoring only): this looks at
a finished run's inputs and feeds nothing back. Not run in CI.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from nnunetv2_uda.command_line import command
from nnunetv2_uda.evaluation.case_figures import case_grid, show_slice
from nnunetv2_uda.images import read_array
from nnunetv2_uda.pseudolabels.label_io import label_files


def organ_values(labels_folder: Path) -> dict[str, int]:
    dataset_json = labels_folder.parent / "dataset.json"
    labels = json.loads(dataset_json.read_text())["labels"]
    return {organ: labels[organ] for organ in ("liver", "spleen", "right kidney", "left kidney")}


def ratios(image: np.ndarray, label: np.ndarray, values: dict[str, int]) -> dict[str, float]:
    kidneys = np.isin(label, [values["right kidney"], values["left kidney"]])
    reference = float(np.median(image[kidneys])) if kidneys.any() else float("nan")
    return {organ: float(np.median(image[label == values[organ]])) / reference if (label == values[organ]).any()
            else float("nan") for organ in ("liver", "spleen")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", type=Path, help="folder of <case>_0000.nii.gz")
    parser.add_argument("labels", type=Path, help="folder of <case>.nii.gz with liver, spleen and kidneys, and a "
                                                  "dataset.json beside it naming them")
    parser.add_argument("-o", "--output", type=Path, help="a PNG of every case's slice, to write")
    args = parser.parse_args()
    values = organ_values(args.labels)
    slices = []
    print(f"{'case':<20}{'liver / kidneys':>16}{'spleen / kidneys':>18}")
    for case, path in sorted(label_files(args.labels).items()):
        image, _ = read_array(args.images / f"{case}_0000.nii.gz")
        label, _ = read_array(path)
        case_ratios = ratios(image.astype(np.float32), label, values)
        print(f"{case:<20}{case_ratios['liver']:>16.2f}{case_ratios['spleen']:>18.2f}")
        z = int(np.argmax(np.isin(label, [values["liver"], values["spleen"]]).sum(axis=(1, 2))))
        slices.append((case, case_ratios, image[z], label[z]))
    if args.output:
        with case_grid(len(slices), args.output, cell=(3, 3.2), dpi=70) as axes:
            for axis, (case, case_ratios, image, label) in zip(axes, slices, strict=True):
                show_slice(axis, image)
                axis.contour(label == values["liver"], [0.5], colors="tab:blue", linewidths=0.8)
                axis.contour(label == values["spleen"], [0.5], colors="tab:orange", linewidths=0.8)
                axis.set_title(f"{case}\nliver {case_ratios['liver']:.2f}, spleen {case_ratios['spleen']:.2f} "
                               f"x kidneys", fontsize=8)
        print(f"organ_intensity: {args.output}")


if __name__ == "__main__":
    command(main)()
