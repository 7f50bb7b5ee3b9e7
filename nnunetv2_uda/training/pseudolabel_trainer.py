"""Self-training's first half: a trainer that pseudo-labels the unlabeled target set at K points of training."""

from __future__ import annotations

from pathlib import Path

import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from tqdm import tqdm

from nnunetv2_uda.atomic_files import folder_built_atomically
from nnunetv2_uda.pseudolabels.label_io import image_channel_files
from nnunetv2_uda.pseudolabels.snapshots import (
    DATASET_JSON_KEY,
    RECORD_FILE,
    SNAPSHOT_SUBFOLDER,
    SnapshotRecord,
    load_record,
    resume_record,
    snapshot_epochs_from_config,
    snapshot_folder_name,
)
from nnunetv2_uda.training.small_trainer import nnUNetTrainerUDASmall


class nnUNetTrainerUDAPseudoLabel(nnUNetTrainerUDASmall):
    """``nnUNetTrainerUDASmall`` that also predicts every unlabeled target image at K snapshot epochs.

    The target is named in the training dataset's ``dataset.json`` (nnU-Net hands it to the trainer), so plain
    ``nnUNetv2_train`` works::

        "uda_pseudolabel": {"target_images": "/abs/folder/of/<case>_0000.nii.gz",
                            "num_snapshots": 4, "snapshot_epochs": [249, 499, 749, 999]}

    ``snapshot_epochs`` (optional) overrides the default: the ends of ``num_snapshots`` equal chunks of training.
    Snapshots go to ``<fold folder>/pseudolabel_snapshots/epoch_<EEEE>/<case>.nii.gz`` through nnU-Net's own
    export (original geometry), recorded in ``snapshots.json`` (see :mod:`nnunetv2_uda.pseudolabels.snapshots`).
    A snapshot is taken before the epoch's checkpoint, so ``nnUNetv2_train --c`` resumes without gaps; snapshots
    of epochs that will be trained again are dropped and retaken.
    """

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):  # noqa: B008 (nnU-Net's signature)
        config = dataset_json.get(DATASET_JSON_KEY)
        if not isinstance(config, dict) or "target_images" not in config:  # checked before any folder is made
            raise ValueError(f"{type(self).__name__} needs the key '{DATASET_JSON_KEY}' in the dataset's dataset.json "
                             f"with at least {{\"target_images\": \"/abs/folder\"}} (the unlabeled target images); "
                             f"found {config!r}. Add it to the raw dataset.json and preprocess again (nnU-Net copies "
                             f"dataset.json into nnUNet_preprocessed).")
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.pseudolabel_config = config
        self.target_images = Path(config["target_images"])
        self.snapshot_folder = Path(self.output_folder) / SNAPSHOT_SUBFOLDER
        self.snapshot_epochs: list[int] = []
        self.snapshot_record: SnapshotRecord | None = None

    def on_train_start(self):
        super().on_train_start()
        self.snapshot_epochs = snapshot_epochs_from_config(self.pseudolabel_config, self.num_epochs)
        self._target_cases()  # fail now, not after the first chunk of training
        self.snapshot_record = self._resumable_record()
        self.snapshot_record.save(self.snapshot_folder)
        self.print_to_log_file(f"pseudo-label snapshots of {self.target_images} at epochs {self.snapshot_epochs}")

    def on_epoch_end(self):
        if self.current_epoch in self.snapshot_epochs and self.local_rank == 0:
            self.take_snapshot(self.current_epoch)
        super().on_epoch_end()

    def _target_cases(self) -> dict[str, list[str]]:
        """Channel files per target case (listed without nnU-Net's helper, which starts a process pool)."""
        if not self.target_images.is_dir():
            raise FileNotFoundError(f"'{DATASET_JSON_KEY}.target_images' = {self.target_images} is not a folder")
        cases = image_channel_files(self.target_images)
        if not cases:
            raise ValueError(f"'{DATASET_JSON_KEY}.target_images' = {self.target_images} holds no images named "
                             f"<case>_0000.nii.gz")
        expected = len(self.dataset_json["channel_names"])
        for case, files in cases.items():
            if len(files) != expected:
                raise ValueError(f"target case '{case}' in {self.target_images} has {len(files)} channel file(s), "
                                 f"the network expects {expected}")
        return {case: [str(f) for f in files] for case, files in cases.items()}

    def _resumable_record(self) -> SnapshotRecord:
        fresh = SnapshotRecord(str(self.target_images), self.snapshot_epochs, [], self.dataset_json)
        previous = load_record(self.snapshot_folder) if (self.snapshot_folder / RECORD_FILE).is_file() else None
        return resume_record(previous, fresh, self.current_epoch)

    def take_snapshot(self, epoch: int) -> None:
        """Predicts all target images with the current weights into ``epoch_<EEEE>``, built in a hidden staging folder
        and swapped in when complete (:func:`nnunetv2_uda.atomic_files.folder_built_atomically`)."""
        network = self.plain_network()
        weights = network.state_dict()
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                    perform_everything_on_device=True, device=self.device, verbose=False,
                                    verbose_preprocessing=False, allow_tqdm=False)
        predictor.manual_initialization(network, self.plans_manager, self.configuration_manager, [weights],
                                        self.dataset_json, type(self).__name__, None)
        final = self.snapshot_folder / snapshot_folder_name(epoch)
        record = self.snapshot_record
        record.complete = [e for e in record.complete if e != epoch]
        record.save(self.snapshot_folder)  # unlisted before its folder is replaced
        self.set_deep_supervision_enabled(False)
        network.eval()
        try:
            with torch.no_grad(), folder_built_atomically(final, replace=True) as staging:
                cases = self._target_cases()
                for case, channel_files in tqdm(cases.items(), desc=f"pseudo-label snapshot epoch {epoch}"):
                    predictor.predict_from_files_sequential([channel_files], [str(staging / case)],
                                                            save_probabilities=False, overwrite=True)
        finally:
            self.set_deep_supervision_enabled(self.enable_deep_supervision)
            network.train()
        record.complete = sorted([*record.complete, epoch])
        record.save(self.snapshot_folder)
        self.print_to_log_file(f"pseudo-label snapshot of epoch {epoch} written to {final}")
