"""PASCAL VOC file conventions: class names, palette PNG masks, annotation XML, id lists.

Shared by the VOC loader (:mod:`gainlib.data.voc`), ``data_scripts/get_voc.py`` (SBD
conversion, lists) and ``data_scripts/make_synthetic.py`` (writing a synthetic set in VOC
layout). Layout of a VOC-style root::

    root/JPEGImages/<id>.jpg
    root/SegmentationClass/<id>.png        palette PNG, 0 background, 1..C, 255 ignore
    root/SegmentationClassAug/<id>.png     train_aug masks (VOC's own where it has one, else SBD)
    root/Annotations/<id>.xml              objects with name and 1-based inclusive bndbox
    root/ImageSets/Segmentation/<split>.txt  one id per line
    root/classes.txt                       optional: class names, one per line (synthetic sets)

Boxes inside gainlib are ``(x1, y1, x2, y2)`` in pixel coordinates where pixel ``x`` spans
``[x, x + 1)``; VOC's 1-based inclusive ``xmin..xmax`` is therefore ``x1 = xmin - 1``,
``x2 = xmax``.
"""

from __future__ import annotations

import collections
import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

PathLike = str | os.PathLike


class DataFileError(ValueError):
    """A data file is missing or bad; the message names the file and the problem."""

    def __init__(self, path: PathLike, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def voc_palette() -> list[int]:
    """The 256-entry VOC colour map as a flat ``[r0, g0, b0, r1, ...]`` list (PIL putpalette)."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


def write_atomically(path: PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write`` on a uniquely named temporary file beside ``path``, then rename it to
    ``path``: a writer killed halfway leaves the old file or none, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def write_mask_png(path: PathLike, mask: np.ndarray) -> None:
    """Write a class-index mask as a VOC palette PNG (mode ``P``), atomically."""
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    image.putpalette(voc_palette())
    write_atomically(path, lambda temporary: image.save(temporary, format="PNG"))


def read_mask(path: PathLike) -> np.ndarray:
    """Read a class-index mask: a palette/greyscale PNG or an SBD ``cls/<id>.mat`` file.

    Raises :class:`DataFileError` for a missing or unreadable file, or a colour (RGB) PNG,
    whose pixel values are colours, not class indices.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, "missing mask file")
    if path.suffix == ".mat":
        return _read_sbd_mat(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("P", "L"):
                raise DataFileError(path, f"mask must be a palette or greyscale PNG of class indices, "
                                          f"got mode {image.mode!r}")
            return np.array(image, dtype=np.uint8)
    except DataFileError:
        raise
    except (OSError, SyntaxError, ValueError) as error:
        raise DataFileError(path, f"corrupt or truncated mask ({error})") from error


def _read_sbd_mat(path: Path) -> np.ndarray:
    # Same access path as torchvision.datasets.SBDataset: mat["GTcls"][0]["Segmentation"][0].
    from scipy.io import loadmat   # scipy is in the [data] extra; only SBD needs it

    try:
        mat = loadmat(str(path))
        return np.asarray(mat["GTcls"][0]["Segmentation"][0], dtype=np.uint8)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise DataFileError(path, f"not a readable SBD class file ({error})") from error


def write_annotation_xml(path: PathLike, filename: str, width: int, height: int,
                         objects: Sequence[tuple[str, Sequence[float]]]) -> None:
    """Write a VOC annotation: ``objects`` are ``(class name, (x1, y1, x2, y2))`` in gainlib
    pixel coordinates (converted to VOC's 1-based inclusive integers)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "1"
    for name, (x1, y1, x2, y2) in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        for tag, value in (("pose", "Unspecified"), ("truncated", "0"), ("difficult", "0")):
            ET.SubElement(obj, tag).text = value
        box = ET.SubElement(obj, "bndbox")
        for tag, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(box, tag).text = str(int(round(value)))
    ET.indent(root)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=False)


def parse_annotation_xml(path: PathLike, classes: Sequence[str], allow_empty: bool = False
                         ) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None]:
    """Objects of a VOC annotation: ``(boxes float32 [N, 4] xyxy, labels int64 [N], (H, W) or None)``.

    Raises :class:`DataFileError` if the file is missing or malformed, has no ``<object>``
    (unless ``allow_empty``: a negative image), names a class not in ``classes`` or has a box
    that is not numeric or is empty.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, "missing annotation file")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise DataFileError(path, f"malformed XML ({error})") from error
    index = {name: i for i, name in enumerate(classes)}
    objects = root.findall("object")
    if not objects and not allow_empty:
        raise DataFileError(path, "annotation has no <object>: empty label set "
                                  "(pass allow_empty=True if images without objects are expected)")
    boxes, labels = [], []
    for k, obj in enumerate(objects):
        name = (obj.findtext("name") or "").strip()
        if name not in index:
            raise DataFileError(path, f"object {k} has unknown class {name!r}")
        box = obj.find("bndbox")
        try:
            xmin, ymin, xmax, ymax = (float(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError) as error:
            raise DataFileError(path, f"object {k} ({name}) has a missing or non-numeric bndbox") from error
        x1, y1, x2, y2 = xmin - 1, ymin - 1, xmax, ymax
        if not (x2 > x1 and y2 > y1):
            raise DataFileError(path, f"object {k} ({name}) has an empty box {xmin, ymin, xmax, ymax}")
        boxes.append((x1, y1, x2, y2))
        labels.append(index[name])
    size = root.find("size")
    shape = None
    if size is not None and size.findtext("height") and size.findtext("width"):
        try:
            shape = (int(float(size.findtext("height"))), int(float(size.findtext("width"))))
        except ValueError:
            shape = None
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64), shape


def check_ids(ids: Sequence[str], path: PathLike) -> None:
    """Raise :class:`DataFileError` (naming the list ``path``) for an id that is not a plain
    file name (``../x``, ``a/b``, ``/x``: it would read or write files outside the root) or that
    is listed twice (a sample counted twice in a split, a subset with fewer images than its name)."""
    for line, sample_id in enumerate(ids, 1):
        if (not sample_id or sample_id in (".", "..") or "/" in sample_id or "\\" in sample_id
                or "\0" in sample_id):
            raise DataFileError(path, f"id {sample_id!r} (entry {line}) is not a file name: ids name "
                                      "files inside the dataset's root")
    counts = collections.Counter(ids)
    twice = [sample_id for sample_id, n in counts.items() if n > 1]
    if twice:
        entries = [i for i, sample_id in enumerate(ids, 1) if sample_id == twice[0]]
        raise DataFileError(path, f"id {twice[0]!r} is listed {counts[twice[0]]} times (entries "
                                  f"{entries}); {len(twice)} ids are listed more than once")


def read_id_list(path: PathLike) -> list[str]:
    """Ids of an ``ImageSets`` list file (UTF-8, one per line, the first word; blank lines
    ignored; a byte-order mark stripped), checked by :func:`check_ids`."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, "missing id list")
    try:
        lines = path.read_text(encoding="utf-8-sig").replace("\ufeff", "").splitlines()
    except UnicodeDecodeError as error:
        raise DataFileError(path, f"not UTF-8 text ({error}); save the list as UTF-8") from None
    ids = [line.split()[0] for line in lines if line.strip()]
    check_ids(ids, path)
    return ids


def write_id_list(path: PathLike, ids: Sequence[str]) -> None:
    """Write ids one per line (the ``ImageSets`` format), checked by :func:`check_ids`."""
    check_ids(list(ids), path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"{i}\n" for i in ids))


def read_classes(root: PathLike) -> tuple[str, ...]:
    """Class names from ``root/classes.txt`` if present, else the 20 VOC classes."""
    path = Path(root) / "classes.txt"
    if path.is_file():
        return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    return VOC_CLASSES
