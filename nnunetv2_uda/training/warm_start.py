"""Warm starts that keep the segmentation heads, and that never unpickle code.

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

nnU-Net 2.8 loads ``-pretrained_weights`` with ``torch.load(weights_only=False)``, which runs whatever a crafted
pickle asks for. Our trainers therefore read that file with our own loader (tensors and plain data only,
:func:`nnunetv2_uda.checkpoints.load_checkpoint`) when nnU-Net initializes them, which it does right before its
own load: a crafted file is refused, naming it, before anything unpickles it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from nnunetv2_uda.checkpoints import CheckpointError, load_checkpoint
from nnunetv2_uda.command_line import UserInputError, one_line, show_tracebacks

PRETRAINED_HEADS_VARIABLE = "nnUNet_uda_pretrained_heads"
PRETRAINED_WEIGHTS_FLAG = "-pretrained_weights"
HEAD_KEY = ".seg_layers."


class PretrainedHeadsError(UserInputError):
    """The checkpoint named by ``nnUNet_uda_pretrained_heads`` is unsafe, unreadable or does not fit the network."""


class _QuietParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise argparse.ArgumentError(None, message)


def pretrained_weights_argument(argv: Sequence[str]) -> str | None:
    """The file that nnUNetv2_train's ``-pretrained_weights`` names in ``argv`` (its arguments), parsed the way
    nnUNetv2_train's parser reads it: ``-p`` is its only other option starting with ``-p``, so abbreviations and
    ``-pVALUE`` resolve the same way here."""
    parser = _QuietParser(add_help=False)
    parser.add_argument("-p")
    parser.add_argument(PRETRAINED_WEIGHTS_FLAG)
    try:
        known, _ = parser.parse_known_args(list(argv))
    except argparse.ArgumentError:  # not nnUNetv2_train's arguments (its own parser accepted those)
        return None
    return known.pretrained_weights


@contextmanager
def refused_in_one_line() -> Iterator[None]:
    """nnUNetv2_train is nnU-Net's command, which our CLI wrapper does not wrap: a warm start refused here ends it
    with one line naming the file and exit code 2, the traceback only with ``NNUNETV2_UDA_TRACEBACK=1``."""
    try:
        yield
    except UserInputError as error:
        if show_tracebacks():
            raise
        print(f"{Path(sys.argv[0]).name or 'nnUNetv2_train'}: error: {one_line(error)}", file=sys.stderr, flush=True)
        raise SystemExit(error.exit_code) from None


def refuse_unsafe_pretrained_weights(argv: Sequence[str]) -> None:
    """Loads the ``-pretrained_weights`` file of ``argv`` with our safe loader, so a file that would run code when
    nnU-Net unpickles it raises :class:`CheckpointError` (naming flag and file) first."""
    file = pretrained_weights_argument(argv)
    if file is None:
        return
    try:
        load_checkpoint(file)
    except CheckpointError as error:
        raise CheckpointError(f"nnUNetv2_train {PRETRAINED_WEIGHTS_FLAG}: {error}") from error


def load_segmentation_heads(network: torch.nn.Module, checkpoint_file: str | Path) -> list[str]:
    """Copies the segmentation heads of an nnU-Net checkpoint into ``network``, whose other weights must already
    equal the checkpoint's (what ``-pretrained_weights`` with the same file does). Returns the keys loaded."""
    checkpoint_file = Path(checkpoint_file)
    try:
        pretrained = load_checkpoint(checkpoint_file)["network_weights"]
    except CheckpointError as error:
        raise PretrainedHeadsError(f"{PRETRAINED_HEADS_VARIABLE}: {error}") from error
    except KeyError as error:
        raise PretrainedHeadsError(f"{PRETRAINED_HEADS_VARIABLE}={checkpoint_file}: not an nnU-Net checkpoint (it "
                                   f"has no 'network_weights')") from error
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
