"""Atomic writes: a file or folder appears under its final name only once complete; temporaries are never cases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from nnunetv2_uda.atomic_files import (  # noqa: E402
    folder_built_atomically,
    is_hidden,
    save_figure,
    write_json_atomically,
    written_atomically,
)


def test_failed_write_leaves_neither_final_nor_temporary_file(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), written_atomically(target) as temporary:
        temporary.write_text("{half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_successful_write_is_renamed(tmp_path):
    target = tmp_path / "out.txt"
    with written_atomically(target) as temporary:
        assert temporary.name == "out.txt" and temporary != target
        temporary.write_text("done")
    assert target.read_text() == "done" and list(tmp_path.iterdir()) == [target]


def test_temporaries_are_hidden_and_unique(tmp_path):
    """Two writers of one file never share a temporary, and a listing of cases never sees one."""
    target = tmp_path / "case_0000.nii.gz"
    with written_atomically(target) as first, written_atomically(target) as second:
        assert first != second
        first.write_text("first")
        second.write_text("second")
        assert [path for path in tmp_path.glob("*.nii.gz") if not is_hidden(path)] == []
        assert all(is_hidden(path) for path in tmp_path.iterdir())
    assert target.read_text() == "first" and list(tmp_path.iterdir()) == [target]


def test_save_figure_writes_a_png_and_closes_the_figure(tmp_path):
    figure, axis = plt.subplots()
    axis.plot([0, 1])
    path = save_figure(figure, tmp_path / "plot.png", dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(figure.number)


def test_folder_appears_only_when_complete(tmp_path):
    final = tmp_path / "dataset"
    with pytest.raises(RuntimeError), folder_built_atomically(final) as staging:
        (staging / "case.txt").write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with folder_built_atomically(final) as staging:
        (staging / "case.txt").write_text("whole")
        assert not final.exists()
    assert [p.name for p in final.iterdir()] == ["case.txt"] and list(tmp_path.iterdir()) == [final]


def test_folder_replacement_leaves_no_stale_file_and_a_failure_keeps_the_old(tmp_path):
    final = tmp_path / "dataset"
    final.mkdir()
    (final / "stale.txt").write_text("old case")
    with pytest.raises(FileExistsError), folder_built_atomically(final):
        pass
    with pytest.raises(RuntimeError), folder_built_atomically(final, replace=True) as staging:
        (staging / "new.txt").write_text("new")
        raise RuntimeError("failed")
    assert [p.name for p in final.iterdir()] == ["stale.txt"]
    with folder_built_atomically(final, replace=True) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in final.iterdir()] == ["new.txt"] and list(tmp_path.iterdir()) == [final]


def test_sigterm_removes_the_staging_folder(tmp_path):
    """A command terminated while writing leaves nothing behind (the CLI wrapper turns SIGTERM into an exit)."""
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from nnunetv2_uda.atomic_files import folder_built_atomically, write_json_atomically
        from nnunetv2_uda.command_line import command

        @command
        def main():
            with folder_built_atomically(Path({str(tmp_path / 'out')!r})) as staging:
                write_json_atomically({{"a": 1}}, staging / "x.json")
                print("writing", flush=True)
                time.sleep(60)

        main()
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    assert any(is_hidden(path) for path in tmp_path.iterdir())
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_write_json_atomically(tmp_path):
    path = write_json_atomically({"a": [1, 2]}, tmp_path / "x.json")
    assert path.read_text().replace(" ", "").replace("\n", "") == '{"a":[1,2]}'
    assert os.listdir(tmp_path) == ["x.json"]
