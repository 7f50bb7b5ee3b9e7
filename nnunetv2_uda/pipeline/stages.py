"""The paper's stages as a list of small steps, each calling stock nnU-Net or our ``nnUNetv2_uda_*`` commands.

Which steps run follows from the ablation rows asked for (Table 7: only CT; CycleGAN; ASIT; ASIT + MDM;
ASIT + MDM + PLF; and, beyond the paper, only CT + PLF and CycleGAN + PLF: self-training from the CT or the
plain-CycleGAN network's pseudo-labels; and each PLF row with a second round); rows share the steps they have in
common. Each step declares the settings and upstream steps its result depends on (the
runner hashes them) and the datasets it writes, and writes only into the pipeline's output folder and into
nnU-Net's folders under the ids of the datasets this run owns (:mod:`nnunetv2_uda.pipeline.datasets`); every
folder it makes is built beside its final name and renamed when complete
(:func:`nnunetv2_uda.atomic_files.folder_built_atomically`). All segmentation
datasets share one plans file (nnU-Net's ``nnUNetv2_move_plans_between_datasets``), so every network has the same
architecture and a stage can start from the previous stage's weights (``-pretrained_weights``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nnunetv2_uda.atomic_files import (
    copy_atomically,
    folder_built_atomically,
    is_hidden,
    write_json_atomically,
    write_text_atomically,
)
from nnunetv2_uda.checkpoints import CheckpointError, load_checkpoint
from nnunetv2_uda.pipeline.commands import run_logged, say
from nnunetv2_uda.pipeline.config import ROW_CHAINS, TRAINERS, PipelineConfig
from nnunetv2_uda.pipeline.datasets import (
    OWNER_KEY,
    check_datasets_owned,
    dataset_name,
    labeled_cases,
    link_or_copy,
    read_dataset_json,
    read_json_mapping,
    run_owner,
    write_raw_dataset,
)
from nnunetv2_uda.pipeline.manifest import Manifest, file_fingerprint
from nnunetv2_uda.pseudolabels.filtering import UNCERTAINTY_CSV
from nnunetv2_uda.pseudolabels.label_io import image_channel_files, label_files
from nnunetv2_uda.pseudolabels.largest_component import REMOVED_CSV
from nnunetv2_uda.pseudolabels.snapshots import DATASET_JSON_KEY, SNAPSHOT_SUBFOLDER
from nnunetv2_uda.training.budget import budget_trainer_name
from nnunetv2_uda.training.warm_start import PRETRAINED_HEADS_VARIABLE

# recorded with every warm-started step: a network warm-started before the heads were carried over (a run recorded by
# an older nnunetv2-uda) is retrained, its settings having changed; unset keys keep other steps' records valid
WARM_START_SETTINGS = {"pretrained_heads": "carried"}
PLANS = "nnUNetPlansUDASmall"
PLANNER = "nnUNetPlannerUDASmall"
ZSCORE_CHANNEL = "zscore"  # nnU-Net's z-score normalization: one intensity treatment for CT, fake MRI and MRI
PART_POLL_SECONDS = 10.0
# the checkpoints nnUNetv2_train --c continues from, in the order it looks for them
CONTINUE_CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")


@dataclass
class Context:
    """What every step needs: the config, nnU-Net's folders, facts about the inputs and where this process stands."""

    config: PipelineConfig
    folders: dict[str, Path]
    labels: dict[str, int]
    sequences: dict[str, str]
    manifest: Manifest
    part_ids: list[int]
    worker: bool = False
    current_hash: str = ""  # input hash of the step being run (names its parts folder)
    relabel: dict[int, int] | None = None  # CT label id -> training id when 'organs' restricts them

    def manifest_outputs(self, step: str) -> dict:
        record = self.manifest.stages.get(step)
        if not record or not record.get("finished"):
            raise RuntimeError(f"step '{step}' has not finished (manifest {self.manifest.path})")
        return record["outputs"]

    @property
    def out(self) -> Path:
        return Path(self.config.output_folder)

    @property
    def raw(self) -> Path:
        return self.folders["nnUNet_raw"]

    @property
    def labeled_ct(self) -> Path:
        """The CT dataset with the labels every network trains on: the user's, or the source copy whose label maps
        keep only the chosen ``organs``."""
        if self.config.organs is None:
            return Path(self.config.ct_dataset)
        return self.raw / dataset_name(self.config.dataset_id_base, "source_ct")[1]

    @property
    def mri_images(self) -> Path:
        return Path(self.config.mri_dataset) / "imagesTr"

    def log_file(self, step: str) -> Path:
        return self.out / "logs" / f"{step}.log"

    @property
    def owner(self) -> dict[str, str]:
        """This run, as the datasets it creates record it (:data:`nnunetv2_uda.pipeline.datasets.OWNER_KEY`)."""
        return run_owner(self.out, self.manifest.run_id)

    def dataset(self, role: str) -> tuple[int, str]:
        """The id and name of the run's dataset ``role``, checked again (as before the run) to be free or this
        run's own."""
        dataset_id, name = dataset_name(self.config.dataset_id_base, role)
        check_datasets_owned(self.folders, [(dataset_id, name)], self.owner, self.config.dataset_id_base)
        return dataset_id, name


@dataclass
class Step:
    """One resumable unit of work: ``action(context, resume) -> outputs`` (JSON-able dict of paths and facts)."""

    name: str
    description: str
    action: Callable[[Context, bool], dict]
    settings: dict = field(default_factory=dict)
    depends: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()  # config keys of user input folders whose content the result depends on
    split: bool = False  # runs in -num_parts/-part_id parts
    datasets: tuple[str, ...] = ()  # roles (DATASET_ROLES) of the nnU-Net datasets it writes


def row_plan(config: PipelineConfig, sequences: dict[str, str]) -> tuple[list[str], list[str]]:
    """The rows to run and notes for the user (MDM needs at least two sequences to match)."""
    rows, notes = [], []
    single = len(set(sequences.values())) < 2
    for row in config.rows:
        if single and row == "asit_mdm":
            notes.append(f"row 'asit_mdm' left out: the MRI dataset has one sequence ({set(sequences.values())}), "
                         f"so multi-domain matching has nothing to match")
            continue
        if single and row.startswith("asit_mdm_plf"):
            single_row = row.replace("asit_mdm", "asit")
            notes.append(f"row '{row}' runs as '{single_row}': one MRI sequence, so MDM is left out")
            row = single_row
        if row not in rows:
            rows.append(row)
    return rows, notes


def remove(path: Path) -> None:
    """Removes a folder or file of this run that a command rebuilds in place (nnU-Net's preprocessed data and model
    folders, the translator's folder): only ever called on paths of datasets this run owns or in its output folder."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# ----------------------------------------------------------------------------------------------------------- helpers
def model_folder(context: Context, dataset: str, trainer: str) -> Path:
    return context.folders["nnUNet_results"] / dataset / f"{trainer}__{PLANS}__{context.config.configuration}"


def fold_folder(context: Context, dataset: str, trainer: str) -> Path:
    fold = context.config.fold
    return model_folder(context, dataset, trainer) / (f"fold_{fold}")


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


def parts_folder(context: Context, step: str, model: dict) -> Path:
    """Where a prediction step's parts go: named by the step's input hash and by the model checkpoint's content, so
    a network retrained under unchanged settings (its manifest record removed, or a new nnunetv2-uda) never finds
    the parts its predecessor predicted."""
    checkpoint = file_fingerprint(Path(model["checkpoint"])).replace(":", "-")
    return context.out / "parts" / step / f"{context.current_hash}_{checkpoint}"


def predict_in_parts(context: Context, step: str, model: dict, images: Path, output: Path) -> bool:
    """nnUNetv2_predict_fast over ``images`` in ``num_parts`` parts (nnU-Net's -num_parts/-part_id).

    Each part is predicted into a hidden staging folder in ``parts/<step>/<hash>/`` that becomes ``part_<i>`` when
    complete, so parts can run on other machines against a shared output folder (``nnUNetv2_uda_run CONFIG --worker
    --part_id I``) and a killed part is never taken for done. The process that owns the step waits for all parts,
    then merges them, with the label names, into ``output`` (built beside it and swapped in). Returns False in a
    worker (the owner merges).
    """
    config = context.config
    parts_root = parts_folder(context, step, model)
    if parts_root.parent.is_dir() and not context.worker:
        for stale in parts_root.parent.iterdir():
            if stale != parts_root:
                remove(stale)
    for part in context.part_ids:
        done = parts_root / f"part_{part}"
        if done.is_dir():
            continue
        try:
            with folder_built_atomically(done) as staging:
                run_logged(["nnUNetv2_predict_fast", "-i", images, "-o", staging, "-d", model["dataset_id"],
                            "-c", model["configuration"], "-tr", model["trainer"], "-p", model["plans"],
                            "-f", model["fold"], "-device", config.device, "-npp", 1, "-nps", 1,
                            "-num_parts", config.num_parts, "-part_id", part], context.log_file(f"{step}_part{part}"))
        except FileExistsError:
            if not done.is_dir():
                raise
            say(f"{step}: part {part} was completed by another process meanwhile; keeping that one")
    if context.worker:
        return False
    waiting_since = time.time()
    while missing := [i for i in range(config.num_parts) if not (parts_root / f"part_{i}").is_dir()]:
        print(f"{step}: waiting for part(s) {missing} of {config.num_parts} in {parts_root} "
              f"({time.time() - waiting_since:.0f} s; run them with 'nnUNetv2_uda_run CONFIG --worker --part_id I')",
              flush=True)
        time.sleep(PART_POLL_SECONDS)
    with folder_built_atomically(output, replace=True) as staging:
        for part in range(config.num_parts):
            for path in sorted((parts_root / f"part_{part}").iterdir()):
                if path.name.endswith(".nii.gz") and not is_hidden(path):
                    link_or_copy(path, staging / path.name)
        write_labels_dataset_json(context, staging)
    return True


def write_labels_dataset_json(context: Context, folder: Path) -> None:
    """A folder of label maps gets the label names (evaluation matches organs by name)."""
    write_json_atomically({"labels": context.labels, "file_ending": ".nii.gz",
                           "channel_names": {"0": ZSCORE_CHANNEL}}, folder / "dataset.json")


def largest_component_settings(config: PipelineConfig) -> dict:
    """Recorded only when set, so runs recorded before the key existed keep their steps."""
    return {"largest_component": True} if config.largest_component else {}


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


def set_dataset_json(folder: Path, **entries) -> None:
    """Sets keys of a raw dataset's dataset.json (rewritten atomically)."""
    write_json_atomically({**read_dataset_json(folder), **entries}, Path(folder) / "dataset.json")


def organ_settings(config: PipelineConfig) -> dict:
    """Recorded only when set, so runs recorded before the key existed keep their steps."""
    return {"organs": config.organs} if config.organs is not None else {}


def budget(epochs: int, iterations: int, base: str) -> str:
    """Every network is used through our own prediction step, so nnU-Net's final validation pass is skipped."""
    return budget_trainer_name(base, epochs, iterations, final_validation=False)


# ------------------------------------------------------------------------------------------------------------ steps
def translator_steps(config: PipelineConfig, mode: str) -> list[Step]:
    folder_of = lambda context: context.out / "translators" / mode  # noqa: E731

    def train_translator(context: Context, resume: bool) -> dict:
        folder = folder_of(context)
        if not resume:
            remove(folder)
        args = ["nnUNetv2_uda_train_translator", config.ct_dataset, config.mri_dataset, folder, "--mode", mode,
                "--iterations", config.translator.iterations, "--device", config.device]
        if config.translator.batch_size is not None:
            args += ["--batch_size", config.translator.batch_size]
        run_logged(args + list(config.translator.extra_args), context.log_file(f"translator_{mode}"))
        return {"translator_folder": str(folder)}

    def translate(context: Context, resume: bool) -> dict:
        dataset_id, name = context.dataset(f"fake_{mode}")
        target = context.raw / name
        with folder_built_atomically(target, replace=True) as staging:
            run_logged(["nnUNetv2_uda_translate", folder_of(context), context.labeled_ct, staging, "--device",
                        config.device, "--mri_dataset", config.mri_dataset], context.log_file(f"translate_{mode}"))
            set_dataset_json(staging, channel_names={"0": ZSCORE_CHANNEL}, **{OWNER_KEY: context.owner})
        panels = [str(p) for p in sorted(target.rglob("*.png")) + sorted(folder_of(context).glob("*.png"))]
        return {"dataset_id": dataset_id, "dataset": name, "folder": str(target), "figures": panels}

    translator_settings = {"mode": mode, "translator": config.to_dict()["translator"], "device": config.device}
    return [
        Step(f"translator_{mode}", f"train the {mode} translator CT -> MRI", train_translator, translator_settings,
             inputs=("ct_dataset", "mri_dataset")),
        Step(f"translate_{mode}", f"translate the CT dataset to fake MRI ({mode})", translate,
             {"device": config.device, "dataset_id_base": config.dataset_id_base, **organ_settings(config)},
             depends=(f"translator_{mode}",) + (("plan",) if config.organs else ()), inputs=("ct_dataset",),
             datasets=(f"fake_{mode}",)),
    ]


def plan_step(config: PipelineConfig) -> Step:
    def plan(context: Context, resume: bool) -> dict:
        dataset_id, name = context.dataset("source_ct")
        write_raw_dataset(context.raw / name, labeled_cases(Path(config.ct_dataset)), context.labels, ZSCORE_CHANNEL,
                          {OWNER_KEY: context.owner}, relabel=context.relabel, replace=True)
        remove(context.folders["nnUNet_preprocessed"] / name)
        args = ["nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-pl", PLANNER, "-c", config.configuration,
                "-np", config.num_processes, "-npfp", config.num_processes, "--no_pp", "--clean"]
        if config.target_spacing is not None:
            args += ["-overwrite_target_spacing", *config.target_spacing]
        run_logged(args, context.log_file("plan"))
        plans = context.folders["nnUNet_preprocessed"] / name / f"{PLANS}.json"
        if config.batch_size is not None:  # nnU-Net's documented way: edit the plans
            content = read_json_mapping(plans)
            content["configurations"][config.configuration]["batch_size"] = config.batch_size
            write_json_atomically(content, plans)
        return {"dataset_id": dataset_id, "dataset": name, "plans": str(plans)}

    return Step("plan", "copy the CT dataset (z-score normalization) and plan the shared small network", plan,
                {"configuration": config.configuration, "target_spacing": config.target_spacing,
                 "batch_size": config.batch_size, "dataset_id_base": config.dataset_id_base, **organ_settings(config)},
                inputs=("ct_dataset",), datasets=("source_ct",))


def source_steps(config: PipelineConfig, source: str) -> list[Step]:
    """Train on CT or fake MRI with the CT labels, then pseudo-label the real MRI."""
    snapshots = source == "asit" and needs_mdm_order(config)
    training = config.ct_training if source == "ct" and config.ct_training is not None else config.source_training
    from_ct = source != "ct" and config.source_warm_start
    trainer = budget(training.epochs, training.iterations_per_epoch,
                     TRAINERS[config.trainer] if snapshots else config.trainer)
    upstream = ("plan",) if source == "ct" else ("plan", f"translate_{source}") + (("train_ct",) if from_ct else ())
    role = "source_ct" if source == "ct" else f"fake_{source}"

    def train_source(context: Context, resume: bool) -> dict:
        dataset_id, name = context.dataset(role)
        if snapshots:  # MDM orders the sequences by the snapshot uncertainty of this network's pseudo-labels
            set_pseudolabel_target(context.raw / name, context.mri_images, config.self_training.num_snapshots)
        pretrained = Path(context.manifest_outputs("train_ct")["checkpoint"]) if from_ct else None
        checkpoint = continue_from(context, f"train_{source}", name, trainer, resume)
        outputs = train(context, f"train_{source}", dataset_id, name, trainer, checkpoint, pretrained)
        if snapshots:
            outputs["snapshots"] = str(Path(outputs["model_folder"]) / f"fold_{config.fold}" / SNAPSHOT_SUBFOLDER)
        return outputs

    settings = {"budget": dataclasses.asdict(training), "device": config.device, "fold": config.fold,
                "num_gpus": config.num_gpus, "trainer": trainer, "warm_start_from_ct": from_ct,
                "num_snapshots": config.self_training.num_snapshots if snapshots else None,
                **(WARM_START_SETTINGS if from_ct else {})}
    return [
        Step(f"train_{source}", f"train the segmentation network on {source_name(source)} with the CT labels",
             train_source, settings, depends=upstream, datasets=(role,)),
        pseudolabel_step(config, f"train_{source}", source,
                         f"pseudo-label the real MRI with the {source_name(source)} network"),
    ]


def pseudolabel_step(config: PipelineConfig, network_step: str, name: str, description: str) -> Step:
    """``pseudolabel_<name>``: the real MRI (all of it, the cases to self-train on) predicted by the network that
    ``network_step`` trained, into ``OUT/pseudolabels/<name>``."""
    step_name = f"pseudolabel_{name}"

    def pseudolabel(context: Context, resume: bool) -> dict:
        output = context.out / "pseudolabels" / name
        if not predict_in_parts(context, step_name, context.manifest_outputs(network_step), context.mri_images,
                                output):
            return {"labels": str(output)}
        return {"labels": str(clean_label_maps(context, step_name, output)), "unprocessed_labels": str(output)}

    return Step(step_name, description, pseudolabel, prediction_settings(config), depends=(network_step,),
                inputs=("mri_dataset",), split=True)


def prediction_settings(config: PipelineConfig) -> dict:
    return {"num_parts": config.num_parts, "device": config.device, **largest_component_settings(config)}


def source_name(source: str) -> str:
    return {"ct": "CT", "asit": "ASIT fake MRI", "cyclegan": "CycleGAN fake MRI"}[source]


def mdm_step(config: PipelineConfig) -> Step:
    def mdm(context: Context, resume: bool) -> dict:
        output = context.out / "mdm"
        sequences_csv = context.out / "inputs" / "sequences.csv"
        sequences_csv.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically("case,sequence\n" + "".join(f"{case},{tag}\n"
                                                          for case, tag in sorted(context.sequences.items())),
                              sequences_csv)
        order = ["--sequences_csv", sequences_csv]
        if config.sequence_order:
            order += ["--order", *config.sequence_order]
        else:
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

    return Step("mdm", "multi-domain matching of the pseudo-labels across MRI sequences", mdm,
                {"sequence_order": config.sequence_order}, depends=("pseudolabel_asit", "train_asit"),
                inputs=("mri_dataset",))


def needs_mdm_order(config: PipelineConfig) -> bool:
    """MDM orders the sequences by snapshot uncertainty unless the config gives the order."""
    return not config.sequence_order and any(ROW_CHAINS[row][1] for row in config.rows)


def set_pseudolabel_target(dataset: Path, target_images: Path, num_snapshots: int) -> None:
    """Adds the key nnUNetTrainerUDAPseudoLabel reads to a raw dataset.json (nnU-Net copies it when preprocessing)."""
    set_dataset_json(dataset, **{DATASET_JSON_KEY: {"target_images": str(Path(target_images).resolve()),
                                                    "num_snapshots": num_snapshots}})


def plf_name(variant: str, round_number: int) -> str:
    """Names the steps and datasets of one self-training round: ``ct``, ``ct_round2``, ..."""
    return variant if round_number == 1 else f"{variant}_round{round_number}"


def plf_steps(config: PipelineConfig, variant: str, round_number: int = 1) -> list[Step]:
    """Self-training with K snapshots, uncertainty filtering, the final network and its predictions.

    ``variant`` names the pseudo-labels the first round starts from: ``asit_mdm`` (after MDM), ``asit`` (the ASIT
    network's), ``cyclegan`` (the plain-CycleGAN network's) or ``ct`` (the CT network's), for when another network
    than ASIT's is the better pseudo-labeler. A later round starts from the previous round's final network: it
    pseudo-labels the MRI again and is the warm start, as the pseudo-labeling network is in the first round.
    """
    name = plf_name(variant, round_number)
    if round_number == 1:
        source = variant.removesuffix("_mdm")
        labels_step = "mdm" if variant.endswith("_mdm") else f"pseudolabel_{source}"
        source_network = f"train_{source}"
        relabel_steps = []
    else:
        source_network = f"final_{plf_name(variant, round_number - 1)}"
        relabel_steps = [pseudolabel_step(config, source_network, source_network,
                                          "pseudo-label the real MRI again with the previous round's final network")]
        labels_step = relabel_steps[0].name
    selftrain_trainer = budget(config.self_training.epochs, config.self_training.iterations_per_epoch,
                               TRAINERS[config.trainer])
    final_trainer = budget(config.final.epochs, config.final.iterations_per_epoch, config.trainer)

    def selftrain(context: Context, resume: bool) -> dict:
        dataset_id, dataset = context.dataset(f"selftrain_{name}")
        images = image_channel_files(context.mri_images)
        labels = label_files(Path(context.manifest_outputs(labels_step)["labels"]))
        missing = sorted(set(images) - set(labels))
        if missing:
            raise FileNotFoundError(f"no pseudo-label for MRI case(s) {missing[:5]}")
        checkpoint = continue_from(context, f"selftrain_{name}", dataset, selftrain_trainer, resume)
        if checkpoint is None:
            target = {"target_images": str(context.mri_images.resolve()),
                      "num_snapshots": config.self_training.num_snapshots}
            write_raw_dataset(context.raw / dataset, {c: (images[c], labels[c]) for c in sorted(images)},
                              context.labels, ZSCORE_CHANNEL, {OWNER_KEY: context.owner, DATASET_JSON_KEY: target},
                              replace=True)
        pretrained = Path(context.manifest_outputs(source_network)["checkpoint"]) if config.warm_start else None
        outputs = train(context, f"selftrain_{name}", dataset_id, dataset, selftrain_trainer, checkpoint, pretrained)
        outputs["snapshots"] = str(Path(outputs["model_folder"]) / f"fold_{config.fold}" / SNAPSHOT_SUBFOLDER)
        return outputs

    def filter_labels(context: Context, resume: bool) -> dict:
        dataset_id, dataset = context.dataset(f"filtered_{name}")
        target = context.raw / dataset
        selftrain = config.self_training
        cut = ["--threshold", selftrain.threshold] if selftrain.threshold is not None \
            else ["--keep_fraction", selftrain.keep_fraction]
        with folder_built_atomically(target, replace=True) as staging:
            run_logged(["nnUNetv2_uda_filter_pseudolabels",
                        context.manifest_outputs(f"selftrain_{name}")["snapshots"], staging, *cut,
                        "--images", context.mri_images], context.log_file(f"filter_{name}"))
            if config.largest_component:  # the final network trains on labelsTr: cleaned there, unprocessed aside
                cleaned = staging / "labelsTr_largest_component"
                largest_component(context, f"filter_{name}", staging / "labelsTr", cleaned)
                (cleaned / REMOVED_CSV).rename(staging / REMOVED_CSV)
                (staging / "labelsTr").rename(staging / "labelsTr_unprocessed")
                cleaned.rename(staging / "labelsTr")
            set_dataset_json(staging, **{OWNER_KEY: context.owner})
        kept = sorted(label_files(target / "labelsTr"))
        return {"dataset_id": dataset_id, "dataset": dataset, "folder": str(target), "kept_cases": kept,
                "uncertainty_csv": str(target / "uncertainty.csv"),
                "figures": sorted(str(p) for p in target.rglob("*.png"))}

    def train_final(context: Context, resume: bool) -> dict:
        dataset_id, dataset = context.dataset(f"final_{name}")
        checkpoint = continue_from(context, f"final_{name}", dataset, final_trainer, resume)
        if checkpoint is None:
            kept = labeled_cases(Path(context.manifest_outputs(f"filter_{name}")["folder"]),
                                 config.final.max_mri_cases)
            ct_folder = context.labeled_ct if config.final.ct_source == "ct" \
                else Path(context.manifest_outputs("translate_asit")["folder"])
            ct_cases = labeled_cases(ct_folder, config.final.max_ct_cases) if config.final.max_ct_cases else {}
            cases = {**kept, **{f"ct_{case}": files for case, files in ct_cases.items()}}
            write_raw_dataset(context.raw / dataset, cases, context.labels, ZSCORE_CHANNEL, {OWNER_KEY: context.owner},
                              replace=True)
        pretrained = Path(context.manifest_outputs(f"selftrain_{name}")["checkpoint"]) \
            if config.warm_start else None
        return train(context, f"final_{name}", dataset_id, dataset, final_trainer, checkpoint, pretrained)

    def predict(context: Context, resume: bool) -> dict:
        model = context.manifest_outputs(f"final_{name}")
        outputs = {}
        targets = {}
        if config.validation_labels is not None:
            targets["validation"] = validation_images(context)
        if config.test_images is not None:
            targets["test"] = Path(config.test_images)
        for kind, images in targets.items():
            output = context.out / "predictions" / name / kind
            outputs[kind] = str(output)
            if predict_in_parts(context, f"predict_{name}_{kind}", model, images, output):
                outputs[kind] = str(clean_label_maps(context, f"predict_{name}_{kind}", output))
                outputs[f"{kind}_unprocessed"] = str(output)
        return outputs

    warm_settings = WARM_START_SETTINGS if config.warm_start else {}
    selftrain_settings = {"self_training": config.to_dict()["self_training"], "warm_start": config.warm_start,
                          "device": config.device, "fold": config.fold, "num_gpus": config.num_gpus,
                          "trainer": TRAINERS[config.trainer], **warm_settings}
    final_settings = {"final": config.to_dict()["final"], "warm_start": config.warm_start, "device": config.device,
                      "fold": config.fold, "num_gpus": config.num_gpus, "trainer": config.trainer,
                      **warm_settings}
    final_depends = (f"filter_{name}", f"selftrain_{name}", "plan") \
        + (("translate_asit",) if config.final.ct_source == "fake_mri" else ())
    steps = relabel_steps + [
        Step(f"selftrain_{name}", "self-training on the MRI pseudo-labels with K snapshots", selftrain,
             selftrain_settings, depends=(labels_step, source_network, "plan"), inputs=("mri_dataset",),
             datasets=(f"selftrain_{name}",)),
        Step(f"filter_{name}", "snapshot-uncertainty filtering and union ensembling of the pseudo-labels",
             filter_labels, {"threshold": config.self_training.threshold,
                             "keep_fraction": config.self_training.keep_fraction,
                             **largest_component_settings(config)},
             depends=(f"selftrain_{name}",), inputs=("mri_dataset",), datasets=(f"filtered_{name}",)),
        Step(f"final_{name}", "train the final small network on kept MRI pseudo-labels plus CT cases",
             train_final, final_settings, depends=final_depends, inputs=("ct_dataset",),
             datasets=(f"final_{name}",)),
    ]
    if config.validation_labels is not None or config.test_images is not None:
        steps.append(Step(f"predict_{name}", "predict the validation / test MRI with the final network", predict,
                          prediction_settings(config), depends=(f"final_{name}",),
                          inputs=("mri_dataset", "validation_labels", "test_images"), split=True))
    return steps


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


def evaluate_step(config: PipelineConfig, row: str, scored_step: str, kind: str = "validation") -> Step:
    labels_key = "validation_labels" if kind == "validation" else "test_labels"

    def evaluate(context: Context, resume: bool) -> dict:
        produced = context.manifest_outputs(scored_step)
        predictions = produced.get(kind) or produced["labels"]
        output = context.out / "evaluation" / (row if kind == "validation" else f"{row}_test")
        with folder_built_atomically(output, replace=True) as staging:
            run_logged(["nnUNetv2_uda_evaluate", predictions, getattr(config, labels_key), "-o", staging,
                        "-np", config.num_processes], context.log_file(f"evaluate_{row}_{kind}"))
        return {"summary": str(output / "summary.json"), "folder": str(output), "predictions": str(predictions)}

    return Step(f"evaluate_{row}" + ("" if kind == "validation" else "_test"),
                f"score row '{row}' on the {kind} labels", evaluate, {"kind": kind}, depends=(scored_step,),
                inputs=(labels_key,))


def build_steps(config: PipelineConfig, rows: list[str]) -> tuple[list[Step], dict[str, str]]:
    """The steps the rows need, in running order, and each row's scored step."""
    steps: dict[str, Step] = {}

    def add(*new: Step) -> None:
        for step in new:
            steps.setdefault(step.name, step)

    scored: dict[str, str] = {}
    for row in rows:
        source, mdm, rounds = ROW_CHAINS[row]
        if source != "ct":
            if config.source_warm_start:
                add(plan_step(config), source_steps(config, "ct")[0])
            add(*translator_steps(config, source))
        add(plan_step(config), *source_steps(config, source))
        scored[row] = f"pseudolabel_{source}"
        if mdm:
            add(mdm_step(config))
            scored[row] = "mdm"
        if rounds:
            variant = f"{source}_mdm" if mdm else source
            if config.final.ct_source == "fake_mri":  # the final network's CT cases come translated
                add(*translator_steps(config, "asit"))
            for round_number in range(1, rounds + 1):
                add(*plf_steps(config, variant, round_number))
            last = plf_name(variant, rounds)
            scored[row] = f"predict_{last}" if f"predict_{last}" in steps else f"filter_{last}"
    ordered = topological(list(steps.values()))
    if config.validation_labels is not None:
        for row in rows:
            if scored[row].startswith("filter_"):
                continue
            ordered.append(evaluate_step(config, row, scored[row]))
    if config.test_labels is not None:
        for row in rows:
            if scored[row].startswith("predict_"):
                ordered.append(evaluate_step(config, row, scored[row], kind="test"))
    return ordered, scored


def topological(steps: list[Step]) -> list[Step]:
    by_name = {s.name: s for s in steps}
    ordered: list[Step] = []
    seen: set[str] = set()

    def visit(step: Step) -> None:
        if step.name in seen:
            return
        seen.add(step.name)
        for dependency in step.depends:
            visit(by_name[dependency])
        ordered.append(step)

    for step in steps:
        visit(step)
    return ordered
