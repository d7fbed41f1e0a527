"""The synthetic GAIN benchmark: seeded, deterministic datasets that show the paper's phenomena.

Two datasets, both following the sample protocol (:mod:`gainlib.data.protocol`):

:class:`SyntheticScenes`
    Multi-label scenes (boat, car, bird, cow). Each object has a small, highly
    discriminative part (flag, wheels, beak, head) and a larger body that decoys share, so a
    plain classifier's attention covers the part and misses much of the body (Sec. 3.1).
    Objects sit on their usual context (water, road, sky, grass) with a chosen probability,
    and the counterfactual splits put objects off their context or contexts without their
    objects (the Biased Boat test of Sec. 5.1, Table 7). Splits: ``train``, ``val``
    (in-distribution, biased), ``unbiased`` (context independent of the labels),
    ``no_context``, ``context_only`` and ``biased_boat``.

:class:`SyntheticOrientation`
    Orientation of a near-symmetric object whose class shows only through a small marker and
    gap (Sec. 5.2 camera: 2 classes; Sec. 5.3 / Table 8 workpiece: 4 classes). Splits:
    ``train`` and ``test_same`` (training domain), ``test_shifted`` (other scale,
    viewpoint, background and lighting) and ``test_lamp`` (the training domain with the
    lamp from a random direction: the bias broken, nothing else changed). Masks and boxes mark the critical area, as the
    paper's boxes do.

Sample ``i`` of a split depends only on ``(seed, dataset, split, i)`` and the generation
parameters: its random stream is ``SeedSequence(seed, spawn_key=(dataset, split, i))``, so
splits are reproducible, independent of each other (no shared streams, hence no shared
images) and a longer split extends a shorter one. Images are rendered once, at construction.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from gainlib.data.protocol import IMAGENET_MEAN, IMAGENET_STD
from gainlib.data.render_orientation import (
    ORIENTATION_CLASSES,
    OrientationDesign,
    Variant,
    orientation_design,
    render_orientation,
)
from gainlib.data.render_scenes import (CLASSES, CONTEXTS, SceneDesign, SplitKind, plan_scene,
                                        render_scene, scene_design)
from gainlib.data.saliency import SaliencyPrior, spectral_residual_saliency
from gainlib.data.sample import Transform, build_sample

__all__ = [
    "SCENE_SPLITS",
    "ORIENTATION_SPLITS",
    "SyntheticScenes",
    "SyntheticOrientation",
    "synthetic_splits",
]

# split name -> (layout kind, context bias or None for "use the dataset's", default size)
SCENE_SPLITS: dict[str, tuple[SplitKind, float | None, int]] = {
    "train": ("biased", None, 2000),
    "val": ("biased", None, 500),
    "unbiased": ("biased", 0.5, 500),
    "no_context": ("no_context", None, 500),
    "context_only": ("context_only", None, 500),
    "biased_boat": ("biased_boat", None, 100),
}
# split name -> (domain, default size for camera, default size for workpiece)
ORIENTATION_SPLITS: dict[str, tuple[str, int, int]] = {
    "train": ("train", 700, 2000),          # the paper's camera set: 350 images per class
    "test_same": ("train", 100, 500),       # "Testing Set 1": same distribution
    "test_shifted": ("shifted", 100, 500),  # "Testing Set 2": other viewpoint and background
    # Testing Set 1 with the lamp from a random direction: the bias alone, broken (not a
    # split of the paper's; it separates the bias from the domain shift)
    "test_lamp": ("lamp", 100, 500),
}


def sample_rng(seed: int, dataset: str, split: str, index: int) -> np.random.Generator:
    """The generator of one sample: independent of every other sample's and of the order in
    which samples are rendered."""
    key = (zlib.crc32(dataset.encode()), zlib.crc32(split.encode()), index)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def saliency_maps(images: np.ndarray, prior: SaliencyPrior | None, chunk: int = 256) -> np.ndarray | None:
    """The saliency prior of every image (``None`` without a prior), computed in chunks."""
    if prior is None:
        return None
    if len(images) == 0:
        return np.zeros(images.shape[:3], np.uint8)
    maps = [prior(images[i:i + chunk]) for i in range(0, len(images), chunk)]
    return (np.clip(np.concatenate(maps), 0, 1) * 255 + 0.5).astype(np.uint8)   # stored as uint8


class SyntheticBase(Dataset):
    """Shared storage and ``__getitem__`` of the synthetic datasets."""

    classes: tuple[str, ...]
    images: np.ndarray         # uint8 [N, H, W, 3]
    masks: np.ndarray          # uint8 [N, H, W]
    saliency: np.ndarray | None
    labels: np.ndarray         # float32 [N, C]
    boxes: list[np.ndarray]
    box_labels: list[np.ndarray]
    ids: list[str]

    def __init__(self, transforms: Transform | None, mean: Sequence[float], std: Sequence[float]) -> None:
        self.transforms = transforms
        self.mean, self.std = tuple(mean), tuple(std)
        self.use_mask = np.zeros(len(self.ids), dtype=bool)
        self.use_boxes = np.zeros(len(self.ids), dtype=bool)
        # Built samples without their flags, by index; shared with shallow copies (the flags
        # are per copy, see mark_extra_labels). Only used when there is no (random) transform.
        self._built: dict[int, dict[str, Any]] = {}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.ids)

    def extra_label_indices(self) -> list[int]:
        """Indices of the samples flagged ``use_mask`` or ``use_boxes``, without building them."""
        return np.flatnonzero(self.use_mask | self.use_boxes).tolist()

    # Per-instance state that is not the rendered data: set again by __init__ / mark_extra_labels.
    _NOT_SAVED = ("transforms", "use_mask", "use_boxes", "_built")

    def save_arrays(self, path: str | os.PathLike) -> None:
        """Write the rendered split to ``path`` (a ``.npz`` file, no pickled objects): its
        arrays, its per-image boxes, and its settings as JSON. :meth:`load_arrays` reads it
        back as the same dataset, without rendering again (the extra-label flags and the
        transform are not saved: they are the caller's)."""
        arrays: dict[str, np.ndarray] = {}
        settings: dict[str, Any] = {}
        for name, value in vars(self).items():
            if name in self._NOT_SAVED:
                continue
            if isinstance(value, np.ndarray):
                arrays[f"array:{name}"] = value
            elif isinstance(value, list) and value and isinstance(value[0], np.ndarray):
                arrays[f"ragged:{name}"] = np.concatenate(value)
                arrays[f"lengths:{name}"] = np.array([len(v) for v in value], np.int64)
            elif dataclasses.is_dataclass(value):
                settings[name] = {"dataclass": type(value).__name__, **dataclasses.asdict(value)}
            else:
                settings[name] = value
        settings["__class__"] = type(self).__name__
        arrays["settings"] = np.array(json.dumps(settings))
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load_arrays(cls, path: str | os.PathLike, *, transforms: Transform | None = None) -> Any:
        """The dataset :meth:`save_arrays` wrote to ``path`` (``ValueError`` naming the file
        if it is not one, or was written by another dataset class)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                stored = {key: data[key] for key in data.files}
            settings = json.loads(str(stored.pop("settings")))
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"{path}: not a saved synthetic split ({error})") from error
        stored_class = settings.pop("__class__", None)
        if stored_class != cls.__name__:
            raise ValueError(f"{path} holds a {stored_class}, not a {cls.__name__}")
        dataset = cls.__new__(cls)
        for key, value in stored.items():
            kind, name = key.split(":", 1)
            if kind == "array":
                setattr(dataset, name, value)
            elif kind == "ragged":
                ends = np.cumsum(stored[f"lengths:{name}"])
                setattr(dataset, name, list(np.split(value, ends[:-1])) if len(ends) else [])
        for name, value in settings.items():
            if isinstance(value, dict) and "dataclass" in value:
                fields = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()
                          if k != "dataclass"}
                value = _DESIGN_TYPES[value["dataclass"]](**fields)
            elif isinstance(value, list):
                value = tuple(value)
            setattr(dataset, name, value)
        dataset.ids = list(dataset.ids)
        SyntheticBase.__init__(dataset, transforms, dataset.mean, dataset.std)
        return dataset

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.transforms is not None:
            return self._build(index)
        # Without a transform a sample never changes: build it once (about half of a small
        # model's training step on the CPU went to rebuilding samples every epoch).
        index = range(len(self))[index]
        if index not in self._built:
            self._built[index] = self._build(index)
        return {**self._built[index], "use_mask": bool(self.use_mask[index]),
                "use_boxes": bool(self.use_boxes[index])}

    def _build(self, index: int) -> dict[str, Any]:
        return build_sample(
            image=self.images[index], labels=self.labels[index], sample_id=self.ids[index],
            mask=self.masks[index], boxes=self.boxes[index], box_labels=self.box_labels[index],
            saliency=None if self.saliency is None else self.saliency[index],
            use_mask=bool(self.use_mask[index]), use_boxes=bool(self.use_boxes[index]),
            transforms=self.transforms, mean=self.mean, std=self.std)


_DESIGN_TYPES = {"SceneDesign": SceneDesign, "OrientationDesign": OrientationDesign}


class SyntheticScenes(SyntheticBase):
    """Multi-label scenes with part/body objects, decoys and a controllable context bias.

    Args:
        split: one of :data:`SCENE_SPLITS` (``train``, ``val``, ``unbiased``,
            ``no_context``, ``context_only``, ``biased_boat``).
        n: number of images (default: the split's size in :data:`SCENE_SPLITS`).
        image_size: side in pixels (64-128 recommended; the layout scales with it).
        context_bias: ``b`` = P(an object sits on its usual context); for an absent class,
            an orphan patch of its context appears with probability ``1 - b``. Used by
            ``train`` and ``val``; ``unbiased`` always uses 0.5 (context independent of labels).
        seed: master seed; see the module docstring.
        saliency: prior S for L_bbox, computed once per image (``None``: no ``saliency`` key).
        transforms: optional torchvision v2 joint transform (see :func:`build_sample`).
        design: the layout and palettes, a :class:`~gainlib.data.render_scenes.SceneDesign` or
            the name of one in :data:`~gainlib.data.render_scenes.SCENE_DESIGNS` (``"v1"``, the
            published benchmark; ``"v2"``, objects learnable without their context).
        mean, std: the normalisation (``None``: the design's, else ImageNet's). Erased pixels
            of Eq. 3 take the ``mean`` colour.

    Besides the protocol samples, the rendered arrays are public for analysis: ``images``,
    ``masks``, ``part_masks`` (the discriminative parts), ``context_maps`` (0 ground, k + 1
    for ``CONTEXTS[k]``), ``labels``, ``boxes``, ``box_labels``, ``saliency`` (uint8).
    """

    classes = CLASSES
    contexts = CONTEXTS

    def __init__(self, split: str = "train", n: int | None = None, *, image_size: int = 64,
                 context_bias: float = 0.98, seed: int = 0,
                 saliency: SaliencyPrior | None = spectral_residual_saliency,
                 transforms: Transform | None = None, design: str | SceneDesign = "v1",
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        if split not in SCENE_SPLITS:
            raise KeyError(f"unknown scenes split {split!r}; choose from {sorted(SCENE_SPLITS)}")
        if not 0.0 <= context_bias <= 1.0:
            raise ValueError(f"context_bias must be a probability, got {context_bias}")
        kind, fixed_bias, default_n = SCENE_SPLITS[split]
        self.design = scene_design(design)
        self.split, self.image_size, self.seed = split, image_size, seed
        self.context_bias = context_bias if fixed_bias is None else fixed_bias
        count = default_n if n is None else n
        rendered = []
        for i in range(count):
            rng = sample_rng(seed, "scenes", split, i)
            plan = plan_scene(rng, kind, self.context_bias, i, self.design)
            rendered.append(render_scene(rng, plan, image_size, self.design))
        size = (count, image_size, image_size)
        self.images = np.stack([r.image for r in rendered]) if rendered else np.zeros((*size, 3), np.uint8)
        self.masks = np.stack([r.mask for r in rendered]) if rendered else np.zeros(size, np.uint8)
        self.part_masks = np.stack([r.part_mask for r in rendered]) if rendered else np.zeros(size, bool)
        self.context_maps = np.stack([r.context_map for r in rendered]) if rendered else np.zeros(size, np.uint8)
        self.labels = np.stack([r.labels for r in rendered]) if rendered else np.zeros((0, len(CLASSES)), np.float32)
        self.boxes = [r.boxes for r in rendered]
        self.box_labels = [r.box_labels for r in rendered]
        self.ids = [f"scenes-{split}-{i:06d}" for i in range(count)]
        self.saliency = saliency_maps(self.images, saliency)
        super().__init__(transforms, _or(mean, self.design.mean, IMAGENET_MEAN),
                         _or(std, self.design.std, IMAGENET_STD))

    def statistics(self) -> dict[str, Any]:
        """Bias statistics measured on the rendered pixels (not on the generator's plan).

        Per class: ``images`` with the class, ``p_context_given_object`` (its context patch
        is somewhere in the image), ``p_context_given_no_object``, ``p_on_context`` (the
        object's 2-pixel surround is mostly its context), ``part_fraction`` (part pixels /
        object pixels), ``object_fraction`` (object pixels / image pixels, over images
        with the class) and ``context_per_object`` (visible pixels of its context / object
        pixels, over images where it is on its context); plus the mean number of objects per
        image and ``near_erased_value``, the share of pixels within 0.06 (in [0, 1] RGB, every
        channel) of the colour erased pixels take (the normalisation's mean).
        """
        present = self.masks_present()
        ctx = np.stack([(self.context_maps == k + 1).any(axis=(1, 2)) for k in range(len(CLASSES))], 1)
        on_context = self._on_context_fraction()
        pixels = float(self.image_size ** 2)
        per_class = {}
        for c, name in enumerate(CLASSES):
            has = present[:, c]
            obj = self.masks == c + 1
            obj_px = obj.sum(axis=(1, 2))
            part_px = (obj & self.part_masks).sum(axis=(1, 2))
            ctx_px = ((self.context_maps == c + 1) & (self.masks == 0)).sum(axis=(1, 2))
            per_class[name] = {
                "images": int(has.sum()),
                "p_context_given_object": _mean(ctx[has, c]),
                "p_context_given_no_object": _mean(ctx[~has, c]),
                "p_on_context": _mean(on_context[has, c]),
                "part_fraction": float(part_px[has].sum() / obj_px[has].sum()) if has.any() else float("nan"),
                "object_fraction": _mean(obj_px[has] / pixels),
                "context_per_object": _mean(ctx_px[home] / obj_px[home]) if (home := has & on_context[:, c]).any()
                else float("nan"),
            }
        near = np.abs(self.images.astype(np.float32) / 255.0 - np.asarray(self.mean, np.float32)).max(-1) <= 0.06
        return {"split": self.split, "images": len(self), "context_bias": self.context_bias,
                "objects_per_image": float(present.sum(1).mean()) if len(self) else float("nan"),
                "near_erased_value": float(near.mean()) if len(self) else float("nan"),
                "classes": per_class}

    def masks_present(self) -> np.ndarray:
        """``bool [N, C]``: which classes have pixels in each mask (equals ``labels > 0``)."""
        return np.stack([(self.masks == c + 1).any(axis=(1, 2)) for c in range(len(CLASSES))], 1)

    def _on_context_fraction(self, ring: int = 2) -> np.ndarray:
        out = np.zeros((len(self), len(CLASSES)), dtype=bool)
        for c in range(len(CLASSES)):
            obj = torch.from_numpy(self.masks == c + 1).float()[:, None]
            grown = F.max_pool2d(obj, 2 * ring + 1, stride=1, padding=ring)[:, 0].bool().numpy()
            surround = grown & (self.masks == 0)
            home = surround & (self.context_maps == c + 1)
            n_sur = surround.sum(axis=(1, 2))
            out[:, c] = (n_sur > 0) & (home.sum(axis=(1, 2)) * 2 >= n_sur)
        return out


class SyntheticOrientation(SyntheticBase):
    """Orientation classification under domain shift (Sec. 5.2 camera, Sec. 5.3 workpiece).

    Args:
        split: one of :data:`ORIENTATION_SPLITS` (``train``, ``test_same``, ``test_shifted``,
            ``test_lamp``).
        n: number of images (default from :data:`ORIENTATION_SPLITS`); classes are balanced
            (image ``i`` has class ``i % K``).
        variant: ``"camera"`` (2 classes: 0/180 degrees) or ``"workpiece"`` (4 classes).
        image_size: side in pixels.
        shortcut_strength: in the training domain, P(the lighting direction follows the
            class); otherwise it comes from a random direction, so 0 (not 1 / K) is the
            unbiased lamp: at 1 / K it still points exactly at the class in 1 / K of the
            images. The stand-in for the paper's "severe bias in the Training Set". The
            shifted domain always lights from a random direction.
        mask_from_box: make ``mask`` the filled box rather than the critical area's own
            pixels: the camera study's labels, "bounding boxes ... converted to pixel-level
            masks" (Sec. 5.2).
        design: how far the shifted domain moves the object, a name in
            :data:`~gainlib.data.render_orientation.ORIENTATION_DESIGNS` or an
            :class:`~gainlib.data.render_orientation.OrientationDesign` (``"v1"``: scale and
            viewpoint change with the background).
        seed, saliency, transforms: as for :class:`SyntheticScenes`.

    ``mask`` and ``boxes`` mark the critical area (marker and gap) with the class, like the
    paper's boxes "on the critical areas". Public arrays: ``images``, ``masks``,
    ``object_masks``, ``labels`` (one-hot), ``boxes``, ``box_labels``, ``light_angles``,
    ``saliency``.
    """

    def __init__(self, split: str = "train", n: int | None = None, *, variant: Variant = "camera",
                 image_size: int = 64, shortcut_strength: float = 0.95, mask_from_box: bool = False,
                 design: str | OrientationDesign = "v1", seed: int = 0, saliency: SaliencyPrior | None = spectral_residual_saliency,
                 transforms: Transform | None = None,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        if split not in ORIENTATION_SPLITS:
            raise KeyError(f"unknown orientation split {split!r}; choose from {sorted(ORIENTATION_SPLITS)}")
        if variant not in ORIENTATION_CLASSES:
            raise KeyError(f"unknown variant {variant!r}; choose from {sorted(ORIENTATION_CLASSES)}")
        domain, n_camera, n_workpiece = ORIENTATION_SPLITS[split]
        self.split, self.variant, self.domain = split, variant, domain
        self.image_size, self.seed, self.shortcut_strength = image_size, seed, shortcut_strength
        self.design = orientation_design(design)
        self.classes = ORIENTATION_CLASSES[variant]
        k = len(self.classes)
        count = (n_camera if variant == "camera" else n_workpiece) if n is None else n
        rendered = [render_orientation(sample_rng(seed, f"orientation-{variant}", split, i),
                                       variant, i % k, domain, image_size, shortcut_strength,
                                       self.design)
                    for i in range(count)]
        size = (count, image_size, image_size)
        self.images = np.stack([r.image for r in rendered]) if rendered else np.zeros((*size, 3), np.uint8)
        self.masks = np.stack([r.mask for r in rendered]) if rendered else np.zeros(size, np.uint8)
        if mask_from_box:
            self.masks = np.stack([_box_mask(r.box, r.label + 1, image_size) for r in rendered]) \
                if rendered else self.masks
        self.object_masks = np.stack([r.object_mask for r in rendered]) if rendered else np.zeros(size, bool)
        self.labels = np.eye(k, dtype=np.float32)[[r.label for r in rendered]].reshape(count, k)
        self.boxes = [r.box[None] for r in rendered]
        self.box_labels = [np.array([r.label], np.int64) for r in rendered]
        self.light_angles = np.array([r.light_angle for r in rendered], np.float32)
        self.ids = [f"{variant}-{split}-{i:06d}" for i in range(count)]
        self.saliency = saliency_maps(self.images, saliency)
        super().__init__(transforms, mean, std)

    def statistics(self) -> dict[str, Any]:
        """Measured statistics: class counts, how often the lighting points the class's way
        (within half a class step), object and critical-area sizes."""
        k = len(self.classes)
        label = self.labels.argmax(1) if len(self) else np.zeros(0, int)
        step = 2 * np.pi / k
        offset = np.angle(np.exp(1j * (self.light_angles - label * step)))
        obj_px = self.object_masks.sum(axis=(1, 2))
        crit_px = (self.masks > 0).sum(axis=(1, 2))
        return {"split": self.split, "variant": self.variant, "domain": self.domain, "images": len(self),
                "class_counts": np.bincount(label, minlength=k).tolist(),
                "p_light_follows_class": _mean(np.abs(offset) < step / 2),
                "chance_light_follows_class": 1.0 / k,
                "object_fraction": _mean(obj_px / float(self.image_size ** 2)),
                "critical_fraction_of_object": _mean(crit_px / np.maximum(obj_px, 1))}


def _box_mask(box: np.ndarray, value: int, size: int) -> np.ndarray:
    """``value`` on the pixels whose centres lie in the xyxy ``box``, 0 elsewhere."""
    centres = np.arange(size) + 0.5
    inside_x = (centres >= box[0]) & (centres <= box[2])
    inside_y = (centres >= box[1]) & (centres <= box[3])
    return (np.outer(inside_y, inside_x) * value).astype(np.uint8)


def _or(*choices: Sequence[float] | None) -> tuple[float, ...]:
    """The first of ``choices`` that is not ``None``."""
    return tuple(next(c for c in choices if c is not None))


def _mean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) if values.size else float("nan")


def synthetic_splits(dataset: Literal["scenes", "camera", "workpiece"] = "scenes",
                     splits: list[str] | None = None, *, sizes: dict[str, int] | None = None,
                     **kwargs: Any) -> dict[str, SyntheticScenes | SyntheticOrientation]:
    """Build several named splits that share a seed and parameters.

    ``synthetic_splits("scenes", ["train", "val", "biased_boat"], seed=0, context_bias=0.98)``;
    ``dataset="camera"``/``"workpiece"`` builds :class:`SyntheticOrientation` splits.
    ``sizes`` overrides the default number of images per split; other keyword arguments go
    to the dataset constructor.
    """
    sizes = sizes or {}
    if dataset == "scenes":
        names = splits or list(SCENE_SPLITS)
        return {name: SyntheticScenes(name, sizes.get(name), **kwargs) for name in names}
    if dataset in ORIENTATION_CLASSES:
        names = splits or list(ORIENTATION_SPLITS)
        return {name: SyntheticOrientation(name, sizes.get(name), variant=dataset, **kwargs) for name in names}
    raise KeyError(f"unknown synthetic dataset {dataset!r}; choose 'scenes', 'camera' or 'workpiece'")
