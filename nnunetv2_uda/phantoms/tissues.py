"""The tissue classes of the phantoms, the FLARE label each one belongs to, and how each looks in CT and MRI.

CT values are Hounsfield units of portal-venous contrast-enhanced abdominal CT. MRI values are relative signal
(0..1) of the three sequence families mixed in real collections, chosen so the *order* of organs differs between
sequences as it does in patients: on T1 fat is bright, fluid (bile, CSF) dark and liver brighter than spleen; on T2
fat is still bright, fluid is the brightest thing and spleen outshines liver; on high-b DWI fat and free fluid are
dark while spleen and kidneys are bright. Fast-flowing blood is a flow void on all three.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnunetv2_uda.flare_labels import FLARE_ORGANS

SEQUENCES = ("T1", "T2", "DWI")


@dataclass(frozen=True)
class Tissue:
    name: str
    label: int  # FLARE label id, 0 for unlabeled tissue
    ct: float  # HU
    t1: float
    t2: float
    dwi: float


def _organ(organ: str, name: str, ct: float, t1: float, t2: float, dwi: float) -> Tissue:
    return Tissue(name, FLARE_ORGANS[organ], ct, t1, t2, dwi)


TISSUES: tuple[Tissue, ...] = (
    Tissue("air", 0, -1000, 0.0, 0.0, 0.0),
    Tissue("subcutaneous fat", 0, -105, 0.92, 0.78, 0.05),
    Tissue("muscle", 0, 55, 0.30, 0.17, 0.16),
    Tissue("abdominal cavity", 0, -95, 0.88, 0.72, 0.05),  # placeholder, becomes bowel or visceral fat
    Tissue("visceral fat", 0, -95, 0.88, 0.72, 0.05),
    Tissue("bowel", 0, 35, 0.28, 0.55, 0.38),
    Tissue("bowel gas", 0, -900, 0.02, 0.02, 0.01),
    Tissue("cortical bone", 0, 650, 0.06, 0.05, 0.03),
    Tissue("vertebral marrow", 0, 260, 0.62, 0.42, 0.10),
    Tissue("intervertebral disc", 0, 85, 0.30, 0.60, 0.30),
    Tissue("cerebrospinal fluid", 0, 10, 0.08, 0.95, 0.12),
    Tissue("lung", 0, -860, 0.03, 0.03, 0.02),
    Tissue("heart", 0, 150, 0.26, 0.22, 0.06),
    _organ("liver", "liver", 110, 0.58, 0.27, 0.32),
    _organ("liver", "hepatic vessel", 175, 0.14, 0.07, 0.04),
    _organ("right kidney", "right kidney cortex", 195, 0.48, 0.52, 0.68),
    _organ("right kidney", "right kidney medulla", 135, 0.34, 0.74, 0.74),
    _organ("left kidney", "left kidney cortex", 195, 0.48, 0.52, 0.68),
    _organ("left kidney", "left kidney medulla", 135, 0.34, 0.74, 0.74),
    _organ("spleen", "spleen", 122, 0.42, 0.63, 0.82),
    _organ("pancreas", "pancreas", 100, 0.70, 0.38, 0.55),
    _organ("aorta", "aorta", 170, 0.11, 0.05, 0.03),
    _organ("inferior vena cava", "inferior vena cava", 140, 0.17, 0.10, 0.04),
    _organ("right adrenal gland", "right adrenal gland", 55, 0.45, 0.35, 0.46),
    _organ("left adrenal gland", "left adrenal gland", 55, 0.45, 0.35, 0.46),
    _organ("gallbladder", "gallbladder", 8, 0.10, 0.98, 0.18),
    _organ("esophagus", "esophagus", 45, 0.35, 0.30, 0.36),
    _organ("stomach", "stomach", 30, 0.24, 0.78, 0.28),
    _organ("stomach", "stomach gas", -950, 0.02, 0.02, 0.01),
    _organ("duodenum", "duodenum", 42, 0.30, 0.70, 0.42),
)

TISSUE_CODE: dict[str, int] = {tissue.name: code for code, tissue in enumerate(TISSUES)}
LABEL_OF_TISSUE = np.array([tissue.label for tissue in TISSUES], dtype=np.uint8)


def intensity_table(modality: str) -> np.ndarray:
    """Mean intensity per tissue code for ``modality`` ('CT' or one of :data:`SEQUENCES`)."""
    field = {"CT": "ct", "T1": "t1", "T2": "t2", "DWI": "dwi"}[modality]
    return np.array([getattr(tissue, field) for tissue in TISSUES], dtype=np.float32)
