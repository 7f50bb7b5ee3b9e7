"""Label-map resampling: exact for identity geometry, voxel replication for integer scales, sane for linear."""

import numpy as np
import pytest
import torch

from nnunetv2_uda.inference.label_resampling import resample_label_map


def random_labels(shape, num_labels=5, seed=0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, num_labels, shape).astype(np.uint8))


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_identity_geometry_is_exact(mode):
    labels = random_labels((7, 9, 11))
    resampled = resample_label_map(labels, (7, 9, 11), mode)
    assert resampled.dtype == torch.uint8
    assert torch.equal(resampled, labels)


def test_integer_upsampling_replicates_voxels():
    labels = random_labels((4, 5, 6))
    resampled = resample_label_map(labels, (4, 10, 18), "nearest")
    expected = np.repeat(np.repeat(labels.numpy(), 2, axis=1), 3, axis=2)
    np.testing.assert_array_equal(resampled.numpy(), expected)


def test_integer_downsampling_keeps_labels_of_blocks():
    block = np.kron(random_labels((3, 4, 4)).numpy(), np.ones((1, 2, 2), dtype=np.uint8))  # constant 2x2 blocks
    resampled = resample_label_map(torch.from_numpy(block), (3, 4, 4), "nearest")
    np.testing.assert_array_equal(resampled.numpy(), block[:, ::2, ::2])


def test_linear_keeps_label_set_and_large_structures():
    labels = torch.zeros((8, 32, 32), dtype=torch.uint8)
    labels[2:6, 4:20, 4:20] = 3
    labels[2:6, 22:30, 22:30] = 7
    resampled = resample_label_map(labels, (8, 64, 64), "linear")
    assert set(torch.unique(resampled).tolist()) == {0, 3, 7}
    assert int((resampled == 3).sum()) == pytest.approx(4 * 32 * 32, rel=0.05)
    # interiors keep their label, far from any border
    assert resampled[4, 20, 20] == 3 and resampled[4, 52, 52] == 7 and resampled[0, 0, 0] == 0


def test_2d_maps_and_bad_arguments():
    labels = random_labels((3, 4))
    assert resample_label_map(labels, (6, 8), "linear").shape == (6, 8)
    with pytest.raises(ValueError, match="mode"):
        resample_label_map(labels, (6, 8), "cubic")
    with pytest.raises(ValueError, match="target shape"):
        resample_label_map(labels, (6, 8, 2))
