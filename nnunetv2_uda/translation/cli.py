"""Command-line entry points: nnUNetv2_uda_sobel, nnUNetv2_uda_train_translator, nnUNetv2_uda_translate.

Bad input ends a command with one line naming the file, setting or flag (see
:func:`nnunetv2_uda.command_line.command`); nonsense numbers are refused while the arguments are parsed.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

import torch

from nnunetv2_uda.command_line import (
    command,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from nnunetv2_uda.images import ALLOW_NONFINITE_FLAG
from nnunetv2_uda.translation.settings import TranslatorSettings


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


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per field of :class:`TranslatorSettings`, with its default, range and help."""
    for setting in fields(TranslatorSettings):
        meta, default = setting.metadata, setting.default
        shown = "none" if default is None else f"{default:g}" if isinstance(default, float) else default
        options = {"default": default, "help": f"{meta['help']}. Default: {shown}"}
        if meta["choices"]:
            options["choices"] = meta["choices"]
        elif setting.type in ("int", int):
            options["type"] = positive_int if meta["minimum"] >= 1 else non_negative_int
        else:
            options["type"] = positive_float if meta["strict"] else non_negative_float
        parser.add_argument(f"--{setting.name}", **options)


def train_translator_parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--checkpoint_every", type=positive_int, default=500,
                        help="write a checkpoint (and progress.json, loss_curves.png) every N iterations. "
                             "Default: 500")
    _settings_flags(parser)
    _common_flags(parser, "CT and MRI images")
    return parser


@command
def train_translator_entry() -> None:
    from nnunetv2_uda.translation.translator import train_translator

    args = train_translator_parser().parse_args()
    settings = TranslatorSettings(**{field.name: getattr(args, field.name) for field in fields(TranslatorSettings)})
    folder = train_translator(args.ct_dataset_folder, args.mri_dataset_folder, args.output_folder, settings,
                              mode=args.mode, checkpoint_every=args.checkpoint_every, device=args.device,
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
