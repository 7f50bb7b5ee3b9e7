"""Warm starts that keep the segmentation heads.

``nnUNetv2_train -pretrained_weights`` transfers every weight except the segmentation heads (the 1x1 convolutions
under ``.seg_layers.``), because nnU-Net expects the pretraining dataset to have other labels. Every warm start in
this pipeline continues on the same labels (CT -> fake MRI -> MRI pseudo-labels), and there random heads undo what
the pretrained network knew: measured on the real data (docs/training.md, "Warm starts"), a CT network warm-started
on fake MRI it already segmented well began at a training loss of 0.77 instead of -0.25 and ended 13 DSC points
worse on those very fakes than it started.

Set the environment variable ``nnUNet_uda_pretrained_heads`` to the file given to ``-pretrained_weights`` and our
trainers load its heads too, before the first iteration. They check that the rest of the network was initialized
from that very file (so a variable left over in a shell cannot graft foreign heads onto another network) and that
the label count matches, and refuse otherwise, naming the file.
"""

from __future__ import annotations

from pathlib import Path

import torch

PRETRAINED_HEADS_VARIABLE = "nnUNet_uda_pretrained_heads"
HEAD_KEY = ".seg_layers."


class PretrainedHeadsError(RuntimeError):
    """The checkpoint named by ``nnUNet_uda_pretrained_heads`` does not fit the network being trained."""


def load_segmentation_heads(network: torch.nn.Module, checkpoint_file: str | Path) -> list[str]:
    """Copies the segmentation heads of an nnU-Net checkpoint into ``network``, whose other weights must already
    equal the checkpoint's (what ``-pretrained_weights`` with the same file does). Returns the keys loaded."""
    checkpoint_file = Path(checkpoint_file)
    if not checkpoint_file.is_file():
        raise PretrainedHeadsError(f"{PRETRAINED_HEADS_VARIABLE}={checkpoint_file}: no such file")
    try:
        pretrained = torch.load(checkpoint_file, map_location="cpu", weights_only=False)["network_weights"]
    except Exception as error:  # noqa: BLE001 (any unreadable file gets the same message)
        raise PretrainedHeadsError(f"{PRETRAINED_HEADS_VARIABLE}={checkpoint_file}: not an nnU-Net checkpoint "
                                   f"({type(error).__name__}: {error})") from error
    state = network.state_dict()
    heads = [key for key in state if HEAD_KEY in key]
    for key, value in state.items():
        if key not in pretrained:
            raise PretrainedHeadsError(f"{PRETRAINED_HEADS_VARIABLE}={checkpoint_file}: the checkpoint has no "
                                       f"weight '{key}'; it is not from this network")
        if pretrained[key].shape != value.shape:
            raise PretrainedHeadsError(
                f"{PRETRAINED_HEADS_VARIABLE}={checkpoint_file}: '{key}' has shape {tuple(pretrained[key].shape)} "
                f"there and {tuple(value.shape)} here" + (" (another number of labels: warm-start without the "
                                                          "variable)" if key in heads else ""))
        if key not in heads and not torch.equal(pretrained[key], value.detach().cpu()):
            raise PretrainedHeadsError(
                f"{PRETRAINED_HEADS_VARIABLE}={checkpoint_file}: the network was not initialized from this file "
                f"('{key}' differs); pass the same file to nnUNetv2_train -pretrained_weights, or unset the variable")
    network.load_state_dict({**state, **{key: pretrained[key] for key in heads}})
    return heads
