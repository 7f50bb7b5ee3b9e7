"""Random abdominal anatomy of one phantom subject, and its rasterization into a tissue map on any grid.

A subject is a reference abdomen (organ positions and sizes in mm, taken from typical adult anatomy) that is
scaled to a random patient size, whose organs are each moved, stretched and turned a little and given a rough
surface, and that is deformed as a whole by a smooth random warp. Everything is a function of patient-space
coordinates, so one subject rasterized on the CT grid and on an MRI grid has the same anatomy.

Organs never overlap because they are painted one after another, each only into space still free; the order
encodes which organ indents which (the gallbladder and the inferior vena cava indent the liver, the kidneys indent
the liver and spleen, the stomach indents the left lobe), and an abdominal wall and the diaphragm bound them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnunetv2_uda.phantoms.geometry import Blob, Ellipsoid, Grid, Part, SmoothField, Tube, rotation
from nnunetv2_uda.phantoms.tissues import TISSUE_CODE

# Reference abdomen: half-width and half-depth of the body at the kidneys (mm), diaphragm height above the body
# centre (mm) and the vertebral spacing (mm).
BODY_HALF_WIDTH = 160.0
BODY_HALF_DEPTH = 118.0
DIAPHRAGM_HEIGHT = 95.0
VERTEBRA_HEIGHT = 32.0


def _ellipsoid(x: float, y: float, z: float, rx: float, ry: float, rz: float, yaw: float = 0.0,
               tilt: float = 0.0) -> Ellipsoid:
    return Ellipsoid(np.array([z, y, x], float), np.array([rz, ry, rx], float), rotation(yaw, tilt))


def _tube(*points: tuple[float, float, float, float]) -> Tube:
    """A tube through (x, y, z, radius) points."""
    array = np.array(points, float)
    return Tube(array[:, [2, 1, 0]], array[:, 3])


def _mirror(part: Part) -> Part:
    """The same part on the patient's other side (x -> -x)."""
    flip = np.diag([1.0, 1.0, -1.0])
    if isinstance(part, Ellipsoid):
        return Ellipsoid(part.center * [1, 1, -1], part.semi_axes, flip @ part.rotation @ flip)
    return Tube(part.points * [1, 1, -1], part.radii)


def _reference_organs() -> dict[str, tuple[Part, ...]]:
    """Organ shapes of the reference abdomen, in paint order. x: patient left +, y: posterior +, z: superior +."""
    right_kidney = _ellipsoid(-72, 32, -18, 27, 21, 54, yaw=-30, tilt=-12)
    left_kidney = _ellipsoid(72, 32, -6, 27, 21, 54, yaw=30, tilt=12)
    return {
        "right adrenal gland": (_ellipsoid(-44, 20, 44, 5, 14, 17, yaw=35),),
        "left adrenal gland": (_ellipsoid(42, 18, 38, 5, 14, 17, yaw=-35),),
        "right kidney": (right_kidney,),
        "left kidney": (left_kidney,),
        "gallbladder": (_ellipsoid(-48, -55, 14, 15, 16, 32, yaw=20, tilt=15),),
        "pancreas": (_tube((-40, -22, -8, 17), (-8, -34, 4, 12), (32, -22, 12, 11), (72, 8, 22, 10)),),
        "duodenum": (_tube((-18, -62, 16, 12), (-50, -38, 10, 12), (-56, -22, -30, 12), (-38, -20, -52, 11),
                           (8, -34, -56, 10), (30, -34, -36, 10)),),
        "stomach": (_ellipsoid(55, -5, 78, 36, 34, 34), _ellipsoid(48, -48, 42, 33, 28, 40, yaw=-20),
                    _ellipsoid(2, -66, 20, 40, 21, 18, yaw=10)),
        "spleen": (_ellipsoid(98, 30, 52, 22, 56, 52, yaw=-35),),
        "liver": (_ellipsoid(-62, -8, 52, 88, 86, 76), _ellipsoid(12, -52, 70, 58, 40, 36, yaw=10)),
    }


def _reference_vessels() -> dict[str, tuple[Part, ...]]:
    return {
        "aorta": (_tube((20, 6, 180, 12), (14, -8, 90, 11), (10, -14, 0, 10), (8, -16, -100, 9)),),
        "inferior vena cava": (_tube((-26, -6, -120, 11), (-26, -4, 30, 12), (-14, -18, 110, 12)),),
        "esophagus": (_tube((4, -6, 180, 7), (10, -18, 100, 7), (34, -28, 74, 8)),),
    }


def _reference_hepatic_vessels() -> tuple[Part, ...]:
    """Portal vein branches and hepatic veins, painted inside the liver (they belong to its label)."""
    return (_tube((-6, -18, 2, 7), (-36, -12, 34, 7), (-78, 0, 48, 5)),
            _tube((-36, -12, 34, 6), (4, -46, 62, 4)),
            _tube((-16, -8, 96, 6), (-82, -20, 70, 4)),
            _tube((-16, -8, 96, 5), (-22, -56, 76, 4)))


def _reference_musculoskeletal() -> dict[str, tuple[Part, ...]]:
    return {
        "paraspinal": (_tube((38, 80, 250, 26), (38, 80, -250, 26)),),
        "canal": (_tube((0, 56, 250, 9), (0, 50, -250, 9)),),
        "arch": (_tube((0, 56, 250, 16), (0, 50, -250, 16)), _tube((0, 66, 250, 6), (0, 92, 250, 6)),
                 _tube((0, 66, -250, 6), (0, 90, -250, 6))),
        "vertebral body": (_tube((0, 26, 250, 19), (0, 18, -250, 20)),),
        "psoas": (_tube((26, 20, 30, 6), (46, 12, -60, 19), (58, 2, -150, 24)),),
    }


@dataclass(frozen=True)
class Subject:
    """One random patient: its body, organs, warp and the textures of bowel; see :func:`sample_subject`."""

    index: int
    body_half_axes: tuple[float, float]  # (y, x) mm
    fat_fraction: float
    muscle_fraction: float
    diaphragm_z: float
    disc_phase: float
    warp: SmoothField
    bowel: SmoothField
    structures: dict[str, Blob]
    hepatic_vessels: Blob

    @property
    def height_scale(self) -> float:
        return self.diaphragm_z / DIAPHRAGM_HEIGHT


def _transform_parts(parts: tuple[Part, ...], shift: np.ndarray, scale: np.ndarray, turn: np.ndarray,
                     pivot: np.ndarray) -> tuple[Part, ...]:
    return tuple(part.moved(shift, scale, turn, pivot) for part in parts)


def sample_subject(seed: int, index: int) -> Subject:
    """Subject ``index`` of the phantom population ``seed``: the same arguments always give the same anatomy."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0, index]))
    size = rng.uniform(0.84, 1.14)
    body_scale = np.array([size * rng.uniform(0.92, 1.08), size * rng.uniform(0.88, 1.10),
                           size * rng.uniform(0.92, 1.08)])  # z, y, x
    identity = np.eye(3)
    origin = np.zeros(3)

    def place(parts: tuple[Part, ...], jitter_mm: float, stretch: float, yaw_deg: float) -> tuple[Part, ...]:
        pivot = np.mean([p.center if isinstance(p, Ellipsoid) else p.points.mean(axis=0) for p in parts], axis=0)
        moved = _transform_parts(parts, rng.normal(0, jitter_mm, 3), rng.uniform(1 - stretch, 1 + stretch, 3),
                                 rotation(rng.uniform(-yaw_deg, yaw_deg)), pivot)
        return _transform_parts(moved, origin, body_scale, identity, origin)

    def rough(amplitude: float) -> SmoothField:
        return SmoothField.random(rng, 1, amplitude, (40.0, 140.0), components=5)

    structures: dict[str, Blob] = {}
    for name, parts in _reference_musculoskeletal().items():
        structures[name] = Blob(place(parts, 1.5, 0.04, 2))
    for name in ("psoas", "paraspinal"):
        structures[f"{name} right"] = Blob(tuple(_mirror(part) for part in structures[name].parts))
    for name, parts in _reference_vessels().items():
        structures[name] = Blob(place(parts, 3, 0.06, 4), rough(0.03))
    for name, parts in _reference_organs().items():
        small = "adrenal" in name or name == "gallbladder"
        structures[name] = Blob(place(parts, 3 if small else 5, 0.12, 10), rough(0.05 if small else 0.08))
    hepatic_vessels = Blob(place(_reference_hepatic_vessels(), 4, 0.08, 6), rough(0.04))
    return Subject(
        index=index,
        body_half_axes=(BODY_HALF_DEPTH * body_scale[1], BODY_HALF_WIDTH * body_scale[2]),
        fat_fraction=float(rng.uniform(0.05, 0.15)),
        muscle_fraction=float(rng.uniform(0.035, 0.06)),
        diaphragm_z=float(DIAPHRAGM_HEIGHT * body_scale[0] + rng.normal(0, 5)),
        disc_phase=float(rng.uniform(0, VERTEBRA_HEIGHT)),
        warp=SmoothField.random(rng, 3, 5.0 * size, (150.0, 400.0), components=6),
        bowel=SmoothField.random(rng, 2, 1.0, (25.0, 70.0), components=10),
        structures=structures,
        hepatic_vessels=hepatic_vessels,
    )


class _Canvas:
    """A tissue map being painted: each :meth:`paint` fills a blob, but only voxels that hold an allowed tissue."""

    def __init__(self, grid: Grid, subject: Subject):
        self.grid = grid
        z, y, x = grid.axes()
        dz, dy, dx = subject.warp(z, y, x)
        self.z, self.y, self.x = z + dz, y + dy, x + dx  # warped coordinates: where each voxel sits in the atlas
        self.margin = subject.warp.bound
        self.tissue = np.zeros(grid.shape, np.uint8)

    def region(self, low: np.ndarray, high: np.ndarray) -> tuple[slice, slice, slice]:
        return self.grid.box(low - self.margin, high + self.margin)

    def paint(self, blob: Blob, tissue: str, allowed: tuple[str, ...] | None = None
              ) -> tuple[tuple[slice, slice, slice], np.ndarray]:
        """Paints ``blob`` as ``tissue`` where the map holds one of ``allowed`` (None: anything inside the body).

        Returns the region and the painted mask in it, and the blob's level there in ``self.last_level``."""
        box = self.region(*blob.bounds())
        level = blob.level(self.z[box], self.y[box], self.x[box])
        current = self.tissue[box]
        if allowed is None:
            mask = (level < 0) & (current != TISSUE_CODE["air"])
        else:
            mask = (level < 0) & np.isin(current, [TISSUE_CODE[name] for name in allowed])
        current[mask] = TISSUE_CODE[tissue]
        self.last_level = level
        return box, mask


def rasterize(subject: Subject, grid: Grid) -> np.ndarray:
    """The subject's tissue map (uint8 codes into :data:`TISSUES`) on ``grid``."""
    canvas = _Canvas(grid, subject)
    z, y, x, tissue = canvas.z, canvas.y, canvas.x, canvas.tissue
    code = TISSUE_CODE
    s = subject.structures

    half_y, half_x = subject.body_half_axes
    body = ((np.abs(y) / half_y) ** 2.3 + (np.abs(x) / half_x) ** 2.3) ** (1 / 2.3) - 1
    tissue[body < 0] = code["subcutaneous fat"]
    tissue[body < -subject.fat_fraction] = code["muscle"]
    tissue[body < -subject.fat_fraction - subject.muscle_fraction] = code["abdominal cavity"]
    cavity = ("abdominal cavity",)

    canvas.paint(s["paraspinal"], "muscle", ("muscle", "abdominal cavity"))
    canvas.paint(s["paraspinal right"], "muscle", ("muscle", "abdominal cavity"))
    canvas.paint(s["canal"], "cerebrospinal fluid")
    bone_allowed = ("muscle", "abdominal cavity", "subcutaneous fat")
    canvas.paint(s["arch"], "cortical bone", bone_allowed)
    box, mask = canvas.paint(s["vertebral body"], "vertebral marrow", bone_allowed)
    rim = mask & (canvas.last_level > -0.15)
    disc = mask & (np.mod(z[box] - subject.disc_phase, VERTEBRA_HEIGHT * subject.height_scale)
                   < 0.22 * VERTEBRA_HEIGHT * subject.height_scale)
    tissue[box][rim] = code["cortical bone"]
    tissue[box][disc] = code["intervertebral disc"]
    canvas.paint(s["psoas"], "muscle", cavity)
    canvas.paint(s["psoas right"], "muscle", cavity)
    for vessel in ("aorta", "inferior vena cava", "esophagus"):
        canvas.paint(s[vessel], vessel, cavity)

    # Thorax: above a double-domed diaphragm that sinks posteriorly and laterally.
    diaphragm = (subject.diaphragm_z - 22 * y / half_y - 10 * np.cos(2 * np.pi * x / (1.1 * half_x))
                 - 18 * (x / half_x) ** 2)
    thorax = (z > diaphragm) & (tissue == code["abdominal cavity"])
    heart_center = np.array([subject.diaphragm_z + 65, -0.3 * half_y, 0.15 * half_x])
    heart = Ellipsoid(heart_center, np.array([70, 0.45 * half_y, 0.42 * half_x]), rotation(-25))
    in_heart = heart.level(z, y, x) < 0
    tissue[thorax] = code["lung"]
    tissue[thorax & (np.abs(x) < 0.17 * half_x) & (y < 0.4 * half_y)] = code["visceral fat"]
    tissue[thorax & in_heart] = code["heart"]

    for organ in ("right adrenal gland", "left adrenal gland", "right kidney", "left kidney", "gallbladder",
                  "pancreas", "duodenum", "stomach", "spleen", "liver"):
        box, mask = canvas.paint(s[organ], organ if "kidney" not in organ else f"{organ} cortex", cavity)
        if "kidney" in organ:
            tissue[box][mask & (canvas.last_level < -0.4)] = code[f"{organ} medulla"]
        elif organ == "stomach":
            gas = mask & (y[box] < np.float32(s[organ].centroid()[1] - 0.15 * half_y)) & (
                z[box] > np.float32(s[organ].centroid()[0] + 10))
            tissue[box][gas] = code["stomach gas"]
    canvas.paint(subject.hepatic_vessels, "hepatic vessel", ("liver",))

    # What is left of the cavity: bowel loops with gas below the liver, fat elsewhere.
    free = tissue == code["abdominal cavity"]
    loops, gas = subject.bowel(*grid.axes())  # unwarped: separable, hence fast; bowel texture needs no warp
    bowel = free & (loops > -0.1) & (z < subject.diaphragm_z - 45)
    tissue[free] = code["visceral fat"]
    tissue[bowel] = code["bowel"]
    tissue[bowel & (gas > 1.2)] = code["bowel gas"]
    return tissue

