"""Mixed precision on CPUs that compute in bfloat16 natively (Intel AMX or AVX512-BF16).

nnU-Net autocasts to float16 on CUDA only: on most CPUs reduced precision is slower than float32 ("slow as heck", its
``train_step`` says). CPUs with bfloat16 units are the exception: on one Xeon with AMX the small network's training
iteration (2d, batch 16, 160 x 160) took 0.58 of its float32 time under ``torch.autocast("cpu",
dtype=torch.bfloat16)`` (``bench/training_speed.py`` measures it on the machine at hand). bfloat16 keeps float32's
exponent range, so no gradient scaler is needed; weights, gradients and the optimizer stay float32.

Our trainers decide once, when built, with :func:`cpu_bf16_enabled`, and then train and validate under
:func:`bf16_autocast`. It applies where the environment variable ``nnUNet_uda_cpu_bf16`` is ``1``, ``t`` or ``true``
(unset: :data:`CPU_BF16_DEFAULT`) and the CPU has bfloat16 units; never on CUDA (nnU-Net's own float16 autocast
applies) or where the variable is ``0``, ``f`` or ``false`` (float32 throughout, as stock nnU-Net trains on a CPU).
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext

import torch

CPU_BF16_VARIABLE = "nnUNet_uda_cpu_bf16"
CPU_BF16_DEFAULT = False  # until a real-data run shows bfloat16 training as accurate (bench/experiments/*_bf16)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bfloat16 matrix units (AMX tiles) or instructions (AVX512-BF16)."""
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def cpu_bf16_enabled(device: torch.device) -> bool:
    """Whether training on ``device`` runs under bfloat16 autocast: a CPU with native bfloat16 where
    ``nnUNet_uda_cpu_bf16`` (or, unset, :data:`CPU_BF16_DEFAULT`) says so."""
    value = os.environ.get(CPU_BF16_VARIABLE)
    wanted = CPU_BF16_DEFAULT if value is None else value.strip().lower() in ("1", "t", "true")
    return device.type == "cpu" and wanted and cpu_has_native_bf16()


def bf16_autocast(enabled: bool) -> AbstractContextManager:
    """CPU bfloat16 autocast where ``enabled`` (from :func:`cpu_bf16_enabled`), otherwise a context that does
    nothing."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else nullcontext()
