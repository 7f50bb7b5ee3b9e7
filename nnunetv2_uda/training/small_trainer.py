"""The paper's training protocol (its Table 4) as an nnU-Net trainer."""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerUDASmall(nnUNetTrainer):
    """SGD (Nesterov, momentum 0.99), lr 0.01 with poly decay (exponent 0.9), 1000 epochs, Dice + CE with deep
    supervision, "He" initialization, foreground oversampling and nnU-Net's default augmentation.

    Most of these are nnU-Net's defaults today; they are restated here so that the protocol stays the paper's if
    nnU-Net's defaults move. The one change is inference: no test-time mirroring (the paper's speed budget), while
    training keeps mirroring augmentation. Budget variants (``nnUNetTrainerUDASmall_5epochs_20iters``) come from
    :mod:`nnunetv2_uda.training.budget`.
    """

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-2
        self.num_epochs = 1000
        self.enable_deep_supervision = True
        self.oversample_foreground_percent = 0.33

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, mirror_axes = \
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, initial_patch_size, mirror_axes
