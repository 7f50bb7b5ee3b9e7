"""The paper's training protocol (its Table 4) as an nnU-Net trainer."""

from __future__ import annotations

import os
import sys

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch._dynamo import OptimizedModule

from nnunetv2_uda.training.cpu_precision import bf16_autocast, cpu_bf16_enabled
from nnunetv2_uda.training.warm_start import (
    PRETRAINED_HEADS_VARIABLE,
    load_segmentation_heads,
    refuse_unsafe_pretrained_weights,
    refused_in_one_line,
)


class nnUNetTrainerUDASmall(nnUNetTrainer):
    """SGD (Nesterov, momentum 0.99), lr 0.01 with poly decay (exponent 0.9), 1000 epochs, Dice + CE with deep
    supervision, "He" initialization, foreground oversampling and nnU-Net's default augmentation.
    On a CPU with bfloat16 units it can train under bfloat16 autocast (:mod:`nnunetv2_uda.training.cpu_precision`).

    Most of these are nnU-Net's defaults today; they are restated here so that the protocol stays the paper's if
    nnU-Net's defaults move. The one change is inference: no test-time mirroring (the paper's speed budget), while
    training keeps mirroring augmentation. A warm start can keep the pretrained segmentation heads, which
    ``-pretrained_weights`` drops (:mod:`nnunetv2_uda.training.warm_start`). Budget variants
    (``nnUNetTrainerUDASmall_5epochs_20iters``) come from :mod:`nnunetv2_uda.training.budget`.
    """

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-2
        self.num_epochs = 1000
        self.enable_deep_supervision = True
        self.oversample_foreground_percent = 0.33
        self.cpu_bf16 = cpu_bf16_enabled(self.device)  # decided once, not per iteration

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, mirror_axes = \
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, initial_patch_size, mirror_axes

    def initialize(self):
        if not self.was_initialized:  # nnUNetv2_train -pretrained_weights calls this right before its unsafe load
            with refused_in_one_line():
                refuse_unsafe_pretrained_weights(sys.argv[1:])
        super().initialize()

    def on_train_start(self):
        super().on_train_start()
        if self.cpu_bf16:
            self.print_to_log_file("training under bfloat16 autocast on this CPU (nnUNet_uda_cpu_bf16)")
        checkpoint = os.environ.get(PRETRAINED_HEADS_VARIABLE)
        if checkpoint and self.current_epoch == 0:  # a resumed run has its own trained heads
            with refused_in_one_line():
                heads = load_segmentation_heads(self.plain_network(), checkpoint)
            self.print_to_log_file(f"{len(heads)} segmentation head weights loaded from {checkpoint} "
                                   f"({PRETRAINED_HEADS_VARIABLE})")

    def train_step(self, batch: dict) -> dict:
        with bf16_autocast(self.cpu_bf16):
            return super().train_step(batch)

    def validation_step(self, batch: dict) -> dict:
        with bf16_autocast(self.cpu_bf16):
            return super().validation_step(batch)

    def plain_network(self) -> torch.nn.Module:
        """The network under the DDP and torch.compile wrappers, whose state-dict keys carry prefixes (unwrapped as
        nnU-Net's own ``save_checkpoint`` does)."""
        network = self.network.module if self.is_ddp else self.network
        return network._orig_mod if isinstance(network, OptimizedModule) else network
