"""The one checkpoint loader: tensors and plain data only, so a crafted file can never run code.

``torch.load(..., weights_only=True)`` unpickles nothing but tensors, containers, numbers and strings, plus the
globals allowed here: numpy scalars and dtypes (nnU-Net's checkpoints log Dice values as numpy floats) and
``torch.device``. A file that needs anything else (a pickle that would call a function) is refused with
:class:`CheckpointError`, naming the file and the function; nothing in it runs. A file that is not a checkpoint at
all (damaged, cut short, another format) is named as not readable.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
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
WANTED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
"""How torch's weights-only unpickler names a function or class the file asks for and it refuses."""


def _first_sentence(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text.split(". ")[0] if text else type(error).__name__


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint's content, loaded with ``weights_only=True`` and :data:`SAFE_GLOBALS`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Detected pickle protocol")  # a foreign pickle: refused just below
            content = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        wanted = WANTED_GLOBAL.search(str(error))
        if wanted is None:  # torch's unpickler stopped at an opcode it does not know: not a pickle it wrote
            raise CheckpointError(f"{path}: not a readable checkpoint (damaged, or not written by torch.save)") \
                from error
        raise CheckpointError(f"{path}: refused: loading it would call {wanted.group(1)}, and a checkpoint that calls "
                              f"functions could run code; only tensors and plain data are loaded. Use a checkpoint "
                              f"written by this tool or by nnU-Net") from error
    except Exception as error:  # noqa: BLE001 - torch raises many types for a damaged file; all mean the same
        raise CheckpointError(f"{path}: not a readable checkpoint (damaged, cut short, or not written by "
                              f"torch.save: {_first_sentence(error)})") from error
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: not a checkpoint (holds a {type(content).__name__}, not a dict)")
    return content
