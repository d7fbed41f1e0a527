"""PASCAL VOC 2012 (+ SBD ``train_aug``) as protocol samples; also any set in VOC layout.

:class:`VOCDataset` reads the files of a VOC-style root (see :mod:`gainlib.data.voc_layout`):
JPEG image, 20-class multi-hot labels, class-index mask, boxes from the annotation XML and,
optionally, a saliency prior, all augmented together by a torchvision v2 transform. It follows
the file conventions of ``torchvision.datasets.VOCSegmentation``/``SBDataset`` (and reads
SBD ``.mat`` masks the way ``SBDataset`` does) but is its own class, because those classes
only know the official ``train``/``val`` lists and yield one target type at a time.

Bad data never becomes a silent wrong sample. Missing files, unreadable XML, XML without
objects, unknown class names, empty boxes, corrupt or truncated images, masks with values
outside ``0..C`` and ``255``, masks of the wrong size and empty label sets raise
:class:`~gainlib.data.voc_layout.DataFileError` naming the file and the problem
(``on_error="raise"``, the default), or, with ``on_error="skip"``, are logged as warnings,
left out, and counted in a summary warning at the end of the scan. File existence and the
XML are checked when the dataset is built; image and mask contents when a sample is read
(or at build time with ``check_images=True``). A sample that fails when read in skip mode is
logged, recorded in :attr:`VOCDataset.skipped` and replaced by the next good sample.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from PIL import Image, ImageFile
from torch.utils.data import Dataset
from torchvision.transforms import v2
from tqdm import tqdm

from gainlib.data.protocol import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from gainlib.data.saliency import SaliencyPrior
from gainlib.data.sample import Transform, build_sample
from gainlib.data.transforms import AlignedResize
from gainlib.data.voc_layout import (
    DataFileError,
    PathLike,
    VOC_CLASSES,
    parse_annotation_xml,
    read_classes,
    read_id_list,
    read_mask,
)

__all__ = ["VOCDataset", "voc_transforms", "files_fingerprint", "DataFileError", "VOC_CLASSES"]

log = logging.getLogger(__name__)


def voc_transforms(train: bool, size: int = 321) -> v2.Transform:
    """Joint v2 transforms for VOC: resize to ``size x size`` (the paper's 321, Sec. 4.1) and,
    for training, a random horizontal flip. Image, mask, saliency and boxes stay aligned
    (:class:`~gainlib.data.transforms.AlignedResize` samples masks at pixel centres)."""
    steps: list[v2.Transform] = [AlignedResize((size, size))]
    if train:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


def _resolve_root(root: PathLike) -> Path:
    root = Path(root)
    nested = root / "VOCdevkit" / "VOC2012"
    return nested if not (root / "JPEGImages").is_dir() and nested.is_dir() else root


def _mask_folder(root: Path, mask_dir: str | None) -> Path | None:
    """The masks' folder of ``mask_dir`` (``"auto"``: ``SegmentationClassAug`` if it exists,
    else ``SegmentationClass``)."""
    if mask_dir == "auto":
        mask_dir = "SegmentationClassAug" if (root / "SegmentationClassAug").is_dir() else "SegmentationClass"
    return None if mask_dir is None else root / mask_dir


def _stamp(path: Path, *, changes: bool = False) -> str:
    """Size and modification time of ``path`` (``"missing"``); with ``changes`` also its inode
    and status change time, which no copy preserves (for deciding to fingerprint again)."""
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}" + (f":{stat.st_ino}:{stat.st_ctime_ns}" if changes else "")


def files_fingerprint(root: PathLike, splits: Sequence[str], *, mask_dir: str | None = "auto",
                      annotation_dir: str | None = "Annotations",
                      list_dir: str = "ImageSets/Segmentation") -> str:
    """A digest of what :class:`VOCDataset` reads for ``splits`` under ``root`` (same
    arguments): the lists' contents, and the size and modification time of ``classes.txt`` and
    of every listed sample's image, masks and annotation. Another tree under the same path
    gives another digest. It stats the files (about 40,000 for VOC + SBD), never reads them,
    and is computed once per process for as long as the list files stay the same files.
    """
    root = _resolve_root(Path(root).expanduser().resolve())
    lists = tuple(root / list_dir / f"{split}.txt" for split in splits)
    return _fingerprint(root, lists, _mask_folder(root, mask_dir),
                        None if annotation_dir is None else root / annotation_dir,
                        tuple(_stamp(path, changes=True) for path in lists))


@functools.lru_cache(maxsize=16)
def _fingerprint(root: Path, lists: tuple[Path, ...], masks: Path | None,
                 annotations: Path | None, stamps: tuple[str, ...]) -> str:
    # ``stamps`` only key the memo: new list files, new fingerprint.
    digest = hashlib.sha256()
    ids: set[str] = set()
    for path in lists:
        if path.is_file():
            ids.update(read_id_list(path))
            digest.update(f"{path.name}\n".encode() + path.read_bytes())
    files = [root / "classes.txt"]
    for sample_id in sorted(ids):
        files.append(root / "JPEGImages" / f"{sample_id}.jpg")
        if masks is not None:
            files += [masks / f"{sample_id}.png", masks / f"{sample_id}.mat"]
        if annotations is not None:
            files.append(annotations / f"{sample_id}.xml")
    for path in files:
        digest.update(f"{path.relative_to(root)}:{_stamp(path)}\n".encode())
    return digest.hexdigest()


class VOCDataset(Dataset):
    """A VOC-layout split as protocol samples.

    Args:
        root: the ``VOC2012`` directory (or a directory holding ``VOCdevkit/VOC2012``), or the
            root of a synthetic set written by ``data_scripts/make_synthetic.py``.
        split: list name in ``list_dir`` (``train_aug``, ``val``, ``train`` ...).
        classes: class names; default ``root/classes.txt`` if present, else the VOC 20.
        mask_dir: folder of masks (``<id>.png``, or SBD ``<id>.mat``); ``"auto"`` picks
            ``SegmentationClassAug`` if it exists, else ``SegmentationClass``; ``None``: no masks.
        annotation_dir: folder of annotation XML; ``None``: no boxes (labels from masks).
        list_dir: folder of the split lists, relative to the root.
        labels_from: ``"annotations"`` (all objects of the XML) or ``"mask"`` (classes with
            pixels in the mask).
        saliency: prior S for L_bbox computed from each image (``None``: no ``saliency`` key).
        transforms: torchvision v2 joint transform, e.g. :func:`voc_transforms`.
        on_error: ``"raise"`` or ``"skip"`` (see the module docstring).
        check_images: also decode every image and mask while building (slow, thorough).
        allow_empty: accept images without any object (all-negative labels), e.g. the
            ``context_only`` and ``biased_boat`` splits of a synthetic set on disk. VOC has
            none, so by default an empty label set is an error.
    """

    def __init__(self, root: PathLike, split: str = "train_aug", *, classes: Sequence[str] | None = None,
                 mask_dir: str | None = "auto", annotation_dir: str | None = "Annotations",
                 list_dir: str = "ImageSets/Segmentation",
                 labels_from: Literal["annotations", "mask"] = "annotations",
                 saliency: SaliencyPrior | None = None, transforms: Transform | None = None,
                 on_error: Literal["raise", "skip"] = "raise", check_images: bool = False,
                 allow_empty: bool = False, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if labels_from not in ("annotations", "mask"):
            raise ValueError(f"labels_from must be 'annotations' or 'mask', got {labels_from!r}")
        if labels_from == "annotations" and annotation_dir is None:
            raise ValueError("labels_from='annotations' needs an annotation_dir")
        if ImageFile.LOAD_TRUNCATED_IMAGES:
            log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True: truncated JPEGs would load "
                        "silently as partly grey images; set it to False to have them reported")
        self.root = _resolve_root(root)
        if not self.root.is_dir():
            raise DataFileError(self.root, "dataset root does not exist")
        self.split = split
        self.classes = tuple(classes) if classes is not None else read_classes(self.root)
        if labels_from == "mask" and mask_dir is None:
            raise ValueError("labels_from='mask' needs a mask_dir")
        self.mask_dir = _mask_folder(self.root, mask_dir)
        self.annotation_dir = None if annotation_dir is None else self.root / annotation_dir
        self.labels_from = labels_from
        self.saliency_prior = saliency
        self.transforms = transforms
        self.on_error = on_error
        self.allow_empty = allow_empty
        self.mean, self.std = tuple(mean), tuple(std)
        self.skipped: dict[str, str] = {}

        listed = read_id_list(self.root / list_dir / f"{split}.txt")
        self.ids: list[str] = []
        self._annotations: list[tuple[np.ndarray, np.ndarray] | None] = []
        problems: collections.Counter[str] = collections.Counter()
        for sample_id in tqdm(listed, desc=f"checking {split}", disable=len(listed) < 2000, leave=False):
            try:
                annotation = self._check(sample_id, decode=check_images)
            except DataFileError as error:
                self._skip_or_raise(sample_id, error)
                problems[error.problem.split(" (")[0]] += 1
                continue
            self.ids.append(sample_id)
            self._annotations.append(annotation)
        if problems:
            summary = ", ".join(f"{count} x {problem}" for problem, count in problems.most_common())
            log.warning("%s/%s: skipped %d of %d samples (%s)", self.root, split, sum(problems.values()),
                        len(listed), summary)
        if not self.ids:
            raise DataFileError(self.root / list_dir / f"{split}.txt", "no usable samples")
        n = len(self.ids)
        self.has_mask = np.full(n, self.mask_dir is not None)
        self.has_boxes = np.full(n, self.annotation_dir is not None)
        self.use_mask = np.zeros(n, dtype=bool)
        self.use_boxes = np.zeros(n, dtype=bool)

    # --- paths and checks ----------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def extra_label_indices(self) -> list[int]:
        """Indices of the samples flagged ``use_mask`` or ``use_boxes``, without decoding them."""
        return np.flatnonzero(self.use_mask | self.use_boxes).tolist()

    def image_path(self, sample_id: str) -> Path:
        return self.root / "JPEGImages" / f"{sample_id}.jpg"

    def mask_path(self, sample_id: str) -> Path:
        png = self.mask_dir / f"{sample_id}.png"
        mat = self.mask_dir / f"{sample_id}.mat"
        return mat if not png.is_file() and mat.is_file() else png

    def _check(self, sample_id: str, decode: bool) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.image_path(sample_id).is_file():
            raise DataFileError(self.image_path(sample_id), "missing image file")
        if self.mask_dir is not None and not self.mask_path(sample_id).is_file():
            raise DataFileError(self.mask_path(sample_id), "missing mask file")
        annotation = None
        if self.annotation_dir is not None:
            boxes, labels, _ = parse_annotation_xml(self.annotation_dir / f"{sample_id}.xml", self.classes,
                                                    allow_empty=self.allow_empty)
            annotation = (boxes, labels)
        if decode:
            self._load(sample_id, annotation)
        return annotation

    def _skip_or_raise(self, sample_id: str, error: DataFileError) -> None:
        if self.on_error == "raise":
            raise error
        self.skipped[sample_id] = str(error)
        log.warning("skipping %s: %s", sample_id, error)

    # --- loading -------------------------------------------------------------------------------

    def _load_image(self, sample_id: str) -> np.ndarray:
        path = self.image_path(sample_id)
        try:
            with Image.open(path) as image:
                image.load()                     # decodes fully: truncation raises here
                return np.array(image.convert("RGB"))
        except FileNotFoundError as error:
            raise DataFileError(path, "missing image file") from error
        except (OSError, SyntaxError, ValueError) as error:
            raise DataFileError(path, f"corrupt or truncated image ({error})") from error

    def _load_mask(self, sample_id: str, shape: tuple[int, int]) -> np.ndarray:
        path = self.mask_path(sample_id)
        mask = read_mask(path)
        if mask.shape != shape:
            raise DataFileError(path, f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {shape[1]}x{shape[0]}")
        bad = np.setdiff1d(np.unique(mask), [*range(self.num_classes + 1), IGNORE_INDEX])
        if bad.size:
            raise DataFileError(path, f"mask values outside 0..{self.num_classes} and {IGNORE_INDEX}: "
                                      f"{bad[:10].tolist()}")
        return mask

    def _load(self, sample_id: str, annotation: tuple[np.ndarray, np.ndarray] | None) -> dict[str, Any]:
        image = self._load_image(sample_id)
        height, width = image.shape[:2]
        mask = self._load_mask(sample_id, (height, width)) if self.mask_dir is not None else None
        labels = np.zeros(self.num_classes, np.float32)
        if self.labels_from == "annotations":
            labels[annotation[1]] = 1.0
        else:
            present = np.unique(mask)
            labels[present[(present >= 1) & (present <= self.num_classes)] - 1] = 1.0
        if not labels.any() and not self.allow_empty:
            raise DataFileError(self.mask_path(sample_id), "empty label set: the mask has no class pixels "
                                                          "(pass allow_empty=True if that is expected)")
        boxes = box_labels = None
        if annotation is not None:
            boxes, box_labels = annotation
            # One pixel of slack for annotation rounding; anything further out is an error.
            outside = ((boxes[:, 0] < -1) | (boxes[:, 1] < -1) | (boxes[:, 2] > width + 1)
                       | (boxes[:, 3] > height + 1))
            if outside.any():
                raise DataFileError(self.annotation_dir / f"{sample_id}.xml",
                                    f"box {boxes[outside][0].tolist()} lies outside the {width}x{height} image")
            boxes = boxes.copy()
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        saliency = None if self.saliency_prior is None else self.saliency_prior(image)
        return {"image": image, "mask": mask, "labels": labels, "boxes": boxes,
                "box_labels": box_labels, "saliency": saliency}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        for attempt in range(len(self.ids)):
            i = (index + attempt) % len(self.ids)
            sample_id = self.ids[i]
            if sample_id in self.skipped:       # already reported once
                continue
            try:
                arrays = self._load(sample_id, self._annotations[i])
            except DataFileError as error:
                self._skip_or_raise(sample_id, error)
                continue
            return build_sample(
                image=arrays["image"], labels=arrays["labels"], sample_id=sample_id, mask=arrays["mask"],
                boxes=arrays["boxes"], box_labels=arrays["box_labels"], saliency=arrays["saliency"],
                use_mask=bool(self.use_mask[i]), use_boxes=bool(self.use_boxes[i]),
                transforms=self.transforms, mean=self.mean, std=self.std)
        raise DataFileError(self.root, f"every sample of split {self.split!r} failed to load")
