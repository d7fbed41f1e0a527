"""Multi-label "context" scenes: objects with a small discriminative part, context patches, decoys.

A scene is a 2 x 2 grid of slots on a neutral ground. A slot holds an object (optionally on
a patch of its class's usual *context*: boat-water, car-road, bird-sky, cow-grass), a context
patch without its object (an *orphan* patch), a *decoy* (an object's body without its
discriminative part), or nothing. Small random shapes are scattered on top of the ground as
distractors. :func:`plan_scene` decides the layout (this is where the context bias lives),
:func:`render_scene` draws it. Paper link: the part/body split reproduces the "small and most
discriminative regions" that plain classification attention covers (Li et al., Sec. 3.1);
the context patches reproduce the boat/water bias of Sec. 5.1 and Table 7.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np

from gainlib.data import drawing as d

CLASSES: tuple[str, ...] = ("boat", "car", "bird", "cow")
CONTEXTS: tuple[str, ...] = ("water", "road", "sky", "grass")   # CONTEXTS[c] is CLASSES[c]'s context

OBJECT_RATE = 0.35        # P(class present) in the in-distribution splits
MAX_OBJECTS = 3           # at most 3 of the 4 slots hold objects
DECOY_RATE = 0.5          # P(one decoy body in a free slot)
DISTRACTORS = (1, 3)      # min, max number of small random shapes
OBJECT_SCALE = (0.2, 0.38)  # object half-width / slot side; small objects make context tempting, as in VOC

SplitKind = Literal["biased", "no_context", "context_only", "biased_boat"]


@dataclass
class SlotContent:
    kind: Literal["object", "orphan_context", "decoy"]
    cls: int                         # class index (for an orphan patch: whose context it is)
    on_context: bool = False         # objects only: drawn on their usual context patch


@dataclass
class ScenePlan:
    slots: list[SlotContent | None] = field(default_factory=lambda: [None] * 4)


@dataclass
class RenderedScene:
    image: np.ndarray        # uint8 [H, W, 3]
    mask: np.ndarray         # uint8 [H, W]: 0 background, c + 1 for class c
    part_mask: np.ndarray    # bool [H, W]: the discriminative parts of real objects
    context_map: np.ndarray  # uint8 [H, W]: 0 ground, k + 1 where CONTEXTS[k] is drawn
    boxes: np.ndarray        # float32 [N, 4] xyxy, one per object
    box_labels: np.ndarray   # int64 [N]
    labels: np.ndarray       # float32 [C] multi-hot


# --- planning: where the bias lives -----------------------------------------------------------

def plan_scene(rng: np.random.Generator, kind: SplitKind, context_bias: float, index: int = 0) -> ScenePlan:
    """Decide what each slot holds.

    ``biased``: each class is present with probability ``OBJECT_RATE``; a present object sits
    on its context with probability ``context_bias``; for each absent class an orphan context
    patch appears with probability ``1 - context_bias``. So ``P(context_c | c) = b`` and
    ``P(context_c | not c) ~= 1 - b`` (``b = 0.5`` makes context independent of the label).
    ``no_context``: objects never on their context, no orphan patches (object without its
    usual context). ``context_only``: 1-2 orphan patches, no objects (context without the
    object). ``biased_boat``: even ``index``: a boat without water, odd: water without a boat
    (the Biased Boat test of Table 7, 50 images of each).
    """
    n_classes = len(CLASSES)
    plan = ScenePlan()
    free = list(rng.permutation(4))

    def put(content: SlotContent) -> bool:
        if not free:
            return False
        plan.slots[free.pop()] = content
        return True

    if kind == "biased":
        present = [c for c in range(n_classes) if rng.random() < OBJECT_RATE]
        if len(present) > MAX_OBJECTS:
            present = sorted(rng.choice(present, MAX_OBJECTS, replace=False).tolist())
        for c in present:
            put(SlotContent("object", c, on_context=bool(rng.random() < context_bias)))
        for c in rng.permutation(n_classes):
            if c not in present and rng.random() < 1.0 - context_bias:
                put(SlotContent("orphan_context", int(c)))
    elif kind == "no_context":
        present: list[int] = []
        while not present:
            present = [c for c in range(n_classes) if rng.random() < OBJECT_RATE]
        if len(present) > MAX_OBJECTS:
            present = sorted(rng.choice(present, MAX_OBJECTS, replace=False).tolist())
        for c in present:
            put(SlotContent("object", c, on_context=False))
    elif kind == "context_only":
        for c in rng.choice(n_classes, int(rng.integers(1, 3)), replace=False):
            put(SlotContent("orphan_context", int(c)))
    elif kind == "biased_boat":
        boat = CLASSES.index("boat")
        if index % 2 == 0:
            put(SlotContent("object", boat, on_context=False))
        else:
            put(SlotContent("orphan_context", boat))
    else:
        raise ValueError(f"unknown split kind {kind!r}")
    if rng.random() < DECOY_RATE:
        put(SlotContent("decoy", int(rng.integers(n_classes))))
    return plan


# --- textures ---------------------------------------------------------------------------------

def _ground(rng, xx, yy, s):
    base = d.hsv(rng.uniform(0.04, 0.16), rng.uniform(0.05, 0.35), rng.uniform(0.45, 0.8))
    return base + d.noise(rng, xx.shape, 0.025)


def _water(rng, xx, yy, s):
    base = d.hsv(rng.uniform(0.54, 0.62), rng.uniform(0.55, 0.85), rng.uniform(0.5, 0.75))
    wavelength = s * rng.uniform(4.0, 7.0)
    phase = rng.uniform(0, 2 * np.pi)
    waves = np.sin(2 * np.pi * yy / wavelength + 1.2 * np.sin(2 * np.pi * xx / (3 * wavelength)) + phase)
    return base + 0.09 * (waves > 0.6)[..., None] + d.noise(rng, xx.shape, 0.02)


def _road(rng, xx, yy, s):
    base = d.hsv(0.0, 0.0, rng.uniform(0.22, 0.38))
    period = s * rng.uniform(10.0, 14.0)
    lane = (np.abs(((yy / period + rng.random()) % 1.0) - 0.5) * period < 0.8 * s)
    dash = ((xx / (5.0 * s) + rng.random()) % 1.0) < 0.55
    return base + 0.55 * (lane & dash)[..., None] + d.noise(rng, xx.shape, 0.02)


def _sky(rng, xx, yy, s):
    base = d.hsv(rng.uniform(0.55, 0.6), rng.uniform(0.25, 0.5), rng.uniform(0.85, 0.98))
    image = np.broadcast_to(base, (*xx.shape, 3)).copy()
    for _ in range(int(rng.integers(2, 5))):
        cloud = d.ellipse(xx, yy, rng.uniform(xx.min(), xx.max()), rng.uniform(yy.min(), yy.max()),
                          s * rng.uniform(3, 7), s * rng.uniform(1.5, 3))
        image[cloud] = d.jitter(rng, (0.97, 0.97, 0.98), 0.02)
    return image


def _grass(rng, xx, yy, s):
    base = d.hsv(rng.uniform(0.24, 0.34), rng.uniform(0.5, 0.8), rng.uniform(0.35, 0.6))
    return base + d.noise(rng, xx.shape, 0.07)


CONTEXT_TEXTURES: tuple[Callable, ...] = (_water, _road, _sky, _grass)


# --- objects: each returns (body, part) boolean masks after painting --------------------------

def _boat(canvas, u, v, rng, decoy):
    hull = d.polygon(u, v, [(-1.0, 0.2), (1.0, 0.2), (0.65, 0.7), (-0.65, 0.7)])
    mast = d.rectangle(u, v, -0.07, -0.95, 0.07, 0.2)
    sail = d.polygon(u, v, [(0.12, -0.85), (0.12, 0.12), (0.85, 0.12)])
    d.paint(canvas, sail, d.random_colour(rng, s=(0.0, 0.25), v=(0.75, 1.0)))
    d.paint(canvas, mast, d.jitter(rng, (0.3, 0.2, 0.1)))
    d.paint(canvas, hull, d.random_colour(rng))
    body = hull | mast | sail
    if decoy:
        return body, np.zeros_like(body)
    flag = d.polygon(u, v, [(-0.07, -1.1), (-0.07, -0.7), (-0.7, -0.9)])
    d.paint(canvas, flag, d.jitter(rng, (0.95, 0.1, 0.1)))
    return body & ~flag, flag


def _car(canvas, u, v, rng, decoy):
    chassis = d.superellipse(u, v, 0.0, 0.2, 1.0, 0.3, power=4)
    cabin = d.polygon(u, v, [(-0.55, 0.0), (0.45, 0.0), (0.3, -0.45), (-0.4, -0.45)])
    window = d.polygon(u, v, [(-0.42, -0.05), (0.32, -0.05), (0.22, -0.36), (-0.32, -0.36)])
    colour = d.random_colour(rng)
    d.paint(canvas, chassis | cabin, colour)
    d.paint(canvas, window, np.clip(colour * 0.5 + 0.45, 0, 1))
    body = chassis | cabin
    if decoy:
        return body, np.zeros_like(body)
    wheels = d.disk(u, v, -0.55, 0.48, 0.21) | d.disk(u, v, 0.55, 0.48, 0.21)
    hubs = d.disk(u, v, -0.55, 0.48, 0.09) | d.disk(u, v, 0.55, 0.48, 0.09)
    d.paint(canvas, wheels, d.jitter(rng, (0.05, 0.05, 0.05), 0.03))
    d.paint(canvas, hubs, d.jitter(rng, (0.85, 0.85, 0.85), 0.05))
    return body & ~wheels, wheels


def _bird(canvas, u, v, rng, decoy):
    torso = d.ellipse(u, v, -0.05, 0.1, 0.72, 0.4)
    tail = d.polygon(u, v, [(-0.6, 0.05), (-1.05, -0.22), (-1.05, 0.3)])
    head = d.disk(u, v, 0.62, -0.3, 0.3)
    wing = d.ellipse(u, v, -0.15, 0.02, 0.45, 0.2)
    colour = d.random_colour(rng)
    d.paint(canvas, torso | tail | head, colour)
    d.paint(canvas, wing, colour * 0.6)
    body = torso | tail | head
    if decoy:
        return body, np.zeros_like(body)
    beak = d.polygon(u, v, [(0.85, -0.45), (0.85, -0.17), (1.35, -0.31)])
    eye = d.disk(u, v, 0.68, -0.38, 0.1)
    d.paint(canvas, beak, d.jitter(rng, (1.0, 0.6, 0.05)))
    d.paint(canvas, eye, d.jitter(rng, (0.02, 0.02, 0.02), 0.02))
    part = beak | eye
    return body & ~part, part


def _cow(canvas, u, v, rng, decoy):
    torso = d.superellipse(u, v, -0.2, -0.05, 0.72, 0.32, power=4)
    legs = np.zeros_like(torso)
    for x in (-0.78, -0.52, 0.12, 0.38):
        legs |= d.rectangle(u, v, x, 0.2, x + 0.14, 0.65)
    colour = d.random_colour(rng)
    d.paint(canvas, torso | legs, colour)
    spots = (d.ellipse(u, v, -0.45, -0.1, 0.18, 0.12) | d.ellipse(u, v, 0.05, 0.05, 0.15, 0.1)) & torso
    d.paint(canvas, spots, colour * 0.5)
    body = torso | legs
    if decoy:
        return body, np.zeros_like(body)
    face = d.superellipse(u, v, 0.72, -0.32, 0.22, 0.26, power=3)
    horns = (d.polygon(u, v, [(0.55, -0.5), (0.68, -0.52), (0.52, -0.78)])
             | d.polygon(u, v, [(0.76, -0.52), (0.89, -0.5), (0.92, -0.78)]))
    nose = d.ellipse(u, v, 0.72, -0.14, 0.15, 0.09)
    d.paint(canvas, face, d.jitter(rng, (0.95, 0.93, 0.88), 0.04))
    d.paint(canvas, horns, d.jitter(rng, (0.25, 0.2, 0.15), 0.04))
    d.paint(canvas, nose, d.jitter(rng, (0.95, 0.6, 0.65), 0.04))
    part = face | horns | nose
    return body & ~part, part


OBJECT_DRAWERS: tuple[Callable, ...] = (_boat, _car, _bird, _cow)


def _distractor(canvas, xx, yy, rng, s):
    size = xx.shape[0]
    cx, cy = rng.uniform(0, size, 2)
    r = s * rng.uniform(2.0, 5.0)
    rows, cols = d.window(cx, cy, r + 1, size)
    xx, yy = xx[rows, cols], yy[rows, cols]
    shape = int(rng.integers(3))
    if shape == 0:
        where = d.rectangle(xx, yy, cx - r, cy - r * rng.uniform(0.4, 1.0), cx + r, cy + r * rng.uniform(0.4, 1.0))
    elif shape == 1:
        where = d.disk(xx, yy, cx, cy, r)
    else:
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2.1, 4.2])
        where = d.polygon(xx, yy, [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles])
    d.paint(canvas[rows, cols], where, d.random_colour(rng))


# --- rendering --------------------------------------------------------------------------------

def render_scene(rng: np.random.Generator, plan: ScenePlan, size: int) -> RenderedScene:
    """Draw ``plan`` at ``size x size`` pixels; geometry is relative, so sizes 64-128 look alike."""
    xx, yy = d.pixel_centres(size)
    s = size / 64.0                       # texture scale: features keep their relative size
    slot = size / 2.0
    canvas = _ground(rng, xx, yy, s)
    context_map = np.zeros((size, size), np.uint8)
    frames: dict[int, d.Frame] = {}
    for i, content in enumerate(plan.slots):
        if content is None:
            continue
        cx = (i % 2 + 0.5) * slot + rng.uniform(-0.06, 0.06) * slot
        cy = (i // 2 + 0.5) * slot + rng.uniform(-0.06, 0.06) * slot
        if content.kind == "orphan_context" or content.on_context:
            rows, cols = d.window(cx, cy, 0.57 * slot, size)
            wx, wy = xx[rows, cols], yy[rows, cols]
            patch = d.superellipse(wx, wy, cx, cy, slot * rng.uniform(0.44, 0.5),
                                   slot * rng.uniform(0.4, 0.5), power=rng.uniform(2.0, 5.0))
            texture = CONTEXT_TEXTURES[content.cls](rng, wx, wy, s)
            canvas[rows, cols][patch] = texture[patch]
            context_map[rows, cols][patch] = content.cls + 1
        if content.kind != "orphan_context":
            frames[i] = d.Frame(cx, cy, scale=slot * rng.uniform(*OBJECT_SCALE),
                                angle=rng.uniform(-0.15, 0.15), mirror=bool(rng.random() < 0.5))
    for _ in range(int(rng.integers(DISTRACTORS[0], DISTRACTORS[1] + 1))):
        _distractor(canvas, xx, yy, rng, s)

    # Decoys first, so that a real object is never hidden by a decoy from a neighbouring slot;
    # boxes and labels are read off the final instance map, so occlusion can't leave them stale.
    instance = np.zeros((size, size), np.int16)          # 0 none, k + 1 for the k-th object
    part_mask = np.zeros((size, size), bool)
    objects: list[int] = []
    for i, frame in sorted(frames.items(), key=lambda item: plan.slots[item[0]].kind != "decoy"):
        content = plan.slots[i]
        rows, cols = d.window(frame.cx, frame.cy, 0.62 * slot, size)
        u, v = frame.local(xx[rows, cols], yy[rows, cols])
        decoy = content.kind == "decoy"
        body, part = OBJECT_DRAWERS[content.cls](canvas[rows, cols], u, v, rng, decoy)
        drawn = body | part
        part_mask[rows, cols][drawn] = part[drawn]
        if decoy:
            instance[rows, cols][drawn] = 0          # a decoy is background for every class
            continue
        objects.append(content.cls)
        instance[rows, cols][drawn] = len(objects)
    mask = np.zeros((size, size), np.uint8)
    labels = np.zeros(len(CLASSES), np.float32)
    boxes, box_labels = [], []
    for k, cls in enumerate(objects, start=1):
        where = instance == k
        if not where.any():
            continue
        mask[where] = cls + 1
        labels[cls] = 1.0
        ys, xs = np.nonzero(where)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        box_labels.append(cls)
    part_mask &= instance > 0
    image = (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return RenderedScene(
        image=image, mask=mask, part_mask=part_mask, context_map=context_map,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        box_labels=np.asarray(box_labels, np.int64), labels=labels,
    )
