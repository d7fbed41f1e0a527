"""Multi-label "context" scenes: objects with a small discriminative part, context patches, decoys.

A scene is a 2 x 2 grid of slots on a neutral ground. A slot holds an object (optionally on
a patch of its class's usual *context*: boat-water, car-road, bird-sky, cow-grass), a context
patch without its object (an *orphan* patch), a *decoy* (an object's body without its
discriminative part), or nothing. Small random shapes are scattered on top of the ground as
distractors. :func:`plan_scene` decides the layout (this is where the context bias lives),
:func:`render_scene` draws it. Paper link: the part/body split reproduces the "small and most
discriminative regions" that plain classification attention covers (Li et al., Sec. 3.1);
the context patches reproduce the boat/water bias of Sec. 5.1 and Table 7.

A :class:`SceneDesign` holds the knobs of the layout and the palettes; :data:`SCENE_DESIGNS`
names two: ``"v1"`` (the defaults: the benchmark as first published, byte for byte) and
``"v2"``, redesigned so that the Biased Boat claim can succeed or fail: objects and parts large
enough to be learnt without their context, decoys that stand on contexts as often as objects
do, and palettes that keep clear of the neutral grey that erased pixels take under the
design's own normalisation (:attr:`SceneDesign.mean`). ``book/datasets.md`` gives the measured
effect of each change.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
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
NEUTRAL_GREY = (0.5, 0.5, 0.5)  # v2's normalisation mean, so its erased value: no v2 palette comes near it

SplitKind = Literal["biased", "no_context", "context_only", "biased_boat"]


@dataclass(frozen=True)
class SceneDesign:
    """The knobs of the scenes' layout and palettes (defaults: ``"v1"``, the published benchmark).

    Attributes:
        object_scale: range of an object's half-width as a share of its slot's side.
        part_scale: size of each discriminative part (flag, wheels, beak and eye, face) relative
            to v1's, scaled about where it meets the body (the wheels about their hubs); the
            body is unchanged.
        decoy_rate: P(an image holds a decoy: a class's body without its part, labelled background).
        decoys_on_context: in the biased splits a decoy stands on its class's context with
            probability ``context_bias``, as an object does (v1: always on plain ground, so a
            flagless boat body on ground was a common negative that duplicated the "boat without
            water" counterfactual).
        grey_free: palettes that keep away from :data:`NEUTRAL_GREY`: a more saturated ground
            and a darker road (v1's ground could be almost grey).
        second_instance: P(a present object of the biased splits has a second instance of its
            class in a free slot), drawn ``second_scale`` times as large, so that the
            classifier's attention can peak on one instance and leave the other's evidence
            below the soft mask's threshold (what attention mining needs; v1: never).
        second_scale: the second instance's size relative to a first one's.
        mean, std: the images' normalisation (:func:`gainlib.data.build_sample`); erased pixels of
            the masked image (Eq. 3) take the ``mean`` colour. ``None``: ImageNet's, whose mean,
            HSV ~ (0.10, 0.16, 0.49), lies inside v1's ground palette.
    """

    object_scale: tuple[float, float] = OBJECT_SCALE
    part_scale: float = 1.0
    decoy_rate: float = DECOY_RATE
    decoys_on_context: bool = False
    grey_free: bool = False
    second_instance: float = 0.0
    second_scale: float = 0.7
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        low, high = self.object_scale
        if not 0.05 <= low <= high <= 0.5:
            raise ValueError(f"object_scale must satisfy 0.05 <= low <= high <= 0.5 (an object stays in "
                             f"its slot), got {self.object_scale}")
        if not 0.5 <= self.part_scale <= 2.0:
            raise ValueError(f"part_scale must be in [0.5, 2], got {self.part_scale}")
        if not 0.0 <= self.second_instance <= 1.0:
            raise ValueError(f"second_instance must be a probability, got {self.second_instance}")
        if not 0.5 <= self.second_scale <= 1.0:
            raise ValueError(f"second_scale must be in [0.5, 1], got {self.second_scale}")
        if not 0.0 <= self.decoy_rate <= 1.0:
            raise ValueError(f"decoy_rate must be a probability, got {self.decoy_rate}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither (ImageNet's)")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    def changes(self) -> dict[str, object]:
        """The fields that differ from v1's, ``{name: value}``."""
        v1 = SceneDesign()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(v1, f.name)}


SCENE_DESIGNS: dict[str, SceneDesign] = {
    "v1": SceneDesign(),
    # Measured in benchmarks/preconditions.py; each change and what it did: book/datasets.md.
    "v2": SceneDesign(object_scale=(0.34, 0.46), part_scale=1.4, decoy_rate=0.15,
                      decoys_on_context=True, grey_free=True,
                      # the std: v2 pixels' root-mean-square distance from that grey (64 px
                      # train split). The data's own mean, about (0.63, 0.57, 0.44), is its
                      # ground's colour: erasing to it would again read as ground.
                      mean=NEUTRAL_GREY, std=(0.25, 0.18, 0.19)),
}
# v3: v2 with a second, smaller instance of a present class in half the cases, the first
# design on which the classifier's erased images still hold something to mine (at 64 px).
SCENE_DESIGNS["v3"] = replace(SCENE_DESIGNS["v2"], second_instance=0.5)


def scene_design(design: "str | SceneDesign") -> SceneDesign:
    """``design`` itself, or the :data:`SCENE_DESIGNS` entry of that name."""
    if isinstance(design, SceneDesign):
        return design
    if design not in SCENE_DESIGNS:
        raise KeyError(f"unknown scene design {design!r}; choose from {sorted(SCENE_DESIGNS)} "
                       "or pass a SceneDesign")
    return SCENE_DESIGNS[design]


@dataclass
class SlotContent:
    kind: Literal["object", "orphan_context", "decoy"]
    cls: int                         # class index (for an orphan patch: whose context it is)
    on_context: bool = False         # objects (and v2's decoys): drawn on their class's context patch
    scale: float = 1.0               # size relative to design.object_scale (a second instance)


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

def plan_scene(rng: np.random.Generator, kind: SplitKind, context_bias: float, index: int = 0,
               design: SceneDesign = SCENE_DESIGNS["v1"]) -> ScenePlan:
    """Decide what each slot holds.

    ``biased``: each class is present with probability ``OBJECT_RATE``; a present object sits
    on its context with probability ``context_bias``; for each absent class an orphan context
    patch appears with probability ``1 - context_bias``. So ``P(context_c | c) = b`` and
    ``P(context_c | not c) ~= 1 - b`` (``b = 0.5`` makes context independent of the label).
    ``no_context``: objects never on their context, no orphan patches (object without its
    usual context). ``context_only``: 1-2 orphan patches, no objects (context without the
    object). ``biased_boat``: even ``index``: a boat without water, odd: water without a boat
    (the Biased Boat test of Table 7, 50 images of each).

    In ``biased`` splits a present object has a second, smaller instance of its class in a free
    slot with probability ``design.second_instance`` (v3; the counterfactual splits never).
    Any split may add one decoy (probability ``design.decoy_rate``) in a free slot; with
    ``design.decoys_on_context`` a decoy of the ``biased`` splits stands on its class's context
    with probability ``context_bias``, like an object (the counterfactual splits keep theirs on
    plain ground, so they stay counterfactual).
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
        if design.second_instance > 0:     # v1 draws nothing here: its scenes stay as they were
            for c in present:
                if rng.random() < design.second_instance:
                    put(SlotContent("object", c, on_context=bool(rng.random() < context_bias),
                                    scale=design.second_scale))
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
    if rng.random() < design.decoy_rate:
        cls = int(rng.integers(n_classes))
        # v1 draws nothing more here, so its scenes stay byte for byte what they were.
        on_context = kind == "biased" and design.decoys_on_context and bool(rng.random() < context_bias)
        put(SlotContent("decoy", cls, on_context=on_context))
    return plan


# --- textures ---------------------------------------------------------------------------------

def ground_texture(rng, xx, yy, s, grey_free=False):
    """A noisy earth-coloured background on the grid ``xx, yy`` (scale ``s``: the image side
    over 64). ``grey_free`` keeps saturation and value off the neutral grey that erased pixels
    take."""
    saturation, value = ((0.3, 0.55), (0.62, 0.85)) if grey_free else ((0.05, 0.35), (0.45, 0.8))
    base = d.hsv(rng.uniform(0.04, 0.16), rng.uniform(*saturation), rng.uniform(*value))
    return base + d.noise(rng, xx.shape, 0.025)


# Water, sky and grass are far from grey in both designs; they take grey_free for one signature.
def _water(rng, xx, yy, s, grey_free=False):
    base = d.hsv(rng.uniform(0.54, 0.62), rng.uniform(0.55, 0.85), rng.uniform(0.5, 0.75))
    wavelength = s * rng.uniform(4.0, 7.0)
    phase = rng.uniform(0, 2 * np.pi)
    waves = np.sin(2 * np.pi * yy / wavelength + 1.2 * np.sin(2 * np.pi * xx / (3 * wavelength)) + phase)
    return base + 0.09 * (waves > 0.6)[..., None] + d.noise(rng, xx.shape, 0.02)


def _road(rng, xx, yy, s, grey_free=False):
    base = d.hsv(0.0, 0.0, rng.uniform(*((0.15, 0.3) if grey_free else (0.22, 0.38))))
    period = s * rng.uniform(10.0, 14.0)
    lane = (np.abs(((yy / period + rng.random()) % 1.0) - 0.5) * period < 0.8 * s)
    dash = ((xx / (5.0 * s) + rng.random()) % 1.0) < 0.55
    return base + 0.55 * (lane & dash)[..., None] + d.noise(rng, xx.shape, 0.02)


def _sky(rng, xx, yy, s, grey_free=False):
    base = d.hsv(rng.uniform(0.55, 0.6), rng.uniform(0.25, 0.5), rng.uniform(0.85, 0.98))
    image = np.broadcast_to(base, (*xx.shape, 3)).copy()
    for _ in range(int(rng.integers(2, 5))):
        cloud = d.ellipse(xx, yy, rng.uniform(xx.min(), xx.max()), rng.uniform(yy.min(), yy.max()),
                          s * rng.uniform(3, 7), s * rng.uniform(1.5, 3))
        image[cloud] = d.jitter(rng, (0.97, 0.97, 0.98), 0.02)
    return image


def _grass(rng, xx, yy, s, grey_free=False):
    base = d.hsv(rng.uniform(0.24, 0.34), rng.uniform(0.5, 0.8), rng.uniform(0.35, 0.6))
    return base + d.noise(rng, xx.shape, 0.07)


CONTEXT_TEXTURES: tuple[Callable, ...] = (_water, _road, _sky, _grass)


# --- objects: each returns (body, part) boolean masks after painting --------------------------

def _grown(u, v, anchor, scale):
    """Local coordinates in which a shape drawn as usual comes out ``scale`` times larger about
    ``anchor`` (how ``part_scale`` enlarges a part where it meets the body)."""
    if scale == 1.0:
        return u, v
    ax, ay = anchor
    return ax + (u - ax) * (1.0 / scale), ay + (v - ay) * (1.0 / scale)


def _boat(canvas, u, v, rng, decoy, part_scale=1.0):
    hull = d.polygon(u, v, [(-1.0, 0.2), (1.0, 0.2), (0.65, 0.7), (-0.65, 0.7)])
    mast = d.rectangle(u, v, -0.07, -0.95, 0.07, 0.2)
    sail = d.polygon(u, v, [(0.12, -0.85), (0.12, 0.12), (0.85, 0.12)])
    d.paint(canvas, sail, d.random_colour(rng, s=(0.0, 0.25), v=(0.75, 1.0)))
    d.paint(canvas, mast, d.jitter(rng, (0.3, 0.2, 0.1)))
    d.paint(canvas, hull, d.random_colour(rng))
    body = hull | mast | sail
    if decoy:
        return body, np.zeros_like(body)
    pu, pv = _grown(u, v, (-0.07, -0.9), part_scale)
    flag = d.polygon(pu, pv, [(-0.07, -1.1), (-0.07, -0.7), (-0.7, -0.9)])
    d.paint(canvas, flag, d.jitter(rng, (0.95, 0.1, 0.1)))
    return body & ~flag, flag


def _car(canvas, u, v, rng, decoy, part_scale=1.0):
    chassis = d.superellipse(u, v, 0.0, 0.2, 1.0, 0.3, power=4)
    cabin = d.polygon(u, v, [(-0.55, 0.0), (0.45, 0.0), (0.3, -0.45), (-0.4, -0.45)])
    window = d.polygon(u, v, [(-0.42, -0.05), (0.32, -0.05), (0.22, -0.36), (-0.32, -0.36)])
    colour = d.random_colour(rng)
    d.paint(canvas, chassis | cabin, colour)
    d.paint(canvas, window, np.clip(colour * 0.5 + 0.45, 0, 1))
    body = chassis | cabin
    if decoy:
        return body, np.zeros_like(body)
    wheels = d.disk(u, v, -0.55, 0.48, 0.21 * part_scale) | d.disk(u, v, 0.55, 0.48, 0.21 * part_scale)
    hubs = d.disk(u, v, -0.55, 0.48, 0.09 * part_scale) | d.disk(u, v, 0.55, 0.48, 0.09 * part_scale)
    d.paint(canvas, wheels, d.jitter(rng, (0.05, 0.05, 0.05), 0.03))
    d.paint(canvas, hubs, d.jitter(rng, (0.85, 0.85, 0.85), 0.05))
    return body & ~wheels, wheels


def _bird(canvas, u, v, rng, decoy, part_scale=1.0):
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
    pu, pv = _grown(u, v, (0.62, -0.3), part_scale)       # about the head's centre
    beak = d.polygon(pu, pv, [(0.85, -0.45), (0.85, -0.17), (1.35, -0.31)])
    eye = d.disk(pu, pv, 0.68, -0.38, 0.1)
    d.paint(canvas, beak, d.jitter(rng, (1.0, 0.6, 0.05)))
    d.paint(canvas, eye, d.jitter(rng, (0.02, 0.02, 0.02), 0.02))
    part = beak | eye
    return body & ~part, part


def _cow(canvas, u, v, rng, decoy, part_scale=1.0):
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
    pu, pv = _grown(u, v, (0.55, -0.25), part_scale)      # about where the head meets the torso
    face = d.superellipse(pu, pv, 0.72, -0.32, 0.22, 0.26, power=3)
    horns = (d.polygon(pu, pv, [(0.55, -0.5), (0.68, -0.52), (0.52, -0.78)])
             | d.polygon(pu, pv, [(0.76, -0.52), (0.89, -0.5), (0.92, -0.78)]))
    nose = d.ellipse(pu, pv, 0.72, -0.14, 0.15, 0.09)
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

def render_scene(rng: np.random.Generator, plan: ScenePlan, size: int,
                 design: SceneDesign = SCENE_DESIGNS["v1"]) -> RenderedScene:
    """Draw ``plan`` at ``size x size`` pixels with ``design``'s object sizes and palettes;
    geometry is relative, so sizes 48-128 look alike."""
    xx, yy = d.pixel_centres(size)
    s = size / 64.0                       # texture scale: features keep their relative size
    slot = size / 2.0
    canvas = ground_texture(rng, xx, yy, s, design.grey_free)
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
            texture = CONTEXT_TEXTURES[content.cls](rng, wx, wy, s, design.grey_free)
            canvas[rows, cols][patch] = texture[patch]
            context_map[rows, cols][patch] = content.cls + 1
        if content.kind != "orphan_context":
            size_of = slot * rng.uniform(*design.object_scale) * content.scale
            frames[i] = d.Frame(cx, cy, scale=size_of,
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
        # Every shape lies within 1.75 local units of the centre (v1's within 0.62 slot).
        rows, cols = d.window(frame.cx, frame.cy, max(0.62 * slot, 1.75 * frame.scale), size)
        u, v = frame.local(xx[rows, cols], yy[rows, cols])
        decoy = content.kind == "decoy"
        body, part = OBJECT_DRAWERS[content.cls](canvas[rows, cols], u, v, rng, decoy,
                                                 part_scale=design.part_scale)
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
