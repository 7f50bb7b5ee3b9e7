"""The one checkpoint loader: tensors and plain data only, so a crafted file can never run code.

``torch.load(..., weights_only=True)`` unpickles nothing but tensors, containers, numbers and strings, plus the
globals allowed here: numpy scalars and dtypes (nnU-Net's checkpoints log Dice values as numpy floats) and
``torch.device``. A file that needs anything else (a pickle that would call a function) is refused with
:class:`CheckpointError`, naming the file; nothing in it runs.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from nnunetv2_uda.command_line import UserInputError


class CheckpointError(UserInputError):
    """A checkpoint that is missing, unreadable, or holds objects other than tensors and plain data."""


def _numpy_globals() -> list:
    """What numpy scalars and arrays need to unpickle: the scalar and array constructors and the dtype classes."""
    multiarray = np._core.multiarray
    dtype_classes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return [multiarray.scalar, multiarray._reconstruct, np.ndarray, np.dtype, *dtype_classes]


SAFE_GLOBALS = [*_numpy_globals(), torch.device]


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint's content, loaded with ``weights_only=True`` and :data:`SAFE_GLOBALS`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            content = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path}: refused: the checkpoint holds objects other than tensors and plain data, "
                              f"which could run code when loaded; use a checkpoint written by this tool or by "
                              f"nnU-Net") from error
    except Exception as error:  # noqa: BLE001 - torch raises many types for a damaged file; all mean the same
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason})") from error
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: not a checkpoint (holds a {type(content).__name__}, not a dict)")
    return content
