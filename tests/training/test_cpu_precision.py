"""bfloat16 autocast on CPUs with bfloat16 units: when it applies, and that a training step of our trainers then
runs the network in bfloat16 while the weights stay float32."""

from __future__ import annotations

import json

import pytest
import torch

from nnunetv2_uda.training.cpu_precision import (
    CPU_BF16_DEFAULT,
    CPU_BF16_VARIABLE,
    cpu_bf16_enabled,
    cpu_has_native_bf16,
)
from nnunetv2_uda.training.quick_trainer import nnUNetTrainerUDAQuick

NATIVE = cpu_has_native_bf16()
CPU = torch.device("cpu")


@pytest.mark.parametrize(("value", "wanted"), [("1", True), ("true", True), ("T", True), ("0", False),
                                                ("false", False), ("f", False), (None, CPU_BF16_DEFAULT)])
def test_the_variable_switches_it_on_cpus_with_bfloat16_units(value, wanted, monkeypatch):
    if value is None:
        monkeypatch.delenv(CPU_BF16_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(CPU_BF16_VARIABLE, value)
    assert cpu_bf16_enabled(CPU) == (wanted and NATIVE)
    assert not cpu_bf16_enabled(torch.device("cuda"))  # nnU-Net's own float16 autocast applies there


def one_step(trainer: nnUNetTrainerUDAQuick) -> tuple[torch.dtype, float]:
    """One ``train_step`` on a random batch of the plans' patch size: the first convolution's output dtype and the
    loss."""
    patch = trainer.configuration_manager.patch_size
    generator = torch.Generator().manual_seed(0)
    data = torch.randn(2, 1, *patch, generator=generator)
    labels = torch.randint(0, 2, (2, 1, *patch), generator=generator).float()
    targets = [torch.nn.functional.interpolate(labels, scale_factor=list(scale), mode="nearest")
               for scale in trainer._get_deep_supervision_scales()]
    seen = []
    conv = next(module for module in trainer.network.modules() if isinstance(module, torch.nn.Conv2d))
    hook = conv.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    try:
        loss = trainer.train_step({"data": data, "target": targets})["loss"]
    finally:
        hook.remove()
    return seen[0], float(loss)


@pytest.mark.parametrize("value", ["1", "0"])
def test_a_training_step_runs_the_network_in_bfloat16_where_switched_on(value, tiny_plans, monkeypatch):
    monkeypatch.setenv(CPU_BF16_VARIABLE, value)
    plans = {**json.loads(tiny_plans.read_text()), "continue_training": False}  # nnUNetv2_train adds this key
    trainer = nnUNetTrainerUDAQuick(plans, "2d", 0, json.loads((tiny_plans.parent / "dataset.json").read_text()), CPU)
    trainer.initialize()
    dtype, loss = one_step(trainer)
    assert dtype == (torch.bfloat16 if value == "1" and NATIVE else torch.float32)
    assert torch.isfinite(torch.tensor(loss))
    assert all(parameter.dtype == torch.float32 and parameter.grad.dtype == torch.float32
               for parameter in trainer.network.parameters() if parameter.grad is not None)
