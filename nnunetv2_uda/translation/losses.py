"""The paper's CycleGAN objective (eqs. 1-4) with least-squares adversarial terms, as CycleGAN itself uses.

Notation: x is a CT-side image in the generators' CT space X (Sobel-CT for ASIT, normalized CT for plain CycleGAN),
y a normalized MRI. T_t: X -> MRI, T_s: MRI -> X. The identity term (eq. 3) feeds each generator an image of its
*output* domain, given in its *input* space: T_t(anatomy(y)) should be y and T_s(x_intensity) should be x. For plain
CycleGAN both spaces coincide and this is CycleGAN's usual identity loss.

An optional anatomy-consistency term (not in the paper; weight 0 by default) asks the fake MRI to keep the CT's
edges where they are, whatever their polarity: ASIT's premise is that translation changes intensities, not anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nnunetv2_uda.translation.anatomy_space import sobel_kernels


def lsgan_loss(prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Mean squared distance of discriminator scores to 1 (real) or 0 (fake)."""
    return F.mse_loss(prediction, torch.full_like(prediction, 1.0 if target_is_real else 0.0))


def adversarial_loss(D_t: nn.Module, D_s: nn.Module, fake_mri: torch.Tensor, fake_ct: torch.Tensor) -> torch.Tensor:
    """Eq. 1 (generator side, both domains): the generators want their fakes scored as real."""
    return lsgan_loss(D_t(fake_mri), True) + lsgan_loss(D_s(fake_ct), True)


def discriminator_loss(D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Eq. 1 (discriminator side), halved as in CycleGAN to slow the discriminator relative to the generators."""
    return 0.5 * (lsgan_loss(D(real), True) + lsgan_loss(D(fake.detach()), False))


def cycle_loss(x: torch.Tensor, reconstructed_x: torch.Tensor, y: torch.Tensor,
               reconstructed_y: torch.Tensor) -> torch.Tensor:
    """Eq. 2: L1 of T_s(T_t(x)) - x plus L1 of T_t(T_s(y)) - y."""
    return F.l1_loss(reconstructed_x, x) + F.l1_loss(reconstructed_y, y)


def identity_loss(T_t: nn.Module, T_s: nn.Module, x: torch.Tensor, x_in_mri_input_space: torch.Tensor,
                  y: torch.Tensor, y_in_ct_input_space: torch.Tensor) -> torch.Tensor:
    """Eq. 3: L1 of T_t(y') - y plus L1 of T_s(x') - x (y', x': the same images in the generator's input space)."""
    return F.l1_loss(T_t(y_in_ct_input_space), y) + F.l1_loss(T_s(x_in_mri_input_space), x)


def edge_magnitude(images: torch.Tensor) -> torch.Tensor:
    """In-plane Sobel gradient magnitude of (N, 1, H, W) slices, edges replicated (pixel units).

    The anatomy space's Sobel kernels (d/dy, d/dx) summed over z, whose smoothing sums to 1; the small constant under
    the root keeps the gradient finite on flat regions, where the loss is differentiated.
    """
    kernels = sobel_kernels((1.0, 1.0, 1.0))[1:].sum(2).to(images.device)  # (2, 1, 3, 3)
    gradients = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernels)
    return torch.sqrt((gradients**2).sum(1, keepdim=True) + 1e-12)


def anatomy_consistency_loss(fake_mri: torch.Tensor, ct_intensity: torch.Tensor) -> torch.Tensor:
    """1 - normalized cross-correlation of the two slices' edge magnitudes, averaged over the batch.

    Hiasa et al.'s gradient-consistency loss (MICCAI SASHIMI 2018) on gradient magnitudes instead of signed
    gradients, so an edge may change polarity (organs darker in MRI than in CT) but not place. Invariant to the
    fake's intensity scale, which is the adversarial term's business.
    """
    a, b = edge_magnitude(fake_mri).flatten(1), edge_magnitude(ct_intensity).flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    correlation = (a * b).sum(1) / torch.sqrt((a**2).sum(1) * (b**2).sum(1) + 1e-12)
    return 1.0 - correlation.mean()


@dataclass
class TranslationBatch:
    """Channel 0 of each cached slice is the domain's own space; channel 1 is the other generator's input space."""

    x: torch.Tensor
    x_in_mri_input_space: torch.Tensor
    y: torch.Tensor
    y_in_ct_input_space: torch.Tensor

    @classmethod
    def from_slices(cls, ct_slices: torch.Tensor, mri_slices: torch.Tensor) -> TranslationBatch:
        return cls(ct_slices[:, :1], ct_slices[:, 1:2], mri_slices[:, :1], mri_slices[:, 1:2])


@dataclass
class GeneratorObjective:
    total: torch.Tensor
    adversarial: torch.Tensor
    cycle: torch.Tensor
    identity: torch.Tensor
    anatomy: torch.Tensor
    fake_mri: torch.Tensor
    fake_ct: torch.Tensor


def generator_objective(T_t: nn.Module, T_s: nn.Module, D_t: nn.Module, D_s: nn.Module, batch: TranslationBatch,
                        lambda_cycle: float = 10.0, lambda_identity: float = 5.0,
                        lambda_anatomy: float = 0.0) -> GeneratorObjective:
    """Eq. 4: L = L_adv + lambda_1 * L_cyc + lambda_2 * L_id (+ lambda_anatomy * L_anatomy; zero-weight terms skipped).

    The CT's intensity image is ``batch.x`` for plain CycleGAN and ``batch.x_in_mri_input_space`` for ASIT; the
    batch holds it in the latter in both modes.
    """
    fake_mri = T_t(batch.x)
    fake_ct = T_s(batch.y)
    adversarial = adversarial_loss(D_t, D_s, fake_mri, fake_ct)
    cycle = cycle_loss(batch.x, T_s(fake_mri), batch.y, T_t(fake_ct))
    identity = (identity_loss(T_t, T_s, batch.x, batch.x_in_mri_input_space, batch.y, batch.y_in_ct_input_space)
                if lambda_identity > 0 else torch.zeros((), device=batch.x.device))
    anatomy = (anatomy_consistency_loss(fake_mri, batch.x_in_mri_input_space)
               if lambda_anatomy > 0 else torch.zeros((), device=batch.x.device))
    total = adversarial + lambda_cycle * cycle + lambda_identity * identity + lambda_anatomy * anatomy
    return GeneratorObjective(total, adversarial, cycle, identity, anatomy, fake_mri, fake_ct)
