"""The GAIN losses (Eq. 5-12), as plain functions on tensors.

Shapes: ``B`` images, ``C`` classes, ``K`` class slots per image (the ground-truth classes,
padded; see :func:`gainlib.attention.positive_classes`), maps ``[B, K, H, W]`` in [0, 1].
``1/n sum_c`` in the paper's equations is the mean over an image's ground-truth classes; an
image with no positive class contributes nothing, and the batch value is the mean over
images that have at least one (0 if none has).

Choices the paper leaves open:

* ``L_am`` (Eq. 5) minimises ``s^c(I*^c)``; we take the *sigmoid probability* of class c on
  the masked image by default — the score the multi-label classifier (trained with the
  soft-margin loss L_cl) actually outputs, bounded in [0, 1] so the max-min game between
  L_cl and L_am cannot run off to ``-inf`` logits. ``score="logit"`` (the raw score) and
  ``"softmax"`` (the probability of class c among all classes; ilyak93/GAIN-pytorch) are
  there for comparison, and ``"max_softmax"``: the *largest* softmax probability of I*^c over
  all classes, whichever class it is — ngxbac/GAIN's ``F.softmax(outputs_am).max(dim=1)``
  (``src/callbacks.py``, lines 56-58). It is not a score of class c: it pushes the masked
  image towards a uniform, "no idea" prediction (its minimum, 1/C) rather than away from
  class c.
* The squared errors of Eq. 7 and Eq. 9 are *averaged* over pixels (not summed), so the
  weight omega = 10 of Eq. 8/10 means the same at any image size; pixels marked ignore
  (VOC 255) do not count.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from gainlib.data.protocol import IGNORE_INDEX, check_labels, check_mask

Score = Literal["sigmoid", "logit", "softmax", "max_softmax"]

__all__ = [
    "classification_loss",
    "mean_over_class_slots",
    "attention_mining_loss",
    "self_guidance_loss",
    "class_targets_from_mask",
    "pixel_attention_loss",
    "bbox_attention_loss",
    "extra_supervision_loss",
    "segmentation_loss",
    "weakly_supervised_segmentation_loss",
]


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """L_cl: the multi-label soft-margin loss of ``logits [B, C]`` against multi-hot ``labels``
    (0/1 values of a non-empty batch, else ``ValueError``: with a label of 2 the loss has no
    lower bound, and an empty batch would give NaN)."""
    check_labels(labels, logits)
    return F.multilabel_soft_margin_loss(logits, labels.to(logits.dtype))


def mean_over_class_slots(per_slot: Tensor, valid: Tensor) -> Tensor:
    """``1/n sum_c`` of ``per_slot [B, K]`` per image, then the mean over images with n > 0
    (the reduction of Eq. 5, 7, 9)."""
    valid = valid.to(per_slot.dtype)
    n = valid.sum(dim=1)
    per_image = (per_slot * valid).sum(dim=1) / n.clamp_min(1)
    has_class = n > 0
    if not has_class.any():
        return per_slot.sum() * 0.0  # keeps the graph; no image has a class
    return per_image[has_class].mean()


def attention_mining_loss(masked_logits: Tensor, classes: Tensor, valid: Tensor,
                          score: Score = "sigmoid") -> Tensor:
    """Eq. 5: ``L_am = 1/n sum_c s^c(I*^c)``.

    Args:
        masked_logits: ``[B, K, C]`` logits of the masked images ``I*^c`` (slot k of image b
            was masked with the attention of class ``classes[b, k]``).
        classes, valid: ``[B, K]`` class slots.
        score: which score of ``I*^c`` is minimised (see the module notes).
    """
    if masked_logits.ndim != 3 or masked_logits.shape[:2] != classes.shape:
        raise ValueError(f"masked_logits must be [B, K, C] with [B, K] = {list(classes.shape)}, "
                         f"got {list(masked_logits.shape)}")
    if score == "sigmoid":
        scores = torch.sigmoid(masked_logits)
    elif score in ("softmax", "max_softmax"):
        scores = torch.softmax(masked_logits, dim=-1)
    elif score == "logit":
        scores = masked_logits
    else:
        raise ValueError(f"score must be 'sigmoid', 'logit', 'softmax' or 'max_softmax', got {score!r}")
    if score == "max_softmax":
        picked = scores.amax(dim=2)                                        # any class, [B, K]
    else:
        picked = scores.gather(2, classes.unsqueeze(-1)).squeeze(-1)       # s^c(I*^c), [B, K]
    return mean_over_class_slots(picked, valid)


def self_guidance_loss(cl_loss: Tensor, am_loss: Tensor, alpha: float = 1.0) -> Tensor:
    """Eq. 6: ``L_self = L_cl + alpha * L_am`` (alpha = 1 in all the paper's experiments)."""
    return cl_loss + alpha * am_loss


def class_targets_from_mask(mask: Tensor, classes: Tensor,
                            num_classes: int | None = None) -> tuple[Tensor, Tensor]:
    """H^c of Eq. 7 from a VOC class-index mask.

    Args:
        mask: ``[B, H, W]`` with 0 background, ``c + 1`` for label index c, 255 ignore.
        classes: ``[B, K]`` label indices of the class slots.
        num_classes: C; with it, a mask value outside ``0..C`` and 255 is a ``ValueError``
            (it would count as background); without it, only values outside 0..255 are.

    Returns:
        ``targets [B, K, H, W]`` (1 where the pixel belongs to the slot's class) and
        ``pixel_valid [B, H, W]`` (False on ignore pixels).
    """
    check_mask(mask, num_classes)
    if mask.ndim != 3 or mask.shape[0] != classes.shape[0]:
        raise ValueError(f"mask must be [B={classes.shape[0]}, H, W], got {list(mask.shape)}")
    targets = (mask.unsqueeze(1) == (classes + 1)[:, :, None, None]).float()
    return targets, mask != IGNORE_INDEX


def _pixel_mean(values: Tensor, pixel_valid: Tensor | None) -> Tensor:
    """Mean over the last two dims of ``[B, K, H, W]``, only over valid pixels."""
    if pixel_valid is None:
        return values.mean(dim=(-2, -1))
    weight = pixel_valid.unsqueeze(1).to(values.dtype)
    return (values * weight).sum(dim=(-2, -1)) / weight.sum(dim=(-2, -1)).clamp_min(1)


def _check_maps(maps: Tensor, other: Tensor, name: str) -> None:
    if maps.ndim != 4 or other.shape != maps.shape:
        raise ValueError(f"{name} must have the shape of the maps {list(maps.shape)}, "
                         f"got {list(other.shape)}")


def pixel_attention_loss(maps: Tensor, targets: Tensor, valid: Tensor,
                         pixel_valid: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Eq. 7: ``L_p = 1/n sum_c (A^c - H^c)^2``, the squared error averaged over pixels.

    Args:
        maps: ``[B, K, H, W]`` attention maps A^c.
        targets: ``[B, K, H, W]`` pixel-level supervision H^c (see
            :func:`class_targets_from_mask`).
        valid: ``[B, K]`` class slots.
        pixel_valid: ``[B, H, W]``, False where the mask says ignore.
        reduction: ``"mean"`` over images with a class, or ``"none"`` for ``[B, K]``.
    """
    _check_maps(maps, targets, "targets")
    per_slot = _pixel_mean((maps - targets) ** 2, pixel_valid)
    return per_slot if reduction == "none" else mean_over_class_slots(per_slot, valid)


def bbox_attention_loss(maps: Tensor, box_masks: Tensor, saliency: Tensor, valid: Tensor,
                        reduction: str = "mean") -> Tensor:
    """Eq. 9: ``L_bbox = 1/n sum_c [((1 - B^c) * A^c - 0)^2 + (B^c * (A^c - S))^2]``.

    Attention outside the boxes of class c is pushed to 0; inside them it is pulled towards
    the saliency prior S (the foreground within the box).

    Args:
        maps: ``[B, K, H, W]`` attention maps A^c.
        box_masks: ``[B, K, H, W]`` B^c, 1 inside any box of the slot's class.
        saliency: ``[B, H, W]`` saliency prior S in [0, 1].
        valid: ``[B, K]`` class slots.
    """
    _check_maps(maps, box_masks, "box_masks")
    if saliency.shape != (maps.shape[0], *maps.shape[-2:]):
        raise ValueError(f"saliency must be [B, H, W] = {[maps.shape[0], *maps.shape[-2:]]}, "
                         f"got {list(saliency.shape)}")
    outside = (1 - box_masks) * maps
    inside = box_masks * (maps - saliency.unsqueeze(1))
    per_slot = (outside ** 2 + inside ** 2).mean(dim=(-2, -1))
    return per_slot if reduction == "none" else mean_over_class_slots(per_slot, valid)


def extra_supervision_loss(cl_loss: Tensor, am_loss: Tensor, attention_loss: Tensor,
                           alpha: float = 1.0, omega: float = 10.0) -> Tensor:
    """Eq. 8 / Eq. 10: ``L_ext = L_cl + alpha * L_am + omega * L_e`` with ``L_e`` being L_p,
    L_bbox or (for GAIN_ext^{b,p}) their per-sample mix; omega = 10 in the paper."""
    return cl_loss + alpha * am_loss + omega * attention_loss


def segmentation_loss(seg_logits: Tensor, cues: Tensor) -> Tensor:
    """Eq. 11: ``L_seg = sum_c J(s^c_x(I), l^c_x)``, pixel-wise cross entropy on the cues.

    Args:
        seg_logits: ``[B, C + 1, h, w]`` segmentation scores (channel 0 = background).
        cues: ``[B, C + 1, h, w]`` binary localisation cues l^c_x (several classes may claim
            a pixel; pixels with no cue do not count).

    Returns:
        ``-sum_{c,x} l^c_x log p^c_x / sum_{c,x} l^c_x`` (the seeding form of SEC, which
        handles pixels with several cues); 0 when there are no cues.
    """
    if seg_logits.shape != cues.shape:
        raise ValueError(f"cues {list(cues.shape)} must match seg_logits {list(seg_logits.shape)}")
    log_prob = torch.log_softmax(seg_logits, dim=1)
    cues = cues.to(log_prob.dtype)
    return -(cues * log_prob).sum() / cues.sum().clamp_min(1)


def weakly_supervised_segmentation_loss(seg_logits: Tensor, cues: Tensor, labels: Tensor) -> Tensor:
    """Eq. 12: ``L_w-s = L_cl + L_seg``; L_cl on the global average of the foreground scores
    (the GAP added on top of the segmentation network).

    Args:
        seg_logits: ``[B, C + 1, h, w]``; cues: ``[B, C + 1, h, w]``; labels: ``[B, C]``.
    """
    class_scores = seg_logits[:, 1:].mean(dim=(-2, -1))
    return classification_loss(class_scores, labels) + segmentation_loss(seg_logits, cues)
