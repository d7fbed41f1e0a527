"""A DecoyMNIST-style shortcut on the book's shapes: the positive control of the benchmark.

Ross, Hughes & Doshi-Velez ("Right for the right reasons", IJCAI 2017) add to each MNIST
training digit a small grey patch in a random corner whose shade encodes the label; at test
time the shade is random. A classifier trained on it learns the patch and fails at test
time, and a model told where the object is (their input-gradient penalty; here GAIN_ext's
L_p on a few masks, Eq. 7-8) should not. Since it is known which answer is right, the
benchmark can check that the measurement machinery -- the metrics, the intervals and the
verdicts -- finds an effect where there is one, before it is trusted on the paper's claims.

:class:`DecoyShapes` draws one object of the scenes benchmark (boat, car, bird, cow, with
:data:`gainlib.data.render_scenes.OBJECT_DRAWERS`) on the scenes' plain ground, and a small
square patch in a random corner. In the shortcut splits (``train``, ``val``) the patch has
the colour of the image's class with probability ``shortcut_strength`` (1: a perfect
predictor); in the others (``test``, and ``no_shortcut``, the oracle's training split) its
colour is drawn independently of the class (or the patch is absent). The patch colours
(:data:`PATCH_COLOURS`) are pure, fully saturated ones that no object body takes (their
colours have saturation <= 0.9 and value <= 0.95), so a patch is read off its pixels exactly.

``mask`` marks the object only, never the patch; the patch is drawn last, so where it
overlaps the object the mask loses those pixels. Sample ``i`` of a split depends only on
``(seed, split, i)`` and the parameters (as in :mod:`gainlib.data.synthetic`).
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np

from gainlib.data import drawing as d
from gainlib.data.protocol import IMAGENET_MEAN, IMAGENET_STD
from gainlib.data.render_scenes import CLASSES, OBJECT_DRAWERS, ground_texture
from gainlib.data.saliency import SaliencyPrior
from gainlib.data.sample import Transform
from gainlib.data.synthetic import SyntheticBase, sample_rng, saliency_maps

__all__ = ["DECOY_SPLITS", "PATCH_COLOURS", "DecoyShapes", "read_patch_classes"]

# split name -> (the patch follows the class, default size)
DECOY_SPLITS: dict[str, tuple[bool, int]] = {
    "train": (True, 1000),
    "val": (True, 250),            # same shortcut: what training can be tuned on
    "test": (False, 500),          # shortcut randomised: what the claim is measured on
    "no_shortcut": (False, 1000),  # the oracle's training split
}
# PATCH_COLOURS[c] is class c's patch: magenta, cyan, yellow, blue.
PATCH_COLOURS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (0.0, 0.0, 1.0))
OBJECT_SCALE = (0.2, 0.28)   # object half-width / image side: the object stays clear of the corners
CENTRE_JITTER = 0.06         # object centre: image centre +- this share of the side


def _corner_slices(corner: int, size: int, patch: int) -> tuple[slice, slice]:
    """Rows and columns of corner 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right."""
    rows = slice(0, patch) if corner < 2 else slice(size - patch, size)
    cols = slice(0, patch) if corner % 2 == 0 else slice(size - patch, size)
    return rows, cols


def read_patch_classes(images: np.ndarray, patch_size: int, tolerance: float = 0.02) -> np.ndarray:
    """The class each image's corner patch encodes, read off the pixels alone.

    Args:
        images: ``uint8 [N, H, W, 3]``.
        patch_size: side of the patch in pixels.
        tolerance: largest mean absolute difference (in [0, 1] colour units) between a
            corner and a patch colour that still counts as that patch.

    Returns:
        ``int64 [N]``: the class whose :data:`PATCH_COLOURS` entry fills a corner, -1 where no
        corner holds a patch.
    """
    size = images.shape[1]
    colours = np.asarray(PATCH_COLOURS, np.float32)                          # [C, 3]
    corners = np.stack([images[:, r, c].reshape(len(images), -1, 3)
                        for r, c in (_corner_slices(k, size, patch_size) for k in range(4))], 1)
    corners = corners.astype(np.float32) / 255.0                             # [N, 4, P, 3]
    # distance of each corner to each patch colour: [N, 4, C]
    dist = np.abs(corners[:, :, None] - colours[None, None, :, None]).mean(axis=(-1, -2))
    best = dist.reshape(len(images), -1).argmin(1)
    found = dist.reshape(len(images), -1).min(1) <= tolerance
    return np.where(found, best % len(PATCH_COLOURS), -1).astype(np.int64)


class DecoyShapes(SyntheticBase):
    """One object per image and a class-coloured corner patch (module notes).

    Args:
        split: one of :data:`DECOY_SPLITS` (``train``, ``val``, ``test``, ``no_shortcut``).
        n: number of images (default from :data:`DECOY_SPLITS`); classes are balanced (image
            ``i`` shows class ``i % 4``).
        image_size: side in pixels.
        patch_size: side of the corner patch (default ``image_size // 8``: 6 px at 48 px, near
            the 1/7 of the side that DecoyMNIST's 4 px patch has of a 28 px digit).
        shortcut_strength: in ``train`` and ``val``, P(the patch has the class's colour);
            otherwise the colour of another class, drawn at random.
        unrelated_patch: in ``test`` and ``no_shortcut``: ``"random"`` (a patch of a random
            class's colour, independent of the label) or ``"absent"`` (no patch).
        seed, saliency, transforms, mean, std: as for :class:`~gainlib.data.SyntheticScenes`
            (no saliency prior by default: the control uses masks, not boxes).

    Public arrays: ``images`` (uint8), ``masks`` (0 background, ``c + 1`` the object),
    ``labels`` (one-hot), ``boxes``/``box_labels`` (the object's box), ``patch_classes``
    (the class whose colour the patch has, -1 if absent), ``patch_corners`` (0-3, -1 if
    absent); :meth:`patch_masks` gives the patch pixels.
    """

    classes = CLASSES

    def __init__(self, split: str = "train", n: int | None = None, *, image_size: int = 48,
                 patch_size: int | None = None, shortcut_strength: float = 1.0,
                 unrelated_patch: Literal["random", "absent"] = "random", seed: int = 0,
                 saliency: SaliencyPrior | None = None, transforms: Transform | None = None,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        if split not in DECOY_SPLITS:
            raise KeyError(f"unknown decoy split {split!r}; choose from {sorted(DECOY_SPLITS)}")
        if not 0.0 <= shortcut_strength <= 1.0:
            raise ValueError(f"shortcut_strength must be a probability, got {shortcut_strength}")
        if unrelated_patch not in ("random", "absent"):
            raise ValueError(f"unrelated_patch must be 'random' or 'absent', got {unrelated_patch!r}")
        self.patch_size = image_size // 8 if patch_size is None else int(patch_size)
        if not 1 <= self.patch_size <= image_size // 4:
            raise ValueError(f"patch_size must be between 1 and image_size // 4 = {image_size // 4} "
                             f"(a corner, clear of the object), got {self.patch_size}")
        follows, default_n = DECOY_SPLITS[split]
        self.split, self.image_size, self.seed = split, image_size, seed
        self.shortcut = follows
        self.shortcut_strength = shortcut_strength if follows else 0.0
        count = default_n if n is None else n
        k = len(CLASSES)
        rendered = [self._render(sample_rng(seed, "decoy", split, i), i % k, unrelated_patch)
                    for i in range(count)]
        size = (count, image_size, image_size)
        self.images = np.stack([r[0] for r in rendered]) if rendered else np.zeros((*size, 3), np.uint8)
        self.masks = np.stack([r[1] for r in rendered]) if rendered else np.zeros(size, np.uint8)
        self.labels = np.eye(k, dtype=np.float32)[[i % k for i in range(count)]].reshape(count, k)
        self.patch_classes = np.array([r[2] for r in rendered], np.int64).reshape(count)
        self.patch_corners = np.array([r[3] for r in rendered], np.int64).reshape(count)
        self.boxes, self.box_labels = [], []
        for i, mask in enumerate(self.masks):
            ys, xs = np.nonzero(mask)
            self.boxes.append(np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32))
            self.box_labels.append(np.array([i % k], np.int64))
        self.ids = [f"decoy-{split}-{i:06d}" for i in range(count)]
        self.saliency = saliency_maps(self.images, saliency)
        super().__init__(transforms, mean, std)

    def _render(self, rng: np.random.Generator, cls: int,
                unrelated_patch: str) -> tuple[np.ndarray, np.ndarray, int, int]:
        size = self.image_size
        xx, yy = d.pixel_centres(size)
        canvas = ground_texture(rng, xx, yy, size / 64.0)
        cx, cy = size / 2 + rng.uniform(-CENTRE_JITTER, CENTRE_JITTER, 2) * size
        frame = d.Frame(cx, cy, scale=size * rng.uniform(*OBJECT_SCALE),
                        angle=rng.uniform(-0.15, 0.15), mirror=bool(rng.random() < 0.5))
        rows, cols = d.window(frame.cx, frame.cy, 1.5 * frame.scale, size)
        u, v = frame.local(xx[rows, cols], yy[rows, cols])
        body, part = OBJECT_DRAWERS[cls](canvas[rows, cols], u, v, rng, False)
        mask = np.zeros((size, size), np.uint8)
        mask[rows, cols][body | part] = cls + 1
        corner = int(rng.integers(4))
        if self.shortcut:
            follows = rng.random() < self.shortcut_strength
            patch_cls = cls if follows else int((cls + rng.integers(1, len(CLASSES))) % len(CLASSES))
        elif unrelated_patch == "random":
            patch_cls = int(rng.integers(len(CLASSES)))
        else:
            patch_cls, corner = -1, -1
        image = (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if patch_cls >= 0:
            r, c = _corner_slices(corner, size, self.patch_size)
            image[r, c] = np.round(np.asarray(PATCH_COLOURS[patch_cls]) * 255).astype(np.uint8)
            mask[r, c] = 0      # the mask marks what of the object is visible
        return image, mask, patch_cls, corner

    def patch_masks(self) -> np.ndarray:
        """``bool [N, H, W]``: the patch pixels of each image (all False where it has none)."""
        out = np.zeros((len(self), self.image_size, self.image_size), bool)
        for i, corner in enumerate(self.patch_corners):
            if corner >= 0:
                out[i][_corner_slices(int(corner), self.image_size, self.patch_size)] = True
        return out

    def statistics(self) -> dict[str, Any]:
        """Measured on the pixels: how well the patch read off each image predicts its class
        (``shortcut_accuracy``; chance is ``1 / 4``), how many images show a patch of each
        class, the object's share of the image and the object pixels under a patch (0)."""
        read = read_patch_classes(self.images, self.patch_size)
        label = self.labels.argmax(1) if len(self) else np.zeros(0, np.int64)
        shown = read >= 0
        return {
            "split": self.split, "images": len(self),
            "shortcut_accuracy": float((read == label).mean()) if len(self) else float("nan"),
            "chance": 1.0 / len(CLASSES),
            "images_with_patch": int(shown.sum()),
            "patch_class_counts": np.bincount(read[shown], minlength=len(CLASSES)).tolist(),
            "object_fraction": float((self.masks > 0).mean()) if len(self) else float("nan"),
            "object_pixels_under_patch": int(((self.masks > 0) & self.patch_masks()).sum()),
        }
