"""Translation steps: a CT -> MRI translator trained (ASIT or plain CycleGAN), then the labelled CT translated into a
fake-MRI dataset with the CT labels."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from nnunetv2_uda.atomic_files import folder_built_atomically
from nnunetv2_uda.pipeline.commands import run_logged
from nnunetv2_uda.pipeline.config import PipelineConfig
from nnunetv2_uda.pipeline.datasets import OWNER_KEY, set_dataset_json
from nnunetv2_uda.pipeline.graph import Attempt, Context, Step
from nnunetv2_uda.pipeline.nnunet_commands import ZSCORE_CHANNEL, remove


def translator_folder(context: Context, mode: str) -> Path:
    return context.out / "translators" / mode


def train_translator(context: Context, attempt: Attempt, mode: str) -> dict:
    config = context.config
    folder = translator_folder(context, mode)
    if not attempt.resume:
        remove(folder)
    run_logged(["nnUNetv2_uda_train_translator", config.ct_dataset, config.mri_dataset, folder, "--mode", mode,
                "--device", config.device, *config.translator.command_line()], context.log_file(f"translator_{mode}"))
    return {"translator_folder": str(folder)}


def translate(context: Context, attempt: Attempt, mode: str) -> dict:
    config = context.config
    dataset_id, name = context.dataset(f"fake_{mode}")
    target = context.raw / name
    with folder_built_atomically(target, replace=True) as staging:
        run_logged(["nnUNetv2_uda_translate", translator_folder(context, mode), context.labeled_ct, staging,
                    "--device", config.device, "--mri_dataset", config.mri_dataset],
                   context.log_file(f"translate_{mode}"))
        set_dataset_json(staging, channel_names={"0": ZSCORE_CHANNEL}, **{OWNER_KEY: context.owner})
    panels = sorted(target.rglob("*.png")) + sorted(translator_folder(context, mode).glob("*.png"))
    return {"dataset_id": dataset_id, "dataset": name, "folder": str(target),
            "translation_figures": [str(p) for p in panels]}


def translator_steps(config: PipelineConfig, mode: str) -> list[Step]:
    """``translator_<mode>`` and ``translate_<mode>``; with ``organs`` the translated CT is ``copy_ct``'s copy,
    whose label maps keep only those organs."""
    return [
        Step(f"translator_{mode}", f"train the {mode} translator CT -> MRI", partial(train_translator, mode=mode),
             {"mode": mode, "translator": config.to_dict()["translator"], "device": config.device},
             inputs=("ct_dataset", "mri_dataset")),
        Step(f"translate_{mode}", f"translate the CT dataset to fake MRI ({mode})", partial(translate, mode=mode),
             {"device": config.device, "dataset_id_base": config.dataset_id_base, "organs": config.organs},
             depends=(f"translator_{mode}",) + (("copy_ct",) if config.organs else ()), inputs=("ct_dataset",),
             datasets=(f"fake_{mode}",)),
    ]
