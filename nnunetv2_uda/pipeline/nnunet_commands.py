"""The pipeline's calls of stock nnU-Net: preprocessing with the shared plans, training, prediction in parts (run
as Dask tasks, :mod:`nnunetv2_uda.pipeline.cluster`).

All segmentation datasets share one plans file (nnU-Net's ``nnUNetv2_move_plans_between_datasets``), so every network
has the same architecture and a stage can start from the previous stage's weights (``-pretrained_weights``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from nnunetv2_uda.atomic_files import copy_atomically, folder_built_atomically, is_hidden, write_json_atomically
from nnunetv2_uda.checkpoints import CheckpointError, load_checkpoint
from nnunetv2_uda.pipeline.cluster import Part, predict_part, run_parts
from nnunetv2_uda.pipeline.commands import run_logged, say
from nnunetv2_uda.pipeline.datasets import link_or_copy
from nnunetv2_uda.pipeline.graph import Context
from nnunetv2_uda.pipeline.manifest import file_fingerprint
from nnunetv2_uda.training.budget import budget_trainer_name
from nnunetv2_uda.training.cpu_precision import CPU_BF16_VARIABLE
from nnunetv2_uda.training.warm_start import PRETRAINED_HEADS_VARIABLE

PLANS = "nnUNetPlansUDASmall"
PLANNER = "nnUNetPlannerUDASmall"
ZSCORE_CHANNEL = "zscore"  # nnU-Net's z-score normalization: one intensity treatment for CT, fake MRI and MRI
# the checkpoints nnUNetv2_train --c continues from, in the order it looks for them
CONTINUE_CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")


def remove(path: Path) -> None:
    """Removes a folder or file of this run that a command rebuilds in place (nnU-Net's preprocessed data and model
    folders, the translator's folder): only ever called on paths of datasets this run owns or in its output folder."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def budget(epochs: int, iterations: int, base: str) -> str:
    """Every network is used through our own prediction step, so nnU-Net's final validation pass is skipped."""
    return budget_trainer_name(base, epochs, iterations, final_validation=False)


def model_folder(context: Context, dataset: str, trainer: str) -> Path:
    return context.folders["nnUNet_results"] / dataset / f"{trainer}__{PLANS}__{context.config.configuration}"


def fold_folder(context: Context, dataset: str, trainer: str) -> Path:
    return model_folder(context, dataset, trainer) / f"fold_{context.config.fold}"


def write_labels_dataset_json(context: Context, folder: Path) -> None:
    """A folder of label maps gets the label names (evaluation matches organs by name)."""
    write_json_atomically({"labels": context.labels, "file_ending": ".nii.gz",
                           "channel_names": {"0": ZSCORE_CHANNEL}}, folder / "dataset.json")


def prepare_preprocessed(context: Context, step: str, dataset_id: int, name: str) -> None:
    """Gives a raw dataset the shared plans (unless it is the planned dataset itself) and preprocesses it."""
    preprocessed = context.folders["nnUNet_preprocessed"] / name
    plans_id, plans_name = context.dataset("source_ct")
    if name != plans_name:
        remove(preprocessed)
        preprocessed.mkdir(parents=True)
        run_logged(["nnUNetv2_move_plans_between_datasets", "-s", plans_id, "-t", dataset_id, "-sp", PLANS,
                    "-tp", PLANS], context.log_file(step))
        # nnU-Net's trainer copies the fingerprint into the model folder; the plans (and so it) come from the CT
        copy_atomically(context.folders["nnUNet_preprocessed"] / plans_name / "dataset_fingerprint.json",
                        preprocessed / "dataset_fingerprint.json")
    copy_atomically(context.raw / name / "dataset.json", preprocessed / "dataset.json")
    run_logged(["nnUNetv2_preprocess", "-d", dataset_id, "-plans_name", PLANS, "-c", context.config.configuration,
                "-np", context.config.num_processes], context.log_file(step))


def continue_from(context: Context, step: str, dataset: str, trainer: str, resume: bool) -> Path | None:
    """The checkpoint a resumed training step continues from with ``nnUNetv2_train --c``, or None to train afresh.

    nnU-Net continues from the first of ``checkpoint_final``, ``checkpoint_latest`` (every 50 epochs) and
    ``checkpoint_best`` (whenever the validation Dice improves) that exists; that file is loaded here first, so one
    cut short by a kill (nnU-Net writes them in place) starts the training afresh instead of failing every rerun.
    """
    if not resume:
        return None
    folder = fold_folder(context, dataset, trainer)
    found = next((folder / name for name in CONTINUE_CHECKPOINTS if (folder / name).is_file()), None)
    if found is None:
        return None
    try:
        epoch = load_checkpoint(found)["current_epoch"]
    except (CheckpointError, KeyError) as error:
        say(f"{step}: {found} cannot be continued from ({error}); training afresh")
        return None
    say(f"{step}: continuing nnU-Net's training from {found} (epochs done: {epoch})")
    return found


def train(context: Context, step: str, dataset_id: int, name: str, trainer: str, checkpoint: Path | None,
          pretrained: Path | None) -> dict:
    """nnUNetv2_train; with a ``checkpoint`` (:func:`continue_from`) it continues from it (``--c``), else it starts
    afresh, where a warm start keeps the pretrained segmentation heads (:mod:`nnunetv2_uda.training.warm_start`)."""
    folder = fold_folder(context, name, trainer)
    if checkpoint is None:
        remove(folder)
        prepare_preprocessed(context, step, dataset_id, name)
    config = context.config
    args = ["nnUNetv2_train", dataset_id, config.configuration, config.fold, "-tr", trainer, "-p", PLANS,
            "-device", config.device]
    if config.num_gpus > 1:
        args += ["-num_gpus", config.num_gpus]
    env = {key: value for key, value in os.environ.items() if key != PRETRAINED_HEADS_VARIABLE}
    env[CPU_BF16_VARIABLE] = "1" if config.cpu_bf16 else "0"
    if checkpoint is not None:
        args.append("--c")
    elif pretrained is not None:  # same labels throughout: the segmentation heads are carried over too
        args += ["-pretrained_weights", pretrained]
        env[PRETRAINED_HEADS_VARIABLE] = str(pretrained)
    run_logged(args, context.log_file(step), env=env)
    final = folder / "checkpoint_final.pth"
    if not final.is_file():
        raise RuntimeError(f"nnUNetv2_train finished without writing {final}")
    return {"dataset_id": dataset_id, "dataset": name, "trainer": trainer, "plans": PLANS,
            "configuration": config.configuration, "fold": config.fold, "model_folder": str(folder.parent),
            "checkpoint": str(final)}


def parts_folder(out: Path, step: str, input_hash: str, model: dict) -> Path:
    """Where a prediction step's parts go: named by the step's input hash and by the model checkpoint's content, so
    a network retrained under unchanged settings (its manifest record removed, or a new nnunetv2-uda) never finds
    the parts its predecessor predicted."""
    checkpoint = file_fingerprint(Path(model["checkpoint"])).replace(":", "-")
    return Path(out) / "parts" / step / f"{input_hash}_{checkpoint}"


def predict_in_parts(context: Context, input_hash: str, step: str, model: dict, images: Path, output: Path) -> None:
    """nnUNetv2_predict_fast over ``images`` in ``num_parts`` parts (nnU-Net's -num_parts/-part_id), merged with the
    label names into ``output`` (built beside it and swapped in).

    Each part is predicted into a hidden staging folder in ``parts/<step>/<hash>/`` that becomes ``part_<i>`` when
    complete, so a killed part is never taken for done and a rerun predicts only the missing parts. One part runs
    here; several run as Dask tasks (:mod:`nnunetv2_uda.pipeline.cluster`), on a ``LocalCluster`` or on the workers
    of the config's ``scheduler``, or on the cluster the step itself runs on as a task (``parallel_steps``).
    """
    config = context.config
    parts_root = parts_folder(context.out, step, input_hash, model)
    if parts_root.parent.is_dir():
        for stale in parts_root.parent.iterdir():
            if stale != parts_root:
                remove(stale)
    if parts_root.is_dir():  # staging folders of parts killed in an earlier attempt: only this step's tasks write here
        for abandoned in parts_root.iterdir():
            if is_hidden(abandoned):
                remove(abandoned)
    arguments = ["nnUNetv2_predict_fast", "-i", images, "-d", model["dataset_id"], "-c", model["configuration"],
                 "-tr", model["trainer"], "-p", model["plans"], "-f", model["fold"], "-device", config.device,
                 "-npp", 1, "-nps", 1, "-num_parts", config.num_parts]
    environment = {name: str(folder) for name, folder in context.folders.items()}
    missing = [Part(i, [str(a) for a in [*arguments, "-part_id", i]], str(parts_root / f"part_{i}"),
                    str(context.log_file(f"{step}_part{i}")), environment)
               for i in range(config.num_parts) if not (parts_root / f"part_{i}").is_dir()]
    if config.num_parts == 1:
        for part in missing:
            predict_part(part)
    elif missing:
        run_parts(missing, config.scheduler, step)
    with folder_built_atomically(output, replace=True) as staging:
        for part in range(config.num_parts):
            for path in sorted((parts_root / f"part_{part}").iterdir()):
                if path.name.endswith(".nii.gz") and not is_hidden(path):
                    link_or_copy(path, staging / path.name)
        write_labels_dataset_json(context, staging)
