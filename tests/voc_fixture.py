"""A tiny PASCAL VOC 2012 + SBD tree, generated on the fly for the data tests.

Each image is a grey background with one or two solid red rectangles; the rectangles are the
objects, so the mask, the boxes and the red pixels must agree (which the alignment tests
check after augmentation). Written files follow the real layout: JPEGs, VOC palette PNG
masks (with a 255 band around each object, like VOC), annotation XML, ImageSets lists and
SBD ``cls/<id>.mat`` files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from gainlib.data.voc_layout import VOC_CLASSES, write_annotation_xml, write_id_list, write_mask_png

RED = (220, 20, 20)
GREY = (110, 110, 110)


@dataclass
class FakeVOC:
    root: Path                      # the directory holding VOCdevkit/ and benchmark_RELEASE/
    voc: Path                       # .../VOCdevkit/VOC2012
    sbd: Path                       # .../benchmark_RELEASE/dataset
    objects: dict[str, list[tuple[int, tuple[int, int, int, int]]]] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)


def _scene(rng: np.random.Generator, height: int, width: int, n_objects: int):
    image = np.empty((height, width, 3), np.uint8)
    image[:] = GREY
    mask = np.zeros((height, width), np.uint8)
    objects = []
    for k in range(n_objects):
        cls = int(rng.integers(len(VOC_CLASSES)))
        # objects in separate halves so that they never overlap
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


def _save_sbd_mat(path: Path, mask: np.ndarray) -> None:
    from scipy.io import savemat

    sbd_mask = np.where(mask == 255, 0, mask).astype(np.uint8)     # SBD has no void band
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {"GTcls": {"Segmentation": sbd_mask, "CategoriesPresent": np.unique(sbd_mask[sbd_mask > 0])}})


def make_fake_voc(tmp: Path, *, n_voc_train: int = 6, n_voc_val: int = 4, n_sbd_only: int = 5,
                  seed: int = 0) -> FakeVOC:
    """Write the tree. Ids: VOC seg ``train``/``val``, SBD ``train``/``val`` lists that overlap
    VOC train and VOC val (as the real SBD does), and SBD-only images without a VOC mask."""
    rng = np.random.default_rng(seed)
    voc = tmp / "VOCdevkit" / "VOC2012"
    sbd = tmp / "benchmark_RELEASE" / "dataset"
    fake = FakeVOC(root=tmp, voc=voc, sbd=sbd)
    ids = [f"2008_{i:06d}" for i in range(n_voc_train + n_voc_val + n_sbd_only)]
    voc_train, voc_val = ids[:n_voc_train], ids[n_voc_train:n_voc_train + n_voc_val]
    sbd_only = ids[n_voc_train + n_voc_val:]
    for index, sample_id in enumerate(ids):
        height, width = int(rng.integers(40, 56)), int(rng.integers(48, 72))
        image, mask, objects = _scene(rng, height, width, 1 + index % 2)
        fake.objects[sample_id] = objects
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
        _save_sbd_mat(sbd / "cls" / f"{voc_val[0]}.mat", np.asarray(Image.open(voc / "SegmentationClass" / f"{voc_val[0]}.png")))
    seg = voc / "ImageSets" / "Segmentation"
    write_id_list(seg / "train.txt", voc_train)
    write_id_list(seg / "val.txt", voc_val)
    write_id_list(sbd / "train.txt", sbd_train)
    write_id_list(sbd / "val.txt", sbd_val)
    # a train_aug list as get_voc.py would build it, and masks in SegmentationClassAug
    train_aug = sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))
    write_id_list(seg / "train_aug.txt", train_aug)
    fake.lists = {"train": voc_train, "val": voc_val, "sbd_train": sbd_train, "sbd_val": sbd_val,
                  "sbd_only": sbd_only, "train_aug": train_aug}
    return fake
