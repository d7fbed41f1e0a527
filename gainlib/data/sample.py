"""Turn decoded arrays into a protocol sample, with joint torchvision-v2 augmentation.

Every gainlib dataset ends its ``__getitem__`` with :func:`build_sample`, so synthetic and
VOC samples are built, augmented and normalised the same way. The image, mask, saliency
prior and boxes are wrapped as ``tv_tensors`` (``Image``, ``Mask``, ``Mask``,
``BoundingBoxes``) and passed *together* through the user's v2 transform, which keeps them
aligned. The saliency prior travels as a ``Mask`` so that it gets geometric transforms
(nearest-neighbour) and never photometric ones.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from gainlib.data.protocol import IMAGENET_MEAN, IMAGENET_STD

Transform = Callable[[dict[str, Any]], dict[str, Any]]


def _as_chw_uint8(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        if not image.flags.writeable:        # e.g. np.asarray of a PIL image; torch wants writable memory
            image = image.copy()
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    return image


def build_sample(*, image: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, sample_id: str,
                 mask: np.ndarray | None = None, boxes: np.ndarray | None = None,
                 box_labels: np.ndarray | None = None, saliency: np.ndarray | None = None,
                 use_mask: bool = False, use_boxes: bool = False, transforms: Transform | None = None,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> dict[str, Any]:
    """Build one sample of the protocol (:mod:`gainlib.data.protocol`).

    ``image`` is ``uint8 [H, W, 3]`` (or a ``uint8 [3, H, W]`` tensor), ``mask`` ``[H, W]``
    class indices, ``boxes`` ``[N, 4]`` xyxy pixels, ``saliency`` ``[H, W]`` in [0, 1] (float)
    or 0..255 (uint8). ``transforms`` is a torchvision v2 transform called on a dict with keys
    ``image`` (``tv_tensors.Image``), ``mask``/``saliency`` (``tv_tensors.Mask``), ``boxes``
    (``tv_tensors.BoundingBoxes``), ``box_labels``; it must keep the image ``uint8`` or
    return it as float in [0, 1]. Afterwards boxes are clipped to the image and boxes left
    with zero width or height are dropped with their labels; the image is converted to float
    and normalised with ``mean``/``std``. Image-level ``labels`` are never changed by
    transforms, so use crops that keep the objects (or none) when training on labels.
    """
    chw = _as_chw_uint8(image)
    height, width = chw.shape[-2:]
    data: dict[str, Any] = {"image": tv_tensors.Image(chw)}
    if mask is not None:
        data["mask"] = tv_tensors.Mask(torch.as_tensor(np.asarray(mask)).to(torch.int64))
    if saliency is not None:
        sal = torch.as_tensor(np.asarray(saliency))
        sal = sal.float() / 255.0 if sal.dtype == torch.uint8 else sal.float()
        data["saliency"] = tv_tensors.Mask(sal)
    if boxes is not None:
        data["boxes"] = tv_tensors.BoundingBoxes(
            torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4),
            format="XYXY", canvas_size=(height, width))
        data["box_labels"] = torch.as_tensor(np.asarray(box_labels, dtype=np.int64)).reshape(-1)
    if transforms is not None:
        data = transforms(data)

    img = data["image"]
    img = TF.to_dtype(img, torch.float32, scale=True) if img.dtype == torch.uint8 else img.float()
    img = TF.normalize(img, mean=list(mean), std=list(std))
    sample: dict[str, Any] = {
        "image": img.as_subclass(torch.Tensor),
        "labels": torch.as_tensor(np.asarray(labels, dtype=np.float32)),
        "use_mask": bool(use_mask),
        "use_boxes": bool(use_boxes),
        "id": sample_id,
    }
    if "mask" in data:
        sample["mask"] = data["mask"].as_subclass(torch.Tensor).to(torch.int64)
    if "saliency" in data:
        sample["saliency"] = data["saliency"].as_subclass(torch.Tensor).float().clamp(0, 1)
    if "boxes" in data:
        out_h, out_w = img.shape[-2:]
        b = data["boxes"].as_subclass(torch.Tensor).float().clone()
        b[:, 0::2] = b[:, 0::2].clamp(0, out_w)
        b[:, 1::2] = b[:, 1::2].clamp(0, out_h)
        keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        sample["boxes"] = b[keep]
        sample["box_labels"] = data["box_labels"][keep].to(torch.int64)
    return sample
