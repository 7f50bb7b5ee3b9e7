"""Command-line entry points: nnUNetv2_uda_evaluate and nnUNetv2_uda_profile."""

from __future__ import annotations

import argparse
import sys

from nnunetv2_uda.command_line import command, positive_float, positive_int
from nnunetv2_uda.evaluation.evaluate import (
    BOXPLOT_PNG,
    COMMON_SUBSET_FLAG,
    METRICS_CSV,
    SUMMARY_JSON,
    evaluate_folder,
)
from nnunetv2_uda.evaluation.flare_rules import FLARE_NSD_TOLERANCES_MM
from nnunetv2_uda.evaluation.profiling import PROFILE_CSV, SAMPLING_INTERVAL_S, format_efficiency_table, profile_folder


@command
def evaluate_entry(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Score predictions against ground truth with FLARE 2024's DSC and NSD rules (per case and "
        "organ; organs matched by dataset.json label name). Writes metrics.csv, summary.json and "
        "metrics_boxplot.png and prints the Table 5 and Tables 8/9 forms.",
    )
    parser.add_argument("pred_dir", help="folder with the predicted segmentations (<case>.nii.gz) and dataset.json")
    parser.add_argument("gt_dir", help="folder with the ground truth (<case>.nii.gz), e.g. a labelsEval folder")
    parser.add_argument(
        "-o",
        "--output_folder",
        default=None,
        help=f"where {METRICS_CSV}, {SUMMARY_JSON} and {BOXPLOT_PNG} go. Default: PRED_DIR",
    )
    parser.add_argument(
        "--pred_dataset_json",
        default=None,
        help="dataset.json naming the prediction's labels. Default: PRED_DIR/dataset.json",
    )
    parser.add_argument(
        "--gt_dataset_json",
        default=None,
        help="dataset.json naming the ground truth's labels. Default: GT_DIR/dataset.json, else GT_DIR/../dataset.json",
    )
    parser.add_argument(
        "--organs",
        nargs="+",
        default=None,
        help="score only these organs (label names, quote names with spaces). Default: all organs "
        "of the ground truth's dataset.json that appear in at least one ground-truth case",
    )
    parser.add_argument(
        "--default_tolerance",
        type=positive_float,
        default=None,
        help="NSD tolerance (mm) for organs without a FLARE tolerance. Default: none, such organs "
        f"are an error. FLARE tolerances: {FLARE_NSD_TOLERANCES_MM}",
    )
    parser.add_argument(
        "--keep_unannotated",
        action="store_true",
        help="also score organs that no ground-truth case contains (declared but not annotated); "
        "by default they are left out and listed",
    )
    parser.add_argument(
        COMMON_SUBSET_FLAG,
        action="store_true",
        help="score only the cases with both a prediction and a ground truth, and say so in the output and "
        f"{SUMMARY_JSON}. By default prediction and ground-truth case lists that differ are an error listing the "
        "cases",
    )
    parser.add_argument("-np", "--num_processes", type=positive_int, default=2,
                        help="cases scored in parallel. Default: 2")
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    parser.add_argument("--disable_progress_bar", action="store_true", help="no tqdm progress bar")
    args = parser.parse_args(argv)
    result = evaluate_folder(
        args.pred_dir,
        args.gt_dir,
        args.output_folder,
        args.pred_dataset_json,
        args.gt_dataset_json,
        args.organs,
        args.default_tolerance,
        args.keep_unannotated,
        args.num_processes,
        progress=not args.disable_progress_bar,
        common_subset=args.common_subset,
    )
    for file, ids in result.undeclared_labels.items():
        print(f"warning: {file}: label id(s) {', '.join(map(str, ids))} not declared in its dataset.json (scored as "
              f"background)", file=sys.stderr)
    print(f"\nScored {result.scope()}; organs: {', '.join(result.organs)}")
    if result.unannotated_organs:
        print(f"Left out (in no ground-truth case): {', '.join(result.unannotated_organs)}")
    print("\nDSC and NSD, mean ± std (Table 5 form)\n")
    print(result.table5(args.markdown))
    print("\nDSC and NSD percentiles (Tables 8/9 form)\n")
    print(result.percentile_table(args.markdown))
    print(f"\nWrote {METRICS_CSV}, {SUMMARY_JSON} and {BOXPLOT_PNG} to {result.output_folder}")


@command
def profile_entry(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Run a prediction command once per case and record wall time, peak memory of its process tree "
        f"and, with a CUDA device, GPU memory sampled every {SAMPLING_INTERVAL_S} s with its area under the curve "
        "(like FLARE's efficiency script). Example: nnUNetv2_uda_profile imagesTs preds -- nnUNetv2_predict "
        "-i {input} -o {output} -d 801 -c 2d -f all",
        usage="%(prog)s [options] INPUT_FOLDER OUTPUT_FOLDER -- COMMAND ...",
        epilog="COMMAND (after '--', all options go before it): the prediction command; {input} is replaced by a "
        "one-case input folder, {output} by OUTPUT_FOLDER and {case} by the case id.",
    )
    parser.add_argument("input_folder", help="nnU-Net input folder (<case>_0000.nii.gz, ...)")
    parser.add_argument("output_folder", help="where the command writes predictions ({output}) and the CSV goes")
    parser.add_argument("--file_ending", default=".nii.gz", help="input file ending. Default: .nii.gz")
    parser.add_argument("--csv", default=None, help=f"per-case CSV. Default: OUTPUT_FOLDER/{PROFILE_CSV}")
    parser.add_argument(
        "--interval",
        type=positive_float,
        default=SAMPLING_INTERVAL_S,
        help=f"memory sampling interval in s. Default: {SAMPLING_INTERVAL_S}",
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--disable_progress_bar", action="store_true", help="no tqdm progress bar")
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args, prediction_command = parser.parse_args(argv[:split]), argv[split + 1 :]
    if not prediction_command:
        parser.error("give the prediction command after '--' (all options go before it)")
    profiles = profile_folder(
        args.input_folder,
        args.output_folder,
        prediction_command,
        args.file_ending,
        args.csv,
        args.interval,
        progress=not args.disable_progress_bar,
    )
    print("\nEfficiency per case (Table 8 form)\n")
    print(format_efficiency_table(profiles, args.markdown))
    failed = [p.case for p in profiles if p.returncode != 0]
    if failed:
        print(f"\nFAILED cases (see profile_log.txt in {args.output_folder}): {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)
