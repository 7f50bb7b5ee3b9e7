"""The paper's "Small" network as an nnU-Net experiment planner.

FLARE 2024 Task 3 entries have to be fast, so the paper shrinks nnU-Net's default U-Net: 16 features in the first
stage (doubling per stage), 2 convolutions per stage, 4 downsamplings, patch 40x224x192 at spacing
(2.5, 0.81, 0.81) mm and batch size 2 (its Tables 1 and 2). nnU-Net still chooses kernel sizes and strides from the
spacing, the 2d patch and batch size, normalization and resampling, so everything else stays nnU-Net's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

PAPER_BASE_FEATURES = 16
PAPER_NUM_DOWNSAMPLINGS = 4
PAPER_CONVS_PER_STAGE = 2
PAPER_PATCH_SIZE_3D = (40, 224, 192)
PAPER_TARGET_SPACING = (2.5, 0.81, 0.81)
PAPER_BATCH_SIZE_3D = 2


@contextmanager
def _at_least_one_augmentation_process() -> Iterator[None]:
    """nnU-Net's VRAM estimate sets torch's thread count to nnUNet_n_proc_DA, which fails for 0 (augmentation in
    the main process, the sensible choice on small CPU machines). Plan as if it were 1."""
    previous = os.environ.get("nnUNet_n_proc_DA")
    if previous is not None and int(previous) < 1:
        os.environ["nnUNet_n_proc_DA"] = "1"
    try:
        yield
    finally:
        if previous is not None:
            os.environ["nnUNet_n_proc_DA"] = previous


class nnUNetPlannerUDASmall(ExperimentPlanner):
    """Plans ``nnUNetPlansUDASmall``: the paper's small 3d_fullres network and a 2d network of the same width/depth.

    ``-overwrite_target_spacing`` replaces the paper's spacing; ``-overwrite_plans_name`` and
    ``-gpu_memory_target`` work as with nnU-Net's planners (the latter only affects the 2d batch size).
    No 3d_lowres/cascade: the paper's pipeline has no use for them.
    """

    def __init__(self, dataset_name_or_id: str | int, gpu_memory_target_in_gb: float = 8,
                 preprocessor_name: str = "DefaultPreprocessor", plans_name: str = "nnUNetPlansUDASmall",
                 overwrite_target_spacing: list[float] | tuple[float, ...] | None = None,
                 suppress_transpose: bool = False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)
        self.UNet_base_num_features = PAPER_BASE_FEATURES
        # as long as nnU-Net's own tuples: its patch search instantiates deeper networks before we truncate them
        self.UNet_blocks_per_stage_encoder = (PAPER_CONVS_PER_STAGE,) * len(self.UNet_blocks_per_stage_encoder)
        self.UNet_blocks_per_stage_decoder = (PAPER_CONVS_PER_STAGE,) * len(self.UNet_blocks_per_stage_decoder)
        self.lowres_creation_threshold = 0  # never plan 3d_lowres

    @staticmethod
    def static_estimate_VRAM_usage(*args, **kwargs) -> int:
        with _at_least_one_augmentation_process():
            return ExperimentPlanner.static_estimate_VRAM_usage(*args, **kwargs)

    def determine_fullres_target_spacing(self) -> np.ndarray:
        if self.overwrite_target_spacing is not None:
            return np.array(self.overwrite_target_spacing)
        return np.array(PAPER_TARGET_SPACING)

    def get_plans_for_configuration(self, spacing, median_shape, data_identifier: str,
                                    approximate_n_voxels_dataset: float, _cache: dict) -> dict:
        plan = super().get_plans_for_configuration(spacing, median_shape, data_identifier,
                                                   approximate_n_voxels_dataset, _cache)
        is_3d = len(spacing) == 3
        patch_size = PAPER_PATCH_SIZE_3D if is_3d else plan["patch_size"]
        _, strides, kernel_sizes, patch_size, _ = get_pool_and_conv_props(
            spacing, patch_size, self.UNet_featuremap_min_edge_length, PAPER_NUM_DOWNSAMPLINGS)
        num_stages = len(strides)
        plan["patch_size"] = tuple(int(i) for i in patch_size)
        plan["architecture"]["arch_kwargs"].update({
            "n_stages": num_stages,
            "features_per_stage": tuple(PAPER_BASE_FEATURES * 2 ** i for i in range(num_stages)),
            "kernel_sizes": kernel_sizes,
            "strides": strides,
            "n_conv_per_stage": self.UNet_blocks_per_stage_encoder[:num_stages],
            "n_conv_per_stage_decoder": self.UNet_blocks_per_stage_decoder[:num_stages - 1],
        })
        if is_3d:
            plan["batch_size"] = PAPER_BATCH_SIZE_3D
        return plan
