"""Random intensity networks (GIN): new, plausible image contrasts for every training sample.

Ouyang et al., "Causality-inspired single-source domain generalization for medical image segmentation" (IEEE TMI
2022), segment abdominal MRI with a network trained on CT only by passing each training image through a shallow
convolutional network with freshly drawn random weights ("global intensity non-linear augmentation", GIN). Shape
survives (small kernels, no spatial change), intensity and texture do not: the network must learn organs from
shape, which is what carries over from CT to MRI. It needs no MRI at all, and costs a few small convolutions per
sample, so unlike a translator it fits any CPU budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform, ImageOnlyTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms

from nnunetv2_uda.training.augmentation import after_spatial_augmentation

CONVOLUTIONS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class RandomIntensityNetworkTransform(ImageOnlyTransform):
    """Replaces a sample's image by ``alpha * net(image) + (1 - alpha) * image``, ``net`` a random shallow CNN.

    ``net`` has ``num_layers`` convolutions (kernel sizes drawn from ``kernel_sizes``, weights and biases from
    N(0, 1), leaky ReLU between them, ``hidden_channels`` channels inside), drawn anew for every sample, as is
    ``alpha ~ U(0, 1)``, all from torch's generator (as nnU-Net's own augmentations draw); the settings are the
    paper's. The paper rescales the result to the input's Frobenius
    norm; this keeps each channel's mean and standard deviation instead, so that z-scored training images stay
    z-scored, as nnU-Net's normalization makes every image the network sees at inference.
    """

    def __init__(self, num_layers: int = 4, hidden_channels: int = 2, kernel_sizes: Sequence[int] = (1, 3)):
        super().__init__()
        if num_layers < 1 or hidden_channels < 1 or not kernel_sizes or any(k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"num_layers ({num_layers}) and hidden_channels ({hidden_channels}) must be >= 1 and "
                             f"kernel_sizes ({kernel_sizes}) odd, so that the image keeps its shape")
        self.num_layers = num_layers
        self.hidden_channels = hidden_channels
        self.kernel_sizes = tuple(kernel_sizes)

    def _apply_to_image(self, img: torch.Tensor, **params) -> torch.Tensor:
        spatial_dims = img.ndim - 1
        convolution = CONVOLUTIONS[spatial_dims]
        with torch.no_grad():
            original = img[None].float()
            channels = [img.shape[0]] + [self.hidden_channels] * (self.num_layers - 1) + [img.shape[0]]
            features = original
            for layer in range(self.num_layers):
                kernel_size = self.kernel_sizes[int(torch.randint(len(self.kernel_sizes), ()))]
                weight = torch.randn(channels[layer + 1], channels[layer], *[kernel_size] * spatial_dims)
                features = convolution(features, weight, torch.randn(channels[layer + 1]), padding=kernel_size // 2)
                if layer < self.num_layers - 1:
                    features = F.leaky_relu(features)
            alpha = torch.rand(())
            mixed = alpha * features + (1 - alpha) * original
            axes = tuple(range(2, mixed.ndim))
            standardized = (mixed - mixed.mean(axes, keepdim=True)) / (mixed.std(axes, keepdim=True) + 1e-8)
            restored = standardized * original.std(axes, keepdim=True) + original.mean(axes, keepdim=True)
        return restored[0].to(img.dtype)


def with_random_intensity_networks(transforms: BasicTransform, **settings) -> ComposeTransforms:
    """nnU-Net's training transforms with a :class:`RandomIntensityNetworkTransform` after the spatial augmentation."""
    return after_spatial_augmentation(transforms, RandomIntensityNetworkTransform(**settings))
