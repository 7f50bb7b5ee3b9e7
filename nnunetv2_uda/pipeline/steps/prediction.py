"""Prediction steps: the real MRI pseudo-labelled by a network, and the validation / test MRI predicted by a final
network; both in -num_parts/-part_id parts, with each organ's largest component kept when the config asks for it."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from nnunetv2_uda.atomic_files import folder_built_atomically
from nnunetv2_uda.pipeline.commands import run_logged
from nnunetv2_uda.pipeline.config import PipelineConfig
from nnunetv2_uda.pipeline.datasets import link_or_copy
from nnunetv2_uda.pipeline.graph import Attempt, Context, Step
from nnunetv2_uda.pipeline.nnunet_commands import predict_in_parts
from nnunetv2_uda.pseudolabels.label_io import image_channel_files, label_files


def prediction_settings(config: PipelineConfig) -> dict:
    return {"num_parts": config.num_parts, "device": config.device, "largest_component": config.largest_component}


def largest_component(context: Context, step: str, labels: Path, output: Path) -> None:
    run_logged(["nnUNetv2_uda_largest_component", labels, output, "-np", context.config.num_processes],
               context.log_file(step))


def clean_label_maps(context: Context, step: str, labels: Path) -> Path:
    """``nnUNetv2_uda_largest_component`` from ``labels`` into ``<labels>_largest_component`` (the unprocessed maps
    stay for comparison); returns the folder to use: the new one when the config asks for it, else ``labels``."""
    if not context.config.largest_component:
        return labels
    output = labels.with_name(labels.name + "_largest_component")
    with folder_built_atomically(output, replace=True) as staging:
        largest_component(context, step, labels, staging)
    return output


def pseudolabel(context: Context, attempt: Attempt, name: str, network_step: str) -> dict:
    step = f"pseudolabel_{name}"
    output = context.out / "pseudolabels" / name
    predict_in_parts(context, attempt.input_hash, step, context.manifest_outputs(network_step), context.mri_images,
                     output)
    return {"labels": str(clean_label_maps(context, step, output)), "unprocessed_labels": str(output)}


def pseudolabel_step(config: PipelineConfig, network_step: str, name: str, description: str) -> Step:
    """``pseudolabel_<name>``: the real MRI (all of it, the cases to self-train on) predicted by the network that
    ``network_step`` trained, into ``OUT/pseudolabels/<name>``."""
    return Step(f"pseudolabel_{name}", description, partial(pseudolabel, name=name, network_step=network_step),
                prediction_settings(config), depends=(network_step,), inputs=("mri_dataset",))


def validation_images(context: Context) -> Path:
    """The MRI images that have validation labels, linked into one folder (only these are predicted)."""
    cases = label_files(Path(context.config.validation_labels))
    images = image_channel_files(context.mri_images)
    unknown = sorted(set(cases) - set(images))
    if unknown:
        raise FileNotFoundError(f"validation labels {unknown[:5]} have no image in {context.mri_images}")
    folder = context.out / "inputs" / "validation_images"
    with folder_built_atomically(folder, replace=True) as staging:
        for case in sorted(cases):
            for image in images[case]:
                link_or_copy(image, staging / image.name)
    return folder


def predict(context: Context, attempt: Attempt, name: str) -> dict:
    config = context.config
    model = context.manifest_outputs(f"final_{name}")
    outputs = {}
    targets = {}
    if config.validation_labels is not None:
        targets["validation"] = validation_images(context)
    if config.test_images is not None:
        targets["test"] = Path(config.test_images)
    for kind, images in targets.items():
        step = f"predict_{name}_{kind}"
        output = context.out / "predictions" / name / kind
        predict_in_parts(context, attempt.input_hash, step, model, images, output)
        outputs[kind] = str(clean_label_maps(context, step, output))
        outputs[f"{kind}_unprocessed"] = str(output)
    return outputs


def predict_step(config: PipelineConfig, name: str) -> Step:
    """``predict_<name>``: the validation / test MRI predicted by the final network of self-training ``name``."""
    return Step(f"predict_{name}", "predict the validation / test MRI with the final network",
                partial(predict, name=name), prediction_settings(config), depends=(f"final_{name}",),
                inputs=("mri_dataset", "validation_labels", "test_images"))
