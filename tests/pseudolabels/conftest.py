"""Fixtures shared by the pseudo-label tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from pseudolabels.test_matching import organ_map, write_case


@pytest.fixture
def two_domains(tmp_path) -> tuple[Path, Path]:
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    write_case(labels, images, "mri_T2_0001", organ_map(1.0))
    write_case(labels, images, "mri_T2_0002", organ_map(1.35))
    # a T1 case whose pseudo-label is shifted and has the volumes of T2_0002 (not T2_0001), in its own geometry
    write_case(labels, images, "mri_T1_0003", organ_map(1.3, shift=0.15), origin=(6.0, -4.0, 2.0),
               spacing=(1.4, 1.6, 3.2))
    return images, labels
