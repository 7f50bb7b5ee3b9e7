"""The multi-domain matching step: a source network's pseudo-labels matched across the MRI sequences."""

from __future__ import annotations

from functools import partial

from nnunetv2_uda.atomic_files import folder_built_atomically, write_text_atomically
from nnunetv2_uda.pipeline.commands import run_logged
from nnunetv2_uda.pipeline.config import PipelineConfig
from nnunetv2_uda.pipeline.graph import Attempt, Context, Step
from nnunetv2_uda.pipeline.nnunet_commands import write_labels_dataset_json
from nnunetv2_uda.pipeline.steps.source import SOURCE_NAMES
from nnunetv2_uda.pseudolabels.filtering import UNCERTAINTY_CSV
from nnunetv2_uda.pseudolabels.matching import MATCHES_CSV, MATCHES_PNG


def mdm_name(source: str) -> str:
    """The MDM step of the rows that start from ``source``'s pseudo-labels, and its folder in the output folder."""
    return f"mdm_{source}"


def mdm(context: Context, attempt: Attempt, source: str) -> dict:
    step = mdm_name(source)
    output = context.out / step
    sequences_csv = context.out / "inputs" / "sequences.csv"
    sequences_csv.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically("case,sequence\n" + "".join(f"{case},{tag}\n"
                                                      for case, tag in sorted(context.sequences.items())),
                          sequences_csv)
    config = context.config
    options = ["--sequences_csv", sequences_csv]
    if config.sequence_order:
        options += ["--order", *config.sequence_order]
    if config.mdm_keep_more_plausible:
        options += ["--keep_more_plausible"]
    ranked_by = None if config.sequence_order else config.sequence_ranking
    if ranked_by == "plausibility" or config.mdm_keep_more_plausible:
        options += ["--ct_labels", context.labeled_ct / "labelsTr"]  # organ volumes of the CT labels it trained on
    elif ranked_by == "uncertainty":  # the snapshot uncertainty of the source network's pseudo-labels
        ranking = context.out / f"{step}_sequence_ranking"
        with folder_built_atomically(ranking, replace=True) as staging:
            run_logged(["nnUNetv2_uda_filter_pseudolabels", context.manifest_outputs(f"train_{source}")["snapshots"],
                        staging, "--keep_fraction", 1.0, "--images", context.mri_images], context.log_file(step))
        options += ["--uncertainty_csv", ranking / UNCERTAINTY_CSV]
    with folder_built_atomically(output, replace=True) as staging:
        run_logged(["nnUNetv2_uda_mdm", context.mri_images, context.manifest_outputs(f"pseudolabel_{source}")["labels"],
                    staging, *options, "--registration_on", config.mdm_registration], context.log_file(step))
        write_labels_dataset_json(context, staging)
    figures = [str(output / MATCHES_PNG)] if (output / MATCHES_PNG).is_file() else []
    return {"labels": str(output), "matches": str(output / MATCHES_CSV), "mdm_figures": figures}


def mdm_step(config: PipelineConfig, source: str) -> Step:
    return Step(mdm_name(source), f"multi-domain matching of the {SOURCE_NAMES[source]} network's pseudo-labels across "
                f"MRI sequences", partial(mdm, source=source),
                {"sequence_order": config.sequence_order, "sequence_ranking": config.sequence_ranking,
                 "registration": config.mdm_registration, "keep_more_plausible": config.mdm_keep_more_plausible},
                depends=(f"pseudolabel_{source}", f"train_{source}", "copy_ct"), inputs=("mri_dataset",))
