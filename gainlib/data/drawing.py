"""Rasterising primitives for the synthetic datasets (numpy, exact hard-edged shapes).

Every shape is an implicit function evaluated at pixel centres, so masks are exact (no
anti-aliasing, hence no ambiguous boundary pixels) and drawing a 64-128 px scene takes well
under a millisecond. Objects are described in a *local frame* (``u`` to the right, ``v``
down, the object spanning roughly ``[-1, 1]``) that :class:`Frame` maps into the image with a
centre, a scale, a rotation and an optional anisotropic squash (used for viewpoint changes).
"""

from __future__ import annotations

import colorsys
import functools
from dataclasses import dataclass

import numpy as np

Array = np.ndarray


@functools.lru_cache(maxsize=8)
def pixel_centres(size: int) -> tuple[Array, Array]:
    """``(x, y)`` coordinates of pixel centres of a ``size x size`` image, each ``[H, W]`` (read-only)."""
    centres = np.arange(size, dtype=np.float32) + 0.5
    xx, yy = np.meshgrid(centres, centres)
    xx.flags.writeable = False
    yy.flags.writeable = False
    return xx, yy


def window(cx: float, cy: float, half: float, size: int) -> tuple[slice, slice]:
    """Row and column slices of the square ``[c - half, c + half]`` clipped to the image.

    Drawing an object only inside its window (instead of the whole image) makes rendering
    several times faster; shapes are evaluated on the window's pixel centres.
    """
    x0, x1 = max(int(cx - half), 0), min(int(np.ceil(cx + half)), size)
    y0, y1 = max(int(cy - half), 0), min(int(np.ceil(cy + half)), size)
    return slice(y0, y1), slice(x0, x1)


@dataclass(frozen=True)
class Frame:
    """Maps an object's local frame into the image.

    ``(x, y) = centre + R(angle) @ diag(scale * squash_x, scale * squash_y) @ (u, v)``;
    :meth:`local` applies the inverse to pixel centres.
    """

    cx: float
    cy: float
    scale: float
    angle: float = 0.0        # radians, counter-clockwise on screen
    squash_x: float = 1.0     # <1 foreshortens the object along its local u axis
    squash_y: float = 1.0
    mirror: bool = False      # flip u (an object facing the other way)

    def local(self, xx: Array, yy: Array) -> tuple[Array, Array]:
        dx, dy = xx - float(self.cx), yy - float(self.cy)
        cos, sin = float(np.cos(self.angle)), float(np.sin(self.angle))   # python floats keep float32
        # Screen y points down, so a counter-clockwise rotation by `angle` uses -angle here.
        u = (cos * dx - sin * dy) * (1.0 / float(self.scale * self.squash_x))
        v = (sin * dx + cos * dy) * (1.0 / float(self.scale * self.squash_y))
        return (-u if self.mirror else u), v


# --- shapes in local coordinates (all return boolean arrays) ---------------------------------

def ellipse(u: Array, v: Array, cx: float, cy: float, rx: float, ry: float) -> Array:
    du, dv = (u - float(cx)) * (1.0 / float(rx)), (v - float(cy)) * (1.0 / float(ry))
    return du * du + dv * dv <= 1.0


def disk(u: Array, v: Array, cx: float, cy: float, r: float) -> Array:
    du, dv = u - float(cx), v - float(cy)
    return du * du + dv * dv <= float(r * r)


def rectangle(u: Array, v: Array, x0: float, y0: float, x1: float, y1: float) -> Array:
    return (u >= x0) & (u <= x1) & (v >= y0) & (v <= y1)


def superellipse(u: Array, v: Array, cx: float, cy: float, rx: float, ry: float,
                 power: float = 4.0) -> Array:
    """``|x/rx|^p + |y/ry|^p <= 1``: an ellipse for p=2, a rounded rectangle for p>=4."""
    du = np.abs((u - float(cx)) * (1.0 / float(rx)))
    dv = np.abs((v - float(cy)) * (1.0 / float(ry)))
    return du ** float(power) + dv ** float(power) <= 1.0


def polygon(u: Array, v: Array, points: list[tuple[float, float]]) -> Array:
    """Inside a *convex* polygon given by its vertices (either winding)."""
    pts = [(float(x), float(y)) for x, y in points]
    edges = list(zip(pts, pts[1:] + pts[:1]))
    sign = 1.0 if sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in edges) >= 0 else -1.0
    inside = np.ones(np.shape(u), dtype=bool)
    for (x0, y0), (x1, y1) in edges:
        # sign * cross((p1 - p0), (q - p0)) >= 0, expanded so numpy does 4 array operations
        a, b = sign * (x1 - x0), sign * (y1 - y0)
        inside &= a * v - b * u >= a * y0 - b * x0
    return inside


# --- colours and textures ---------------------------------------------------------------------

def hsv(h: float, s: float, v: float) -> Array:
    return np.asarray(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def random_colour(rng: np.random.Generator, s: tuple[float, float] = (0.3, 0.9),
                  v: tuple[float, float] = (0.3, 0.95)) -> Array:
    return hsv(rng.random(), rng.uniform(*s), rng.uniform(*v))


def jitter(rng: np.random.Generator, colour: tuple[float, float, float], amount: float = 0.06) -> Array:
    return np.clip(np.asarray(colour, dtype=np.float32) + rng.uniform(-amount, amount, 3), 0, 1)


def noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> Array:
    """Grey per-pixel noise ``[*shape, 1]`` to add to an RGB texture."""
    return rng.standard_normal((*shape, 1), dtype=np.float32) * np.float32(sigma)


def paint(canvas: Array, where: Array, colour: Array) -> None:
    canvas[where] = colour
