"""The one reader of JSON files that must hold an object: the object, or one line naming the file, the problem and
what the file should be."""

from __future__ import annotations

import pytest

from nnunetv2_uda.command_line import UserInputError, one_line
from nnunetv2_uda.json_files import JSONFileError, read_json_object

WHAT = "not the record nnUNetTrainerUDAPseudoLabel writes"


def problem_line(path, error: type[UserInputError] = JSONFileError) -> str:
    """The message ``read_json_object`` raises for ``path``: one line, starting with the file, ending with WHAT."""
    with pytest.raises(error) as raised:
        read_json_object(path, WHAT, error)
    message = str(raised.value)
    assert one_line(raised.value) == message and message.startswith(f"{path}: ") and message.endswith(WHAT), message
    return message


def test_an_object_is_returned_as_written_in_utf8(tmp_path):
    path = tmp_path / "dataset.json"
    path.write_bytes('{"labels": {"background": 0, "Zwölffingerdarm": 1}, "numTraining": 2}'.encode())
    assert read_json_object(path, WHAT) == {"labels": {"background": 0, "Zwölffingerdarm": 1}, "numTraining": 2}
    assert read_json_object(str(path), WHAT)["numTraining"] == 2


def test_invalid_json_is_named_with_the_decoders_reason(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('{"epochs": [1,\n 2')
    assert problem_line(path).startswith(f"{path}: not valid JSON (Expecting ',' delimiter: line 2 column 3")


def test_text_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('{"organ": "Zwölffingerdarm"}'.encode("latin-1"))
    assert problem_line(path).startswith(f"{path}: not UTF-8 text (")


@pytest.mark.parametrize(("text", "holds"), [("[1, 2]", "a list"), ('"T2"', "a string"), ("3.5", "a number"),
                                             ("7", "a number"), ("true", "true or false"), ("null", "null")])
def test_another_json_value_than_an_object_is_named(tmp_path, text, holds):
    path = tmp_path / "value.json"
    path.write_text(text)
    assert problem_line(path) == f"{path}: holds {holds}, {WHAT}"


def test_the_callers_error_class_is_raised(tmp_path):
    class RecordError(UserInputError):
        pass

    path = tmp_path / "record.json"
    path.write_text("[]")
    assert problem_line(path, RecordError) == f"{path}: holds a list, {WHAT}"
    assert issubclass(JSONFileError, UserInputError)  # every command prints it as one line


def test_a_missing_file_is_the_file_systems_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_json_object(tmp_path / "missing.json", WHAT)
