"""Source steps: the CT copied for nnU-Net (only the chosen organs' labels), the shared small network planned on it,
and a segmentation network trained on CT or fake MRI with the CT labels that pseudo-labels the real MRI."""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

from nnunetv2_uda.atomic_files import write_json_atomically
from nnunetv2_uda.json_files import read_json_object
from nnunetv2_uda.pipeline.commands import run_logged
from nnunetv2_uda.pipeline.config import TRAINERS, PipelineConfig, source_budget, source_snapshots
from nnunetv2_uda.pipeline.datasets import (
    OWNER_KEY,
    labeled_cases,
    set_dataset_json,
    write_raw_dataset,
)
from nnunetv2_uda.pipeline.graph import Attempt, Context, Step
from nnunetv2_uda.pipeline.nnunet_commands import PLANNER, PLANS, ZSCORE_CHANNEL, budget, continue_from, remove, train
from nnunetv2_uda.pipeline.steps.prediction import pseudolabel_step
from nnunetv2_uda.pseudolabels.snapshots import DATASET_JSON_KEY, SNAPSHOT_SUBFOLDER

SOURCE_NAMES = {"ct": "CT", "asit": "ASIT fake MRI", "cyclegan": "CycleGAN fake MRI"}


def copy_ct(context: Context, attempt: Attempt) -> dict:
    dataset_id, name = context.dataset("source_ct")
    write_raw_dataset(context.raw / name, labeled_cases(Path(context.config.ct_dataset)), context.labels,
                      ZSCORE_CHANNEL, {OWNER_KEY: context.owner}, relabel=context.relabel, replace=True)
    return {"dataset_id": dataset_id, "dataset": name, "folder": str(context.raw / name)}


def copy_ct_step(config: PipelineConfig) -> Step:
    return Step("copy_ct", "copy the CT dataset for nnU-Net (z-score normalization, the chosen organs' labels)",
                copy_ct, {"dataset_id_base": config.dataset_id_base, "organs": config.organs},
                inputs=("ct_dataset",), datasets=("source_ct",))


def plan(context: Context, attempt: Attempt) -> dict:
    config = context.config
    dataset_id, name = context.dataset("source_ct")
    remove(context.folders["nnUNet_preprocessed"] / name)
    args = ["nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-pl", PLANNER, "-c", config.configuration,
            "-np", config.num_processes, "-npfp", config.num_processes, "--no_pp", "--clean"]
    if config.target_spacing is not None:
        args += ["-overwrite_target_spacing", *config.target_spacing]
    run_logged(args, context.log_file("plan"))
    plans = context.folders["nnUNet_preprocessed"] / name / f"{PLANS}.json"
    if config.batch_size is not None:  # nnU-Net's documented way: edit the plans
        content = read_json_object(plans, "not the plans nnUNetv2_plan_and_preprocess writes")
        content["configurations"][config.configuration]["batch_size"] = config.batch_size
        write_json_atomically(content, plans)
    return {"dataset_id": dataset_id, "dataset": name, "plans": str(plans)}


def plan_step(config: PipelineConfig) -> Step:
    return Step("plan", "plan the shared small network on the CT dataset", plan,
                {"configuration": config.configuration, "target_spacing": config.target_spacing,
                 "batch_size": config.batch_size, "dataset_id_base": config.dataset_id_base},
                depends=("copy_ct",), datasets=("source_ct",))


def train_source(context: Context, attempt: Attempt, source: str, trainer: str, snapshots: int,
                 from_ct: bool) -> dict:
    config = context.config
    step = f"train_{source}"
    dataset_id, name = context.dataset("source_ct" if source == "ct" else f"fake_{source}")
    if snapshots:  # their uncertainty orders the MRI sequences for MDM (config.source_snapshots)
        target = {"target_images": str(context.mri_images.resolve()), "num_snapshots": snapshots}
        set_dataset_json(context.raw / name, **{DATASET_JSON_KEY: target})
    pretrained = Path(context.manifest_outputs("train_ct")["checkpoint"]) if from_ct else None
    checkpoint = continue_from(context, step, name, trainer, attempt.resume)
    outputs = train(context, step, dataset_id, name, trainer, checkpoint, pretrained)
    if snapshots:
        outputs["snapshots"] = str(Path(outputs["model_folder"]) / f"fold_{config.fold}" / SNAPSHOT_SUBFOLDER)
    return outputs


def source_steps(config: PipelineConfig, source: str) -> list[Step]:
    """Train on CT or fake MRI with the CT labels, then pseudo-label the real MRI."""
    snapshots = source_snapshots(config, source)
    training = source_budget(config, source)
    from_ct = source != "ct" and config.source_warm_start
    trainer = budget(training.epochs, training.iterations_per_epoch,
                     TRAINERS[config.trainer] if snapshots else config.trainer)
    upstream = ("plan",) if source == "ct" else ("plan", f"translate_{source}") + (("train_ct",) if from_ct else ())
    settings = {"budget": dataclasses.asdict(training), "device": config.device, "cpu_bf16": config.cpu_bf16,
                "fold": config.fold, "num_gpus": config.num_gpus, "trainer": trainer, "warm_start_from_ct": from_ct,
                "num_snapshots": snapshots or None}
    return [
        Step(f"train_{source}", f"train the segmentation network on {SOURCE_NAMES[source]} with the CT labels",
             partial(train_source, source=source, trainer=trainer, snapshots=snapshots, from_ct=from_ct), settings,
             depends=upstream, datasets=("source_ct" if source == "ct" else f"fake_{source}",)),
        pseudolabel_step(config, f"train_{source}", source,
                         f"pseudo-label the real MRI with the {SOURCE_NAMES[source]} network"),
    ]
