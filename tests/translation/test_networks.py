"""The translator's generators: shapes, selection by name, and what the U-Net's skip connections buy."""

import pytest
import torch

from nnunetv2_uda.translation.networks import (
    GENERATOR_DOWNSAMPLING,
    GENERATOR_MIN_SIZE,
    GENERATORS,
    PatchDiscriminator,
    build_generator,
)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("architecture", sorted(GENERATORS))
def test_generators_keep_the_slice_shape(architecture):
    generator = build_generator(architecture, features=4, residual_blocks=1)
    for size in (8 * GENERATOR_DOWNSAMPLING, 11 * GENERATOR_DOWNSAMPLING):
        assert generator(torch.randn(2, 1, size, size + 8)).shape == (2, 1, size, size + 8)


def test_unknown_generator_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"generator must be one of \['resnet', 'unet'\], got 'vit'"):
        build_generator("vit", 8, 3)


def _identity_error_after_training(architecture: str, steps: int = 40) -> float:
    """L1 error of a generator trained briefly to reproduce pixel-wise noise (fine detail only a full-resolution
    path carries)."""
    torch.manual_seed(0)
    generator = build_generator(architecture, features=8, residual_blocks=1)
    optimizer = torch.optim.Adam(generator.parameters(), 2e-3)
    data = torch.Generator().manual_seed(1)
    for _ in range(steps):
        images = torch.randn(4, 1, 32, 32, generator=data)
        loss = (generator(images) - images).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        held_out = torch.randn(4, 1, 32, 32, generator=data)
        return float((generator(held_out) - held_out).abs().mean())


@pytest.mark.slow
def test_unet_generator_carries_full_resolution_detail_that_resnet_blurs():
    unet, resnet = _identity_error_after_training("unet"), _identity_error_after_training("resnet")
    assert unet < 0.5 * resnet, (unet, resnet)


@pytest.mark.parametrize("architecture", sorted(GENERATORS))
def test_generator_min_size_is_the_smallest_input_that_trains(architecture):
    generator = build_generator(architecture, features=4, residual_blocks=1)
    generator(torch.randn(2, 1, GENERATOR_MIN_SIZE, GENERATOR_MIN_SIZE)).sum().backward()
    smaller = GENERATOR_MIN_SIZE - GENERATOR_DOWNSAMPLING
    with pytest.raises((RuntimeError, ValueError)):
        generator(torch.randn(2, 1, smaller, smaller))


def test_discriminator_min_size_is_the_smallest_input_that_trains():
    size = PatchDiscriminator.min_size()
    discriminator = PatchDiscriminator(1, 4)
    discriminator(torch.randn(2, 1, size, size)).sum().backward()
    with pytest.raises((RuntimeError, ValueError)):
        discriminator(torch.randn(2, 1, size - GENERATOR_DOWNSAMPLING, size - GENERATOR_DOWNSAMPLING))
