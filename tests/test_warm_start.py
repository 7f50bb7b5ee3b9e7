"""Warm starts that keep the segmentation heads nnU-Net's ``-pretrained_weights`` drops."""

from __future__ import annotations

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

from nnunetv2_uda.training.warm_start import HEAD_KEY, PretrainedHeadsError, load_segmentation_heads


def small_unet(num_classes: int = 4, seed: int = 0) -> PlainConvUNet:
    torch.manual_seed(seed)
    return PlainConvUNet(1, 3, (4, 8, 16), torch.nn.Conv2d, 3, (1, 2, 2), (1, 1, 1), num_classes, (1, 1),
                         conv_bias=True, norm_op=torch.nn.InstanceNorm2d, nonlin=torch.nn.LeakyReLU,
                         deep_supervision=True)


@pytest.fixture
def pretrained_file(tmp_path):
    network = small_unet(seed=1)
    file = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": network.state_dict()}, file)
    return network, file


def test_nnunets_warm_start_drops_the_heads_and_ours_restores_them(pretrained_file):
    pretrained, file = pretrained_file
    network = small_unet(seed=2)
    load_pretrained_weights(network, str(file))  # what nnUNetv2_train -pretrained_weights does
    heads = [key for key in network.state_dict() if HEAD_KEY in key]
    assert heads and all(not torch.equal(network.state_dict()[k], pretrained.state_dict()[k]) for k in heads)

    loaded = load_segmentation_heads(network, file)

    assert sorted(loaded) == sorted(heads)
    image = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(network(image)[0], pretrained(image)[0])  # the same network, outputs included


def test_a_network_not_initialized_from_the_file_is_refused(pretrained_file):
    _, file = pretrained_file
    with pytest.raises(PretrainedHeadsError, match="not initialized from this file"):
        load_segmentation_heads(small_unet(seed=3), file)


def test_another_label_count_is_refused(pretrained_file):
    _, file = pretrained_file
    network = small_unet(num_classes=6, seed=2)
    load_pretrained_weights(network, str(file))  # nnU-Net allows this: its heads are not transferred
    with pytest.raises(PretrainedHeadsError, match="another number of labels"):
        load_segmentation_heads(network, file)


def test_missing_and_unreadable_files_are_named(tmp_path):
    with pytest.raises(PretrainedHeadsError, match="no such file"):
        load_segmentation_heads(small_unet(), tmp_path / "absent.pth")
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedHeadsError, match=f"{broken}: not an nnU-Net checkpoint"):
        load_segmentation_heads(small_unet(), broken)
