"""Orientation of a near-symmetric object under domain shift (Li et al., Sec. 5.2-5.3, Table 8).

The object's outline is symmetric under the rotations that define the classes, so its
orientation shows only through a small *critical area*: a marker and a gap/notch (the red
boxes of the paper's Fig. 8). Two variants:

* ``camera`` -- 2 classes (0 and 180 degrees), like the industrial camera of Sec. 5.2.
* ``workpiece`` -- 4 classes (0, 90, 180, 270 degrees), like the workpiece of Sec. 5.3.

Two domains:

* ``train`` ("office"): warm desk background, large object, small pose jitter, and lighting
  whose direction follows the orientation class with probability ``shortcut_strength`` (the
  photos of each orientation were taken in their own session). The paper attributes the
  plain classifier's failure to "severe bias in the Training Set"; this lamp is our explicit,
  documented stand-in for that bias.
* ``shifted`` ("factory"): dark cluttered background, smaller object, stronger rotation and
  foreshortening (another viewpoint), a colour cast, and lighting from a random direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from gainlib.data import drawing as d

Variant = Literal["camera", "workpiece"]
Domain = Literal["train", "shifted"]

ORIENTATION_CLASSES: dict[str, tuple[str, ...]] = {
    "camera": ("rot0", "rot180"),
    "workpiece": ("rot0", "rot90", "rot180", "rot270"),
}


@dataclass
class RenderedOrientation:
    image: np.ndarray          # uint8 [H, W, 3]
    mask: np.ndarray           # uint8 [H, W]: k + 1 on the critical area, 0 elsewhere
    object_mask: np.ndarray    # bool [H, W]: the whole object
    box: np.ndarray            # float32 [4] xyxy around the critical area
    label: int                 # orientation class k
    light_angle: float         # the bright side's direction (radians, counter-clockwise from +x)


def _desk(rng, xx, yy, s):
    base = d.hsv(rng.uniform(0.07, 0.11), rng.uniform(0.3, 0.45), rng.uniform(0.7, 0.85))
    wavelength = s * rng.uniform(3.0, 5.0)
    grain = np.sin(2 * np.pi * (xx / wavelength + 0.3 * np.sin(yy / (6 * wavelength))) + rng.uniform(0, 6.3))
    return base + 0.04 * grain[..., None] + d.noise(rng, xx.shape, 0.015)


def _factory(rng, xx, yy, s):
    base = d.hsv(rng.uniform(0.55, 0.62), rng.uniform(0.05, 0.15), rng.uniform(0.25, 0.4))
    stripes = ((xx / (s * rng.uniform(6, 10)) + rng.random()) % 1.0) < 0.3
    canvas = base + 0.06 * stripes[..., None] + d.noise(rng, xx.shape, 0.02)
    size = xx.shape[0]
    for _ in range(int(rng.integers(2, 5))):          # clutter: metal bars at random poses
        bar = d.Frame(rng.uniform(0, size), rng.uniform(0, size), scale=size * rng.uniform(0.1, 0.3),
                      angle=rng.uniform(0, np.pi))
        u, v = bar.local(xx, yy)
        d.paint(canvas, d.rectangle(u, v, -1, -0.15, 1, 0.15), d.hsv(0.58, 0.1, rng.uniform(0.45, 0.8)))
    return canvas


def _camera(canvas, u, v, rng):
    """A camera body symmetric under 180 degrees except for an LED marker and a gap."""
    gap = d.rectangle(u, v, 0.84, -0.12, 1.1, 0.12)
    body = (d.superellipse(u, v, 0.0, 0.0, 1.0, 0.62, power=5)
            | d.rectangle(u, v, -0.7, -0.78, -0.3, -0.5)       # viewfinder bump ...
            | d.rectangle(u, v, 0.3, 0.5, 0.7, 0.78)) & ~gap   # ... and its 180-degree twin
    d.paint(canvas, body, d.jitter(rng, (0.22, 0.22, 0.24), 0.04))
    d.paint(canvas, d.disk(u, v, 0, 0, 0.42), d.jitter(rng, (0.06, 0.06, 0.07), 0.02))
    d.paint(canvas, d.disk(u, v, 0, 0, 0.32) & ~d.disk(u, v, 0, 0, 0.22), d.jitter(rng, (0.55, 0.55, 0.58), 0.05))
    marker = d.disk(u, v, 0.7, -0.4, 0.1)
    d.paint(canvas, marker, d.jitter(rng, (0.95, 0.15, 0.1), 0.05))
    critical = d.rectangle(u, v, 0.55, -0.55, 1.1, 0.17)
    return body, critical


def _workpiece(canvas, u, v, rng):
    """A square plate symmetric under 90 degrees except for a corner notch and a marker."""
    notch = d.polygon(u, v, [(1.1, -1.1), (0.45, -1.1), (1.1, -0.45)])
    plate = d.superellipse(u, v, 0.0, 0.0, 1.0, 1.0, power=6) & ~notch
    d.paint(canvas, plate, d.jitter(rng, (0.7, 0.72, 0.76), 0.05))
    holes = d.disk(u, v, 0, 0, 0.35)
    for x in (-0.6, 0.6):
        for y in (-0.6, 0.6):
            holes |= d.disk(u, v, x, y, 0.1)
    d.paint(canvas, holes & plate, d.jitter(rng, (0.12, 0.12, 0.13), 0.03))
    marker = d.rectangle(u, v, 0.05, -0.88, 0.28, -0.66)
    d.paint(canvas, marker, d.jitter(rng, (0.95, 0.55, 0.1), 0.05))
    critical = d.rectangle(u, v, 0.0, -1.1, 1.1, -0.5)
    return plate, critical


def render_orientation(rng: np.random.Generator, variant: Variant, label: int, domain: Domain,
                       size: int, shortcut_strength: float) -> RenderedOrientation:
    """Draw one image of orientation class ``label`` in ``domain`` at ``size x size`` pixels."""
    n_classes = len(ORIENTATION_CLASSES[variant])
    xx, yy = d.pixel_centres(size)
    s = size / 64.0
    step = 2 * np.pi / n_classes                           # 180 or 90 degrees per class
    if domain == "train":
        canvas = _desk(rng, xx, yy, s)
        scale = size * rng.uniform(0.3, 0.36)
        angle = label * step + rng.uniform(-0.12, 0.12)
        squash, centre_jitter = 1.0, 0.06
        aligned = rng.random() < shortcut_strength
        light = label * step if aligned else rng.uniform(0, 2 * np.pi)
    elif domain == "shifted":
        canvas = _factory(rng, xx, yy, s)
        scale = size * rng.uniform(0.2, 0.26)
        angle = label * step + rng.uniform(-0.35, 0.35)
        squash, centre_jitter = rng.uniform(0.7, 1.0), 0.15
        light = rng.uniform(0, 2 * np.pi)
    else:
        raise ValueError(f"unknown domain {domain!r}")
    frame = d.Frame(size / 2 + rng.uniform(-1, 1) * centre_jitter * size,
                    size / 2 + rng.uniform(-1, 1) * centre_jitter * size,
                    scale=scale, angle=angle, squash_x=squash)
    u, v = frame.local(xx, yy)
    draw = _camera if variant == "camera" else _workpiece
    object_mask, critical = draw(canvas, u, v, rng)

    # Lighting: brighter towards screen direction `light` (counter-clockwise from +x, like
    # the object's rotation, so an aligned lamp sits on the marker's side).
    ramp = ((xx - size / 2) * float(np.cos(light)) - (yy - size / 2) * float(np.sin(light))) / size
    canvas = canvas * (1.0 + 0.6 * ramp)[..., None]
    if domain == "shifted":
        canvas = canvas * rng.uniform(0.85, 1.15, 3).astype(np.float32)

    mask = np.where(critical, label + 1, 0).astype(np.uint8)
    ys, xs = np.nonzero(critical)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    image = (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return RenderedOrientation(image=image, mask=mask, object_mask=object_mask, box=box,
                               label=label, light_angle=float(light % (2 * np.pi)))
