"""Which side of the image each label lies on: a check of left/right labels that needs no reference labels.

    python3 bench/label_sides.py PREDICTION_FOLDER [PREDICTION_FOLDER ...]

For every label of each folder's dataset.json, prints the share of its voxels in the image half with x < width / 2
(the array's last axis). In BTCV and CHAOS the patient's right side (liver, right kidney) is that half, so a network
that names the kidneys by their side puts nearly all of the right kidney there and nearly none of the left kidney.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from nnunetv2_uda.command_line import command
from nnunetv2_uda.images import read_array
from nnunetv2_uda.pseudolabels.label_io import label_files


def side_shares(folder: Path) -> dict[str, tuple[float, int]]:
    """label name -> (share of its voxels in the half x < width / 2, voxel count) over every case of ``folder``."""
    dataset_json = folder / "dataset.json" if (folder / "dataset.json").is_file() else folder.parent / "dataset.json"
    labels = {name: value for name, value in json.loads(dataset_json.read_text())["labels"].items() if value != 0}
    size = max(labels.values()) + 1
    counts = np.zeros((2, size), dtype=np.int64)  # (half x < width / 2, other half) x label value
    for path in label_files(folder).values():
        array, _ = read_array(path)
        half = array.shape[-1] // 2
        for row, part in enumerate((array[..., :half], array[..., half:])):
            counts[row] += np.bincount(part.ravel(), minlength=size)[:size]
    totals = counts.sum(axis=0)
    return {name: (float(counts[0, value] / totals[value]) if totals[value] else float("nan"), int(totals[value]))
            for name, value in labels.items()}


@command
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path,
                        help="folders of label maps <case>.nii.gz with dataset.json (or a raw dataset's labelsTr)")
    for folder in parser.parse_args().folders:
        shares = side_shares(folder)
        print(f"{folder}: " + ", ".join(f"{name} {share:.2f} of {count} voxels" for name, (share, count) in
                                        shares.items()))


if __name__ == "__main__":
    main()
