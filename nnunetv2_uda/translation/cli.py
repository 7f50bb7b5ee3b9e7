"""Command-line entry points: nnUNetv2_uda_sobel, nnUNetv2_uda_train_translator, nnUNetv2_uda_translate.

Bad input ends a command with one line naming the file, setting or flag (see
:func:`nnunetv2_uda.command_line.command`); nonsense numbers are refused while the arguments are parsed.
"""

from __future__ import annotations

import argparse

import torch

from nnunetv2_uda.command_line import (
    command,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from nnunetv2_uda.images import ALLOW_NONFINITE_FLAG
from nnunetv2_uda.translation.networks import GENERATORS


def torch_device(text: str) -> str:
    """An argparse type: a torch device this machine has."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a torch device: '{text}' (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        raise argparse.ArgumentTypeError(f"'{text}': no such CUDA device on this machine "
                                         f"({torch.cuda.device_count()} available)")
    return text


def _common_flags(parser: argparse.ArgumentParser, reads: str) -> None:
    parser.add_argument("--device", type=torch_device, default="cpu",
                        help="torch device (cpu, cuda, cuda:1, ...). Default: cpu")
    parser.add_argument(ALLOW_NONFINITE_FLAG, action="store_true",
                        help=f"replace NaN or infinite voxels of the {reads} by the image's lowest finite value "
                             f"(said on stderr) instead of refusing the file")
    parser.add_argument("--verbose", action="store_true", help="show the Python traceback of an error")


def sobel_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Converts an nnU-Net raw dataset to anatomy space: each image is "
                                     "normalized per modality (CT: HU window [-125, 275] + z-score; otherwise "
                                     "0.5/99.5 percentile clipping + z-score) and replaced by its spacing-aware 3D "
                                     "Sobel gradient magnitude. Labels and geometry are copied unchanged. A case "
                                     "with a bad image is left out and named (exit code non-zero); the others are "
                                     "written.")
    parser.add_argument("input_dataset_folder", help="raw dataset folder (with dataset.json and imagesTr)")
    parser.add_argument("output_dataset_folder", help="new folder for the anatomy-space raw dataset")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing non-empty output folder (only once the new dataset is complete)")
    _common_flags(parser, "images")
    return parser


@command
def sobel_entry() -> None:
    from nnunetv2_uda.translation.sobel_dataset import convert_dataset_to_anatomy_space

    args = sobel_parser().parse_args()
    output = convert_dataset_to_anatomy_space(args.input_dataset_folder, args.output_dataset_folder, args.device,
                                              args.overwrite, args.allow_nonfinite)
    print(f"Anatomy-space dataset written to {output}")


def train_translator_parser() -> argparse.ArgumentParser:
    from nnunetv2_uda.translation.translator import MIN_SLICE_SIZE

    parser = argparse.ArgumentParser(description="Trains the CT -> MRI CycleGAN translator on unpaired axial slices "
                                     "(ASIT: from Sobel-CT; or plain CycleGAN from raw CT). Rerunning the same "
                                     "command resumes from the last checkpoint in OUTPUT_FOLDER.")
    parser.add_argument("ct_dataset_folder", help="labeled CT raw dataset (source domain)")
    parser.add_argument("mri_dataset_folder", help="MRI raw dataset (target domain; labels not needed, not used)")
    parser.add_argument("output_folder", help="translator folder (config, checkpoints, loss curves): a new or empty "
                        "folder, or one this command wrote (to resume)")
    parser.add_argument("--mode", choices=("asit", "cyclegan"), default="asit",
                        help="asit: translate from Sobel anatomy space; cyclegan: from normalized raw CT "
                             "(ablation). Default: asit")
    parser.add_argument("--iterations", type=positive_int, default=10000, help="training iterations. Default: 10000")
    parser.add_argument("--checkpoint_every", type=positive_int, default=500,
                        help="write a checkpoint (and progress.json, loss_curves.png) every N iterations. "
                             "Default: 500")
    parser.add_argument("--batch_size", type=positive_int, default=4,
                        help="slices per domain per iteration. Default: 4")
    parser.add_argument("--slice_size", type=positive_int, default=256,
                        help=f"training slices are center cropped/padded to this size (a multiple of 4, at least "
                             f"{MIN_SLICE_SIZE}). Default: 256")
    parser.add_argument("--inplane_spacing", type=positive_float, default=None,
                        help="common in-plane spacing (mm) slices are resampled to. Default: median in-plane "
                             "spacing of the MRI dataset")
    parser.add_argument("--lambda_cycle", type=non_negative_float, default=10.0,
                        help="cycle-consistency weight (eq. 4 lambda_1). Default: 10")
    parser.add_argument("--lambda_identity", type=non_negative_float, default=5.0,
                        help="identity weight (eq. 4 lambda_2). Default: 5")
    parser.add_argument("--lambda_anatomy", type=non_negative_float, default=0.0,
                        help="weight of an anatomy-consistency term that is not in the paper: 1 - correlation of the "
                             "in-plane edge magnitudes of the fake MRI and its CT, so edges keep their place whatever "
                             "their polarity (Hiasa et al. 2018's gradient consistency). Default: 0 (the paper's "
                             "objective)")
    parser.add_argument("--generator", choices=sorted(GENERATORS), default="resnet",
                        help="generator architecture: resnet (CycleGAN's default) or unet (skip connections at "
                             "every scale; keeps outlines sharp after short training). Default: resnet")
    parser.add_argument("--generator_features", type=positive_int, default=8,
                        help="generator base features (CycleGAN paper: 64). Default: 8 (CPU-friendly)")
    parser.add_argument("--residual_blocks", type=non_negative_int, default=3,
                        help="generator residual blocks (CycleGAN paper: 9; 0: none). Default: 3")
    parser.add_argument("--discriminator_features", type=positive_int, default=8,
                        help="discriminator base features (CycleGAN paper: 64). Default: 8")
    parser.add_argument("--max_slices_per_case", type=positive_int, default=64,
                        help="evenly spaced axial slices cached per case. Default: 64")
    parser.add_argument("--seed", type=non_negative_int, default=12345, help="random seed. Default: 12345")
    _common_flags(parser, "CT and MRI images")
    return parser


@command
def train_translator_entry() -> None:
    from nnunetv2_uda.translation.translator import train_translator

    args = train_translator_parser().parse_args()
    folder = train_translator(ct_dataset_folder=args.ct_dataset_folder, mri_dataset_folder=args.mri_dataset_folder,
                              output_folder=args.output_folder, mode=args.mode, iterations=args.iterations,
                              checkpoint_every=args.checkpoint_every, device=args.device, batch_size=args.batch_size,
                              slice_size=args.slice_size, inplane_spacing=args.inplane_spacing,
                              lambda_cycle=args.lambda_cycle, lambda_identity=args.lambda_identity,
                              lambda_anatomy=args.lambda_anatomy, generator=args.generator,
                              generator_features=args.generator_features, residual_blocks=args.residual_blocks,
                              discriminator_features=args.discriminator_features,
                              max_slices_per_case=args.max_slices_per_case, seed=args.seed,
                              allow_nonfinite=args.allow_nonfinite)
    print(f"Translator trained: {folder}")


def translate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Translates a labeled CT raw dataset into a fake-MRI raw dataset "
                                     "(labels, case names and geometry unchanged) and writes translation_panel.png "
                                     "(CT, Sobel-CT, fake MRI, real Sobel-MRI) into it. A case with a bad image is "
                                     "left out and named (exit code non-zero); the others are written.")
    parser.add_argument("translator_folder", help="folder written by nnUNetv2_uda_train_translator")
    parser.add_argument("ct_dataset_folder", help="CT raw dataset to translate")
    parser.add_argument("output_dataset_folder", help="new folder for the fake-MRI raw dataset")
    parser.add_argument("--mri_dataset", default=None,
                        help="MRI raw dataset for the panel's real Sobel-MRI. Default: the translator's MRI dataset")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing non-empty output folder (only once the new dataset is complete)")
    _common_flags(parser, "CT images (and the panel's MRI image)")
    return parser


@command
def translate_entry() -> None:
    from nnunetv2_uda.translation.translate import translate_dataset

    args = translate_parser().parse_args()
    panel = translate_dataset(translator_folder=args.translator_folder, ct_dataset_folder=args.ct_dataset_folder,
                              output_dataset_folder=args.output_dataset_folder, device=args.device,
                              mri_dataset_folder=args.mri_dataset, overwrite=args.overwrite,
                              allow_nonfinite=args.allow_nonfinite)
    print(f"Fake-MRI dataset written; panel: {panel}")
