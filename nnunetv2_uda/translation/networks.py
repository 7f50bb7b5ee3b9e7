"""Small CycleGAN networks: ResNet and U-Net generators and a PatchGAN discriminator (2D), sized by arguments.

The translator's defaults are CPU-friendly (8 features, 3 residual blocks); the paper-sized CycleGAN uses 64
features and 9 blocks. Generators have a linear output because images are z-scored, not scaled to [-1, 1]. The
U-Net generator (CycleGAN's ``unet`` option) passes full-resolution detail through skip connections, so a small,
briefly trained one keeps organ outlines sharp where the ResNet one blurs them.
"""

from __future__ import annotations

import torch
from torch import nn

GENERATOR_DOWNSAMPLING = 4
"""Both generators downsample twice by 2: their input sides must be multiples of this."""
GENERATOR_MIN_SIZE = 2 * GENERATOR_DOWNSAMPLING
"""The smallest input side of both generators: their bottleneck (side / 4) needs 2 pixels for its reflection
padding and instance normalization."""


def _norm_act(channels: int) -> list[nn.Module]:
    return [nn.InstanceNorm2d(channels, affine=True), nn.ReLU(inplace=True)]


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), *_norm_act(channels),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x):
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """7x7 stem, two stride-2 downsamplings, residual blocks, two upsamplings. Input sides must be multiples of 4."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, features: int = 16, residual_blocks: int = 4):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, features, 7), *_norm_act(features)]
        for factor in (1, 2):
            layers += [nn.Conv2d(features * factor, features * factor * 2, 3, stride=2, padding=1),
                       *_norm_act(features * factor * 2)]
        layers += [ResidualBlock(features * 4) for _ in range(residual_blocks)]
        for factor in (4, 2):
            layers += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                       nn.Conv2d(features * factor, features * factor // 2, 3, padding=1),
                       *_norm_act(features * factor // 2)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(features, out_channels, 7)]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class UnetGenerator(nn.Module):
    """Two stride-2 downsamplings with a skip connection at each scale, residual blocks at the bottom."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, features: int = 16, residual_blocks: int = 4):
        super().__init__()

        def conv(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, padding_mode="reflect"), *_norm_act(cout)]

        f = features
        self.encoders = nn.ModuleList([
            nn.Sequential(*conv(in_channels, f), *conv(f, f)),
            nn.Sequential(*conv(f, 2 * f, stride=2), *conv(2 * f, 2 * f)),
            nn.Sequential(*conv(2 * f, 4 * f, stride=2), *[ResidualBlock(4 * f) for _ in range(residual_blocks)]),
        ])
        self.upsamplers = nn.ModuleList([
            nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), *conv(4 * f, 2 * f)),
            nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), *conv(2 * f, f)),
        ])
        self.decoders = nn.ModuleList([nn.Sequential(*conv(4 * f, 2 * f)), nn.Sequential(*conv(2 * f, f))])
        self.output = nn.Conv2d(f, out_channels, 1)

    def forward(self, x):
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        x = skips.pop()
        for upsample, decode in zip(self.upsamplers, self.decoders, strict=True):
            x = decode(torch.cat([upsample(x), skips.pop()], dim=1))
        return self.output(x)


GENERATORS: dict[str, type[nn.Module]] = {"resnet": ResnetGenerator, "unet": UnetGenerator}


def generator_class(architecture: str) -> type[nn.Module]:
    """The generator class by name (``resnet`` or ``unet``); an unknown name is refused with the choices."""
    if architecture not in GENERATORS:
        raise ValueError(f"generator must be one of {sorted(GENERATORS)}, got '{architecture}'")
    return GENERATORS[architecture]


def build_generator(architecture: str, features: int, residual_blocks: int) -> nn.Module:
    """A one-channel generator by name; input sides must be multiples of GENERATOR_DOWNSAMPLING."""
    return generator_class(architecture)(1, 1, features, residual_blocks)


class PatchDiscriminator(nn.Module):
    """PatchGAN: one real/fake score per overlapping patch (70x70 receptive field with 3 strided layers)."""

    def __init__(self, in_channels: int = 1, features: int = 16, layers: int = 3):
        super().__init__()
        modules: list[nn.Module] = [nn.Conv2d(in_channels, features, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        channels = features
        for index in range(1, layers + 1):
            out = features * min(2**index, 8)
            stride = 2 if index < layers else 1
            modules += [nn.Conv2d(channels, out, 4, stride=stride, padding=1),
                        nn.InstanceNorm2d(out, affine=True), nn.LeakyReLU(0.2, True)]
            channels = out
        modules.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*modules)

    @staticmethod
    def min_size(layers: int = 3) -> int:
        """The smallest input side: ``layers`` stride-2 convolutions leave side / 2**layers, which the stride-1
        layer shrinks by 1 and its instance normalization needs at least 2 pixels of."""
        return 3 * 2**layers

    def forward(self, x):
        return self.model(x)
