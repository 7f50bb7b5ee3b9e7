"""nnUNetv2_uda_profile and profile_folder with a trivial copying command, so they stay fast."""

import csv
import subprocess
import sys

import pytest
from commands import run_in_process

from nnunetv2_uda.evaluation.profiling import ProfileError, format_efficiency_table, group_cases, profile_folder

COPY = "import shutil, pathlib, sys; [shutil.copy(f, sys.argv[2]) for f in pathlib.Path(sys.argv[1]).iterdir()]"
ALLOCATE = "import time; touched = b'1' * (150 * 2**20); time.sleep(0.5); " + COPY


@pytest.fixture
def input_folder(tmp_path):
    folder = tmp_path / "input"
    folder.mkdir()
    for case in ("a", "b", "c"):
        for channel in ("0000", "0001"):
            (folder / f"{case}_{channel}.nii.gz").write_bytes(b"x")
    (folder / "notes.txt").write_text("ignored")
    (folder / ".d_0000.nii.gz").write_bytes(b"x")  # hidden: an editor's or a killed writer's file, never a case
    return folder


def test_group_cases(input_folder):
    cases = group_cases(input_folder)
    assert list(cases) == ["a", "b", "c"] and [p.name for p in cases["b"]] == ["b_0000.nii.gz", "b_0001.nii.gz"]


@pytest.mark.slow
def test_profile_folder_runs_each_case_alone(input_folder, tmp_path):
    output = tmp_path / "output"
    profiles = profile_folder(
        input_folder, output, [sys.executable, "-c", ALLOCATE, "{input}", "{output}"], progress=False
    )
    assert [p.case for p in profiles] == ["a", "b", "c"]
    assert sorted(p.name for p in output.glob("*.nii.gz")) == [
        f"{c}_{i}.nii.gz" for c in "abc" for i in ("0000", "0001")
    ]
    for profile in profiles:
        assert profile.returncode == 0 and 0 < profile.time_s < 60
        assert profile.peak_memory_mb > 150  # the 150 MB the command wrote
    with open(output / "profile.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["case"] for r in rows] == ["a", "b", "c"]
    assert list(rows[0]) == ["case", "returncode", "time_s", "peak_memory_mb", "gpu_max_mb", "gpu_auc_mb_s"]
    table = format_efficiency_table(profiles)
    assert "Time (s)" in table and "Peak memory (MB)" in table and "25%" in table


# 400 MB touched, then two forks: four processes that keep it (shared copy-on-write) for a moment
FORK_AND_SHARE = ("import os, time; touched = bytearray(400 * 2**20); touched[::4096] = b'1' * len(touched[::4096]); "
                  "os.fork(); os.fork(); time.sleep(1.5)")


@pytest.mark.slow
def test_memory_shared_by_forked_workers_is_counted_once(tmp_path):
    folder = tmp_path / "input"
    folder.mkdir()
    (folder / "a_0000.nii.gz").write_bytes(b"x")
    (profile,) = profile_folder(folder, tmp_path / "out", [sys.executable, "-c", FORK_AND_SHARE, "{input}"],
                                progress=False)
    # four processes hold the same 400 MB: summed RSS would report ~1600 MB
    assert profile.returncode == 0 and 400 < profile.peak_memory_mb < 800, profile


def test_failing_case_is_recorded_and_others_run(input_folder, tmp_path):
    script = "import sys; sys.exit(3 if sys.argv[1] == 'b' else 0)"
    profiles = profile_folder(
        input_folder, tmp_path / "out", [sys.executable, "-c", script, "{case}", "{input}"], progress=False
    )
    assert [p.returncode for p in profiles] == [0, 3, 0]


def test_command_needs_input_placeholder(input_folder, tmp_path):
    with pytest.raises(ProfileError, match="input"):
        profile_folder(input_folder, tmp_path / "out", ["true"], progress=False)


@pytest.mark.slow
def test_cli(input_folder, tmp_path, run_command):
    output = tmp_path / "output"
    result = run_command(
        [
            "nnUNetv2_uda_profile",
            input_folder,
            output,
            "--disable_progress_bar",
            "--",
            sys.executable,
            "-c",
            COPY,
            "{input}",
            "{output}",
        ]
    )
    assert "Table 8" in result.stdout and "Time (s)" in result.stdout
    assert (output / "profile.csv").is_file() and (output / "c_0001.nii.gz").is_file()
    failing = subprocess.run(
        [
            "nnUNetv2_uda_profile",
            str(input_folder),
            str(output),
            "--disable_progress_bar",
            "--",
            sys.executable,
            "-c",
            "import sys; sys.exit(1)",
            "{input}",
        ],
        capture_output=True,
        text=True,
    )
    assert failing.returncode == 1 and "FAILED cases" in failing.stderr


def run_profile(*args) -> subprocess.CompletedProcess:
    return run_in_process("nnUNetv2_uda_profile", *args)


@pytest.mark.parametrize("options, named", [
    (["--interval", "0"], "argument --interval: must be a positive number, got '0'"),
    (["--interval", "nan"], "argument --interval: must be a positive number, got 'nan'"),
])
def test_nonsense_numbers_are_refused_at_parsing(input_folder, tmp_path, options, named):
    result = run_profile(input_folder, tmp_path / "out", *options, "--", sys.executable, "-c", COPY, "{input}")
    assert result.returncode == 2 and named in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_input_is_one_line_without_traceback(input_folder, tmp_path):
    for args, named, code in [((tmp_path / "absent", tmp_path / "out", "--", "true", "{input}"), "absent", 2),
                              ((input_folder, tmp_path / "out", "--", "true"), "{input} placeholder", 2)]:
        result = run_profile(*args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == code and len(lines) == 1 and named in lines[0], result.stderr
        assert lines[0].startswith("nnUNetv2_uda_profile: error: ")


def test_the_input_folder_and_a_csv_this_command_did_not_write_are_never_written(input_folder, tmp_path):
    before = {path.name: path.read_bytes() for path in input_folder.iterdir()}
    for args, named in [((input_folder, input_folder), "output folder"),
                        ((input_folder, input_folder / "predictions"), "output folder"),
                        ((input_folder, tmp_path / "out", "--csv", input_folder / "profile.csv"), "--csv folder")]:
        result = run_profile(*args, "--", sys.executable, "-c", COPY, "{input}", "{output}")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert named in lines[0] and "lies inside the input folder" in lines[0] and str(input_folder) in lines[0]
    assert {path.name: path.read_bytes() for path in input_folder.iterdir()} == before

    mine = tmp_path / "out" / "profile.csv"
    mine.parent.mkdir()
    mine.write_text("my own notes\n")
    with pytest.raises(ProfileError, match="profile.csv exists and was not written by this command"):
        profile_folder(input_folder, tmp_path / "out", [sys.executable, "-c", COPY, "{input}", "{output}"],
                       progress=False)
    assert mine.read_text() == "my own notes\n" and sorted(p.name for p in mine.parent.iterdir()) == ["profile.csv"]


def test_an_input_file_without_its_channel_suffix_is_named(input_folder, tmp_path):
    (input_folder / "d.nii.gz").write_bytes(b"x")
    with pytest.raises(ProfileError, match=r"d\.nii\.gz: not named <case>_0000\.nii\.gz"):
        profile_folder(input_folder, tmp_path / "out", ["true", "{input}"], progress=False)
    assert not (tmp_path / "out").exists()
