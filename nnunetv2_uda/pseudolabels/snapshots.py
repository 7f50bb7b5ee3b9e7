"""The record of pseudo-label snapshots a ``nnUNetTrainerUDAPseudoLabel`` run leaves in its fold folder.

Layout (``SNAPSHOT_FOLDER`` = ``<fold folder>/pseudolabel_snapshots``)::

    snapshots.json             {"target_images", "epochs", "complete", "dataset_json"}
    epoch_0249/<case>.nii.gz   one label map per target image, in the image's geometry
    ...

``epochs`` are the planned snapshot epochs (0-based), ``complete`` those whose folder is finished: a folder is
written under a temporary name, renamed, and only then listed, so a listed snapshot is always whole.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from nnunetv2_uda.atomic_files import write_json_atomically
from nnunetv2_uda.json_files import read_json_object
from nnunetv2_uda.pseudolabels.label_io import PseudoLabelError

SNAPSHOT_SUBFOLDER = "pseudolabel_snapshots"
RECORD_FILE = "snapshots.json"
DATASET_JSON_KEY = "uda_pseudolabel"
DEFAULT_NUM_SNAPSHOTS = 4


def snapshot_folder_name(epoch: int) -> str:
    return f"epoch_{epoch:04d}"


@dataclass
class SnapshotRecord:
    target_images: str
    epochs: list[int]
    complete: list[int] = field(default_factory=list)
    dataset_json: dict = field(default_factory=dict)

    def save(self, snapshot_folder: Path) -> None:
        write_json_atomically(asdict(self), Path(snapshot_folder) / RECORD_FILE)


def resolve_snapshot_folder(folder: Path) -> Path:
    """Accepts the snapshot folder itself or the fold folder that holds it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PseudoLabelError(f"snapshot folder {folder} does not exist")
    if (folder / RECORD_FILE).is_file():
        return folder
    if (folder / SNAPSHOT_SUBFOLDER / RECORD_FILE).is_file():
        return folder / SNAPSHOT_SUBFOLDER
    raise PseudoLabelError(f"no {RECORD_FILE} in {folder} (nor in {folder / SNAPSHOT_SUBFOLDER}): give the "
                           f"'{SNAPSHOT_SUBFOLDER}' folder written by nnUNetTrainerUDAPseudoLabel")


def load_record(snapshot_folder: Path) -> SnapshotRecord:
    path = Path(snapshot_folder) / RECORD_FILE
    written_by = "not the record nnUNetTrainerUDAPseudoLabel writes"
    content = read_json_object(path, written_by)
    missing = [key for key in ("target_images", "epochs") if key not in content]
    if missing:
        raise PseudoLabelError(f"{path}: lacks {', '.join(map(repr, missing))}; {written_by}")
    try:
        return SnapshotRecord(target_images=str(content["target_images"]),
                              epochs=[int(e) for e in content["epochs"]],
                              complete=[int(e) for e in content.get("complete", [])],
                              dataset_json=dict(content.get("dataset_json", {})))
    except (TypeError, ValueError) as error:
        raise PseudoLabelError(f"{path}: 'epochs' and 'complete' must be lists of epoch numbers and 'dataset_json' "
                               f"an object ({error}); {written_by}") from error


def resume_record(previous: SnapshotRecord | None, fresh: SnapshotRecord, current_epoch: int) -> SnapshotRecord:
    """The record a (continued) training run starts from: finished snapshots of epochs before ``current_epoch``
    carry over when the target and the planned epochs are unchanged; later ones will be taken again."""
    if previous is not None and (previous.target_images, previous.epochs) == (fresh.target_images, fresh.epochs):
        fresh.complete = [epoch for epoch in previous.complete if epoch < current_epoch]
    return fresh


def default_snapshot_epochs(num_epochs: int, num_snapshots: int) -> list[int]:
    """The last epoch of each of ``num_snapshots`` equal chunks of training (so the last epoch is always one)."""
    if num_snapshots < 2:
        raise ValueError(f"'{DATASET_JSON_KEY}.num_snapshots' must be at least 2 (eq. 7 compares snapshots), "
                         f"got {num_snapshots}")
    if num_snapshots > num_epochs:
        raise ValueError(f"'{DATASET_JSON_KEY}.num_snapshots' ({num_snapshots}) exceeds the number of training "
                         f"epochs ({num_epochs})")
    return [round((k + 1) * num_epochs / num_snapshots) - 1 for k in range(num_snapshots)]


def snapshot_epochs_from_config(config: dict, num_epochs: int) -> list[int]:
    """The snapshot epochs the ``uda_pseudolabel`` entry of dataset.json asks for, checked against the budget."""
    explicit = config.get("snapshot_epochs")
    if explicit is None:
        return default_snapshot_epochs(num_epochs, int(config.get("num_snapshots", DEFAULT_NUM_SNAPSHOTS)))
    epochs = [int(e) for e in explicit]
    if len(epochs) < 2 or sorted(set(epochs)) != epochs or epochs[0] < 0 or epochs[-1] >= num_epochs:
        raise ValueError(f"'{DATASET_JSON_KEY}.snapshot_epochs' must be at least two increasing 0-based epochs "
                         f"below the number of epochs ({num_epochs}), got {explicit}")
    return epochs
