"""``nnUNetv2_predict_fast``: ``nnUNetv2_predict``'s arguments, ``nnUNetPredictorFast``'s inference.

A user's script only changes the command name. Every flag of ``nnUNetv2_predict`` is accepted with its meaning;
TTA is off by default here (``--enable_tta`` turns it on, ``--disable_tta`` is accepted and is the default), and
``--label_resampling`` chooses how the label map reaches the original geometry.
"""

from __future__ import annotations

import argparse
import sys

import torch

from nnunetv2_uda.inference.label_resampling import LABEL_RESAMPLING_MODES
from nnunetv2_uda.inference.predictor import INPUT_RESAMPLING_MODES


def _env_int(name: str, default: int) -> int:
    import os

    try:
        return int(os.environ.get(name) or default)
    except ValueError:
        return default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_predict_fast",
        description="nnUNetv2_predict with the paper's inference order: the class decision (argmax, or sigmoid and "
                    "threshold for region models) is made at network resolution and only the label map is "
                    "resampled to the original geometry, on the compute device. Same arguments as "
                    "nnUNetv2_predict; test-time mirroring is off unless --enable_tta is given.")
    parser.add_argument("-i", type=str, required=True,
                        help="Input folder: <case>_0000.nii.gz, ... with the training dataset's file ending.")
    parser.add_argument("-o", type=str, required=True,
                        help="Output folder (created if needed); segmentations are named like their cases.")
    parser.add_argument("-d", type=str, required=True, help="Dataset name or id of the trained model.")
    parser.add_argument("-p", type=str, default="nnUNetPlans", help="Plans identifier. Default: nnUNetPlans")
    parser.add_argument("-tr", type=str, default="nnUNetTrainer",
                        help="Trainer class used for training. Default: nnUNetTrainer")
    parser.add_argument("-c", type=str, required=True, help="Configuration, e.g. 3d_fullres or 2d.")
    parser.add_argument("-f", nargs="+", type=str, default=(0, 1, 2, 3, 4),
                        help="Folds to use (ensembled if several). Default: 0 1 2 3 4")
    parser.add_argument("-step_size", type=float, default=0.5,
                        help="Sliding-window tile step as a fraction of the patch size (<= 1; larger is faster). "
                             "Default: 0.5")
    tta = parser.add_mutually_exclusive_group()
    tta.add_argument("--disable_tta", action="store_true",
                     help="Accepted for compatibility with nnUNetv2_predict: no mirroring is already the default.")
    tta.add_argument("--enable_tta", action="store_true",
                     help="Turn on test-time mirroring (as far as the trainer allows it; slower).")
    parser.add_argument("--label_resampling", choices=LABEL_RESAMPLING_MODES, default="nearest",
                        help="How the label map is brought to the original geometry: 'nearest', or 'linear' "
                             "(per-label linear interpolation of the one-hot map, then argmax). Default: nearest")
    parser.add_argument("--input_resampling", choices=INPUT_RESAMPLING_MODES, default="torch",
                        help="How the input image reaches the network's spacing: 'torch' (nnU-Net's torch "
                             "resampling on the compute device) or 'nnunet' (the plans' own function, as "
                             "nnUNetv2_predict: scipy's cubic spline on the CPU; slower, closest to stock "
                             "predictions). Default: torch")
    parser.add_argument("--verbose", action="store_true", help="Print more about what happens.")
    parser.add_argument("--save_probabilities", action="store_true",
                        help="Also export probabilities (.npz/.pkl). Probabilities are resampled as by stock "
                             "nnU-Net, so this loses the fast export.")
    parser.add_argument("--continue_prediction", action="store_true",
                        help="Skip cases whose output already exists.")
    parser.add_argument("-chk", type=str, default="checkpoint_final.pth",
                        help="Checkpoint file name. Default: checkpoint_final.pth")
    parser.add_argument("-npp", type=int, default=_env_int("nnUNet_npp", 3),
                        help="Accepted for compatibility; preprocessing runs in one background thread of this "
                             "process. Default: 3 (unused)")
    parser.add_argument("-nps", type=int, default=_env_int("nnUNet_nps", 3),
                        help="Accepted for compatibility; export runs in this process. Default: 3 (unused)")
    parser.add_argument("-prev_stage_predictions", type=str, default=None,
                        help="Folder with the previous stage's predictions (cascaded models only).")
    parser.add_argument("-num_parts", type=int, default=1,
                        help="Number of separate calls the cases are split into. Default: 1")
    parser.add_argument("-part_id", type=int, default=0,
                        help="Which of the -num_parts calls this is (0 .. num_parts-1). Default: 0")
    parser.add_argument("-device", type=str, default="cuda", choices=("cuda", "cpu", "mps"),
                        help="Compute device: cuda, cpu or mps (choose the GPU with CUDA_VISIBLE_DEVICES). "
                             "Default: cuda")
    parser.add_argument("--disable_progress_bar", action="store_true", help="No progress bars (HPC jobs).")
    parser.add_argument("--not_on_device", action="store_true",
                        help="Keep the sliding-window results on the CPU (for cases too large for the GPU).")
    return parser


def _device(name: str) -> torch.device:
    if name == "cpu":
        import multiprocessing

        torch.set_num_threads(multiprocessing.cpu_count())
    elif name == "cuda":
        torch.set_num_threads(1)  # as nnUNetv2_predict: CPU threads do not help when the GPU works
    return torch.device(name)


def predict_fast_entry(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.part_id >= args.num_parts:
        sys.exit(f"nnUNetv2_predict_fast: -part_id ({args.part_id}) must be smaller than -num_parts "
                 f"({args.num_parts})")
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    from nnunetv2_uda.inference.predictor import CasesFailedError, nnUNetPredictorFast

    predictor = nnUNetPredictorFast(tile_step_size=args.step_size, use_gaussian=True, use_mirroring=args.enable_tta,
                                    perform_everything_on_device=not args.not_on_device,
                                    device=_device(args.device), verbose=args.verbose,
                                    verbose_preprocessing=args.verbose, allow_tqdm=not args.disable_progress_bar,
                                    label_resampling=args.label_resampling,
                                    input_resampling=args.input_resampling)
    folds = [f if f == "all" else int(f) for f in args.f]
    predictor.initialize_from_trained_model_folder(get_output_folder(args.d, args.tr, args.p, args.c), folds,
                                                   checkpoint_name=args.chk)
    try:
        predictor.predict_from_files(args.i, args.o, save_probabilities=args.save_probabilities,
                                     overwrite=not args.continue_prediction,
                                     folder_with_segs_from_prev_stage=args.prev_stage_predictions,
                                     num_parts=args.num_parts, part_id=args.part_id)
    except CasesFailedError as error:
        sys.exit(f"nnUNetv2_predict_fast: {error}")
