"""The multi-domain matching step: the ASIT network's pseudo-labels matched across the MRI sequences."""

from __future__ import annotations

from nnunetv2_uda.atomic_files import folder_built_atomically, write_text_atomically
from nnunetv2_uda.pipeline.commands import run_logged
from nnunetv2_uda.pipeline.config import PipelineConfig
from nnunetv2_uda.pipeline.graph import Attempt, Context, Step
from nnunetv2_uda.pipeline.nnunet_commands import write_labels_dataset_json
from nnunetv2_uda.pseudolabels.filtering import UNCERTAINTY_CSV


def mdm(context: Context, attempt: Attempt) -> dict:
    output = context.out / "mdm"
    sequences_csv = context.out / "inputs" / "sequences.csv"
    sequences_csv.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically("case,sequence\n" + "".join(f"{case},{tag}\n"
                                                      for case, tag in sorted(context.sequences.items())),
                          sequences_csv)
    order = ["--sequences_csv", sequences_csv]
    if context.config.sequence_order:
        order += ["--order", *context.config.sequence_order]
    else:  # the sequences ranked by the snapshot uncertainty of the ASIT network's pseudo-labels
        ranking = context.out / "mdm_sequence_ranking"
        with folder_built_atomically(ranking, replace=True) as staging:
            run_logged(["nnUNetv2_uda_filter_pseudolabels", context.manifest_outputs("train_asit")["snapshots"],
                        staging, "--keep_fraction", 1.0, "--images", context.mri_images], context.log_file("mdm"))
        order += ["--uncertainty_csv", ranking / UNCERTAINTY_CSV]
    with folder_built_atomically(output, replace=True) as staging:
        run_logged(["nnUNetv2_uda_mdm", context.mri_images, context.manifest_outputs("pseudolabel_asit")["labels"],
                    staging, *order], context.log_file("mdm"))
        write_labels_dataset_json(context, staging)
    return {"labels": str(output), "matches": str(output / "mdm_matches.csv")}


def mdm_step(config: PipelineConfig) -> Step:
    return Step("mdm", "multi-domain matching of the pseudo-labels across MRI sequences", mdm,
                {"sequence_order": config.sequence_order}, depends=("pseudolabel_asit", "train_asit"),
                inputs=("mri_dataset",))
