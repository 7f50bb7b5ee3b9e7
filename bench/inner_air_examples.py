"""What the InnerAir trainers change: a CT slice at the lung bases through the class-level location-scale
augmentation, keeping the air inside the body at its intensity (the LocationScale trainers) or remapping it.

    python3 bench/inner_air_examples.py CT_IMAGE CT_LABEL [--output PNG]

Takes the slice near the liver's dome where the air inside the body (lungs, bowel gas) covers most, normalizes it
as nnU-Net does (z-score), and draws it, the air the augmentation keeps in each variant, and four class-level samples
of each. Takes seconds; reads one CT case (e.g. of BTCV).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from nnunetv2.preprocessing.normalization.default_normalization_schemes import ZScoreNormalization

from nnunetv2_uda.command_line import command
from nnunetv2_uda.images import read_array
from nnunetv2_uda.training.location_scale import BACKGROUND_LEVEL, LocationScaleTransform, air_around_the_body

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "bench" / "results" / "inner_air_examples.png"
SAMPLES = 4
LIVER = 1


def lung_base_slice(image: np.ndarray, label: np.ndarray, toward_head: bool) -> int:
    """Of the liver's cranial third, the slice with the most air inside the body (``toward_head``: the slice index
    grows toward the head)."""
    liver_slices = np.flatnonzero((label == LIVER).any(axis=(1, 2)))
    unit = (image - image.min()) / (image.max() - image.min())
    inner = [int((air & ~air_around_the_body(air, np.zeros_like(air))).sum())
             for air in (unit[z] <= BACKGROUND_LEVEL for z in liver_slices)]
    third = max(1, len(liver_slices) // 3)
    cranial = slice(-third, None) if toward_head else slice(0, third)
    return int(liver_slices[cranial][int(np.argmax(inner[cranial]))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", type=Path, help="a CT image (.nii.gz)")
    parser.add_argument("label", type=Path, help="its label map, liver = 1 (FLARE ids)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"PNG to write. Default: {DEFAULT_OUTPUT}")
    args = parser.parse_args()
    image, header = read_array(args.image)
    label, _ = read_array(args.label)
    z = lung_base_slice(image.astype(np.float32), label, toward_head=header.GetDirection()[8] > 0)  # LPS: +z is up
    normalized = ZScoreNormalization(use_mask_for_norm=False, intensityproperties={}).run(image.astype(np.float32))[z]
    unit = (normalized - normalized.min()) / (normalized.max() - normalized.min())
    air = unit <= BACKGROUND_LEVEL
    air_around = air_around_the_body(air, np.zeros_like(air))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2 + SAMPLES, figsize=(2.6 * (2 + SAMPLES), 5.4))
    for row, keep_inner_air in enumerate((True, False)):
        axes[row, 0].imshow(normalized, cmap="gray")
        axes[row, 0].set_title(f"{args.image.name}, slice {z}" if row == 0 else "the same slice", fontsize=8)
        axes[row, 1].imshow(air if keep_inner_air else air_around, cmap="gray")
        axes[row, 1].set_title("air kept at its intensity", fontsize=8)
        transform = LocationScaleTransform(class_level_probability=1, keep_inner_air=keep_inner_air)
        for sample in range(SAMPLES):
            torch.manual_seed(sample)
            out = transform(image=torch.from_numpy(normalized[None]).clone(),
                            segmentation=torch.from_numpy(label[z][None].astype(np.int16)))["image"][0]
            axes[row, 2 + sample].imshow(out.numpy(), cmap="gray")
            axes[row, 2 + sample].set_title(f"keep_inner_air={keep_inner_air}, sample {sample + 1}", fontsize=8)
    for axis in axes.flat:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(args.output, dpi=60)
    print(f"inner_air_examples: {args.output}")


if __name__ == "__main__":
    command(main)()
