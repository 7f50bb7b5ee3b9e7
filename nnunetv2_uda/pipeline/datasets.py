"""The nnU-Net raw datasets the pipeline creates: their ids, names, owner and assembly from other folders.

Datasets get ids ``base + offset``, the base being the config's ``dataset_id_base`` or, when that is null, the first
free range of :data:`ID_SPAN` ids (:func:`free_dataset_id_base`); the base is recorded in the run's manifest.json, so
a rerun finds its own datasets again. Each dataset records the run that owns it in its dataset.json
(``"nnunetv2_uda_run": {"output_folder", "run_id"}``); before any work a run checks every id it will use
(:func:`check_datasets_owned`): an id held by a dataset of another name, of another run or of nobody (the user's) is
refused, never overwritten. A run that has started but not yet written its datasets (a translator trains for hours
first) holds its range through a reservation in nnUNet_raw (:func:`reserve_dataset_ids`). Images are hard-linked
where the file system allows (FLARE-scale data would otherwise be copied several times) and copied otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunetv2_uda.atomic_files import folder_built_atomically, is_hidden, write_json_atomically
from nnunetv2_uda.command_line import UserInputError
from nnunetv2_uda.images import read_image
from nnunetv2_uda.json_files import read_json_object
from nnunetv2_uda.pipeline.manifest import MANIFEST_NAME
from nnunetv2_uda.pseudolabels.label_io import image_channel_files, label_files, label_like
from nnunetv2_uda.pseudolabels.sequences import read_sidecar, sidecar_file

NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")

DATASET_ROLES = {  # role -> (id offset, name suffix)
    "source_ct": (0, "UDASourceCT"),
    "fake_asit": (1, "UDAFakeMRIASIT"),
    "fake_cyclegan": (2, "UDAFakeMRICycleGAN"),
    "selftrain_asit_mdm": (3, "UDASelfTrainASITMDM"),
    "filtered_asit_mdm": (4, "UDAFilteredASITMDM"),
    "final_asit_mdm": (5, "UDAFinalASITMDM"),
    "selftrain_asit": (6, "UDASelfTrainASIT"),
    "filtered_asit": (7, "UDAFilteredASIT"),
    "final_asit": (8, "UDAFinalASIT"),
    "selftrain_ct": (9, "UDASelfTrainCT"),
    "filtered_ct": (10, "UDAFilteredCT"),
    "final_ct": (11, "UDAFinalCT"),
    "selftrain_cyclegan": (12, "UDASelfTrainCycleGAN"),
    "filtered_cyclegan": (13, "UDAFilteredCycleGAN"),
    "final_cyclegan": (14, "UDAFinalCycleGAN"),
}
DATASET_ROLES.update({  # the second self-training round of each PLF chain (rows '<row>_plf2')
    f"{stage}_{variant}_round2": (15 + 3 * index + position, f"{DATASET_ROLES[f'{stage}_{variant}'][1]}Round2")
    for index, variant in enumerate(("asit_mdm", "asit", "ct", "cyclegan"))
    for position, stage in enumerate(("selftrain", "filtered", "final"))
})
DATASET_ROLES.update({  # the rows 'only_ct_mdm_plf[2]', after the second rounds so that earlier offsets stay
    "selftrain_ct_mdm": (27, "UDASelfTrainCTMDM"),
    "filtered_ct_mdm": (28, "UDAFilteredCTMDM"),
    "final_ct_mdm": (29, "UDAFinalCTMDM"),
    "selftrain_ct_mdm_round2": (30, "UDASelfTrainCTMDMRound2"),
    "filtered_ct_mdm_round2": (31, "UDAFilteredCTMDMRound2"),
    "final_ct_mdm_round2": (32, "UDAFinalCTMDMRound2"),
})
ROLE_AT_OFFSET = {offset: role for role, (offset, _) in DATASET_ROLES.items()}
ID_SPAN = max(ROLE_AT_OFFSET) + 1  # the ids base .. base + ID_SPAN - 1 are a run's, whichever rows it makes
MAX_DATASET_ID = 999  # nnU-Net names datasets Dataset<3 digits>_<name>
FIRST_AUTOMATIC_BASE = 500  # clear of nnU-Net's own examples and the low ids users pick first
# automatic bases are aligned to FIRST_AUTOMATIC_BASE in steps of ID_SPAN, from it upward, then the ones below, so
# ranges of automatic runs never interleave however many of their ids each run uses
AUTOMATIC_BASES = sorted(range(FIRST_AUTOMATIC_BASE % ID_SPAN or ID_SPAN, MAX_DATASET_ID - ID_SPAN + 2, ID_SPAN),
                         key=lambda base: (base < FIRST_AUTOMATIC_BASE, base))
RESERVATIONS = ".nnunetv2_uda_runs"  # hidden folder in nnUNet_raw: <run id>.json per started run, its id range

OWNER_KEY = "nnunetv2_uda_run"  # dataset.json key naming the run that created the dataset


class PipelineInputError(UserInputError):
    """An input of the pipeline (a dataset, a label folder, an environment variable) that it cannot use."""


class DatasetOwnershipError(PipelineInputError):
    """A dataset id the run needs is held by a dataset that is not this run's."""


def nnunet_folders(environ: Mapping[str, str] = os.environ) -> dict[str, Path]:
    """nnU-Net's three folder variables (of this process, or of the environment given for a subprocess); a clear error
    if any is unset."""
    missing = [name for name in NNUNET_FOLDERS if not environ.get(name)]
    if missing:
        raise PipelineInputError(f"environment variable(s) {', '.join(missing)} not set: the pipeline writes its "
                                 f"datasets and models to nnU-Net's folders (see nnU-Net's documentation "
                                 f"'setting_up_paths.md')")
    return {name: Path(environ[name]) for name in NNUNET_FOLDERS}


def dataset_name(base: int, role: str) -> tuple[int, str]:
    offset, suffix = DATASET_ROLES[role]
    dataset_id = base + offset
    return dataset_id, f"Dataset{dataset_id:03d}_{suffix}"


def run_owner(output_folder: Path, run_id: str) -> dict[str, str]:
    """What a dataset's dataset.json records of the run that created it (:data:`OWNER_KEY`)."""
    return {"output_folder": str(Path(output_folder).resolve()), "run_id": run_id}


def _is_owner(record, owner: dict[str, str]) -> bool:
    """The same run: its id (kept in manifest.json, so a moved run folder keeps its datasets) or its output folder
    (a run started afresh there, its manifest removed, takes over its predecessor's datasets)."""
    return isinstance(record, dict) and (record.get("run_id") == owner["run_id"]
                                         or record.get("output_folder") == owner["output_folder"])


def _describe_owner(record) -> str:
    if isinstance(record, dict) and record.get("output_folder"):
        return f"the nnUNetv2_uda_run run in {record['output_folder']} (run id {record.get('run_id')})"
    return (f"no nnUNetv2_uda_run run (its dataset.json has no '{OWNER_KEY}' record: a dataset of yours or of "
            f"another tool)")


def dataset_conflict(folders: dict[str, Path], dataset_id: int, name: str, owner: dict[str, str]) -> str | None:
    """Why this run may not write dataset ``name`` (id ``dataset_id``) in nnU-Net's folders, or None if it may: the
    id is free, or ``name`` exists in nnUNet_raw and records this run as its owner."""
    for variable in NNUNET_FOLDERS:
        for other in sorted(folders[variable].glob(f"Dataset{dataset_id:03d}_*")):
            if other.name != name and not is_hidden(other):  # nnU-Net resolves ids by prefix in all three folders
                return f"{other} holds that id"
    raw = folders["nnUNet_raw"] / name
    if raw.exists():
        try:
            record = json.loads((raw / "dataset.json").read_text()).get(OWNER_KEY)
        except (OSError, ValueError, AttributeError):
            record = None
        return None if _is_owner(record, owner) else f"{raw} belongs to {_describe_owner(record)}"
    for variable in ("nnUNet_preprocessed", "nnUNet_results"):
        if (folders[variable] / name).exists():
            return f"{folders[variable] / name} exists without its raw dataset, so no record names its owner"
    return None


def check_datasets_owned(folders: dict[str, Path], datasets: Sequence[tuple[int, str]], owner: dict[str, str],
                         base: int) -> None:
    """Raises :class:`DatasetOwnershipError` (naming the first dataset in the way, its owner and the config key to
    change) unless every dataset the run will write is free or this run's own."""
    conflicts = [(dataset_id, conflict) for dataset_id, name in datasets
                 if (conflict := dataset_conflict(folders, dataset_id, name, owner)) is not None]
    if conflicts:
        ids = sorted(dataset_id for dataset_id, _ in datasets)
        (dataset_id, reason), more = conflicts[0], len(conflicts) - 1
        raise DatasetOwnershipError(
            f"dataset id {dataset_id} is not free for this run (output folder {owner['output_folder']}), which would "
            f"replace what holds it: {reason}{f' (and {more} more of its ids are taken)' if more else ''}; set "
            f"'dataset_id_base' (now {base}; the run uses ids {describe_ids(ids)}) to a free range, or remove that "
            f"dataset from nnU-Net's folders yourself if it is no longer wanted")


def describe_ids(ids: Sequence[int]) -> str:
    """Ids as ranges: ``500-502, 509``."""
    ranges: list[list[int]] = []
    for dataset_id in sorted(set(ids)):
        if ranges and dataset_id == ranges[-1][-1] + 1:
            ranges[-1][1:] = [dataset_id]
        else:
            ranges.append([dataset_id])
    return ", ".join("-".join(str(i) for i in item) for item in ranges)


def _held_ids(folders: dict[str, Path]) -> set[int]:
    """Ids that name a dataset folder in any of nnU-Net's folders."""
    held = set()
    for folder in folders.values():
        for path in folder.glob("Dataset*_*") if folder.is_dir() else ():
            digits = path.name[len("Dataset"):].split("_", 1)[0]
            if digits.isdigit() and not is_hidden(path):
                held.add(int(digits))
    return held


def _reservation_is_live(record: dict) -> bool:
    """A reservation holds while its run's manifest.json still names that run (a run folder deleted or started
    afresh frees it; a manifest that cannot be read keeps it, to be safe)."""
    try:
        manifest = json.loads((Path(record["output_folder"]) / MANIFEST_NAME).read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError, TypeError, KeyError):
        return True
    return not isinstance(manifest, dict) or manifest.get("run_id") == record.get("run_id")


def reserved_ranges(folders: dict[str, Path], owner: dict[str, str]) -> list[tuple[int, dict]]:
    """The bases other runs have reserved (:func:`reserve_dataset_ids`) and still hold, with their owners."""
    reserved = []
    for path in sorted((folders["nnUNet_raw"] / RESERVATIONS).glob("*.json")):
        try:
            record = json.loads(path.read_text())
            base = record["dataset_id_base"]
        except (OSError, ValueError, TypeError, KeyError):
            continue  # not one of ours as we write them: it reserves nothing
        if isinstance(base, int) and not _is_owner(record, owner) and _reservation_is_live(record):
            reserved.append((base, record))
    return reserved


def reserve_dataset_ids(folders: dict[str, Path], base: int, owner: dict[str, str]) -> None:
    """Records in nnUNet_raw that this run holds ``base .. base + ID_SPAN - 1``, so a run started meanwhile picks
    another range even before this one has written its datasets."""
    write_json_atomically({**owner, "dataset_id_base": base},
                          folders["nnUNet_raw"] / RESERVATIONS / f"{owner['run_id']}.json")


def free_dataset_id_base(folders: dict[str, Path], owner: dict[str, str]) -> int:
    """The first of :data:`AUTOMATIC_BASES` whose :data:`ID_SPAN` ids are all free (or this run's own datasets) in
    nnU-Net's folders and overlap no range another started run has reserved."""
    held = _held_ids(folders)
    reserved = [base for base, _ in reserved_ranges(folders, owner)]
    for base in AUTOMATIC_BASES:
        if any(abs(other - base) < ID_SPAN for other in reserved):
            continue
        if all(dataset_conflict(folders, base + offset, dataset_name(base, role)[1], owner) is None
               for offset, role in ROLE_AT_OFFSET.items() if base + offset in held):
            return base
    raise DatasetOwnershipError(f"no range of {ID_SPAN} free dataset ids is left for an automatic "
                                f"'dataset_id_base' in nnU-Net's folders ({folders['nnUNet_raw']} and the others); "
                                f"set 'dataset_id_base' to a free range yourself")


def read_dataset_json(folder: Path) -> dict:
    path = Path(folder) / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected an nnU-Net raw dataset folder)")
    return read_json_object(path, "not an nnU-Net dataset.json")


def set_dataset_json(folder: Path, **entries) -> None:
    """Sets keys of a raw dataset's dataset.json (rewritten atomically)."""
    write_json_atomically({**read_dataset_json(folder), **entries}, Path(folder) / "dataset.json")


def check_label_names(ct_folder: Path, mri_folder: Path) -> dict[str, int]:
    """The CT dataset's labels; error if the MRI dataset names the same ids differently or lacks labels."""
    ct_labels = read_dataset_json(ct_folder).get("labels")
    mri_labels = read_dataset_json(mri_folder).get("labels")
    if not isinstance(ct_labels, dict):
        raise PipelineInputError(f"{ct_folder}/dataset.json has no 'labels' mapping")
    if not isinstance(mri_labels, dict):
        raise PipelineInputError(f"{mri_folder}/dataset.json has no 'labels' mapping (it must name the organs to "
                                 f"segment, as the CT dataset does)")
    if ct_labels != mri_labels:
        only_ct = sorted(set(ct_labels.items()) - set(mri_labels.items()), key=lambda kv: str(kv[1]))
        only_mri = sorted(set(mri_labels.items()) - set(ct_labels.items()), key=lambda kv: str(kv[1]))
        raise PipelineInputError(f"the label names of the CT dataset ({ct_folder}) and the MRI dataset "
                                 f"({mri_folder}) disagree: only in CT {dict(only_ct)}, only in MRI {dict(only_mri)}")
    return ct_labels


def select_organs(labels: dict[str, int], organs: Sequence[str] | None) -> tuple[dict[str, int], dict[int, int] | None]:
    """The labels to train on and the relabelling of the CT label maps (old id -> new id), or ``labels`` and None.

    nnU-Net wants consecutive ids, so the chosen organs are renumbered 1..n in the dataset's id order; every other
    organ becomes background. Scores pair organs by name, so the new ids never meet the evaluation labels' ids.
    """
    if organs is None:
        return labels, None
    background = [name for name, value in labels.items() if value == 0]
    unknown = [organ for organ in organs if organ not in labels or labels[organ] == 0]
    if unknown:
        names = ", ".join(name for name in sorted(labels, key=labels.__getitem__) if labels[name] != 0)
        raise PipelineInputError(f"'organs': {unknown} are not organs of the CT dataset's dataset.json (its "
                                 f"labels: {names})")
    if any(not isinstance(labels[organ], int) for organ in organs):
        raise PipelineInputError("'organs' needs plain integer labels; the CT dataset's dataset.json has regions")
    chosen = sorted(organs, key=labels.__getitem__)
    selected = {background[0] if background else "background": 0}
    selected.update({organ: new_id for new_id, organ in enumerate(chosen, 1)})
    return selected, {labels[organ]: new_id for new_id, organ in enumerate(chosen, 1)}


def relabel_file(source: Path, target: Path, relabel: dict[int, int]) -> None:
    """``source`` with ids mapped by ``relabel`` (others to 0), written to ``target`` with the same geometry."""
    image = read_image(source)
    array = sitk.GetArrayViewFromImage(image)
    if array.size and array.min() < 0:
        raise PipelineInputError(f"{source}: negative label values")
    lookup = np.zeros(max(int(array.max(initial=0)), *relabel) + 1, dtype=np.uint8)
    for old, new in relabel.items():
        lookup[old] = new
    target.parent.mkdir(parents=True, exist_ok=True)  # inside the dataset's staging folder: no partial-file risk
    sitk.WriteImage(label_like(lookup[array.astype(np.int64)], image), str(target), useCompression=True)


def mri_sequences(images_folder: Path, default: str | None = None) -> dict[str, str]:
    """Case -> sequence tag, from the ``<case>.json`` sidecars ({"sequence": "T2"}), else ``default``; untagged cases
    without a default raise."""
    cases = image_channel_files(images_folder)
    if not cases:
        raise PipelineInputError(f"{images_folder} holds no images named <case>_0000.nii.gz")
    sequences, untagged = {}, []
    for case in cases:
        tag = (read_sidecar(images_folder, case) or {}).get("sequence")
        if tag is not None and not isinstance(tag, str):
            raise PipelineInputError(f"{sidecar_file(images_folder, case)}: 'sequence' is {tag!r}, not a name such as "
                                     f"\"T2\"")
        if tag is not None:
            sequences[case] = tag
        elif default is not None:
            sequences[case] = default
        else:
            untagged.append(case)
    if untagged:
        raise PipelineInputError(f"{len(untagged)} MRI case(s) in {images_folder} have no sequence tag "
                         f"(<case>.json with {{\"sequence\": ...}}), e.g. {untagged[:3]}; tag them or set "
                         f"'mri_default_sequence'")
    return sequences


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` (a new file: an existing one is never replaced) as a hard link to ``source``, or a copy where the
    file system cannot link."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except FileExistsError:  # an OSError too, but never a reason to copy over what is there
        raise
    except OSError:
        shutil.copy2(source, target)


def write_raw_dataset(folder: Path, cases: dict[str, tuple[list[Path], Path | None]], labels: dict[str, int],
                      channel_name: str, extra_json: dict | None = None, relabel: dict[int, int] | None = None,
                      replace: bool = False) -> Path:
    """Writes an nnU-Net raw dataset ``folder`` from case -> (channel files, label file) in one go.

    Built in a staging folder that takes the final name when complete (:func:`folder_built_atomically`), so a
    half-built dataset never has the final name; an existing ``folder`` is replaced only with ``replace`` (the caller
    has checked that it owns it). Label maps are linked as they are, or rewritten through ``relabel``
    (:func:`select_organs`).
    """
    with folder_built_atomically(folder, replace=replace) as staging:
        for case, (images, label) in tqdm(cases.items(), desc=f"writing {Path(folder).name}",
                                          disable=relabel is None):
            for channel, image in enumerate(images):
                link_or_copy(image, staging / "imagesTr" / f"{case}_{channel:04d}.nii.gz")
            if label is not None and relabel is not None:
                relabel_file(label, staging / "labelsTr" / f"{case}.nii.gz", relabel)
            elif label is not None:
                link_or_copy(label, staging / "labelsTr" / f"{case}.nii.gz")
        dataset_json = {"channel_names": {"0": channel_name}, "labels": labels, "numTraining": len(cases),
                        "file_ending": ".nii.gz", **(extra_json or {})}
        (staging / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return Path(folder)


def labeled_cases(dataset_folder: Path, limit: int | None = None) -> dict[str, tuple[list[Path], Path]]:
    """Case -> (image channel files, label file) of a raw dataset's imagesTr/labelsTr, first ``limit`` by name."""
    images = image_channel_files(Path(dataset_folder) / "imagesTr")
    labels = label_files(Path(dataset_folder) / "labelsTr")
    missing = sorted(set(images) - set(labels))
    if missing:
        raise FileNotFoundError(f"{dataset_folder}/labelsTr lacks labels for {len(missing)} case(s), "
                                f"e.g. {missing[:3]}")
    names = sorted(images)[:limit] if limit is not None else sorted(images)
    return {case: (images[case], labels[case]) for case in names}
