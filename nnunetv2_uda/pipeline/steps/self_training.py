"""Pseudo-label filtering (PLF) steps: self-training with K snapshots, snapshot-uncertainty filtering, the final
network on the kept MRI pseudo-labels plus CT cases, and its predictions.

A row's first round starts from its source network's pseudo-labels (after MDM for an MDM row); a later round starts
from the previous round's final network, which pseudo-labels the MRI again and is the warm start, as the
pseudo-labeling network is in the first round.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from nnunetv2_uda.atomic_files import folder_built_atomically
from nnunetv2_uda.pipeline.commands import run_logged
from nnunetv2_uda.pipeline.config import TRAINERS, PipelineConfig
from nnunetv2_uda.pipeline.datasets import OWNER_KEY, labeled_cases, set_dataset_json, write_raw_dataset
from nnunetv2_uda.pipeline.graph import Attempt, Context, Step
from nnunetv2_uda.pipeline.nnunet_commands import ZSCORE_CHANNEL, budget, continue_from, train
from nnunetv2_uda.pipeline.rows import Row
from nnunetv2_uda.pipeline.steps.mdm import mdm_name
from nnunetv2_uda.pipeline.steps.prediction import largest_component, predict_step, pseudolabel_step
from nnunetv2_uda.pseudolabels.label_io import image_channel_files, label_files
from nnunetv2_uda.pseudolabels.largest_component import REMOVED_CSV
from nnunetv2_uda.pseudolabels.snapshots import DATASET_JSON_KEY, SNAPSHOT_SUBFOLDER
from nnunetv2_uda.training.budget import budget_trainer_name


def plf_name(row: Row, round_number: int) -> str:
    """Names the steps and datasets of one self-training round: ``ct``, ``ct_round2``, ..."""
    return row.chain if round_number == 1 else f"{row.chain}_round{round_number}"


def selftrain(context: Context, attempt: Attempt, name: str, labels_step: str, source_network: str,
              trainer: str) -> dict:
    config = context.config
    step = f"selftrain_{name}"
    dataset_id, dataset = context.dataset(step)
    images = image_channel_files(context.mri_images)
    labels = label_files(Path(context.manifest_outputs(labels_step)["labels"]))
    missing = sorted(set(images) - set(labels))
    if missing:
        raise FileNotFoundError(f"no pseudo-label for MRI case(s) {missing[:5]}")
    checkpoint = continue_from(context, step, dataset, trainer, attempt.resume)
    if checkpoint is None:
        target = {"target_images": str(context.mri_images.resolve()),
                  "num_snapshots": config.self_training.num_snapshots}
        write_raw_dataset(context.raw / dataset, {c: (images[c], labels[c]) for c in sorted(images)},
                          context.labels, ZSCORE_CHANNEL, {OWNER_KEY: context.owner, DATASET_JSON_KEY: target},
                          replace=True)
    pretrained = Path(context.manifest_outputs(source_network)["checkpoint"]) if config.warm_start else None
    outputs = train(context, step, dataset_id, dataset, trainer, checkpoint, pretrained)
    outputs["snapshots"] = str(Path(outputs["model_folder"]) / f"fold_{config.fold}" / SNAPSHOT_SUBFOLDER)
    return outputs


def filter_labels(context: Context, attempt: Attempt, name: str) -> dict:
    config = context.config
    step = f"filter_{name}"
    dataset_id, dataset = context.dataset(f"filtered_{name}")
    target = context.raw / dataset
    cut = ["--threshold", config.self_training.threshold] if config.self_training.threshold is not None \
        else ["--keep_fraction", config.self_training.keep_fraction]
    with folder_built_atomically(target, replace=True) as staging:
        run_logged(["nnUNetv2_uda_filter_pseudolabels", context.manifest_outputs(f"selftrain_{name}")["snapshots"],
                    staging, *cut, "--images", context.mri_images], context.log_file(step))
        if config.largest_component:  # the final network trains on labelsTr: cleaned there, unprocessed aside
            cleaned = staging / "labelsTr_largest_component"
            largest_component(context, step, staging / "labelsTr", cleaned)
            (cleaned / REMOVED_CSV).rename(staging / REMOVED_CSV)
            (staging / "labelsTr").rename(staging / "labelsTr_unprocessed")
            cleaned.rename(staging / "labelsTr")
        set_dataset_json(staging, **{OWNER_KEY: context.owner})
    kept = sorted(label_files(target / "labelsTr"))
    return {"dataset_id": dataset_id, "dataset": dataset, "folder": str(target), "kept_cases": kept,
            "uncertainty_csv": str(target / "uncertainty.csv"),
            "uncertainty_figures": sorted(str(p) for p in target.rglob("*.png"))}


def train_final(context: Context, attempt: Attempt, name: str, trainer: str) -> dict:
    config = context.config
    step = f"final_{name}"
    dataset_id, dataset = context.dataset(step)
    checkpoint = continue_from(context, step, dataset, trainer, attempt.resume)
    if checkpoint is None:
        kept = labeled_cases(Path(context.manifest_outputs(f"filter_{name}")["folder"]), config.final.max_mri_cases)
        ct_folder = context.labeled_ct if config.final.ct_source == "ct" \
            else Path(context.manifest_outputs("translate_asit")["folder"])
        ct_cases = labeled_cases(ct_folder, config.final.max_ct_cases) if config.final.max_ct_cases else {}
        cases = {**kept, **{f"ct_{case}": files for case, files in ct_cases.items()}}
        write_raw_dataset(context.raw / dataset, cases, context.labels, ZSCORE_CHANNEL, {OWNER_KEY: context.owner},
                          replace=True)
    pretrained = Path(context.manifest_outputs(f"selftrain_{name}")["checkpoint"]) if config.warm_start else None
    return train(context, step, dataset_id, dataset, trainer, checkpoint, pretrained)


def plf_steps(config: PipelineConfig, row: Row, round_number: int) -> list[Step]:
    """The steps of one self-training round of ``row``: (in a later round, the MRI pseudo-labelled again by the
    previous round's final network,) self-training, filtering, the final network and, when there are validation
    labels or test images, its predictions."""
    name = plf_name(row, round_number)
    steps = []
    if round_number == 1:
        labels_step = mdm_name(row.source) if row.mdm else f"pseudolabel_{row.source}"
        source_network = f"train_{row.source}"
    else:
        source_network = f"final_{plf_name(row, round_number - 1)}"
        steps.append(pseudolabel_step(config, source_network, source_network,
                                      "pseudo-label the real MRI again with the previous round's final network"))
        labels_step = steps[0].name
    selftrain_trainer = budget(config.self_training.epochs, config.self_training.iterations_per_epoch,
                               TRAINERS[config.trainer])
    # the final network keeps nnU-Net's final validation pass: the fold's validation/summary.json it writes is what
    # nnUNetv2_export_model_to_zip needs to pack the network users take away (the report's last section)
    final_trainer = budget_trainer_name(config.trainer, config.final.epochs, config.final.iterations_per_epoch)
    common = {"warm_start": config.warm_start, "device": config.device, "cpu_bf16": config.cpu_bf16,
              "fold": config.fold, "num_gpus": config.num_gpus}
    final_depends = (f"filter_{name}", f"selftrain_{name}", "plan") \
        + (("translate_asit",) if config.final.ct_source == "fake_mri" else ())
    steps += [
        Step(f"selftrain_{name}", "self-training on the MRI pseudo-labels with K snapshots",
             partial(selftrain, name=name, labels_step=labels_step, source_network=source_network,
                     trainer=selftrain_trainer),
             {"self_training": config.to_dict()["self_training"], **common, "trainer": TRAINERS[config.trainer]},
             depends=(labels_step, source_network, "plan"), inputs=("mri_dataset",),
             datasets=(f"selftrain_{name}",)),
        Step(f"filter_{name}", "snapshot-uncertainty filtering and union ensembling of the pseudo-labels",
             partial(filter_labels, name=name),
             {"threshold": config.self_training.threshold, "keep_fraction": config.self_training.keep_fraction,
              "largest_component": config.largest_component},
             depends=(f"selftrain_{name}",), inputs=("mri_dataset",), datasets=(f"filtered_{name}",)),
        Step(f"final_{name}", "train the final small network on kept MRI pseudo-labels plus CT cases",
             partial(train_final, name=name, trainer=final_trainer),
             {"final": config.to_dict()["final"], **common, "trainer": config.trainer},
             depends=final_depends, inputs=("ct_dataset",), datasets=(f"final_{name}",)),
    ]
    if config.validation_labels is not None or config.test_images is not None:
        steps.append(predict_step(config, name))
    return steps
