"""Where a run's organ errors lie: the false positives' place along the organ and their distance from it.

    python3 bench/error_location.py PREDICTIONS LABELS [--organs liver spleen] [--images IMAGES -o figure.png]

For every case with a label map in LABELS, and each organ (paired by name through the two folders' dataset.json),
prints DSC, the false positives and false negatives as fractions of the organ's volume, where along the organ's
cranio-caudal extent the false positives lie (beyond its caudal end, in its caudal half, its cranial half, beyond its
cranial end) and the share of them more than 6 mm (in-plane) from the organ on their own slice: a boundary shell
(resolution) is within a few millimetres, a region the network took for the organ is not. With ``-o``, draws each
case's slice with the most false positives, outlines of label and prediction. LABELS are evaluation labels (scoring
only): this looks at a finished run's outputs and feeds nothing back. Not run in CI.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage

from nnunetv2_uda.command_line import command
from nnunetv2_uda.evaluation.case_figures import case_grid, show_slice
from nnunetv2_uda.evaluation.organ_matching import find_dataset_json, match_organs, read_dataset_labels
from nnunetv2_uda.images import read_array
from nnunetv2_uda.pseudolabels.label_io import label_files

FAR_MM = 6.0
PLACES = ("below", "caudal half", "cranial half", "above")


def false_positive_places(organ: np.ndarray, false_positive: np.ndarray, toward_head: bool) -> np.ndarray:
    """False-positive voxels per place of PLACES, as fractions of the organ's volume (arrays z, y, x)."""
    slices = np.flatnonzero(organ.any(axis=(1, 2)))
    position = (np.arange(organ.shape[0]) - slices[0]) / max(slices[-1] - slices[0], 1)  # 0 first slice, 1 last
    if not toward_head:
        position = 1 - position
    per_slice = false_positive.sum(axis=(1, 2))
    masks = (position < 0, (position >= 0) & (position < 0.5), (position >= 0.5) & (position <= 1), position > 1)
    return np.array([per_slice[mask].sum() for mask in masks]) / organ.sum()


def far_share(organ: np.ndarray, false_positive: np.ndarray, spacing_yx: tuple[float, float]) -> float:
    """Share of the false positives on the organ's slices that lie over FAR_MM from it in-plane (NaN if none)."""
    distances = []
    for z in np.flatnonzero(organ.any(axis=(1, 2)) & false_positive.any(axis=(1, 2))):
        distance = ndimage.distance_transform_edt(~organ[z], sampling=spacing_yx)
        distances.append(distance[false_positive[z]])
    return float(np.mean(np.concatenate(distances) > FAR_MM)) if distances else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("predictions", type=Path, help="folder of <case>.nii.gz predictions with their dataset.json")
    parser.add_argument("labels", type=Path, help="folder of <case>.nii.gz evaluation labels, a dataset.json in it or "
                                                  "beside it")
    parser.add_argument("--organs", nargs="+", default=["liver", "spleen"], help="organs to look at, by name. "
                                                                                 "Default: liver spleen")
    parser.add_argument("--images", type=Path, help="folder of <case>_0000.nii.gz, for the figure")
    parser.add_argument("-o", "--output", type=Path, help="a PNG of every case's slice with the most false "
                                                          "positives, to write (needs --images)")
    args = parser.parse_args()
    if args.output and not args.images:
        parser.error("-o needs --images")
    pred_labels = read_dataset_labels(find_dataset_json(args.predictions, search_parent=False)).labels
    gt_labels = read_dataset_labels(find_dataset_json(args.labels, search_parent=True)).labels
    organs = match_organs(pred_labels, gt_labels, args.organs, default_tolerance_mm=1.0)  # tolerance unused here
    print(f"{'case':<14}{'organ':<8}{'DSC':>6}{'FP':>6}{'FN':>6}  FP {' / '.join(PLACES)}   FP > {FAR_MM:g} mm")
    totals = {organ.name: [] for organ in organs}
    figure_slices = []
    for case, path in sorted(label_files(args.labels).items()):
        label, image = read_array(path)
        prediction, _ = read_array(args.predictions / path.name)
        spacing_yx = (image.GetSpacing()[1], image.GetSpacing()[0])
        toward_head = image.GetDirection()[8] > 0  # LPS: index growing along +z runs toward the head
        all_false_positives = np.zeros(label.shape, dtype=bool)
        for organ in organs:
            truth = label == organ.gt_label
            predicted = prediction == organ.pred_label if organ.pred_label is not None else np.zeros_like(truth)
            if not truth.any():
                continue
            false_positive, false_negative = predicted & ~truth, truth & ~predicted
            all_false_positives |= false_positive
            dsc = 2 * (predicted & truth).sum() / (predicted.sum() + truth.sum())
            places = false_positive_places(truth, false_positive, toward_head)
            far = far_share(truth, false_positive, spacing_yx)
            totals[organ.name].append((dsc, false_positive.sum() / truth.sum(), false_negative.sum() / truth.sum(),
                                       *places, far))
            print(f"{case:<14}{organ.name[:7]:<8}{dsc:6.3f}{false_positive.sum() / truth.sum():6.2f}"
                  f"{false_negative.sum() / truth.sum():6.2f}  {' / '.join(f'{p:.2f}' for p in places)}   {far:.2f}")
        z = int(np.argmax(all_false_positives.sum(axis=(1, 2))))
        figure_slices.append((case, z, label[z], prediction[z]))
    for name, rows in totals.items():
        mean = np.nanmean(np.array(rows), axis=0)
        print(f"{'mean':<14}{name[:7]:<8}{mean[0]:6.3f}{mean[1]:6.2f}{mean[2]:6.2f}  "
              f"{' / '.join(f'{p:.2f}' for p in mean[3:7])}   {mean[7]:.2f}")
    if args.output:
        draw(figure_slices, organs, args.images, args.output)


def draw(figure_slices, organs, images: Path, output: Path) -> None:
    colours = ("tab:red", "tab:cyan", "tab:orange", "tab:green")
    with case_grid(len(figure_slices), output, cell=(3.4, 3.6), dpi=55) as axes:
        for axis, (case, z, label, prediction) in zip(axes, figure_slices, strict=True):
            show_slice(axis, read_array(images / f"{case}_0000.nii.gz")[0][z])
            for organ, colour in zip(organs, colours, strict=False):  # more colours than organs
                if (label == organ.gt_label).any():
                    axis.contour(label == organ.gt_label, [0.5], colors=colour, linewidths=1.2)
                if organ.pred_label is not None and (prediction == organ.pred_label).any():
                    axis.contour(prediction == organ.pred_label, [0.5], colors=colour, linewidths=0.8,
                                 linestyles="dashed")
            axis.set_title(f"{case}, slice {z}", fontsize=8)
        names = ", ".join(f"{organ.name} {colour[4:]}" for organ, colour in zip(organs, colours, strict=False))
        axes[0].figure.suptitle(f"label solid, prediction dashed ({names}); each case's slice with the most false "
                                f"positives", fontsize=9)
    print(f"error_location: {output}")


if __name__ == "__main__":
    command(main)()
