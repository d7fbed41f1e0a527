"""A family of "Biased Boat" scenes whose bias mechanism is a parameter.

The paper's Biased Boat test (Li et al., "Tell me where to look: Guided Attention Inference
Network", CVPR 2018, Sec. 5, Table 7) trains a classifier on images in which boats almost
always sit on water, then shows it boats without water and water without boats: a model
that learnt the context calls water a boat and misses a boat on land, and GAIN's attention
guidance is meant to move its decision onto the boat. Whether guidance *can* change the
decision depends on how the bias arises, so this module makes the mechanism a parameter,
:class:`BiasScenario`, and draws every scenario the same way:

* **disjunctive** (the default): ``P(water | no boat)`` is low, so water alone predicts the
  label; a classifier may answer "boat" from the background and ignore the boat.
* **conjunctive**: ``P(water | no boat)`` is high too (e.g. ``context_given_no_object=0.9``),
  so water alone predicts nothing, yet boats are almost never on land; the context predicts
  the label only together with the boat ("boat shape *and* water"), which the
  counterfactual's boat on land breaks.
* the boat's size (``object_scale``) and its contrast against the background
  (``contrast``): a small or faint boat makes the context the easier cue;
* ``multi_label``: the four classes of :data:`~gainlib.data.render_scenes.CLASSES`, the other
  three present independently of the boat and of the background (as in VOC, where the boat
  is one of several labels).

:class:`ContextScenes` draws one boat (present in half of the images) on water
(:data:`~gainlib.data.render_scenes.CONTEXT_TEXTURES`, the boat's context) or on land
(:func:`~gainlib.data.render_scenes.ground_texture`), plus 0-2 small distractor shapes,
with the scenes benchmark's drawers (:data:`~gainlib.data.render_scenes.OBJECT_DRAWERS`).
The splits (:data:`CONTEXT_SPLITS`) are the biased ones (``train``, ``val``), the unbiased
ones (the oracle's training data: water with P = 0.5 whatever the label) and the
``counterfactual`` test: its first half shows boats on land, its second half water without
boats.

Sample ``i`` of a split depends only on ``(seed, split, i)`` and the scenario (as in
:mod:`gainlib.data.synthetic`), so a longer split extends a shorter one -- except in
``counterfactual``, whose halves are set by ``n``. Changing ``contrast`` changes no random
draw, so two scenarios that differ only there show the same scenes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np

from gainlib.data import drawing as d
from gainlib.data import synthetic
from gainlib.data.protocol import IMAGENET_MEAN, IMAGENET_STD
from gainlib.data.render_scenes import (CLASSES, CONTEXT_TEXTURES, OBJECT_DRAWERS, _distractor,
                                        ground_texture)
from gainlib.data.saliency import SaliencyPrior
from gainlib.data.sample import Transform
from gainlib.data.synthetic import SyntheticBase, sample_rng, saliency_maps

__all__ = ["CONTEXT_SPLITS", "BiasScenario", "ContextScenes"]

SplitKind = Literal["biased", "unbiased", "counterfactual"]

# split name -> (how the background is chosen, default size)
CONTEXT_SPLITS: dict[str, tuple[str, int]] = {
    "train": ("biased", 1000),
    "val": ("biased", 250),            # same bias as train
    "unbiased": ("unbiased", 1000),    # the oracle's training split: context independent of the boat
    "unbiased_val": ("unbiased", 250),
    "counterfactual": ("counterfactual", 200),  # i < n // 2: boat on land; the rest: water, no boat
}

BOAT = CLASSES.index("boat")          # 0: the boat's mask value is BOAT + 1 = 1
WATER = CONTEXT_TEXTURES[BOAT]        # CONTEXT_TEXTURES[c] is CLASSES[c]'s context
SCALE_JITTER = 0.15                   # the boat's half-width: object_scale * (1 +- this)
MAX_ANGLE = 0.15                      # radians, as the scenes benchmark tilts its objects
MIN_BOAT_PIXELS = 3.0                 # object_scale * image_size below this may draw no pixel
DISTRACTORS = (0, 2)                  # min, max number of small random shapes
OTHER_RATE = 0.35                     # multi-label: P(car), P(bird), P(cow), each independent
OTHER_SCALE = (0.14, 0.2)             # their half-width / side: fixed, so object_scale is the boat's alone
PLACEMENT_TRIES = 30                  # rejection sampling of the other objects' centres


@dataclass(frozen=True)
class BiasScenario:
    """How the boat-water bias arises (module notes); validated on construction.

    Attributes:
        name: a label for reports (``"disjunctive"``, ``"conjunctive"``, ...).
        multi_label: ``False``: one class (``("boat",)``, labels ``[N, 1]``); ``True``: the
            four :data:`~gainlib.data.render_scenes.CLASSES`, car, bird and cow each present
            with P = 0.35 independently of everything, the boat still in half of the images.
        context_given_object: P(water background | boat) in the biased splits.
        context_given_no_object: P(water background | no boat) in the biased splits.
        object_scale: the boat's half-width as a share of the image side (jittered +-15 %,
            and shrunk where needed so the tilted boat fits inside the image).
        contrast: in (0, 1]; the boat's pixels are ``contrast * boat + (1 - contrast) *
            background`` (the water or land texture under them): 1 draws the boat in its own
            colours, lower values fade it into its background.
        mask_share: share of training images whose boat mask feeds GAIN_ext's S_e (read by
            the book layer; the generator ignores it).
    """

    name: str = "disjunctive"
    multi_label: bool = False
    context_given_object: float = 0.98
    context_given_no_object: float = 0.02
    object_scale: float = 0.25
    contrast: float = 1.0
    mask_share: float = 0.05

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"BiasScenario.name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.multi_label, bool):
            raise ValueError(f"BiasScenario.multi_label must be True or False, got {self.multi_label!r}")
        # "not low <= x <= high" also rejects NaN
        for field, low, high, low_open in (("context_given_object", 0.0, 1.0, False),
                                           ("context_given_no_object", 0.0, 1.0, False),
                                           ("object_scale", 0.0, 0.45, True),
                                           ("contrast", 0.0, 1.0, True),
                                           ("mask_share", 0.0, 1.0, False)):
            value = getattr(self, field)
            ok = (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
                  and (low < value if low_open else low <= value) and value <= high)
            if not ok:
                interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
                raise ValueError(f"BiasScenario.{field} must lie in {interval}, got {value!r}")
            object.__setattr__(self, field, float(value))   # plain floats: equal after a JSON round trip

    def unbiased(self) -> "BiasScenario":
        """The same scenario with the context independent of the boat (both probabilities 0.5)."""
        return dataclasses.replace(self, name=f"{self.name}-unbiased", context_given_object=0.5,
                                   context_given_no_object=0.5)


# SyntheticBase.load_arrays rebuilds saved dataclasses by name from this registry; registering
# here (rather than importing this module from synthetic.py) avoids a circular import.
synthetic._DESIGN_TYPES["BiasScenario"] = BiasScenario


@functools.lru_cache(maxsize=None)
def _local_extent(cls: int) -> tuple[float, float, float, float]:
    """``(u0, u1, v0, v1)``: the box in local units that class ``cls``'s drawer paints in,
    measured once on a fine grid (so it follows the drawer if its shapes change)."""
    step = 0.005
    grid = np.arange(-2.5, 2.5 + step / 2, step, dtype=np.float32)
    u, v = np.meshgrid(grid, grid)
    drawn = np.logical_or(*OBJECT_DRAWERS[cls](np.zeros((*u.shape, 3), np.float32), u, v,
                                               np.random.default_rng(0), False))
    return (float(u[drawn].min()) - step, float(u[drawn].max()) + step,
            float(v[drawn].min()) - step, float(v[drawn].max()) + step)


def _image_extent(cls: int, scale: float, angle: float, mirror: bool) -> tuple[float, float, float, float]:
    """``(dx0, dx1, dy0, dy1)``: pixels from the centre that bound the drawn object (the
    inverse of :meth:`~gainlib.data.drawing.Frame.local` applied to its local box's corners)."""
    u0, u1, v0, v1 = _local_extent(cls)
    cos, sin = math.cos(angle), math.sin(angle)
    dx, dy = [], []
    for u in (u0, u1):
        for v in (v0, v1):
            u = -u if mirror else u
            dx.append(scale * (cos * u + sin * v))
            dy.append(scale * (-sin * u + cos * v))
    return min(dx), max(dx), min(dy), max(dy)


def _draw(canvas: np.ndarray, mask: np.ndarray, cls: int, frame: d.Frame,
          rng: np.random.Generator) -> tuple[tuple[slice, slice], np.ndarray]:
    """Draw class ``cls`` at ``frame``; its pixels overwrite ``mask`` with ``cls + 1``."""
    size = canvas.shape[0]
    xx, yy = d.pixel_centres(size)
    dx0, dx1, dy0, dy1 = _image_extent(cls, frame.scale, frame.angle, frame.mirror)
    half = max(abs(dx0), abs(dx1), abs(dy0), abs(dy1)) + 1.0
    rows, cols = d.window(frame.cx, frame.cy, half, size)
    u, v = frame.local(xx[rows, cols], yy[rows, cols])
    body, part = OBJECT_DRAWERS[cls](canvas[rows, cols], u, v, rng, False)
    drawn = body | part
    mask[rows, cols][drawn] = cls + 1
    return (rows, cols), drawn


class ContextScenes(SyntheticBase):
    """A boat in half of the images, on water or land as the split and scenario say (module notes).

    Args:
        split: one of :data:`CONTEXT_SPLITS` (``train``, ``val``, ``unbiased``,
            ``unbiased_val``, ``counterfactual``).
        n: number of images (default from :data:`CONTEXT_SPLITS`). In the biased and
            unbiased splits image ``i`` shows a boat iff ``i`` is even; in ``counterfactual``
            images ``i < n // 2`` show a boat on land, the others water without a boat.
        scenario: the bias mechanism, a :class:`BiasScenario`.
        image_size: side in pixels (at least 16; 32 and 64 are the intended sizes).
        seed, saliency, transforms, mean, std: as for :class:`~gainlib.data.SyntheticScenes`
            (no saliency prior by default).

    Public arrays: ``images`` (uint8 ``[N, H, W, 3]``), ``masks`` (uint8 ``[N, H, W]``: 0
    background, ``c + 1`` the visible pixels of class ``c``; the boat is 1), ``labels``
    (float32 ``[N, C]``, read off the masks), ``boxes``/``box_labels`` (one box per visible
    object), ``ids``, ``saliency`` (``None`` without a prior), ``context_present`` (bool
    ``[N]``: water background), ``object_present`` (bool ``[N]``: a boat) and
    ``distractor_masks`` (bool ``[N, H, W]``: the distractor shapes' visible pixels);
    ``classes`` is ``("boat",)``, or :data:`~gainlib.data.render_scenes.CLASSES` with
    ``scenario.multi_label``.
    """

    def __init__(self, split: str = "train", n: int | None = None, *,
                 scenario: BiasScenario = BiasScenario(), image_size: int = 32, seed: int = 0,
                 saliency: SaliencyPrior | None = None, transforms: Transform | None = None,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        if split not in CONTEXT_SPLITS:
            raise KeyError(f"unknown context split {split!r}; choose from {sorted(CONTEXT_SPLITS)}")
        if not isinstance(scenario, BiasScenario):
            raise TypeError(f"scenario must be a BiasScenario, got {type(scenario).__name__}")
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0):
            raise ValueError(f"n must be a non-negative integer (the number of images), got {n!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 16:
            raise ValueError(f"image_size must be an integer of at least 16 pixels, got {image_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if scenario.object_scale * image_size < MIN_BOAT_PIXELS:
            raise ValueError(f"scenario.object_scale={scenario.object_scale:g} at image_size={image_size} "
                             f"gives a boat {scenario.object_scale * image_size:.2g} px in half-width; at "
                             f"least {MIN_BOAT_PIXELS:g} px are needed for it to show reliably")
        kind, default_n = CONTEXT_SPLITS[split]
        self.split, self.kind, self.scenario = split, kind, scenario
        self.image_size, self.seed = int(image_size), int(seed)     # plain ints: saved as JSON
        self.classes = CLASSES if scenario.multi_label else (CLASSES[BOAT],)
        count = default_n if n is None else int(n)
        plans = [self._plan(i, count) for i in range(count)]
        rendered = [self._render(sample_rng(seed, "context", split, i), *plan)
                    for i, plan in enumerate(plans)]
        size = (count, self.image_size, self.image_size)
        self.images = np.stack([r[0] for r in rendered]) if rendered else np.zeros((*size, 3), np.uint8)
        self.masks = np.stack([r[1] for r in rendered]) if rendered else np.zeros(size, np.uint8)
        self.distractor_masks = np.stack([r[2] for r in rendered]) if rendered else np.zeros(size, bool)
        self.context_present = np.array([r[3] for r in rendered], bool).reshape(count)
        self.object_present = np.array([boat for boat, _ in plans], bool).reshape(count)
        # Labels, boxes: read off the final masks, so an object hidden by a later one can't
        # leave them stale (the boat is drawn last and never hidden).
        k = len(self.classes)
        self.labels = np.stack([(self.masks == c + 1).any(axis=(1, 2)) for c in range(k)], 1).astype(np.float32) \
            if count else np.zeros((0, k), np.float32)
        self.boxes, self.box_labels = [], []
        for mask in self.masks:
            boxes, labels = [], []
            for c in range(k):
                ys, xs = np.nonzero(mask == c + 1)
                if len(ys):
                    boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                    labels.append(c)
            self.boxes.append(np.asarray(boxes, np.float32).reshape(-1, 4))
            self.box_labels.append(np.asarray(labels, np.int64))
        self.ids = [f"context-{split}-{i:06d}" for i in range(count)]
        self.saliency = saliency_maps(self.images, saliency)
        super().__init__(transforms, mean, std)

    def _plan(self, i: int, count: int) -> tuple[bool, float | bool]:
        """(boat present, P(water) -- or the background itself where the split fixes it)."""
        if self.kind == "counterfactual":
            boat = i < count // 2
            return boat, not boat                     # a boat on land, or water without a boat
        boat = i % 2 == 0                             # balanced, in every prefix of the split
        if self.kind == "unbiased":
            return boat, 0.5
        s = self.scenario
        return boat, s.context_given_object if boat else s.context_given_no_object

    def _render(self, rng: np.random.Generator, boat: bool,
                water: float | bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        size, s = self.image_size, self.scenario
        xx, yy = d.pixel_centres(size)
        # Always one draw for the background choice, so that every scenario (and the
        # counterfactual) reads the rest of the stream from the same place.
        draw = rng.random()
        on_water = bool(water) if isinstance(water, bool) else bool(draw < water)
        background = (WATER if on_water else ground_texture)(rng, xx, yy, size / 64.0)
        canvas = background.copy()
        for _ in range(int(rng.integers(DISTRACTORS[0], DISTRACTORS[1] + 1))):
            _distractor(canvas, xx, yy, rng, size / 64.0)
        distractors = (canvas != background).any(-1)
        mask = np.zeros((size, size), np.uint8)

        # The boat's frame is drawn whether or not it is shown: the other objects then take
        # the same draws in images with and without a boat.
        frame = self._boat_frame(rng)
        if s.multi_label:
            for cls in range(len(CLASSES)):
                if cls == BOAT:
                    continue
                present = rng.random() < OTHER_RATE
                other = self._other_frame(rng, frame if boat else None)
                if present:
                    _draw(canvas, mask, cls, other, rng)
        if boat:
            (rows, cols), drawn = _draw(canvas, mask, BOAT, frame, rng)
            window = canvas[rows, cols]                 # a view: writing it writes the canvas
            window[drawn] = s.contrast * window[drawn] + (1.0 - s.contrast) * background[rows, cols][drawn]
        image = (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return image, mask, distractors & (mask == 0), on_water

    def _boat_frame(self, rng: np.random.Generator) -> d.Frame:
        """The boat's pose, fully inside the image (shrunk where the jittered size can't fit)."""
        size = self.image_size
        scale = size * self.scenario.object_scale * rng.uniform(1 - SCALE_JITTER, 1 + SCALE_JITTER)
        angle, mirror = rng.uniform(-MAX_ANGLE, MAX_ANGLE), bool(rng.random() < 0.5)
        dx0, dx1, dy0, dy1 = _image_extent(BOAT, scale, angle, mirror)
        shrink = min(1.0, size / (dx1 - dx0), size / (dy1 - dy0))
        dx0, dx1, dy0, dy1 = (shrink * e for e in (dx0, dx1, dy0, dy1))
        # max(): where the boat was shrunk to fit exactly, rounding may leave high a hair below low
        cx = rng.uniform(-dx0, max(size - dx1, -dx0))
        cy = rng.uniform(-dy0, max(size - dy1, -dy0))
        return d.Frame(cx, cy, scale=scale * shrink, angle=angle, mirror=mirror)

    def _other_frame(self, rng: np.random.Generator, boat: d.Frame | None) -> d.Frame:
        """Another object's pose: anywhere (possibly cut by the border), its centre away from
        the boat's; the farthest of a few tries when none is far enough."""
        size = self.image_size
        scale = size * rng.uniform(*OTHER_SCALE)
        angle, mirror = rng.uniform(-MAX_ANGLE, MAX_ANGLE), bool(rng.random() < 0.5)
        best, best_distance = (size / 2, size / 2), -1.0
        for _ in range(PLACEMENT_TRIES):
            centre = rng.uniform(0.1 * size, 0.9 * size, 2)
            if boat is None:
                best = centre
                break
            distance = math.hypot(centre[0] - boat.cx, centre[1] - boat.cy)
            if distance > best_distance:
                best, best_distance = centre, distance
            if distance >= boat.scale + 0.8 * scale:    # at most their edges overlap
                break
        return d.Frame(float(best[0]), float(best[1]), scale=scale, angle=angle, mirror=mirror)

    def context_masks(self) -> np.ndarray:
        """``bool [N, H, W]``: the visible context pixels, water not covered by an object or a
        distractor (all False on land images)."""
        return self.context_present[:, None, None] & (self.masks == 0) & ~self.distractor_masks

    def statistics(self) -> dict[str, Any]:
        """Measured on the arrays: ``images``, ``p_context_given_object`` (P(water | a boat is
        visible)), ``p_context_given_no_object``, ``object_share`` (images with a boat),
        ``object_area`` (mean share of the image the boat covers, over images with one),
        ``context_area`` (mean visible water share, over water images) and ``label_share``
        (per class, the share of images with the label)."""
        boat_px = (self.masks == BOAT + 1).sum(axis=(1, 2))
        has = boat_px > 0
        water = self.context_present
        pixels = float(self.image_size ** 2)
        return {
            "split": self.split, "kind": self.kind, "scenario": self.scenario.name, "images": len(self),
            "p_context_given_object": _mean(water[has]),
            "p_context_given_no_object": _mean(water[~has]),
            "object_share": _mean(has),
            "object_area": _mean(boat_px[has] / pixels),
            "context_area": _mean(self.context_masks()[water].sum(axis=(1, 2)) / pixels),
            "label_share": {name: _mean(self.labels[:, c]) for c, name in enumerate(self.classes)},
        }


def _mean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) if values.size else float("nan")
