"""The one reader of a JSON file that must hold an object (a dataset.json, a sidecar, a record or manifest we wrote).

Such a file can be cut short, saved in another encoding or hold another JSON value; each is the user's to fix, so
each is one line that names the file, says what is wrong and what the file should be, raised as a
:class:`~nnunetv2_uda.command_line.UserInputError` (the caller's own subclass where its callers expect that one). A
missing or unreadable file raises the file-system error, which names the file itself.
"""

from __future__ import annotations

import json
from pathlib import Path

from nnunetv2_uda.command_line import UserInputError


class JSONFileError(UserInputError):
    """A JSON file that is not UTF-8 text, not valid JSON or holds another value than an object."""


_OTHER_VALUES = {list: "a list", str: "a string", bool: "true or false", type(None): "null"}  # else a number


def read_json_object(path: Path | str, what: str, error: type[UserInputError] = JSONFileError) -> dict:
    """The object the JSON file ``path`` holds, else ``error`` naming the file and the problem, followed by ``what``
    the file should be, phrased to follow either problem: ``"not the record nnUNetTrainerUDAPseudoLabel writes"``
    gives ``<path>: holds a list, not the record ...`` or ``<path>: not valid JSON (<why>); not the record ...``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as cause:
        raise error(f"{path}: not UTF-8 text ({cause}); {what}") from cause
    try:
        content = json.loads(text)
    except ValueError as cause:  # a JSONDecodeError, or an integer too long to convert
        raise error(f"{path}: not valid JSON ({cause}); {what}") from cause
    if not isinstance(content, dict):
        raise error(f"{path}: holds {_OTHER_VALUES.get(type(content), 'a number')}, {what}")
    return content
