"""Patient-space grids and the smooth random shapes the phantom anatomy is made of.

Every shape is an implicit function of *physical* coordinates (mm, patient frame), never of voxel indices, so the
same subject can be rasterized on a CT grid and on a thicker-sliced MRI grid with another field of view and the
organs land in the same place. Arrays and coordinate triples are ordered (z, y, x) as nnU-Net/SimpleITK arrays:
x runs to the patient's left, y to posterior, z to superior (LPS, identity direction), so an axial slice shown with
``imshow`` is in radiological view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class Grid:
    """A voxel grid in patient space: ``shape``/``spacing``/``origin`` in (z, y, x) order, identity direction."""

    shape: tuple[int, int, int]
    spacing: Triple
    origin: Triple

    @classmethod
    def centered(cls, shape: tuple[int, int, int], extent_mm: Triple, center_mm: Triple) -> Grid:
        """The grid of ``shape`` voxels covering ``extent_mm`` around ``center_mm``."""
        spacing = tuple(float(e) / n for e, n in zip(extent_mm, shape, strict=True))
        origin = tuple(float(c) - s * (n - 1) / 2 for c, s, n in zip(center_mm, spacing, shape, strict=True))
        return cls(tuple(int(n) for n in shape), spacing, origin)

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxel-centre coordinates along z, y and x, shaped to broadcast to the full grid."""
        z, y, x = (np.float32(o) + np.float32(s) * np.arange(n, dtype=np.float32)
                   for o, s, n in zip(self.origin, self.spacing, self.shape, strict=True))
        return z[:, None, None], y[None, :, None], x[None, None, :]

    def box(self, low: np.ndarray, high: np.ndarray) -> tuple[slice, slice, slice]:
        """Index slices of the voxels whose centres lie within the physical box [low, high]."""
        slices = []
        for lo, hi, o, s, n in zip(low, high, self.origin, self.spacing, self.shape, strict=True):
            start = int(np.clip(np.ceil((lo - o) / s), 0, n))
            stop = int(np.clip(np.floor((hi - o) / s) + 1, start, n))
            slices.append(slice(start, stop))
        return tuple(slices)


@dataclass(frozen=True)
class SmoothField:
    """A smooth random field: a sum of plane waves with random directions, wavelengths and phases.

    Being analytic in physical coordinates, it is the same function on any grid (a deformation or bias field
    sampled with scipy.ndimage on one grid would differ between the CT and MRI grids of one subject).
    """

    wavevectors: np.ndarray  # (K, 3) radians per mm, (z, y, x)
    phases: np.ndarray  # (K,)
    amplitudes: np.ndarray  # (K, C)

    @classmethod
    def random(cls, rng: np.random.Generator, channels: int, amplitude: float, wavelength_mm: tuple[float, float],
               components: int = 6) -> SmoothField:
        """A field whose channels each have a standard deviation of about ``amplitude``."""
        directions = rng.normal(size=(components, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wavelengths = rng.uniform(*wavelength_mm, size=(components, 1))
        amplitudes = rng.normal(size=(components, channels)) * amplitude * np.sqrt(2.0 / components)
        return cls(2 * np.pi * directions / wavelengths, rng.uniform(0, 2 * np.pi, components), amplitudes)

    @property
    def bound(self) -> float:
        """An upper bound of the field's absolute value (over all channels)."""
        return float(np.abs(self.amplitudes).sum(axis=0).max())

    def __call__(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> list[np.ndarray]:
        """The field's channels at the points (z, y, x); grid axes (see :meth:`Grid.axes`) are fastest, since
        sin(a + b) = sin a cos b + cos a sin b then needs sines of a (z, y) plane and an x row only."""
        out: list[np.ndarray] | None = None
        for (kz, ky, kx), phase, amps in zip(self.wavevectors, self.phases, self.amplitudes, strict=True):
            a = np.float32(kz) * z + np.float32(ky) * y + np.float32(phase)
            b = np.float32(kx) * x
            if np.size(a) * np.size(b) == np.broadcast(a, b).size:  # a and b vary along different axes
                wave = np.sin(a) * np.cos(b) + np.cos(a) * np.sin(b)
            else:
                wave = np.sin(a + b)
            if out is None:
                out = [np.float32(amp) * wave for amp in amps]
            else:
                for channel, amp in zip(out, amps, strict=True):
                    channel += np.float32(amp) * wave
        return out

def rotation(yaw_deg: float = 0.0, tilt_deg: float = 0.0) -> np.ndarray:
    """A (z, y, x) rotation matrix: ``yaw`` turns about the z axis (in the axial plane), ``tilt`` about the y axis
    (in the coronal plane)."""
    a, b = np.deg2rad(yaw_deg), np.deg2rad(tilt_deg)
    yaw = np.array([[1, 0, 0], [0, np.cos(a), np.sin(a)], [0, -np.sin(a), np.cos(a)]])
    tilt = np.array([[np.cos(b), 0, -np.sin(b)], [0, 1, 0], [np.sin(b), 0, np.cos(b)]])
    return yaw @ tilt


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid; its level is about (distance from centre / radius) - 1, negative inside."""

    center: np.ndarray  # (3,) z, y, x mm
    semi_axes: np.ndarray  # (3,) mm along the rotated z, y, x axes
    rotation: np.ndarray  # (3, 3) local -> patient

    def level(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        offsets = (z - np.float32(self.center[0]), y - np.float32(self.center[1]), x - np.float32(self.center[2]))
        total = 0.0
        for axis in range(3):
            local = sum(np.float32(self.rotation[j, axis]) * offsets[j] for j in range(3))
            total = total + (local / np.float32(self.semi_axes[axis])) ** 2
        return np.sqrt(total) - 1

    def bounds(self, grow: float) -> tuple[np.ndarray, np.ndarray]:
        half = np.sqrt(((self.rotation * self.semi_axes[None, :]) ** 2).sum(axis=1)) * grow
        return self.center - half, self.center + half

    def moved(self, shift: np.ndarray, scale: np.ndarray, turn: np.ndarray, pivot: np.ndarray) -> Ellipsoid:
        return Ellipsoid(pivot + turn @ ((self.center - pivot) * scale) + shift, self.semi_axes * scale,
                         turn @ self.rotation)


@dataclass(frozen=True)
class Tube:
    """A swept sphere along a polyline with linearly varying radius (vessels, oesophagus, duodenum, pancreas)."""

    points: np.ndarray  # (n, 3) z, y, x mm
    radii: np.ndarray  # (n,) mm

    def level(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        best = None
        for (a, b), (ra, rb) in zip(zip(self.points[:-1], self.points[1:], strict=True),
                                    zip(self.radii[:-1], self.radii[1:], strict=True), strict=True):
            d = b - a
            t = ((z - np.float32(a[0])) * np.float32(d[0]) + (y - np.float32(a[1])) * np.float32(d[1])
                 + (x - np.float32(a[2])) * np.float32(d[2])) / np.float32(d @ d)
            t = np.clip(t, 0, 1)
            dist = np.sqrt((z - np.float32(a[0]) - t * np.float32(d[0])) ** 2
                           + (y - np.float32(a[1]) - t * np.float32(d[1])) ** 2
                           + (x - np.float32(a[2]) - t * np.float32(d[2])) ** 2)
            level = dist / (np.float32(ra) + t * np.float32(rb - ra)) - 1
            best = level if best is None else np.minimum(best, level)
        return best

    def bounds(self, grow: float) -> tuple[np.ndarray, np.ndarray]:
        r = self.radii.max() * grow
        return self.points.min(axis=0) - r, self.points.max(axis=0) + r

    def moved(self, shift: np.ndarray, scale: np.ndarray, turn: np.ndarray, pivot: np.ndarray) -> Tube:
        points = pivot + ((self.points - pivot) * scale) @ turn.T + shift
        return Tube(points, self.radii * float(np.cbrt(np.prod(scale))))


Part = Ellipsoid | Tube


@dataclass(frozen=True)
class Blob:
    """A union of parts with a smoothly rough surface: level = min(part levels) + roughness."""

    parts: tuple[Part, ...]
    roughness: SmoothField | None = None

    def level(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        level = self.parts[0].level(z, y, x)
        for part in self.parts[1:]:
            level = np.minimum(level, part.level(z, y, x))
        if self.roughness is not None:
            level = level + self.roughness(z, y, x)[0]
        return level

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        grow = 1.0 + (self.roughness.bound if self.roughness is not None else 0.0)
        lows, highs = zip(*(part.bounds(grow) for part in self.parts), strict=True)
        return np.min(lows, axis=0), np.max(highs, axis=0)

    def centroid(self) -> np.ndarray:
        return np.mean([p.center if isinstance(p, Ellipsoid) else p.points.mean(axis=0) for p in self.parts], axis=0)
