"""Command-line entry points: nnUNetv2_uda_sobel, nnUNetv2_uda_train_translator, nnUNetv2_uda_translate."""

from __future__ import annotations

import argparse
import sys

from nnunetv2_uda.translation.networks import GENERATORS
from nnunetv2_uda.translation.raw_dataset import DatasetError
from nnunetv2_uda.translation.translator import TranslatorConfigError


def _run(function, **kwargs):
    """Bad input ends the command with its message (no traceback), as nnU-Net's own commands do."""
    try:
        return function(**kwargs)
    except (DatasetError, TranslatorConfigError) as error:
        sys.exit(f"ERROR: {error}")


def sobel_entry() -> None:
    from nnunetv2_uda.translation.sobel_dataset import convert_dataset_to_anatomy_space

    parser = argparse.ArgumentParser(description="Converts an nnU-Net raw dataset to anatomy space: each image is "
                                     "normalized per modality (CT: HU window [-125, 275] + z-score; otherwise "
                                     "0.5/99.5 percentile clipping + z-score) and replaced by its spacing-aware 3D "
                                     "Sobel gradient magnitude. Labels and geometry are copied unchanged.")
    parser.add_argument("input_dataset_folder", help="raw dataset folder (with dataset.json and imagesTr)")
    parser.add_argument("output_dataset_folder", help="folder for the anatomy-space raw dataset")
    parser.add_argument("--device", default="cpu", help="torch device for the Sobel filter. Default: cpu")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output dataset")
    args = parser.parse_args()
    output = _run(convert_dataset_to_anatomy_space, input_dataset_folder=args.input_dataset_folder,
                  output_dataset_folder=args.output_dataset_folder, device=args.device, overwrite=args.overwrite)
    print(f"Anatomy-space dataset written to {output}")


def train_translator_entry() -> None:
    from nnunetv2_uda.translation.translator import train_translator

    parser = argparse.ArgumentParser(description="Trains the CT -> MRI CycleGAN translator on unpaired axial slices "
                                     "(ASIT: from Sobel-CT; or plain CycleGAN from raw CT). Rerunning the same "
                                     "command resumes from the last checkpoint in OUTPUT_FOLDER.")
    parser.add_argument("ct_dataset_folder", help="labeled CT raw dataset (source domain)")
    parser.add_argument("mri_dataset_folder", help="MRI raw dataset (target domain; labels not needed, not used)")
    parser.add_argument("output_folder", help="translator folder (config, checkpoints, loss curves)")
    parser.add_argument("--mode", choices=("asit", "cyclegan"), default="asit",
                        help="asit: translate from Sobel anatomy space; cyclegan: from normalized raw CT "
                             "(ablation). Default: asit")
    parser.add_argument("--iterations", type=int, default=10000, help="training iterations. Default: 10000")
    parser.add_argument("--checkpoint_every", type=int, default=500,
                        help="write a checkpoint (and progress.json, loss_curves.png) every N iterations. "
                             "Default: 500")
    parser.add_argument("--batch_size", type=int, default=4, help="slices per domain per iteration. Default: 4")
    parser.add_argument("--slice_size", type=int, default=256,
                        help="training slices are center cropped/padded to this size (multiple of 4). Default: 256")
    parser.add_argument("--inplane_spacing", type=float, default=None,
                        help="common in-plane spacing (mm) slices are resampled to. Default: median in-plane "
                             "spacing of the MRI dataset")
    parser.add_argument("--lambda_cycle", type=float, default=10.0, help="cycle-consistency weight (eq. 4 lambda_1). "
                        "Default: 10")
    parser.add_argument("--lambda_identity", type=float, default=5.0, help="identity weight (eq. 4 lambda_2). "
                        "Default: 5")
    parser.add_argument("--lambda_anatomy", type=float, default=0.0,
                        help="weight of an anatomy-consistency term that is not in the paper: 1 - correlation of the "
                             "in-plane edge magnitudes of the fake MRI and its CT, so edges keep their place whatever "
                             "their polarity (Hiasa et al. 2018's gradient consistency). Default: 0 (the paper's "
                             "objective)")
    parser.add_argument("--generator", choices=sorted(GENERATORS), default="resnet",
                        help="generator architecture: resnet (CycleGAN's default) or unet (skip connections at "
                             "every scale; keeps outlines sharp after short training). Default: resnet")
    parser.add_argument("--generator_features", type=int, default=8,
                        help="generator base features (CycleGAN paper: 64). Default: 8 (CPU-friendly)")
    parser.add_argument("--residual_blocks", type=int, default=3,
                        help="generator residual blocks (CycleGAN paper: 9). Default: 3")
    parser.add_argument("--discriminator_features", type=int, default=8,
                        help="discriminator base features (CycleGAN paper: 64). Default: 8")
    parser.add_argument("--max_slices_per_case", type=int, default=64,
                        help="evenly spaced axial slices cached per case. Default: 64")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...). Default: cpu")
    parser.add_argument("--seed", type=int, default=12345, help="random seed. Default: 12345")
    args = parser.parse_args()
    folder = _run(train_translator, ct_dataset_folder=args.ct_dataset_folder,
                  mri_dataset_folder=args.mri_dataset_folder, output_folder=args.output_folder, mode=args.mode,
                  iterations=args.iterations, checkpoint_every=args.checkpoint_every, device=args.device,
                  batch_size=args.batch_size, slice_size=args.slice_size, inplane_spacing=args.inplane_spacing,
                  lambda_cycle=args.lambda_cycle, lambda_identity=args.lambda_identity,
                  lambda_anatomy=args.lambda_anatomy, generator=args.generator,
                  generator_features=args.generator_features, residual_blocks=args.residual_blocks,
                  discriminator_features=args.discriminator_features,
                  max_slices_per_case=args.max_slices_per_case, seed=args.seed)
    print(f"Translator trained: {folder}")


def translate_entry() -> None:
    from nnunetv2_uda.translation.translate import translate_dataset

    parser = argparse.ArgumentParser(description="Translates a labeled CT raw dataset into a fake-MRI raw dataset "
                                     "(labels, case names and geometry unchanged) and writes translation_panel.png "
                                     "(CT, Sobel-CT, fake MRI, real Sobel-MRI) into it.")
    parser.add_argument("translator_folder", help="folder written by nnUNetv2_uda_train_translator")
    parser.add_argument("ct_dataset_folder", help="CT raw dataset to translate")
    parser.add_argument("output_dataset_folder", help="folder for the fake-MRI raw dataset")
    parser.add_argument("--device", default="cpu", help="torch device. Default: cpu")
    parser.add_argument("--mri_dataset", default=None,
                        help="MRI raw dataset for the panel's real Sobel-MRI. Default: the translator's MRI dataset")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output dataset")
    args = parser.parse_args()
    panel = _run(translate_dataset, translator_folder=args.translator_folder, ct_dataset_folder=args.ct_dataset_folder,
                 output_dataset_folder=args.output_dataset_folder, device=args.device,
                 mri_dataset_folder=args.mri_dataset, overwrite=args.overwrite)
    print(f"Fake-MRI dataset written; panel: {panel}")
