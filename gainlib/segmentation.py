"""Weakly supervised segmentation from GAIN's attention (paper Sec. 4, Eq. 11-12) and SEC.

The paper evaluates its attention maps by what a segmentation network trained on them can do:

1. **Localization cues** (Sec. 4): for each ground-truth class ``c`` the pixels whose attention
   exceeds 20 percent of the map's maximum are a foreground cue ``l^c_x = 1``; background cues
   come from a saliency network (DHSNet [30] in the paper). :func:`localization_cues`,
   :func:`cues_from_model`.
2. **SEC** (Kolesnikov & Lampert, "Seed, Expand and Constrain", ECCV 2016), the framework of the
   paper's GAIN-SEC rows: :func:`seeding_loss`, :func:`expansion_loss` (with
   :func:`global_weighted_rank_pooling`), :func:`constrain_loss` on a fully connected CRF
   (:func:`dense_crf`, :func:`crf_refine`), and their sum :func:`sec_loss`.
3. The paper's own framework (Fig. 4, Eq. 11-12) uses the cues with
   :func:`gainlib.losses.segmentation_loss` and
   :func:`gainlib.losses.weakly_supervised_segmentation_loss` on a DeepLab network
   (:func:`deeplabv3_resnet101`); :class:`SmallFCN` is the CPU-sized stand-in.
4. Over a whole dataset: :func:`attention_cues` (the cues of a trained attention model),
   :func:`predict_segmentation` (with or without the CRF), :func:`segmentation_scores` (IoU
   per class and mIoU, the layout of the paper's Table 2), :func:`cue_quality`; and
   :func:`segmentation_miou` for label tensors (mIoU over VOC's 21 classes, ignore 255).
5. Training: :class:`SegmentationTrainer` trains a network with the loss of Eq. 11-12, SEC's,
   or supervised cross entropy, through :class:`gainlib.trainer.Trainer` (checkpoints, exact
   resume, the non-finite guard), configured by :class:`SegmentationConfig`.

Shapes: ``B`` images, ``C`` object classes (label indices ``0..C-1``), ``C + 1`` segmentation
channels with channel 0 the background and channel ``c + 1`` the label index ``c`` (the VOC mask
convention of :mod:`gainlib.data.protocol`), ``K`` attention slots per image
(:func:`gainlib.attention.positive_classes`).

Choices where the papers leave room (each documented again where it is made):

* **Background cue rule.** The paper applies DHSNet "several times" without giving a threshold.
  Here a pixel is a background cue where the saliency prior ``S`` is *below* ``bg_threshold``
  (0.1 by default) and no foreground cue claims it. Any prior of
  :mod:`gainlib.data.saliency` plugs in; with no prior, ``S`` is the largest normalised
  attention of the image's classes, so pixels that no class attends to are background.
* **Seeding normalisation.** :func:`gainlib.losses.segmentation_loss` divides by the cues of the
  whole batch; SEC divides by each image's cues and averages images. :func:`seeding_loss` does
  either (``per_image``); :func:`sec_loss` follows SEC.
* **Expansion for absent classes.** SEC's paper and released code pool the classes absent from
  the image with ``d- = 0``, i.e. global *max* pooling (any confident pixel of an absent class
  is penalised); ``d_neg`` changes it.
* **Probability floors.** SEC adds 1e-4 to its softmax; here the logarithms are computed from
  logits (``log_softmax``), and only the GWRP values are clamped away from 0 and 1.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, NamedTuple, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from gainlib.data.batching import iter_batches
from gainlib.data.protocol import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, collate_samples
from gainlib.data.saliency import SaliencyPrior
from gainlib.losses import segmentation_loss, weakly_supervised_segmentation_loss
from gainlib.metrics import ConfusionMatrix
from gainlib.models import eval_mode
from gainlib.trainer import Trainer, check_loop_settings
from gainlib.validation import check_choice, check_real

__all__ = [
    "FG_THRESHOLD",
    "BG_THRESHOLD",
    "SEC_D_FG",
    "SEC_D_BG",
    "SEC_D_NEG",
    "SEC_CRF_SCALE",
    "localization_cues",
    "cues_from_model",
    "to_uint8_images",
    "seeding_loss",
    "global_weighted_rank_pooling",
    "expansion_loss",
    "dense_crf",
    "crf_refine",
    "constrain_targets",
    "constrain_loss",
    "SECLosses",
    "sec_loss",
    "SmallFCN",
    "DeepLabLargeFOV",
    "LogitsOnly",
    "deeplabv3_resnet101",
    "segmentation_miou",
    "attention_cues",
    "output_size",
    "predict_segmentation",
    "segmentation_scores",
    "cue_quality",
    "SegmentationConfig",
    "SegmentationTrainer",
    "sec_refiner",
]

#: Foreground cue: attention above this fraction of the map's maximum (paper Sec. 4, from SEC).
FG_THRESHOLD = 0.2
#: Background cue: saliency below this value (our choice; the paper gives none).
BG_THRESHOLD = 0.1
#: GWRP decays of SEC's expansion loss: present classes, background, absent classes (max pooling).
SEC_D_FG, SEC_D_BG, SEC_D_NEG = 0.996, 0.999, 0.0
#: SEC's constrain layer divides the CRF's spatial standard deviations by 12 on its 41x41 output.
SEC_CRF_SCALE = 12.0

#: ``refine(images_uint8 [B, h, w, 3], probs [B, C + 1, h, w]) -> Q [B, C + 1, h, w]``.
Refiner = Callable[[np.ndarray, Tensor], Union[Tensor, np.ndarray]]


# --------------------------------------------------------------------------- localization cues


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


# --------------------------------------------------------------------------- SEC losses


def seeding_loss(seg_logits: Tensor, cues: Tensor, per_image: bool = False) -> Tensor:
    """SEC's seeding loss, which is the paper's Eq. 11 (:func:`gainlib.losses.segmentation_loss`).

    ``L_seed = -1 / sum_{u,c} l^c_u * sum_{c} sum_{u: l^c_u = 1} log f_{u,c}``, with ``f`` the
    softmax of ``seg_logits`` over the ``C + 1`` channels and ``l`` the cues.

    Args:
        seg_logits: ``[B, C + 1, h, w]`` logits; cues: ``[B, C + 1, h, w]`` bool / 0-1.
        per_image: False divides by the cues of the whole batch (``segmentation_loss``); True
            divides each image by its own cue count and averages the images, as SEC's code does
            (the two agree for one image, or images with equal cue counts).

    Returns:
        Scalar; images without cues contribute 0.
    """
    if not per_image:
        return segmentation_loss(seg_logits, cues)
    if seg_logits.shape[0] == 0:
        return seg_logits.sum() * 0.0
    return torch.stack([segmentation_loss(seg_logits[i:i + 1], cues[i:i + 1])
                        for i in range(seg_logits.shape[0])]).mean()


def global_weighted_rank_pooling(scores: Tensor, decay: float | Tensor) -> Tensor:
    """Global weighted rank pooling (GWRP, SEC Eq. 3).

    ``G_c = sum_j d_c^(j-1) * s_{c,(j)} / sum_j d_c^(j-1)`` where ``s_{c,(1)} >= s_{c,(2)} >= ...``
    are the scores of channel ``c`` over all ``n = h * w`` pixels, sorted in decreasing order.
    ``d = 0`` is global max pooling, ``d = 1`` global average pooling.

    Args:
        scores: ``[B, C, h, w]``.
        decay: a float, or ``[C]`` / ``[B, C]`` decays in [0, 1].

    Returns:
        ``[B, C]``; differentiable (through the sort) with respect to ``scores``.
    """
    if scores.ndim != 4:
        raise ValueError(f"scores must be [B, C, h, w], got {list(scores.shape)}")
    ranked = scores.flatten(2).sort(dim=-1, descending=True).values            # [B, C, n]
    d = torch.as_tensor(decay, dtype=scores.dtype, device=scores.device)
    if ((d < 0) | (d > 1)).any():
        raise ValueError("GWRP decays must lie in [0, 1]")
    powers = torch.arange(ranked.shape[-1], dtype=scores.dtype, device=scores.device)
    weights = d.unsqueeze(-1) ** powers                                         # 0 ** 0 == 1
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return (ranked * weights).sum(dim=-1)


def expansion_loss(
    seg_logits: Tensor,
    labels: Tensor,
    d_fg: float = SEC_D_FG,
    d_bg: float = SEC_D_BG,
    d_neg: float = SEC_D_NEG,
) -> Tensor:
    """SEC's expansion loss (Kolesnikov & Lampert 2016, Eq. 4), GWRP over the softmax ``f``.

    For an image with label set ``L`` among the ``C`` classes::

        L_expand = - 1/|L|      sum_{c in L}     log G_c(f; d_fg)
                   - 1/|C \\ L| sum_{c not in L} log(1 - G_c(f; d_neg))
                   - log G_bg(f; d_bg)

    averaged over the batch; the background is always present. ``d_fg = 0.996``,
    ``d_bg = 0.999`` and ``d_neg = 0`` (max pooling: no pixel may be confident about an absent
    class) are SEC's values. An image with no (no absent) class drops the first (second) term.
    G is clamped to ``[eps, 1 - eps]`` inside the logarithms (``eps`` of the dtype).

    Args:
        seg_logits: ``[B, C + 1, h, w]`` logits, channel 0 background.
        labels: ``[B, C]`` multi-hot image labels.
    """
    if seg_logits.ndim != 4 or labels.shape != (seg_logits.shape[0], seg_logits.shape[1] - 1):
        raise ValueError(f"labels must be [B, C] for seg_logits [B, C + 1, h, w] = "
                         f"{list(seg_logits.shape)}, got {list(labels.shape)}")
    present = labels > 0.5
    weight = present.to(seg_logits.dtype)
    decay = torch.full_like(weight, d_neg).masked_fill(present, d_fg)
    decay = torch.cat([torch.full_like(decay[:, :1], d_bg), decay], dim=1)
    pooled = global_weighted_rank_pooling(torch.softmax(seg_logits, dim=1), decay)
    eps = torch.finfo(seg_logits.dtype).eps
    pooled = pooled.clamp(eps, 1 - eps)
    fg = pooled[:, 1:]
    n_present, n_absent = weight.sum(1).clamp_min(1), (1 - weight).sum(1).clamp_min(1)
    loss_present = -(weight * torch.log(fg)).sum(1) / n_present
    loss_absent = -((1 - weight) * torch.log1p(-fg)).sum(1) / n_absent
    loss_background = -torch.log(pooled[:, 0])
    return (loss_present + loss_absent + loss_background).mean()


def _densecrf() -> Any:
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the dense CRF needs pydensecrf2 (it imports as `pydensecrf`): "
            "pip install 'gainlib[crf]' (or pip install pydensecrf2)") from error
    return dcrf


def dense_crf(
    image: np.ndarray,
    probs: np.ndarray,
    iterations: int = 10,
    gaussian_sxy: float = 3.0,
    gaussian_compat: float = 3.0,
    bilateral_sxy: float = 80.0,
    bilateral_srgb: float = 13.0,
    bilateral_compat: float = 10.0,
    scale_factor: float = 1.0,
    min_prob: float = 1e-4,
) -> np.ndarray:
    """Fully connected CRF (Krähenbühl & Koltun 2011) with DeepLab's and SEC's parameters.

    Unary ``-log p`` (``p`` floored at ``min_prob``, SEC's floor); a Gaussian kernel
    (``sxy = 3``, compat 3) and a bilateral kernel (``sxy = 80``, ``srgb = 13``, compat 10);
    10 mean-field iterations. ``scale_factor`` divides both spatial standard deviations: SEC's
    constrain loss uses 12 on its 41x41 output (:data:`SEC_CRF_SCALE`), inference 1.
    Runs pydensecrf (``pip install 'gainlib[crf]'``), imported on first use.

    Args:
        image: ``uint8 [H, W, 3]`` RGB image at the resolution of ``probs``.
        probs: ``[C, H, W]`` class probabilities.

    Returns:
        ``float32 [C, H, W]``: the CRF's marginals, a distribution over ``C`` at every pixel.
    """
    dcrf = _densecrf()
    image = np.ascontiguousarray(image, dtype=np.uint8)
    probs = np.asarray(probs, dtype=np.float32)
    if image.ndim != 3 or image.shape[-1] != 3 or probs.ndim != 3 or probs.shape[1:] != image.shape[:2]:
        raise ValueError(f"expected image [H, W, 3] and probs [C, H, W] of the same H, W; got "
                         f"image {list(image.shape)}, probs {list(probs.shape)}")
    n_labels, height, width = probs.shape
    unary = np.ascontiguousarray(-np.log(np.clip(probs, min_prob, None)).reshape(n_labels, -1))
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(unary)
    crf.addPairwiseGaussian(sxy=gaussian_sxy / scale_factor, compat=gaussian_compat)
    crf.addPairwiseBilateral(sxy=bilateral_sxy / scale_factor, srgb=bilateral_srgb, rgbim=image,
                             compat=bilateral_compat)
    return np.asarray(crf.inference(iterations), dtype=np.float32).reshape(n_labels, height, width)


def crf_refine(
    images: Tensor | np.ndarray,
    probs: Tensor,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    **crf_params: Any,
) -> Tensor:
    """:func:`dense_crf` over a batch.

    Args:
        images: ``uint8 [B, H, W, 3]`` or normalised float ``[B, 3, H, W]`` (see
            :func:`to_uint8_images`), resized to the size of ``probs`` when they differ.
        probs: ``[B, C, h, w]`` probabilities (detached; the CRF is not differentiated).
        crf_params: keyword arguments of :func:`dense_crf`.

    Returns:
        ``[B, C, h, w]`` refined probabilities, with the dtype and device of ``probs``.
    """
    if probs.ndim != 4:
        raise ValueError(f"probs must be [B, C, h, w], got {list(probs.shape)}")
    pixels = to_uint8_images(images, mean, std, size=tuple(probs.shape[-2:]))
    if pixels.shape[0] != probs.shape[0]:
        raise ValueError(f"{pixels.shape[0]} images for {probs.shape[0]} probability maps")
    array = probs.detach().float().cpu().numpy()
    refined = np.stack([dense_crf(pixels[i], array[i], **crf_params) for i in range(len(array))])
    return torch.from_numpy(refined).to(device=probs.device, dtype=probs.dtype)


def constrain_targets(
    seg_logits: Tensor,
    images: Tensor | np.ndarray,
    refine: Refiner | None = None,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
) -> Tensor:
    """SEC's CRF targets ``Q``: the network's own softmax, detached, refined by a dense CRF on
    the image shrunk to the output size.

    Args:
        seg_logits: ``[B, C + 1, h, w]``.
        images: as :func:`to_uint8_images` accepts; shrunk to ``(h, w)``.
        refine: ``refine(uint8 [B, h, w, 3], probs [B, C + 1, h, w]) -> [B, C + 1, h, w]``;
            default :func:`crf_refine` with ``scale_factor = 12`` (SEC's constrain layer).

    Returns:
        ``[B, C + 1, h, w]`` probabilities, detached.
    """
    probs = torch.softmax(seg_logits.detach(), dim=1)
    pixels = to_uint8_images(images, mean, std, size=tuple(seg_logits.shape[-2:]))
    if refine is None:
        refine = functools.partial(crf_refine, scale_factor=SEC_CRF_SCALE)
    refined = torch.as_tensor(refine(pixels, probs), dtype=probs.dtype, device=probs.device)
    if refined.shape != probs.shape:
        raise ValueError(f"refine returned {list(refined.shape)}, expected {list(probs.shape)}")
    return refined.detach()


def constrain_loss(seg_logits: Tensor, refined: Tensor) -> Tensor:
    """SEC's constrain loss: ``L_constrain = 1/n sum_u sum_c Q_{u,c} log(Q_{u,c} / f_{u,c})``.

    The mean over the ``n`` pixels (and the batch) of ``KL(Q_u || f_u)``, with ``f`` the softmax
    of ``seg_logits`` and ``Q`` its CRF refinement (:func:`constrain_targets`) taken as a
    constant. ``0 log 0 = 0``; ``log f`` comes from ``log_softmax``, so it is finite.

    Args:
        seg_logits: ``[B, C + 1, h, w]``; refined: ``[B, C + 1, h, w]`` probabilities ``Q``.
    """
    if refined.shape != seg_logits.shape:
        raise ValueError(f"refined {list(refined.shape)} must match seg_logits {list(seg_logits.shape)}")
    q = refined.detach().to(seg_logits.dtype)
    kl = torch.xlogy(q, q) - q * torch.log_softmax(seg_logits, dim=1)
    return kl.sum(dim=1).mean()


class SECLosses(NamedTuple):
    """The three SEC terms and ``total = seed + expand + constrain`` (scalars)."""

    seed: Tensor
    expand: Tensor
    constrain: Tensor
    total: Tensor


def sec_loss(
    seg_logits: Tensor,
    cues: Tensor,
    labels: Tensor,
    images: Tensor | np.ndarray,
    refine: Refiner | None = None,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    d_fg: float = SEC_D_FG,
    d_bg: float = SEC_D_BG,
    d_neg: float = SEC_D_NEG,
) -> SECLosses:
    """``L = L_seed + L_expand + L_constrain`` (SEC, Eq. 1), as SEC trains: the seeding loss
    normalised per image, the expansion loss with ``d_fg``/``d_bg``/``d_neg``, the constrain
    loss against the CRF of the detached output (:func:`constrain_targets` with ``refine``).

    Args:
        seg_logits: ``[B, C + 1, h, w]``; cues: ``[B, C + 1, h, w]`` at the output size;
        labels: ``[B, C]``; images: the input images (see :func:`to_uint8_images`).
    """
    seed = seeding_loss(seg_logits, cues, per_image=True)
    expand = expansion_loss(seg_logits, labels, d_fg, d_bg, d_neg)
    constrain = constrain_loss(seg_logits, constrain_targets(seg_logits, images, refine, mean, std))
    return SECLosses(seed, expand, constrain, seed + expand + constrain)


# --------------------------------------------------------------------------- networks


def _conv_block(c_in: int, c_out: int, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallFCN(nn.Module):
    """A small fully convolutional segmentation network for the CPU.

    One conv-BN-ReLU at full and one at half resolution, each followed by a 2x2 max-pool, then
    a pair of dilated 3x3 convolutions (dilation 2, DeepLab's way of widening the field of
    view without a further stride) and a 1x1 classifier: logits at 1/4 of the input
    (:attr:`output_stride`), bilinearly upsampled to the input unless ``upsample=False`` (the
    losses of Eq. 11-12 and SEC are computed at the low output resolution, as DeepLab's).
    One convolution per resolution keeps a training epoch on 1,500 images of 64 px near the
    cost of the book's classifier (two per stage cost four times as much on 2 CPU cores).

    Args:
        num_classes: output channels, ``C + 1`` with the background.
        widths: channels of the three stages.
        dilation: dilation of the last stage.
        upsample: return logits at the input size.

    Shapes:
        ``[B, 3, H, W]`` -> ``[B, num_classes, H, W]``, or ``[B, num_classes, H // 4, W // 4]``
        with ``upsample=False``.
    """

    output_stride = 4

    def __init__(self, num_classes: int, widths: tuple[int, int, int] = (16, 32, 64),
                 dilation: int = 2, upsample: bool = True) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        w1, w2, w3 = widths
        self.features = nn.Sequential(
            *_conv_block(3, w1), nn.MaxPool2d(2),
            *_conv_block(w1, w2), nn.MaxPool2d(2),
            *_conv_block(w2, w3, dilation), *_conv_block(w3, w3, dilation))
        self.classifier = nn.Conv2d(w3, num_classes, 1)
        self.num_classes = num_classes
        self.upsample = upsample
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m is not self.classifier:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, 3, H, W]`` -> logits ``[B, num_classes, H, W]`` (or at 1/4)."""
        logits = self.classifier(self.features(x))
        if self.upsample:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits


class DeepLabLargeFOV(nn.Module):
    """DeepLab-LargeFOV on VGG16 (Chen et al., ICLR 2015), the network of SEC and of the paper's
    GAIN-SEC rows (Sec. 4.1): 321x321 inputs give 41x41 logits (output stride 8).

    torchvision's VGG16 ``features`` with pool4 and pool5 turned into 3x3 stride-1 pools and the
    conv5 block dilated by 2, then ``fc6`` as a 3x3 convolution with dilation 12 and 1,024
    channels, ``fc7`` a 1x1 convolution with 1,024, dropout after each, and ``fc8`` the 1x1
    classifier. ``weights`` (e.g. ``"IMAGENET1K_V1"``) load ImageNet weights into the
    convolutions of ``features`` only — nothing is downloaded unless asked for.

    Shapes:
        ``[B, 3, H, W]`` -> ``[B, num_classes, ceil(H / 8), ceil(W / 8)]`` (or ``[.., H, W]``
        with ``upsample=True``).
    """

    output_stride = 8

    def __init__(self, num_classes: int = 21, weights: Any = None, upsample: bool = False,
                 progress: bool = True) -> None:
        super().__init__()
        from torchvision.models import vgg16

        features = vgg16(weights=weights, progress=progress).features
        layers: list[nn.Module] = []
        pools = 0
        for layer in features:
            if isinstance(layer, nn.MaxPool2d):
                pools += 1
                # pool1-3 halve with ceil mode (321 -> 161 -> 81 -> 41); pool4-5 keep the size.
                layer = (nn.MaxPool2d(3, stride=2, padding=1) if pools <= 3
                         else nn.MaxPool2d(3, stride=1, padding=1))
            elif isinstance(layer, nn.Conv2d) and pools == 4:
                layer.dilation, layer.padding = (2, 2), (2, 2)
            layers.append(layer)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Conv2d(512, 1024, 3, padding=12, dilation=12), nn.ReLU(inplace=True), nn.Dropout2d(0.5),
            nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True), nn.Dropout2d(0.5))
        self.classifier = nn.Conv2d(1024, num_classes, 1)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)
        self.upsample = upsample

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, 3, H, W]`` -> logits at 1/8 (or at the input size with ``upsample``)."""
        logits = self.classifier(self.head(self.features(x)))
        if self.upsample:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits


class LogitsOnly(nn.Module):
    """Wrap a torchvision segmentation model so that ``forward`` returns its ``"out"`` logits
    ``[B, num_classes, H, W]`` (like :class:`SmallFCN`) instead of a dict. The wrapped model is
    :attr:`model`; its auxiliary head, if any, stays reachable there."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, 3, H, W]`` -> ``[B, num_classes, H, W]``."""
        return self.model(x)["out"]


def deeplabv3_resnet101(
    num_classes: int = 21,
    weights: Any = None,
    weights_backbone: Any = None,
    aux_loss: bool = False,
    progress: bool = True,
) -> LogitsOnly:
    """torchvision's DeepLabv3-ResNet101 for the paper's scale (Sec. 4.1: DeepLab initialised
    from ImageNet ResNet-101, 321x321 inputs), returning logits (:class:`LogitsOnly`).

    Nothing is downloaded unless asked for: ``weights`` and ``weights_backbone`` default to None
    (random initialisation), whereas torchvision's own builder fetches ImageNet backbone weights
    by default. For the paper's setting pass ``weights_backbone="IMAGENET1K_V1"`` (or a
    ``ResNet101_Weights``). With full ``weights`` (e.g. ``"DEFAULT"``, trained on 21 VOC classes)
    and ``num_classes != 21``, the last 1x1 convolution of each head is replaced by a freshly
    initialised one.

    Args:
        num_classes: output channels, ``C + 1`` with the background (21 for VOC).
        weights, weights_backbone: torchvision weight enums or their names, or None.
        aux_loss: keep the auxiliary FCN head on ``layer3`` (its logits are in
            ``model.model(x)["aux"]``).

    Returns:
        A module mapping ``[B, 3, H, W]`` to ``[B, num_classes, H, W]``.
    """
    from torchvision.models.segmentation import deeplabv3_resnet101 as build

    if weights is None:
        model = build(weights=None, weights_backbone=weights_backbone, num_classes=num_classes,
                      aux_loss=aux_loss, progress=progress)
    else:
        model = build(weights=weights, progress=progress)
        if num_classes != model.classifier[-1].out_channels:
            model.classifier[-1] = nn.Conv2d(model.classifier[-1].in_channels, num_classes, 1)
            if model.aux_classifier is not None:
                model.aux_classifier[-1] = nn.Conv2d(model.aux_classifier[-1].in_channels, num_classes, 1)
        if not aux_loss:
            model.aux_classifier = None
    return LogitsOnly(model)


# --------------------------------------------------------------------------- evaluation


def segmentation_miou(pred: Tensor, target: Tensor, num_classes: int,
                      ignore_index: int | None = IGNORE_INDEX) -> Tensor:
    """Mean IoU of a batch (the VOC segmentation metric), via :class:`gainlib.metrics.ConfusionMatrix`.

    Per class ``IoU = TP / (TP + FP + FN)`` over all pixels of the batch whose target is not
    ``ignore_index``; the mean skips classes absent from both prediction and target (NaN IoU),
    as torchmetrics' ``MulticlassJaccardIndex(average="macro")`` does. For a dataset-level mIoU,
    accumulate one ``ConfusionMatrix`` over all batches instead of averaging batch values.

    Args:
        pred: labels ``[B, H, W]``, or logits ``[B, num_classes, h, w]`` (argmax over dim 1,
            after bilinear upsampling to ``(H, W)`` when the sizes differ).
        target: ``[B, H, W]`` labels in ``0..num_classes-1`` or ``ignore_index``.

    Returns:
        Scalar float (NaN if no pixel counts).
    """
    if pred.is_floating_point() and pred.ndim == target.ndim + 1:
        if pred.shape[-2:] != target.shape[-2:]:
            pred = F.interpolate(pred, size=target.shape[-2:], mode="bilinear", align_corners=False)
        pred = pred.argmax(dim=1)
    return ConfusionMatrix(num_classes, ignore_index, device=target.device).update(pred, target).miou()


# -- over a whole dataset: cues, predictions, scores --------------------------------------------

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


@torch.no_grad()
def output_size(network: nn.Module, image_size: tuple[int, int]) -> tuple[int, int]:
    """The spatial size of ``network``'s logits for images of ``image_size``: where its cues
    and losses live."""
    with eval_mode(network):
        probe = next(network.parameters())
        return tuple(network(torch.zeros(1, 3, *image_size, device=probe.device)).shape[-2:])


@torch.no_grad()
def predict_segmentation(network: nn.Module, dataset: Dataset, crf: bool = False,
                         batch_size: int = 64, crf_scale: float | None = None) -> Tensor:
    """Label maps ``int64 [N, H, W]`` of ``network`` on ``dataset`` at the images' size.

    The logits are upsampled bilinearly to the image; with ``crf`` the softmax is refined by
    the dense CRF first (:func:`crf_refine`). DeepLab's CRF parameters
    are set for ~500-pixel images: ``crf_scale`` divides its spatial deviations (default
    ``321 / H``, the image size relative to the paper's 321x321 inputs).
    """
    device = next(network.parameters()).device
    labels = []
    with eval_mode(network):
        for _, batch in iter_batches(dataset, batch_size=batch_size):
            images = batch["image"]
            logits = network(images.to(device)).float()
            if logits.shape[-2:] != images.shape[-2:]:
                logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
            probs = torch.softmax(logits, dim=1).cpu()
            if crf:
                scale = crf_scale if crf_scale is not None else 321 / images.shape[-2]
                probs = crf_refine(images, probs, scale_factor=scale)
            labels.append(probs.argmax(dim=1))
    return torch.cat(labels)


def segmentation_scores(pred: Tensor, dataset: Dataset, class_names: Sequence[str]) -> dict[str, float]:
    """IoU of every class (background first) and their mean over ``dataset``'s masks.

    Args:
        pred: ``[N, H, W]`` labels (:func:`predict_segmentation`).
        dataset: the samples, whose ``mask`` (0 background, ``c + 1`` class ``c``, 255 ignore)
            is the ground truth.
        class_names: the ``C`` object classes.

    Returns:
        ``{"background": iou, <class>: iou, ..., "mIoU": mean}`` (fractions; a class absent
        from both prediction and truth is NaN and left out of the mean).
    """
    if len(pred) != len(dataset):
        raise ValueError(f"{len(pred)} predictions for {len(dataset)} samples")
    matrix = ConfusionMatrix(len(class_names) + 1, IGNORE_INDEX)
    for start in range(0, len(dataset), 256):
        chunk = range(start, min(len(dataset), start + 256))
        target = torch.stack([torch.as_tensor(dataset[i]["mask"]) for i in chunk])
        matrix.update(pred[start:start + len(chunk)], target)
    iou = matrix.iou()
    scores = {name: float(v) for name, v in zip(["background", *class_names], iou)}
    scores["mIoU"] = float(matrix.miou())
    return scores


def cue_quality(cues: Tensor, dataset: Dataset) -> dict[str, float]:
    """How good localization cues are, against the masks they never saw (``[N, C + 1, h, w]``
    cues, resized to the masks by nearest neighbour).

    Returns (fractions over all pixels of the dataset, ignore pixels left out):
        ``fg precision`` — of the pixels with a foreground cue, those whose true class is among
        the cued ones; ``fg recall`` — of object pixels, those cued with their class;
        ``bg precision`` — of background cues, those on true background; ``bg recall`` — of
        true background, the share cued; ``cued`` — pixels with any cue.
    """
    if len(cues) != len(dataset):
        raise ValueError(f"{len(cues)} cue maps for {len(dataset)} samples")
    sums = dict.fromkeys(("fg_cued", "fg_right", "obj", "obj_hit", "bg_cued", "bg_right", "bg",
                          "bg_hit", "cued", "pixels"), 0.0)
    for i in range(len(dataset)):
        mask = torch.as_tensor(dataset[i]["mask"])
        cue = F.interpolate(cues[i:i + 1].float(), size=tuple(mask.shape), mode="nearest")[0] > 0.5
        valid = mask != IGNORE_INDEX
        truth = F.one_hot(mask.clamp(max=cue.shape[0] - 1), cue.shape[0]).permute(2, 0, 1).bool()
        fg_any = cue[1:].any(0) & valid
        fg_right = (cue[1:] & truth[1:]).any(0) & valid
        obj = (mask > 0) & valid
        sums["fg_cued"] += float(fg_any.sum())
        sums["fg_right"] += float(fg_right.sum())
        sums["obj"] += float(obj.sum())
        sums["obj_hit"] += float((fg_right & obj).sum())
        bg_cue = cue[0] & valid
        sums["bg_cued"] += float(bg_cue.sum())
        sums["bg_right"] += float((bg_cue & (mask == 0)).sum())
        sums["bg"] += float(((mask == 0) & valid).sum())
        sums["bg_hit"] += float((bg_cue & (mask == 0)).sum())
        sums["cued"] += float((cue.any(0) & valid).sum())
        sums["pixels"] += float(valid.sum())

    def ratio(a: str, b: str) -> float:
        return sums[a] / sums[b] if sums[b] else float("nan")

    return {"fg precision": ratio("fg_right", "fg_cued"), "fg recall": ratio("obj_hit", "obj"),
            "bg precision": ratio("bg_right", "bg_cued"), "bg recall": ratio("bg_hit", "bg"),
            "cued": ratio("cued", "pixels")}
# --------------------------------------------------------------------------- training


SegmentationLoss = Literal["gain", "sec", "supervised"]
_SEG_LOSSES = ("gain", "sec", "supervised")


@dataclass
class SegmentationConfig:
    """Settings of :class:`SegmentationTrainer`; every field's type and range is checked at
    construction (``TypeError``/``ValueError`` naming the field).

    Attributes:
        loss: ``"gain"`` — the paper's ``L_w-s`` on the cues (Eq. 11-12,
            :func:`gainlib.losses.weakly_supervised_segmentation_loss`); ``"sec"`` — SEC's
            ``L_seed + L_expand + L_constrain`` (:func:`sec_loss`); ``"supervised"`` — pixel-wise
            cross entropy on the ground-truth ``mask`` (ignore 255; logits upsampled bilinearly
            to the mask when their sizes differ), the upper bound.
        epochs, batch_size, lr, momentum, weight_decay: SGD with momentum.
        lr_step: the learning rate is ``lr * 0.1 ** floor(t / lr_step)`` (SEC: divided by 10
            every 2,000 of 8,000 iterations), or ``0.5 * lr * (1 + cos(pi * t / epochs))`` when
            ``None``; ``t = epoch + step / steps_per_epoch``, set before every step.
        grad_clip: max gradient norm (> 0), or ``None``.
        amp: bfloat16 autocast on CUDA (off by default: the book's numbers are float32).
        channels_last: NHWC network and images.
        seed: the batch order: ``torch.randperm`` drawn once per epoch from one generator
            seeded with it. The global RNG (dropout) is not re-seeded; its state travels in the
            checkpoint, so a resumed run ends with the uninterrupted run's weights.
        device, num_workers, checkpoint_dir, resume, progress: as :class:`gainlib.trainer.TrainConfig`.
    """

    loss: SegmentationLoss = "gain"
    epochs: int = 6
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_step: float | None = None
    grad_clip: float | None = None
    amp: bool = False
    channels_last: bool = True
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    checkpoint_dir: str | None = None
    resume: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        check_choice(self, "loss", _SEG_LOSSES)
        check_loop_settings(self)
        check_real(self, "lr_step", positive=True, optional=True)

    def run_settings(self) -> dict[str, Any]:
        """The fields that define the training run (everything but runtime plumbing)."""
        runtime = {"device", "num_workers", "checkpoint_dir", "resume", "progress"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in runtime}


def sec_refiner(output_size: tuple[int, int]) -> Refiner:
    """SEC's constrain-layer CRF (:func:`crf_refine` on ``uint8`` images) for logits of
    ``output_size``: SEC divides the CRF's spatial deviations by 12 on its 41x41 output; at
    another output size the same relative extent needs ``12 * 41 / h``."""
    scale = SEC_CRF_SCALE * 41 / output_size[0]
    return functools.partial(crf_refine, scale_factor=scale, mean=None, std=None)


class _Indexed(Dataset):
    """``(index, sample)``: the batch keeps the indices its cues are looked up by."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]


class _CollateWithCues:
    """:func:`gainlib.data.collate_samples`, plus ``cues`` (the rows of the samples' indices)."""

    def __init__(self, cues: Tensor | None) -> None:
        self.cues = cues

    def __call__(self, items: Sequence[tuple[int, Any]]) -> dict[str, Any]:
        batch = collate_samples([sample for _, sample in items])
        if self.cues is not None:
            batch["cues"] = self.cues[[index for index, _ in items]]
        return batch


class SegmentationTrainer(Trainer):
    """Train a segmentation network on localization cues (paper Sec. 4) or masks, through the
    loop of :class:`gainlib.trainer.Trainer` (checkpoints, exact resume, non-finite guard,
    progress, DDP).

    >>> from gainlib.data import SyntheticScenes
    >>> train_set = SyntheticScenes("train", 8, image_size=32)
    >>> network = SmallFCN(4 + 1, widths=(4, 4, 8), upsample=False)
    >>> cues = torch.zeros(8, 5, *output_size(network, (32, 32)), dtype=torch.bool)
    >>> cues[:, 0, :2] = True                          # background cues on the top rows
    >>> config = SegmentationConfig(loss="gain", epochs=1, batch_size=4, progress=False,
    ...                             device="cpu")
    >>> history = SegmentationTrainer(network, config).fit(train_set, cues=cues)
    >>> [sorted(record) for record in history]
    [['epoch', 'loss', 'train_seconds']]

    Args:
        network: maps ``[B, 3, H, W]`` images to logits ``[B, C + 1, h, w]`` (any output size;
            the cues must be at it).
        config: :class:`SegmentationConfig` (the loss, SGD, learning rate, seed, checkpoints).
        refine: the CRF of ``loss="sec"`` (see :func:`constrain_targets`); default
            :func:`sec_refiner` at the cues' size.

    :meth:`fit` returns the history, one ``{"epoch": e, "loss": mean loss, "train_seconds"}``
    per epoch (and ``val_mIoU`` with a ``val_set``), and leaves the network in training mode. With ``config.checkpoint_dir`` it writes
    ``last.pt`` (network, optimizer, batch-order generator, RNG; read with
    ``weights_only=True``) and ``history.json`` after every epoch, keeps the epoch before as
    ``previous.pt`` until the run completes, and resumes from them (module notes of
    :mod:`gainlib.trainer`). Numerics: SGD with momentum and weight decay, the learning rate of
    :class:`SegmentationConfig` set before every step, batches in the order of
    ``torch.randperm(N, generator=torch.Generator().manual_seed(seed))`` drawn once per epoch
    from that one generator, the global RNG not re-seeded.
    """

    reseed_each_epoch = False

    def __init__(self, network: nn.Module, config: SegmentationConfig | None = None, *,
                 refine: Refiner | None = None) -> None:
        super().__init__(network, config or SegmentationConfig())
        self.refine = refine
        self._refine = refine
        self._order = torch.Generator()
        self._collate = _CollateWithCues(None)

    def fit(self, train_set: Dataset, val_set: Dataset | None = None, *,
            cues: Tensor | None = None) -> list[dict[str, Any]]:
        """Train for ``config.epochs`` epochs (resuming from a checkpoint when there is one).

        Args:
            train_set: protocol samples (:mod:`gainlib.data.protocol`): ``image`` and
                ``labels``; ``mask`` for ``loss="supervised"``.
            val_set: held-out samples with masks, or ``None``: after every epoch the network's
                mIoU on them without the CRF (``val_mIoU`` in the history; the learning curve,
                :func:`segmentation_scores` of :func:`predict_segmentation`).
            cues: ``bool [N, C + 1, h, w]``, row ``i`` the cues of ``train_set[i]`` at the
                network's output size (e.g. :func:`localization_cues`); required by ``"gain"``
                and ``"sec"``, refused by ``"supervised"`` (it trains on the masks).

        Returns:
            ``[{"epoch": 1, "loss": ..., "train_seconds": ...}, ...]``: the mean loss and the
            training seconds of every epoch.
        """
        loss = self.config.loss
        if loss == "supervised":
            if cues is not None:
                raise ValueError("loss='supervised' trains on the ground-truth masks; pass cues=None")
        else:
            if not torch.is_tensor(cues) or cues.dtype != torch.bool or cues.ndim != 4:
                got = (f"{cues.dtype} {list(cues.shape)}" if torch.is_tensor(cues) else type(cues).__name__)
                raise ValueError(f"loss={loss!r} needs cues=bool [N, C + 1, h, w] (one row per training "
                                 f"sample, at the network's output size), got {got}")
            if len(cues) != len(train_set):
                raise ValueError(f"{len(cues)} cue maps for {len(train_set)} training samples")
        self._collate = _CollateWithCues(cues)
        if loss == "sec":
            self._refine = self.refine or sec_refiner(tuple(cues.shape[-2:]))
        self._order.manual_seed(self.config.seed)   # a resumed run restores the generator's state
        return super().fit(train_set, val_set)

    def validate(self, val_set: Dataset) -> dict[str, float]:
        """``{"mIoU": ...}`` of the network on ``val_set`` without the CRF."""
        classes = getattr(val_set, "classes", None)
        if classes is None:
            out = self.model(val_set[0]["image"][None].to(self.device))
            classes = [str(c) for c in range(out.shape[1] - 1)]
        predicted = predict_segmentation(self.model, val_set, batch_size=self.config.batch_size)
        return {"mIoU": segmentation_scores(predicted, val_set, list(classes))["mIoU"]}

    def learning_rate(self, t: float) -> float:
        c = self.config
        if c.lr_step is not None:
            return c.lr * 0.1 ** math.floor(t / c.lr_step)
        return 0.5 * c.lr * (1 + math.cos(math.pi * t / c.epochs))

    def epoch_batches(self, train_set: Dataset, epoch: int, distributed: bool) -> DataLoader:
        order = torch.randperm(len(train_set), generator=self._order).tolist()
        if distributed:   # every process the same number of steps, as DistributedSampler pads
            world, rank = dist.get_world_size(), dist.get_rank()
            order += order[:(-len(order)) % world]
            order = order[rank::world]
        # The loader gets its own generator: without one it would draw its base seed from the
        # global RNG, and dropout would see other numbers than in a plain loop.
        return DataLoader(_Indexed(train_set), batch_size=self.config.batch_size, sampler=order,
                          collate_fn=self._collate, num_workers=self.config.num_workers,
                          generator=torch.Generator(), pin_memory=self.device.type == "cuda")

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        logits = self.model(batch["image"])
        loss = self.config.loss
        if loss == "supervised":
            target = batch["mask"]
            if logits.shape[-2:] != target.shape[-2:]:
                logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
            return {"total": F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)}
        if loss == "gain":                                                            # Eq. 11-12
            return {"total": weakly_supervised_segmentation_loss(logits, batch["cues"], batch["labels"])}
        # The CRF sees the image in NCHW, as a plain loop hands it over.
        sec = sec_loss(logits, batch["cues"], batch["labels"], batch["image"].contiguous(),
                       refine=self._refine)
        return sec._asdict()

    def epoch_record(self, epoch: int, means: Mapping[str, float], seconds: float,
                     lr: float) -> dict[str, Any]:
        return {"epoch": epoch + 1, "loss": means["total"], "train_seconds": seconds}

    def checkpoint_identity(self) -> dict[str, Any]:
        return {**super().checkpoint_identity(), "network": type(self.model).__name__}

    def extra_state(self) -> dict[str, Any]:
        return {"order_generator": self._order.get_state()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._order.set_state(state["order_generator"].cpu())
