"""Atomic writes: the final name appears only once the content is complete."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from nnunetv2_uda.atomic_files import save_figure, written_atomically  # noqa: E402


def test_failed_write_leaves_neither_final_nor_temporary_file(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), written_atomically(target) as temporary:
        temporary.write_text("{half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_successful_write_is_renamed(tmp_path):
    target = tmp_path / "out.txt"
    with written_atomically(target) as temporary:
        assert temporary.suffix == ".txt" and temporary != target
        temporary.write_text("done")
    assert target.read_text() == "done" and list(tmp_path.iterdir()) == [target]


def test_save_figure_writes_a_png_and_closes_the_figure(tmp_path):
    figure, axis = plt.subplots()
    axis.plot([0, 1])
    path = save_figure(figure, tmp_path / "plot.png", dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(figure.number)
