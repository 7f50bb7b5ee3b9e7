"""``nnUNetv2_predict_fast``: ``nnUNetv2_predict``'s arguments, ``nnUNetPredictorFast``'s inference.

A user's script only changes the command name. Every flag of ``nnUNetv2_predict`` is accepted with its meaning;
TTA is off by default here (``--enable_tta`` turns it on, ``--disable_tta`` is accepted and is the default), and
``--label_resampling`` chooses how the label map reaches the original geometry.

Arguments, the model folder and the input folder are checked before torch and nnU-Net's predictor are imported
(seconds of start-up), so that a mistake is named at once.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from nnunetv2_uda.atomic_files import write_json_atomically
from nnunetv2_uda.command_line import UserInputError, command, fraction, non_negative_int, positive_int
from nnunetv2_uda.images import ALLOW_NONFINITE_FLAG
from nnunetv2_uda.inference.cases import CaseListing, case_name, list_cases
from nnunetv2_uda.inference.input_checks import expected_channel_names
from nnunetv2_uda.inference.options import INPUT_RESAMPLING_MODES, LABEL_RESAMPLING_MODES
from nnunetv2_uda.json_files import read_json_object
from nnunetv2_uda.output_folders import OutputFolderError, check_output_folder


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name) or default)
    except ValueError:
        return default


def fold(text: str) -> str | int:
    """A fold: ``all`` or a fold number."""
    return text if text == "all" else non_negative_int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_predict_fast",
        description="nnUNetv2_predict with the paper's inference order: the class decision (argmax, or sigmoid and "
                    "threshold for region models) is made at network resolution and only the label map is "
                    "resampled to the original geometry, on the compute device. Same arguments as "
                    "nnUNetv2_predict; test-time mirroring is off unless --enable_tta is given.")
    parser.add_argument("-i", type=str, required=True,
                        help="Input folder: <case>_0000.nii.gz, ... with the training dataset's file ending. Hidden "
                             "files are ignored.")
    parser.add_argument("-o", type=str, required=True,
                        help="Output folder (created if needed; must not be, lie inside or hold the input folder). "
                             "Segmentations are named like their cases; a file of that name already there is refused "
                             "unless --overwrite (replace it) or --continue_prediction (keep it, skip its case). "
                             "Other files in the folder are never touched.")
    parser.add_argument("-d", type=str, required=True, help="Dataset name or id of the trained model.")
    parser.add_argument("-p", type=str, default="nnUNetPlans", help="Plans identifier. Default: nnUNetPlans")
    parser.add_argument("-tr", type=str, default="nnUNetTrainer",
                        help="Trainer class used for training. Default: nnUNetTrainer")
    parser.add_argument("-c", type=str, required=True, help="Configuration, e.g. 3d_fullres or 2d.")
    parser.add_argument("-f", nargs="+", type=fold, default=(0, 1, 2, 3, 4),
                        help="Folds to use (ensembled if several): numbers or 'all'. Default: 0 1 2 3 4")
    parser.add_argument("-step_size", type=fraction, default=0.5,
                        help="Sliding-window tile step as a fraction of the patch size, in (0, 1] (larger is "
                             "faster). Default: 0.5")
    tta = parser.add_mutually_exclusive_group()
    tta.add_argument("--disable_tta", action="store_true",
                     help="Accepted for compatibility with nnUNetv2_predict: no mirroring is already the default.")
    tta.add_argument("--enable_tta", action="store_true",
                     help="Turn on test-time mirroring (as far as the trainer allows it; slower).")
    parser.add_argument("--label_resampling", choices=LABEL_RESAMPLING_MODES, default="nearest",
                        help="How the label map is brought to the original geometry: 'nearest', or 'linear' "
                             "(per-label linear interpolation of the one-hot map, then argmax). Default: nearest")
    parser.add_argument("--input_resampling", choices=INPUT_RESAMPLING_MODES, default="torch",
                        help="How the input image is preprocessed: 'torch' (cropping, normalization and nnU-Net's "
                             "torch resampling on the compute device) or 'nnunet' (nnU-Net's own preprocessing with "
                             "the plans' resampling, as nnUNetv2_predict: scipy's cubic spline on the CPU; slower, "
                             "closest to stock predictions). Default: torch")
    parser.add_argument(ALLOW_NONFINITE_FLAG, action="store_true",
                        help="Predict images with NaN or infinite voxels, replacing them by the image's lowest "
                             "finite value (said on stderr). Default: such images are refused")
    parser.add_argument("--verbose", action="store_true",
                        help="Print more about what happens, and the traceback of an error.")
    parser.add_argument("--save_probabilities", action="store_true",
                        help="Also export probabilities (.npz/.pkl). Probabilities are resampled as by stock "
                             "nnU-Net, so this loses the fast export.")
    parser.add_argument("--continue_prediction", action="store_true",
                        help="Skip cases whose segmentation already exists in the output folder.")
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace segmentations (and with --save_probabilities their .npz/.pkl) of the same "
                             "name already in the output folder. Default: refuse them, naming the files.")
    parser.add_argument("-chk", type=str, default="checkpoint_final.pth",
                        help="Checkpoint file name. Default: checkpoint_final.pth")
    parser.add_argument("-npp", type=non_negative_int, default=_env_int("nnUNet_npp", 3),
                        help="Accepted for compatibility; cases are read and preprocessed in one background thread "
                             "of this process. Default: 3 (unused)")
    parser.add_argument("-nps", type=non_negative_int, default=_env_int("nnUNet_nps", 3),
                        help="Accepted for compatibility; segmentations are written in one background thread of "
                             "this process. Default: 3 (unused)")
    parser.add_argument("-prev_stage_predictions", type=str, default=None,
                        help="Folder with the previous stage's predictions (cascaded models only).")
    parser.add_argument("-num_parts", type=positive_int, default=1,
                        help="Number of separate calls the cases are split into. Default: 1")
    parser.add_argument("-part_id", type=non_negative_int, default=0,
                        help="Which of the -num_parts calls this is (0 .. num_parts-1). Default: 0")
    parser.add_argument("-device", type=str, default="cuda", choices=("cuda", "cpu", "mps"),
                        help="Compute device: cuda, cpu or mps (choose the GPU with CUDA_VISIBLE_DEVICES). "
                             "Default: cuda")
    parser.add_argument("--disable_progress_bar", action="store_true", help="No progress bars (HPC jobs).")
    parser.add_argument("--not_on_device", action="store_true",
                        help="Keep the sliding-window results on the CPU (for cases too large for the GPU).")
    parser.add_argument("--timings", type=Path, default=None, metavar="JSON",
                        help="Write each case's phase times (read, preprocess, network, export, write; seconds) and "
                             "the time of the first network call to this JSON file (bench/inference_speed.py reads "
                             "it).")
    return parser


def model_folder(args: argparse.Namespace) -> Path:
    """The trained model's results folder named by -d, -tr, -p and -c."""
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    if not os.environ.get("nnUNet_results"):
        raise UserInputError("nnUNet_results is not set: it must name the folder that holds the trained models")
    try:
        folder = Path(get_output_folder(args.d, args.tr, args.p, args.c))
    except RuntimeError as error:  # nnU-Net's "Could not find a dataset with the ID ..."
        raise UserInputError(f"-d {args.d}: {error}") from None
    if not folder.is_dir():
        raise UserInputError(f"{folder}: no trained model there (from -d {args.d} -tr {args.tr} -p {args.p} "
                             f"-c {args.c}); check these flags and nnUNet_results")
    return folder


def _device(name: str):
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise UserInputError("-device cuda: no CUDA device is available here; use -device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserInputError("-device mps: no MPS device is available here; use -device cpu")
    if name == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    elif name == "cuda":
        torch.set_num_threads(1)  # as nnUNetv2_predict: CPU threads do not help when the GPU works
    return torch.device(name)


def refuse_existing_outputs(listing: CaseListing, output: Path, file_ending: str, save_probabilities: bool) -> None:
    """Raises unless none of the files this prediction would write exists in ``output`` (they may be the user's)."""
    endings = (file_ending, ".npz", ".pkl") if save_probabilities else (file_ending,)
    existing = [output / f"{case_name(files[0], file_ending)}{ending}" for files in listing.cases for ending in endings]
    existing = [path.name for path in existing if path.exists()]
    if existing:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise OutputFolderError(f"output folder {output} already holds {shown}, which this prediction would write; "
                                f"pass --overwrite to replace them, --continue_prediction to keep them and skip their "
                                f"cases, or choose another output folder")


@command
def predict_fast_entry(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.part_id >= args.num_parts:
        raise UserInputError(f"-part_id {args.part_id}: must be smaller than -num_parts ({args.num_parts}); parts "
                             f"are counted from 0")
    folder = model_folder(args)
    dataset_json = read_json_object(folder / "dataset.json", "not the dataset.json nnU-Net keeps with a trained model")
    # a missing or empty input folder fails here, at once
    listing = list_cases(args.i, dataset_json["file_ending"], len(expected_channel_names(dataset_json)))
    check_output_folder(args.o, [args.i], overwrite=True, overwrite_flag="")
    if args.overwrite and args.continue_prediction:
        raise UserInputError("--overwrite and --continue_prediction: choose one (replace existing segmentations, or "
                             "keep them and skip their cases)")
    if not args.overwrite and not args.continue_prediction:
        refuse_existing_outputs(listing, Path(args.o), dataset_json["file_ending"], args.save_probabilities)

    from nnunetv2_uda.inference.predictor import nnUNetPredictorFast

    predictor = nnUNetPredictorFast(tile_step_size=args.step_size, use_gaussian=True, use_mirroring=args.enable_tta,
                                    perform_everything_on_device=not args.not_on_device,
                                    device=_device(args.device), verbose=args.verbose,
                                    verbose_preprocessing=args.verbose, allow_tqdm=not args.disable_progress_bar,
                                    label_resampling=args.label_resampling, input_resampling=args.input_resampling,
                                    allow_nonfinite=args.allow_nonfinite)
    predictor.initialize_from_trained_model_folder(str(folder), args.f, checkpoint_name=args.chk)
    try:
        predictor.predict_from_files(args.i, args.o, save_probabilities=args.save_probabilities,
                                     overwrite=not args.continue_prediction,
                                     folder_with_segs_from_prev_stage=args.prev_stage_predictions,
                                     num_parts=args.num_parts, part_id=args.part_id)
    finally:
        if args.timings is not None:
            write_json_atomically({"first_network_call_unix": predictor.first_network_call,
                                   "end_unix": time.time(), "cases": predictor.case_timings}, args.timings)
