"""What multi-domain matching did to some cases' pseudo-labels, beside their evaluation labels, as one PNG.

For each case named: its image's axial slice where the labels cover most, with the source network's pseudo-label,
the label MDM gave it (the matched case's, registered) and the evaluation label over it (scoring only: this figure is
made after a run, from its folders, and feeds nothing back).

    python bench/mdm_figure.py IMAGES PSEUDOLABELS MDM_LABELS EVAL_LABELS -o figure.png --cases chaosT1in_0037

Not run in CI.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import SimpleITK as sitk

from nnunetv2_uda.images import read_image, read_label_map
from nnunetv2_uda.pseudolabels.matching import label_panel, plot_label_panels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", type=Path, help="folder of <case>_0000.nii.gz")
    parser.add_argument("pseudolabels", type=Path, help="folder of <case>.nii.gz: the source network's labels")
    parser.add_argument("mdm_labels", type=Path, help="folder of <case>.nii.gz: the labels after MDM")
    parser.add_argument("eval_labels", type=Path, help="folder of <case>.nii.gz: evaluation labels")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the PNG to write (a new file)")
    parser.add_argument("--cases", nargs="+", required=True, help="case names, one row each")
    args = parser.parse_args()
    if args.output.exists():
        parser.error(f"-o {args.output}: exists; choose a new file")
    panels = []
    for case in args.cases:
        image = sitk.GetArrayFromImage(read_image(args.images / f"{case}_0000.nii.gz"))
        labels = [sitk.GetArrayFromImage(read_label_map(folder / f"{case}.nii.gz"))
                  for folder in (args.pseudolabels, args.mdm_labels, args.eval_labels)]
        panels.append(label_panel(case, image, labels))
    plot_label_panels(panels, ["source network's pseudo-label", "after MDM (registered)", "evaluation label"],
                      args.output)
    print(f"mdm_figure: {args.output}")


if __name__ == "__main__":
    main()
