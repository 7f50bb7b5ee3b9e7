"""What the CT network sees in training: one phantom CT slice through GIN and SLAug's location-scale augmentation.

    python3 bench/augmentation_examples.py [--output PNG]

Draws the slice as nnU-Net normalizes it, six samples of each augmentation (random intensity networks; location-scale,
global and class level) and, for comparison, the T1, T2 and DWI phantoms of the same kind of subject: the contrasts
the augmented CT should come to cover. Phantoms are made in memory (the demo's size and seed); takes seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from nnunetv2.preprocessing.normalization.default_normalization_schemes import ZScoreNormalization

from nnunetv2_uda.command_line import command
from nnunetv2_uda.phantoms.datasets import make_ct_case, make_mri_case
from nnunetv2_uda.training.location_scale import LocationScaleTransform
from nnunetv2_uda.training.random_intensity_networks import RandomIntensityNetworkTransform

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "bench" / "results" / "augmentation_examples.png"
SHAPE = (32, 96, 96)  # the demo's phantoms
SAMPLES = 6


def z_scored(image: np.ndarray) -> np.ndarray:
    """The whole volume normalized as nnU-Net's plans for these phantoms do (its ZScoreNormalization)."""
    return ZScoreNormalization(use_mask_for_norm=False, intensityproperties={}).run(image.astype(np.float32))


def middle_slice_with_liver(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = int(np.argmax((label == 1).sum(axis=(1, 2))))
    return image[z].astype(np.float32), label[z]


def augmented(transform, image: np.ndarray, label: np.ndarray) -> np.ndarray:
    data = transform(image=torch.from_numpy(image)[None].clone(),
                     segmentation=torch.from_numpy(label.astype(np.int16))[None])
    return data["image"][0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"PNG to write. Default: {DEFAULT_OUTPUT}")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.manual_seed(0)
    ct = make_ct_case(0, SHAPE, seed=0)
    image, label = middle_slice_with_liver(z_scored(ct.image), ct.label)
    rows = [("random intensity networks (GIN)", RandomIntensityNetworkTransform()),
            ("location-scale, global", LocationScaleTransform(class_level_probability=0)),
            ("location-scale, class level", LocationScaleTransform(class_level_probability=1))]
    figure, axes = plt.subplots(len(rows) + 1, SAMPLES + 1, figsize=(2 * (SAMPLES + 1), 2.1 * (len(rows) + 1)))
    for axis in axes.flat:
        axis.axis("off")
    axes[0, 0].imshow(image, cmap="gray")
    axes[0, 0].set_title("CT (z-scored)", fontsize=9)
    for column, case in enumerate((0, 1, 2), start=1):  # T1, T2, DWI
        mri = make_mri_case(case, SHAPE, seed=0)
        slice_, _ = middle_slice_with_liver(z_scored(mri.image), mri.label)
        axes[0, column].imshow(slice_, cmap="gray")
        axes[0, column].set_title(f"{mri.modality} phantom", fontsize=9)
    for row, (title, transform) in enumerate(rows, start=1):
        axes[row, 0].text(0.5, 0.5, title, ha="center", va="center", wrap=True, fontsize=9)
        for column in range(1, SAMPLES + 1):
            axes[row, column].imshow(augmented(transform, image, label), cmap="gray")
    figure.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=70)
    print(f"augmentation_examples: {args.output}")


if __name__ == "__main__":
    command(main)()
