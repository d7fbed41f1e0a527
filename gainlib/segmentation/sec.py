"""SEC (Kolesnikov & Lampert, "Seed, Expand and Constrain", ECCV 2016), the framework of the
paper's GAIN-SEC rows: :func:`seeding_loss` (the paper's Eq. 11), :func:`expansion_loss` with
:func:`global_weighted_rank_pooling`, :func:`constrain_loss` against the dense CRF of the
network's own output (:func:`constrain_targets`, :func:`sec_refiner`), and their sum
:func:`sec_loss`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from gainlib.data.protocol import IMAGENET_MEAN, IMAGENET_STD
from gainlib.losses import segmentation_loss
from gainlib.segmentation.crf import Refiner, crf_refine
from gainlib.segmentation.cues import to_uint8_images

__all__ = ["SEC_D_FG", "SEC_D_BG", "SEC_D_NEG", "SEC_CRF_SCALE", "seeding_loss",
           "global_weighted_rank_pooling", "expansion_loss", "constrain_targets", "constrain_loss",
           "SECLosses", "sec_loss", "sec_refiner"]

#: GWRP decays of SEC's expansion loss: present classes, background, absent classes (max pooling).
SEC_D_FG, SEC_D_BG, SEC_D_NEG = 0.996, 0.999, 0.0
#: SEC's constrain layer divides the CRF's spatial standard deviations by 12 on its 41x41 output.
SEC_CRF_SCALE = 12.0


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
        images: as :func:`~gainlib.segmentation.cues.to_uint8_images` accepts; shrunk to
            ``(h, w)``.
        refine: ``refine(uint8 [B, h, w, 3], probs [B, C + 1, h, w]) -> [B, C + 1, h, w]``;
            default :func:`~gainlib.segmentation.crf.crf_refine` with ``scale_factor = 12``
            (SEC's constrain layer).

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
        labels: ``[B, C]``; images: the input images (see
            :func:`~gainlib.segmentation.cues.to_uint8_images`).
    """
    seed = seeding_loss(seg_logits, cues, per_image=True)
    expand = expansion_loss(seg_logits, labels, d_fg, d_bg, d_neg)
    constrain = constrain_loss(seg_logits, constrain_targets(seg_logits, images, refine, mean, std))
    return SECLosses(seed, expand, constrain, seed + expand + constrain)


def sec_refiner(output_size: tuple[int, int]) -> Refiner:
    """SEC's constrain-layer CRF (:func:`~gainlib.segmentation.crf.crf_refine` on ``uint8``
    images) for logits of ``output_size``: SEC divides the CRF's spatial deviations by 12 on its
    41x41 output; at another output size the same relative extent needs ``12 * 41 / h``."""
    scale = SEC_CRF_SCALE * 41 / output_size[0]
    return functools.partial(crf_refine, scale_factor=scale, mean=None, std=None)
