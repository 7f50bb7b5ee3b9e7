"""The output-folder guard: never write into an input, never replace a user's folder without --overwrite."""

from __future__ import annotations

import pytest

from nnunetv2_uda.output_folders import OutputFolderError, check_output_folder, new_output_folder


@pytest.fixture
def user_folder(tmp_path):
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "case_0000.nii.gz").write_bytes(b"precious")
    return folder


def test_output_equal_to_inside_or_holding_an_input_is_refused(tmp_path, user_folder):
    for output, word in ((user_folder, "is the input"), (user_folder / "sub", "lies inside the input"),
                         (tmp_path, "holds the input")):
        with pytest.raises(OutputFolderError, match=word):
            check_output_folder(output, [user_folder], overwrite=True)
    assert (user_folder / "case_0000.nii.gz").read_bytes() == b"precious"


def test_non_empty_output_needs_overwrite(tmp_path, user_folder):
    with pytest.raises(OutputFolderError, match="--overwrite"):
        with new_output_folder(user_folder, [tmp_path / "elsewhere"]):
            pass
    assert (user_folder / "case_0000.nii.gz").read_bytes() == b"precious"


def test_overwrite_swaps_in_the_new_folder_only_when_complete(tmp_path, user_folder):
    with pytest.raises(RuntimeError), new_output_folder(user_folder, overwrite=True) as staging:
        (staging / "new.nii.gz").write_bytes(b"new")
        raise RuntimeError("failed half way")
    assert sorted(p.name for p in user_folder.iterdir()) == ["case_0000.nii.gz"]
    with new_output_folder(user_folder, overwrite=True) as staging:
        (staging / "new.nii.gz").write_bytes(b"new")
    assert sorted(p.name for p in user_folder.iterdir()) == ["new.nii.gz"]


def test_new_and_empty_folders_are_written(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for output in (tmp_path / "new", empty):
        with new_output_folder(output) as staging:
            (staging / "a.txt").write_text("a")
        assert (output / "a.txt").read_text() == "a"


def test_a_file_in_place_of_the_folder_is_refused(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(OutputFolderError, match="not a folder"):
        check_output_folder(tmp_path / "out", overwrite=True)
