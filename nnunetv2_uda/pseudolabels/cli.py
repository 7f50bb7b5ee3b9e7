"""Command lines ``nnUNetv2_uda_filter_pseudolabels``, ``nnUNetv2_uda_mdm`` and ``nnUNetv2_uda_largest_component``."""

from __future__ import annotations

import argparse
import sys

from nnunetv2_uda.command_line import command, fraction, positive_float, positive_int
from nnunetv2_uda.images import ALLOW_NONFINITE_FLAG
from nnunetv2_uda.pseudolabels.filtering import DEFAULT_KEEP_FRACTION, filter_pseudolabels
from nnunetv2_uda.pseudolabels.largest_component import REMOVED_CSV, largest_component_folder
from nnunetv2_uda.pseudolabels.matching import MATCHES_CSV, multi_domain_matching
from nnunetv2_uda.pseudolabels.registration import REGISTRATION_INPUTS

OVERWRITE_HELP = ("replace an existing non-empty output folder (the new one is built beside it and swapped in only "
                  "when complete, so no stale case survives); without it such a folder is refused")
VERBOSE_HELP = "on an error, show the Python traceback too"


@command
def filter_pseudolabels_entry() -> None:
    parser = argparse.ArgumentParser(
        description="Scores each target case by the disagreement of its pseudo-label snapshots (snapshot "
                    "uncertainty u, eq. 7 of the paper; a case with an empty snapshot gets u = inf and is rejected), "
                    "keeps the most certain cases and writes them as an nnU-Net raw dataset whose labels are the "
                    "union ensemble of the snapshots, with uncertainty.csv and uncertainty_histogram.png.")
    parser.add_argument("snapshot_folder", help="the 'pseudolabel_snapshots' folder written by "
                                                "nnUNetTrainerUDAPseudoLabel (or the fold folder holding it)")
    parser.add_argument("output_dataset_folder", help="raw dataset folder to write, e.g. "
                                                      "$nnUNet_raw/Dataset812_MRIPseudo")
    cut = parser.add_mutually_exclusive_group()
    cut.add_argument("--threshold", type=positive_float, default=None,
                     help="keep the cases with u below this value")
    cut.add_argument("--keep_fraction", type=fraction, default=None,
                     help=f"keep this fraction (0 < F <= 1) of all cases, most certain first (default when neither "
                          f"flag is given: {DEFAULT_KEEP_FRACTION})")
    parser.add_argument("--images", default=None,
                        help="folder of the target images <case>_0000.nii.gz (default: target_images recorded in "
                             "snapshots.json)")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    args = parser.parse_args()
    result = filter_pseudolabels(args.snapshot_folder, args.output_dataset_folder, args.threshold,
                                 args.keep_fraction, args.images, args.overwrite)
    print(f"kept {len(result.kept)} of {len(result.uncertainty)} cases (u < {result.cut:.6g}); dataset written to "
          f"{result.output_dataset_folder}")


@command
def mdm_entry() -> None:
    parser = argparse.ArgumentParser(
        description="Multi-domain matching: splits the target cases into sub-domains by MRI sequence and replaces "
                    "the pseudo-label of each case of a worse sub-domain by that of the better-domain case with "
                    "the closest organ volumes (eq. 5; of the same patient where known), affinely registered onto "
                    f"it with SimpleITK and warped into its geometry. Writes OUTPUT_FOLDER/<case>.nii.gz and "
                    f"{MATCHES_CSV}.")
    parser.add_argument("images_folder", help="folder of the target images <case>_0000.nii.gz (and optional "
                                              "sidecars <case>.json with {\"sequence\": ..., \"patient\": ...}; "
                                              "the patient is optional)")
    parser.add_argument("pseudolabel_folder", help="folder of the pseudo-labels <case>.nii.gz (e.g. labelsTr of "
                                                   "nnUNetv2_uda_filter_pseudolabels' output)")
    parser.add_argument("output_folder", help="where the updated pseudo-labels go")
    parser.add_argument("--order", nargs="+", default=None, metavar="SEQ",
                        help="sub-domains best first (default: ranked by --ct_labels or --uncertainty_csv)")
    parser.add_argument("--sequences_csv", default=None,
                        help="CSV with columns case,sequence and optionally patient; takes priority over sidecars "
                             "and name tokens (default: none). Where a case's patient is known and a series of the "
                             "same patient is among its candidates, the case is matched with that series, the "
                             "nearest by organ volumes if several")
    ranking = parser.add_mutually_exclusive_group()
    ranking.add_argument("--ct_labels", default=None, metavar="FOLDER",
                         help="labeled CT cases (e.g. labelsTr of the CT dataset, the label ids of the pseudo-labels): "
                              "ranks the sub-domains by how far their pseudo-labels' organ volumes lie from the CT "
                              "cases' (median over a sub-domain's cases of the mean over organs of |log volume - CT "
                              "mean| / CT standard deviation, capped at 3; an absent organ counts 3). Does not reward "
                              "a network that is confidently wrong, as --uncertainty_csv can")
    ranking.add_argument("--uncertainty_csv", default=None,
                         help="uncertainty.csv of nnUNetv2_uda_filter_pseudolabels: ranks the sub-domains by mean "
                              "snapshot uncertainty u (the paper's way). With several sub-domains and no --order, "
                              "one of --ct_labels and --uncertainty_csv is needed")
    parser.add_argument("--registration_on", choices=REGISTRATION_INPUTS, default="labels",
                        help="what the affine registration aligns: the label maps (default; the matched label onto "
                             "the case's own), the z-scored images (cases of similar contrast), or the body "
                             "outlines (each image's Otsu foreground, holes filled, largest component: neither "
                             "contrast nor the case's own label enters), or nothing ('world': the matched label "
                             "stays where the scanner placed it; only between series of one patient from one "
                             "session, whose headers share the scanner's coordinates; a case with no such series is "
                             "refused)")
    parser.add_argument("--keep_more_plausible", action="store_true",
                        help="with --ct_labels: a case of a worse sub-domain takes its match's label only where the "
                             "match's organ volumes are more plausible than its own (the per-case score the ranking "
                             "takes the median of); otherwise it keeps its own pseudo-label (kept_own in "
                             f"{MATCHES_CSV}). A sub-domain's rank says nothing about each of its cases, least of all "
                             "when it holds one or two")
    parser.add_argument(ALLOW_NONFINITE_FLAG, action="store_true",
                        help="with --registration_on images or body: replace NaN/inf voxels of an image by its lowest "
                             "finite value (said on stderr) instead of refusing the case")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    args = parser.parse_args()
    records = multi_domain_matching(args.images_folder, args.pseudolabel_folder, args.output_folder, args.order,
                                    args.sequences_csv, args.uncertainty_csv, args.ct_labels, args.registration_on,
                                    args.overwrite, args.allow_nonfinite, args.keep_more_plausible)
    matched = sum(1 for record in records if record.matched_case and not record.kept_own)
    print(f"{matched} of {len(records)} pseudo-labels replaced by matched ones; written to {args.output_folder}")


@command
def largest_component_entry() -> None:
    parser = argparse.ArgumentParser(
        description="Keeps only the largest connected component of each label (nnU-Net's "
                    "remove_all_but_largest_component_from_segmentation, 3D full connectivity) in every "
                    "<case>.nii.gz of INPUT_FOLDER and writes the results, same geometry and voxel type, to "
                    f"OUTPUT_FOLDER with {REMOVED_CSV} (voxels removed per case and label). Meant for organs that "
                    "are one connected object, applied to pseudo-labels or predictions; unreadable files are named, "
                    "the other cases are still written, and the command then exits non-zero.")
    parser.add_argument("input_folder", help="folder of label maps <case>.nii.gz (e.g. nnUNetv2_predict output)")
    parser.add_argument("output_folder", help="where the post-processed label maps go (a new folder; the input "
                                              "is not changed)")
    parser.add_argument("--labels", type=positive_int, nargs="+", default=None, metavar="ID",
                        help="label ids to post-process (default: every non-zero label present); other labels "
                             "are copied unchanged")
    parser.add_argument("-np", "--num_processes", type=positive_int, default=1,
                        help="cases processed in parallel (default: 1)")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    args = parser.parse_args()
    results = largest_component_folder(args.input_folder, args.output_folder, args.labels, args.num_processes,
                                       args.overwrite)
    absent = sorted(set(args.labels or ()) - set().union(*(result.present for result in results)))
    if absent:
        print(f"warning: --labels {' '.join(map(str, absent))}: in no label map of {args.input_folder}; nothing done "
              f"for them", file=sys.stderr)
    removed = sum(sum(result.removed_voxels.values()) for result in results)
    print(f"{len(results)} label maps written to {args.output_folder} ({removed} voxels outside the largest "
          f"components removed)")
