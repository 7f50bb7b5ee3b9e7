"""The cases of an input folder: files ``<case>_<XXXX><ending>`` grouped by case, channels in order.

nnU-Net cuts a fixed number of characters off every file name, so a file without the channel suffix becomes a case
named after a piece of its name and fails later with a traceback; hidden leftovers (``.partial-*`` staging folders,
``.tmp_*`` files of a killed writer) would be read as cases. Here such files are named in the failures and never
predicted, and hidden names are never cases.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from nnunetv2_uda.atomic_files import is_hidden
from nnunetv2_uda.command_line import UserInputError

CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


class InputFolderError(UserInputError):
    """The input folder is missing or holds no case at all."""


@dataclass
class CaseListing:
    """``cases``: the files of each complete case; ``failures``: file or case name -> why it is not predicted."""

    cases: list[list[str]] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)


def list_cases(folder: str | os.PathLike, file_ending: str, num_channels: int) -> CaseListing:
    """Groups ``folder``'s image files by case. A folder that is missing or holds no file with ``file_ending`` is an
    error (nothing to predict); a misnamed file or a case with other channels than ``_0000`` ..
    ``_<num_channels - 1>`` is a failure of its own, and the other cases are listed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFolderError(f"{folder}: input folder " + ("is not a folder" if folder.exists() else
                                                              "does not exist"))
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(file_ending) and not is_hidden(p)
                   and p.is_file())
    example = f"<case>_0000{file_ending}"
    if not names:
        raise InputFolderError(f"{folder}: no image files ending in {file_ending} (the model's file ending); name "
                               f"them {example}" + (", <case>_0001, ... for more channels" if num_channels > 1 else ""))
    listing = CaseListing()
    channels_of: dict[str, dict[int, str]] = {}
    for name in names:
        match = CHANNEL_SUFFIX.match(name[:-len(file_ending)])
        if match is None:
            listing.failures[name] = (f"{folder / name}: not named {example}: the 4-digit channel suffix is missing "
                                      f"(rename it to {name[:-len(file_ending)]}_0000{file_ending})")
            continue
        channels_of.setdefault(match["case"], {})[int(match["channel"])] = str(folder / name)
    expected = list(range(num_channels))
    for case, channels in sorted(channels_of.items()):
        if sorted(channels) == expected:
            listing.cases.append([channels[channel] for channel in expected])
            continue
        files = ", ".join(os.path.basename(channels[channel]) for channel in sorted(channels))
        wanted = "_0000" if num_channels == 1 else f"_0000 .. _{num_channels - 1:04d}"
        listing.failures[case] = f"{files}: {len(channels)} channel file(s), but the model expects {num_channels} " \
                                 f"({wanted})"
    return listing


def case_name(first_channel_file: str | os.PathLike, file_ending: str) -> str:
    """The case a channel file belongs to, as its segmentation is named (``<case>_0000<ending>`` -> ``<case>``)."""
    return os.path.basename(first_channel_file)[:-len(file_ending)].rsplit("_", 1)[0]
