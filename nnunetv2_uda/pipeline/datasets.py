"""The nnU-Net raw datasets the pipeline creates: their ids, names and assembly from other folders.

Datasets get fixed ids ``dataset_id_base + offset`` so a rerun finds its own datasets again; an id already taken by
a dataset of another name is an error, never overwritten. Images are hard-linked where the file system allows
(FLARE-scale data would otherwise be copied several times) and copied otherwise.
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

from nnunetv2_uda.pseudolabels.label_io import image_channel_files, label_files, label_like

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


def nnunet_folders(environ: Mapping[str, str] = os.environ) -> dict[str, Path]:
    """nnU-Net's three folder variables (of this process, or of the environment given for a subprocess); a clear error
    if any is unset."""
    missing = [name for name in NNUNET_FOLDERS if not environ.get(name)]
    if missing:
        raise OSError(f"environment variable(s) {', '.join(missing)} not set: the pipeline writes its datasets and "
                      f"models to nnU-Net's folders (see nnU-Net's documentation 'setting_up_paths.md')")
    return {name: Path(environ[name]) for name in NNUNET_FOLDERS}


def dataset_name(base: int, role: str) -> tuple[int, str]:
    offset, suffix = DATASET_ROLES[role]
    dataset_id = base + offset
    return dataset_id, f"Dataset{dataset_id:03d}_{suffix}"


def check_dataset_id_free(raw: Path, dataset_id: int, name: str) -> None:
    """Raises if nnUNet_raw holds another dataset with this id (nnU-Net resolves ids by prefix)."""
    for other in raw.glob(f"Dataset{dataset_id:03d}_*"):
        if other.name != name:
            raise FileExistsError(f"dataset id {dataset_id} is taken by {other} (the pipeline needs it for {name}); "
                                  f"choose another 'dataset_id_base'")


def read_dataset_json(folder: Path) -> dict:
    path = Path(folder) / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected an nnU-Net raw dataset folder)")
    return json.loads(path.read_text())


def check_label_names(ct_folder: Path, mri_folder: Path) -> dict[str, int]:
    """The CT dataset's labels; error if the MRI dataset names the same ids differently or lacks labels."""
    ct_labels = read_dataset_json(ct_folder).get("labels")
    mri_labels = read_dataset_json(mri_folder).get("labels")
    if not isinstance(ct_labels, dict):
        raise ValueError(f"{ct_folder}/dataset.json has no 'labels' mapping")
    if not isinstance(mri_labels, dict):
        raise ValueError(f"{mri_folder}/dataset.json has no 'labels' mapping (it must name the organs to segment, "
                         f"as the CT dataset does)")
    if ct_labels != mri_labels:
        only_ct = sorted(set(ct_labels.items()) - set(mri_labels.items()), key=lambda kv: str(kv[1]))
        only_mri = sorted(set(mri_labels.items()) - set(ct_labels.items()), key=lambda kv: str(kv[1]))
        raise ValueError(f"the label names of the CT dataset ({ct_folder}) and the MRI dataset ({mri_folder}) "
                         f"disagree: only in CT {dict(only_ct)}, only in MRI {dict(only_mri)}")
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
        raise ValueError(f"'organs': {unknown} are not organs of the CT dataset's dataset.json (its labels: {names})")
    if any(not isinstance(labels[organ], int) for organ in organs):
        raise ValueError("'organs' needs plain integer labels; the CT dataset's dataset.json has regions")
    chosen = sorted(organs, key=labels.__getitem__)
    selected = {background[0] if background else "background": 0}
    selected.update({organ: new_id for new_id, organ in enumerate(chosen, 1)})
    return selected, {labels[organ]: new_id for new_id, organ in enumerate(chosen, 1)}


def relabel_file(source: Path, target: Path, relabel: dict[int, int]) -> None:
    """``source`` with ids mapped by ``relabel`` (others to 0), written to ``target`` with the same geometry."""
    image = sitk.ReadImage(str(source))
    array = sitk.GetArrayViewFromImage(image)
    if array.size and array.min() < 0:
        raise ValueError(f"{source}: negative label values")
    lookup = np.zeros(max(int(array.max(initial=0)), *relabel) + 1, dtype=np.uint8)
    for old, new in relabel.items():
        lookup[old] = new
    target.parent.mkdir(parents=True, exist_ok=True)  # inside the dataset's temporary folder: no partial-file risk
    sitk.WriteImage(label_like(lookup[array.astype(np.int64)], image), str(target), useCompression=True)


def mri_sequences(images_folder: Path, default: str | None = None) -> dict[str, str]:
    """Case -> sequence tag, from the ``<case>.json`` sidecars ({"sequence": "T2"}), else ``default``; untagged cases
    without a default raise."""
    cases = image_channel_files(images_folder)
    if not cases:
        raise ValueError(f"{images_folder} holds no images named <case>_0000.nii.gz")
    sequences, untagged = {}, []
    for case in cases:
        sidecar = Path(images_folder) / f"{case}.json"
        if sidecar.is_file() and isinstance(json.loads(sidecar.read_text()).get("sequence"), str):
            sequences[case] = json.loads(sidecar.read_text())["sequence"]
        elif default is not None:
            sequences[case] = default
        else:
            untagged.append(case)
    if untagged:
        raise ValueError(f"{len(untagged)} MRI case(s) in {images_folder} have no sequence tag "
                         f"(<case>.json with {{\"sequence\": ...}}), e.g. {untagged[:3]}; tag them or set "
                         f"'mri_default_sequence'")
    return sequences


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def write_raw_dataset(folder: Path, cases: dict[str, tuple[list[Path], Path | None]], labels: dict[str, int],
                      channel_name: str, extra_json: dict | None = None, relabel: dict[int, int] | None = None) -> Path:
    """Writes an nnU-Net raw dataset ``folder`` from case -> (channel files, label file) in one go.

    Built under a temporary name and renamed at the end, so a half-built dataset never has the final name. Label maps
    are linked as they are, or rewritten through ``relabel`` (:func:`select_organs`).
    """
    folder = Path(folder)
    temporary = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    for case, (images, label) in tqdm(cases.items(), desc=f"writing {folder.name}", disable=relabel is None):
        for channel, image in enumerate(images):
            link_or_copy(image, temporary / "imagesTr" / f"{case}_{channel:04d}.nii.gz")
        if label is not None and relabel is not None:
            relabel_file(label, temporary / "labelsTr" / f"{case}.nii.gz", relabel)
        elif label is not None:
            link_or_copy(label, temporary / "labelsTr" / f"{case}.nii.gz")
    dataset_json = {"channel_names": {"0": channel_name}, "labels": labels, "numTraining": len(cases),
                    "file_ending": ".nii.gz", **(extra_json or {})}
    (temporary / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(temporary, folder)
    return folder


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
