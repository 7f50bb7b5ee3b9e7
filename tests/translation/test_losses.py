"""The CycleGAN objective term by term (paper eqs. 1-4), the image pool and a few real optimizer steps."""

import numpy as np
import pytest
import torch
from torch import nn

from nnunetv2_uda.translation.image_pool import ImagePool
from nnunetv2_uda.translation.losses import (
    TranslationBatch,
    adversarial_loss,
    anatomy_consistency_loss,
    cycle_loss,
    discriminator_loss,
    edge_magnitude,
    generator_objective,
    identity_loss,
    lsgan_loss,
)
from nnunetv2_uda.translation.translator import CycleGAN, TranslatorConfig

pytestmark = pytest.mark.usefixtures("single_thread")


class Scale(nn.Module):
    """A 'network' with a known output: multiplies by a constant."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = nn.Parameter(torch.tensor(factor))

    def forward(self, x):
        return self.factor * x


@pytest.fixture
def images():
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(2, 1, 8, 8, generator=generator) for _ in range(4)]




def test_lsgan_loss_is_mean_squared_distance_to_label(images):
    p = images[0]
    assert torch.isclose(lsgan_loss(p, True), ((p - 1) ** 2).mean())
    assert torch.isclose(lsgan_loss(p, False), (p**2).mean())


def test_adversarial_loss_matches_eq1_generator_side(images):
    fake_mri, fake_ct = images[0], images[1]
    D_t, D_s = Scale(0.5), Scale(2.0)
    expected = ((0.5 * fake_mri - 1) ** 2).mean() + ((2.0 * fake_ct - 1) ** 2).mean()
    assert torch.isclose(adversarial_loss(D_t, D_s, fake_mri, fake_ct), expected)


def test_discriminator_loss_matches_eq1_discriminator_side(images):
    real, fake = images[0], images[1].requires_grad_()
    D = Scale(3.0)
    expected = 0.5 * (((3 * real - 1) ** 2).mean() + ((3 * fake) ** 2).mean())
    loss = discriminator_loss(D, real, fake)
    assert torch.isclose(loss, expected)
    loss.backward()
    assert fake.grad is None  # the discriminator's loss must not train the generators


def test_cycle_loss_matches_eq2(images):
    x, rx, y, ry = images
    assert torch.isclose(cycle_loss(x, rx, y, ry), (rx - x).abs().mean() + (ry - y).abs().mean())


def test_identity_loss_matches_eq3(images):
    x, x_other, y, y_other = images
    T_t, T_s = Scale(2.0), Scale(0.5)
    expected = (2 * y_other - y).abs().mean() + (0.5 * x_other - x).abs().mean()
    assert torch.isclose(identity_loss(T_t, T_s, x, x_other, y, y_other), expected)


def test_cycle_and_identity_vanish_for_identity_generators(images):
    x, _, y, _ = images
    batch = TranslationBatch(x, x, y, y)  # plain CycleGAN: both representations coincide
    objective = generator_objective(nn.Identity(), nn.Identity(), Scale(1.0), Scale(1.0), batch, 10.0, 5.0)
    assert objective.cycle.item() == 0 and objective.identity.item() == 0
    assert torch.isclose(objective.total, objective.adversarial)


def test_total_is_eq4_weighted_sum(images):
    batch = TranslationBatch(*images)
    T_t, T_s, D_t, D_s = Scale(1.5), Scale(0.7), Scale(0.9), Scale(1.2)
    objective = generator_objective(T_t, T_s, D_t, D_s, batch, lambda_cycle=3.0, lambda_identity=0.25)
    x, x_other, y, y_other = images
    adversarial = ((0.9 * 1.5 * x - 1) ** 2).mean() + ((1.2 * 0.7 * y - 1) ** 2).mean()
    cycle = (0.7 * 1.5 * x - x).abs().mean() + (1.5 * 0.7 * y - y).abs().mean()
    identity = (1.5 * y_other - y).abs().mean() + (0.7 * x_other - x).abs().mean()
    assert torch.isclose(objective.adversarial, adversarial)
    assert torch.isclose(objective.cycle, cycle)
    assert torch.isclose(objective.identity, identity)
    assert torch.isclose(objective.total, adversarial + 3.0 * cycle + 0.25 * identity)


def test_edge_magnitude_is_the_sobel_gradient_magnitude():
    ramp = torch.arange(6.0).repeat(6, 1)[None, None] * 3.0  # d/dx = 3 per pixel, d/dy = 0
    magnitude = edge_magnitude(ramp)
    assert torch.allclose(magnitude[..., 1:-1], torch.full_like(magnitude[..., 1:-1], 3.0))  # per pixel
    step = torch.zeros(1, 1, 5, 5)
    step[..., 3:] = 1.0
    assert torch.allclose(edge_magnitude(step)[0, 0, 2], torch.tensor([0.0, 0.0, 0.5, 0.5, 0.0]), atol=1e-5)


def test_anatomy_consistency_ignores_intensity_scale_and_polarity_but_not_edge_place(images):
    ct = images[0]
    assert anatomy_consistency_loss(ct, ct).abs() < 1e-5
    assert anatomy_consistency_loss(3.0 - 2.0 * ct, ct).abs() < 1e-5  # inverted, rescaled contrast: same edges
    moved = torch.roll(ct, shifts=3, dims=-1)
    assert anatomy_consistency_loss(moved, ct) > 0.3


def test_anatomy_consistency_matches_its_formula(images):
    fake, ct = images[0], images[1]
    a, b = edge_magnitude(fake).flatten(1), edge_magnitude(ct).flatten(1)
    correlations = [np.corrcoef(a[i].numpy(), b[i].numpy())[0, 1] for i in range(len(a))]
    assert np.isclose(anatomy_consistency_loss(fake, ct).item(), 1 - np.mean(correlations), atol=1e-5)


def test_anatomy_term_is_off_by_default_and_added_with_its_weight(images):
    batch = TranslationBatch(*images)
    T_t, T_s, D_t, D_s = Scale(1.5), Scale(0.7), Scale(0.9), Scale(1.2)
    paper = generator_objective(T_t, T_s, D_t, D_s, batch)
    assert paper.anatomy.item() == 0
    weighted = generator_objective(T_t, T_s, D_t, D_s, batch, lambda_anatomy=2.0)
    expected = anatomy_consistency_loss(1.5 * batch.x, batch.x_in_mri_input_space)  # the CT's intensity image
    assert torch.isclose(weighted.anatomy, expected) and expected > 0
    assert torch.isclose(weighted.total, paper.total + 2.0 * expected)


def test_image_pool_fills_then_mixes_history():
    pool, rng = ImagePool(3), np.random.default_rng(0)
    first = torch.arange(3.0).view(3, 1, 1, 1)
    assert torch.equal(pool.query(first, rng), first)  # filling: returned as they are
    later = torch.full((40, 1, 1, 1), 9.0)
    out = pool.query(later, rng)
    assert out.shape == later.shape
    assert (out != 9).sum() == 3  # every stored old image is handed out once, then replaced by a new one
    assert ImagePool(0).query(later, rng) is later


def test_a_few_optimizer_steps_lower_the_total_loss():
    torch.manual_seed(0)
    config = TranslatorConfig(ct_dataset="ct", mri_dataset="mri", inplane_spacing=1.5, iterations=100,
                              slice_size=32)
    model = CycleGAN(config)
    rng = np.random.default_rng(0)
    generator = torch.Generator().manual_seed(1)
    batch = TranslationBatch.from_slices(torch.randn(2, 2, 32, 32, generator=generator),
                                         torch.randn(2, 2, 32, 32, generator=generator))
    totals = [model.train_step(batch, rng)["total"] for _ in range(6)]
    assert totals[-1] < 0.9 * totals[0], totals
    assert model.optimizer_G.defaults["betas"] == (0.5, 0.999) and model.optimizer_G.defaults["lr"] == 2e-4


def test_learning_rate_is_constant_then_decays_linearly_to_zero():
    model = CycleGAN(TranslatorConfig(ct_dataset="ct", mri_dataset="mri", inplane_spacing=1.5,
                                      iterations=10, slice_size=32))
    factors = [model.linear_decay(i) for i in range(10)]
    assert factors[:5] == [1.0] * 5
    assert all(a > b for a, b in zip(factors[4:], factors[5:], strict=False)) and 0 < factors[-1] < 0.2
