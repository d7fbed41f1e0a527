"""Localization cues from attention (paper Sec. 4, following SEC): which pixels a segmentation
network is told belong to a class, or to the background.

For each ground-truth class ``c`` the pixels whose attention exceeds 20 percent of the map's
maximum are a foreground cue ``l^c_x = 1``; background cues come from a saliency prior
(DHSNet [30] in the paper; any prior of :mod:`gainlib.data.saliency`), or from the attention
itself when there is none. :func:`localization_cues` on a batch of maps,
:func:`cues_from_model` on a batch of images, :func:`attention_cues` over a whole dataset;
:func:`to_uint8_images` gives the priors (and the dense CRF of
:mod:`gainlib.segmentation.crf`) the images as ``uint8``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from gainlib.data.batching import iter_batches
from gainlib.data.protocol import IMAGENET_MEAN, IMAGENET_STD
from gainlib.data.saliency import SaliencyPrior
from gainlib.models import eval_mode

__all__ = ["FG_THRESHOLD", "BG_THRESHOLD", "localization_cues", "cues_from_model", "to_uint8_images",
           "attention_cues"]

#: Foreground cue: attention above this fraction of the map's maximum (paper Sec. 4, from SEC).
FG_THRESHOLD = 0.2
#: Background cue: saliency below this value (our choice; the paper gives none).
BG_THRESHOLD = 0.1


def localization_cues(
    maps: Tensor,
    classes: Tensor,
    valid: Tensor,
    num_classes: int,
    saliency: Tensor | None = None,
    fg_threshold: float = FG_THRESHOLD,
    bg_threshold: float = BG_THRESHOLD,
    size: tuple[int, int] | None = None,
) -> Tensor:
    """Localization cues ``l^c_x`` from attention maps (paper Sec. 4, following SEC).

    * Foreground, channel ``c + 1``: ``A^c_x > fg_threshold * max_x A^c_x`` for each valid slot
      of class ``c`` ("all pixels with a score larger than 20 percent of the maximum score").
      An all-zero map gives no cue. Several classes may claim the same pixel, which the
      seeding loss (:func:`gainlib.losses.segmentation_loss`) accepts.
    * Background, channel 0: ``S_x < bg_threshold`` and no foreground cue at ``x``. ``S`` is the
      given saliency prior, or, when ``saliency`` is None, the largest normalised attention
      ``max_c A^c_x / max A^c`` over the image's valid slots (0 for an image without any).
    * Pixels with no cue at all are left out of the seeding loss.

    Args:
        maps: ``[B, K, H, W]`` attention maps (any non-negative scale; each map is compared
            with its own maximum).
        classes: ``[B, K]`` label index of each slot; valid: ``[B, K]`` bool, False for padding.
        num_classes: ``C``, the number of object classes.
        saliency: ``[B, H, W]`` saliency prior in [0, 1] (or at ``size``), or None.
        fg_threshold, bg_threshold: the two thresholds above.
        size: ``(h, w)`` to compute the cues at (e.g. the segmentation output's size): maps
            and saliency are resized bilinearly first. None keeps ``(H, W)``.

    Returns:
        ``[B, C + 1, H, W]`` (or ``[B, C + 1, h, w]``) bool cues, channel 0 background.
    """
    if maps.ndim != 4 or classes.shape != maps.shape[:2] or valid.shape != classes.shape:
        raise ValueError(f"maps must be [B, K, H, W] with classes and valid [B, K]; got maps "
                         f"{list(maps.shape)}, classes {list(classes.shape)}, valid {list(valid.shape)}")
    used = classes[valid.bool()]
    if used.numel() and (used.min() < 0 or used.max() >= num_classes):
        raise ValueError(f"classes must be label indices 0..{num_classes - 1}")
    maps = maps.float()
    if size is not None and tuple(size) != tuple(maps.shape[-2:]):
        maps = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)
    batch, _, height, width = maps.shape
    peak = maps.amax(dim=(-2, -1), keepdim=True)
    fg_slots = (maps > fg_threshold * peak) & valid[:, :, None, None]           # [B, K, h, w]
    slot_class = F.one_hot(classes.long(), num_classes).float()                  # [B, K, C]
    fg = torch.einsum("bkc,bkhw->bchw", slot_class, fg_slots.float()) > 0        # [B, C, h, w]
    if saliency is None:
        normalised = maps / peak.clamp_min(torch.finfo(maps.dtype).tiny)
        prior = (normalised * valid[:, :, None, None]).amax(dim=1) if maps.shape[1] else \
            maps.new_zeros(batch, height, width)
    else:
        prior = saliency.float()
        if prior.ndim != 3 or prior.shape[0] != batch:
            raise ValueError(f"saliency must be [B={batch}, H, W], got {list(saliency.shape)}")
        if prior.shape[-2:] != (height, width):
            prior = F.interpolate(prior[:, None], size=(height, width), mode="bilinear",
                                  align_corners=False)[:, 0]
    background = (prior < bg_threshold) & ~fg.any(dim=1)
    return torch.cat([background[:, None], fg], dim=1)


def to_uint8_images(
    images: Tensor | np.ndarray,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """RGB images as ``uint8 [B, h, w, 3]`` numpy, for the saliency priors and the dense CRF.

    Args:
        images: ``uint8 [B, H, W, 3]`` (numpy or tensor), or float ``[B, 3, H, W]`` normalised
            with ``mean``/``std`` (the sample protocol); ``mean=None`` means already in [0, 1].
        size: ``(h, w)`` to resize to (bilinear, antialiased when shrinking, as SEC shrinks the
            image for its CRF); None keeps ``(H, W)``.
    """
    if isinstance(images, np.ndarray) or images.dtype == torch.uint8:
        pixels = torch.as_tensor(images)
        if pixels.ndim != 4 or pixels.shape[-1] != 3 or pixels.dtype != torch.uint8:
            raise ValueError(f"uint8 images must be [B, H, W, 3], got {list(pixels.shape)} {pixels.dtype}")
        if size is None or tuple(size) == tuple(pixels.shape[1:3]):
            return pixels.cpu().numpy()
        unit = pixels.permute(0, 3, 1, 2).float() / 255
    else:
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"float images must be [B, 3, H, W], got {list(images.shape)} {images.dtype}")
        unit = images.detach().float()
        if mean is not None:
            scale = torch.tensor(std if std is not None else (1.0, 1.0, 1.0), device=unit.device)
            unit = unit * scale.view(1, 3, 1, 1) + torch.tensor(mean, device=unit.device).view(1, 3, 1, 1)
    if size is not None and tuple(size) != tuple(unit.shape[-2:]):
        shrink = size[0] < unit.shape[-2] or size[1] < unit.shape[-1]
        unit = F.interpolate(unit, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink)
    pixels = (unit.clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def cues_from_model(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    saliency: Tensor | SaliencyPrior | None = None,
    fg_threshold: float = FG_THRESHOLD,
    bg_threshold: float = BG_THRESHOLD,
    size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
) -> Tensor:
    """Localization cues of a trained GAIN: ``model.attention(images, labels=labels)`` (Grad-CAM
    of every ground-truth class, Eq. 1-2) through :func:`localization_cues`.

    Args:
        model: a :class:`gainlib.gain.GAIN` (anything with the same ``attention`` method).
        images: ``[B, 3, H, W]`` normalised images; labels: ``[B, C]`` multi-hot.
        saliency: ``[B, H, W]`` prior, a :data:`gainlib.data.saliency.SaliencyPrior` callable
            (run on the de-normalised ``uint8`` images, see :func:`to_uint8_images`), or None.
        size: cue resolution, e.g. the segmentation network's output size.

    Returns:
        ``[B, C + 1, H, W]`` (or at ``size``) bool cues.
    """
    out = model.attention(images, labels=labels)
    if callable(saliency):
        saliency = torch.as_tensor(np.asarray(saliency(to_uint8_images(images, mean, std)), np.float32),
                                   device=images.device)
    return localization_cues(out.maps.detach(), out.classes, out.valid, labels.shape[1], saliency,
                             fg_threshold, bg_threshold, size)


@torch.no_grad()
def attention_cues(model: nn.Module, dataset: Dataset, size: tuple[int, int],
                   fg_threshold: float = FG_THRESHOLD, bg_threshold: float = BG_THRESHOLD,
                   batch_size: int = 64, progress: bool = False) -> Tensor:
    """Localization cues of ``model`` on every sample of ``dataset`` (paper Sec. 4).

    Foreground: the Grad-CAM ``A^c`` of each ground-truth class above ``fg_threshold`` of its
    maximum. Background: the sample's ``saliency`` (the prior of ``L_bbox``, Eq. 9) below
    ``bg_threshold`` where no foreground cue is; a dataset without saliency falls back to the
    attention itself (:func:`localization_cues`).

    Returns:
        ``bool [N, C + 1, h, w]`` at ``size`` (the segmentation network's output size), CPU.
    """
    device = next(model.parameters()).device
    cues = []
    with eval_mode(model):
        for _, batch in tqdm(iter_batches(dataset, batch_size=batch_size),
                             total=math.ceil(len(dataset) / batch_size),
                             desc="cues", disable=not progress, leave=False):
            with torch.enable_grad():   # Grad-CAM needs the gradient of the scores
                out = model.attention(batch["image"].to(device), labels=batch["labels"].to(device))
            saliency = batch.get("saliency")
            cues.append(localization_cues(
                out.maps.detach(), out.classes, out.valid, batch["labels"].shape[1],
                None if saliency is None else saliency.to(device), fg_threshold, bg_threshold,
                size).cpu())
    return torch.cat(cues)
