"""A tiny PASCAL VOC 2012 + SBD tree, generated in a second: for tests and for smoke runs.

Chapter 7 runs the paper-scale reproduction (Li et al., Sec. 4.1: VOC 2012 + SBD ``train_aug``)
end to end on this tree in the ``ci`` profile, and the data tests check the VOC loader and
``data_scripts/get_voc.py`` against it. Nothing here is a result: the images are drawings.

Each image is a grey background with one or two solid red rectangles, the objects, of random
VOC classes; so the mask, the boxes and the red pixels agree (which the data tests check after
augmentation). The files follow the real layout::

    root/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    root/VOCdevkit/VOC2012/Annotations/<id>.xml
    root/VOCdevkit/VOC2012/SegmentationClass/<id>.png     VOC's masks, with a 255 band around objects
    root/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,train_aug}.txt
    root/benchmark_RELEASE/dataset/cls/<id>.mat            SBD's masks (no band)
    root/benchmark_RELEASE/dataset/{train,val}.txt

SBD covers every third VOC image and some images of its own (``sbd_only``), and puts one VOC
``val`` image into its ``train`` list, as the real SBD does. ``train_aug`` is written as
``get_voc.py`` builds it. With ``prepared=True`` the tree also holds what ``get_voc.py``'s
mask step writes, ``SegmentationClassAug/<id>.png`` for every ``train_aug`` and ``val`` image
(VOC's own mask where it has one, else SBD's), so that
``VOCDataset(root, "train_aug")`` and :func:`gainlib.experiments.load_split` read it as they
read the real prepared tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from gainlib.data.voc_layout import VOC_CLASSES, write_annotation_xml, write_id_list, write_mask_png

__all__ = ["TinyVOC", "make_tiny_voc"]

RED = (220, 20, 20)
GREY = (110, 110, 110)

Box = tuple[int, int, int, int]


@dataclass
class TinyVOC:
    """Where a generated tree is and what it holds.

    Attributes:
        root: the folder holding ``VOCdevkit/`` and ``benchmark_RELEASE/`` (what
            ``get_voc.py --root`` and the ``voc_root`` of the book's profiles take).
        voc: ``root/VOCdevkit/VOC2012``.
        sbd: ``root/benchmark_RELEASE/dataset``.
        objects: per image id, its objects as ``(class index, (x1, y1, x2, y2))``.
        lists: the id lists ``train``, ``val`` (VOC's), ``sbd_train``, ``sbd_val``,
            ``sbd_only`` (images without a VOC mask) and ``train_aug``.
    """

    root: Path
    voc: Path
    sbd: Path
    objects: dict[str, list[tuple[int, Box]]] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)


def _scene(rng: np.random.Generator, height: int, width: int,
           n_objects: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, Box]]]:
    image = np.empty((height, width, 3), np.uint8)
    image[:] = GREY
    mask = np.zeros((height, width), np.uint8)
    objects = []
    for k in range(n_objects):
        cls = int(rng.integers(len(VOC_CLASSES)))
        # objects in separate slices of the width so that they never overlap
        x_lo, x_hi = (k * width // n_objects, (k + 1) * width // n_objects)
        w = int(rng.integers(8, max(9, (x_hi - x_lo) - 4)))
        h = int(rng.integers(8, height - 8))
        x1 = int(rng.integers(x_lo + 2, max(x_lo + 3, x_hi - w - 1)))
        y1 = int(rng.integers(2, height - h - 1))
        x2, y2 = x1 + w, y1 + h
        image[y1:y2, x1:x2] = RED
        band = np.zeros_like(mask, dtype=bool)
        band[max(y1 - 1, 0):y2 + 1, max(x1 - 1, 0):x2 + 1] = True
        mask[band & (mask == 0)] = 255             # VOC's "void" border
        mask[y1:y2, x1:x2] = cls + 1
        objects.append((cls, (x1, y1, x2, y2)))
    return image, mask, objects


def _sbd_mask(mask: np.ndarray) -> np.ndarray:
    return np.where(mask == 255, 0, mask).astype(np.uint8)     # SBD has no void band


def _save_sbd_mat(path: Path, mask: np.ndarray) -> None:
    from scipy.io import savemat   # the [data] extra, as for reading SBD

    sbd_mask = _sbd_mask(mask)
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {"GTcls": {"Segmentation": sbd_mask,
                                  "CategoriesPresent": np.unique(sbd_mask[sbd_mask > 0])}})


def make_tiny_voc(root: str | Path, *, n_voc_train: int = 6, n_voc_val: int = 4, n_sbd_only: int = 5,
                  seed: int = 0, prepared: bool = False) -> TinyVOC:
    """Write a tiny VOC 2012 + SBD tree under ``root`` (module notes) and describe it.

    Args:
        root: the folder to write into (created if needed).
        n_voc_train, n_voc_val: images of VOC's segmentation ``train`` and ``val`` lists.
        n_sbd_only: images that only SBD has (no ``SegmentationClass`` mask).
        seed: the drawing's seed: the same arguments write the same files.
        prepared: also write ``SegmentationClassAug/`` as ``data_scripts/get_voc.py`` does, so
            that the tree can be used as a prepared ``voc_root`` directly.

    Returns:
        The :class:`TinyVOC` description (paths, objects, lists).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2012"
    sbd = root / "benchmark_RELEASE" / "dataset"
    tiny = TinyVOC(root=root, voc=voc, sbd=sbd)
    ids = [f"2008_{i:06d}" for i in range(n_voc_train + n_voc_val + n_sbd_only)]
    voc_train, voc_val = ids[:n_voc_train], ids[n_voc_train:n_voc_train + n_voc_val]
    sbd_only = ids[n_voc_train + n_voc_val:]
    masks = {}
    for index, sample_id in enumerate(ids):
        height, width = int(rng.integers(40, 56)), int(rng.integers(48, 72))
        image, mask, objects = _scene(rng, height, width, 1 + index % 2)
        tiny.objects[sample_id] = objects
        masks[sample_id] = mask
        (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(voc / "JPEGImages" / f"{sample_id}.jpg", quality=95)
        write_annotation_xml(voc / "Annotations" / f"{sample_id}.xml", f"{sample_id}.jpg", width, height,
                             [(VOC_CLASSES[c], box) for c, box in objects])
        if sample_id not in sbd_only:
            write_mask_png(voc / "SegmentationClass" / f"{sample_id}.png", mask)
        if sample_id in sbd_only or index % 3 == 0:    # SBD covers some VOC images too
            _save_sbd_mat(sbd / "cls" / f"{sample_id}.mat", mask)
    sbd_ids = sorted(p.stem for p in (sbd / "cls").glob("*.mat"))
    # SBD's own train/val split ignores VOC's: put one VOC val image into SBD train.
    sbd_train = sorted(set(sbd_ids[: len(sbd_ids) // 2]) | {voc_val[0]})
    sbd_val = sorted(set(sbd_ids) - set(sbd_train))
    if not (sbd / "cls" / f"{voc_val[0]}.mat").exists():
        _save_sbd_mat(sbd / "cls" / f"{voc_val[0]}.mat", masks[voc_val[0]])
    seg = voc / "ImageSets" / "Segmentation"
    write_id_list(seg / "train.txt", voc_train)
    write_id_list(seg / "val.txt", voc_val)
    write_id_list(sbd / "train.txt", sbd_train)
    write_id_list(sbd / "val.txt", sbd_val)
    # the train_aug list as get_voc.py builds it: (SBD train + SBD val + VOC train) - VOC val
    train_aug = sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))
    write_id_list(seg / "train_aug.txt", train_aug)
    if prepared:
        for sample_id in train_aug + voc_val:
            own = sample_id not in sbd_only
            write_mask_png(voc / "SegmentationClassAug" / f"{sample_id}.png",
                           masks[sample_id] if own else _sbd_mask(masks[sample_id]))
    tiny.lists = {"train": voc_train, "val": voc_val, "sbd_train": sbd_train, "sbd_val": sbd_val,
                  "sbd_only": sbd_only, "train_aug": train_aug}
    return tiny
