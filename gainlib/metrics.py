"""Metrics for GAIN: attention localisation, multi-label classification, segmentation.

Plain, batched functions on tensors (no Python loops over images), in the spirit
of torchmetrics but without its state machinery.

Undefined values are NaN, never a made-up 0 or 1
-------------------------------------------------
* :func:`attention_iou` is NaN for an image where both the thresholded map and
  the (valid) object mask are empty, :func:`attention_coverage` is NaN when the
  image has no valid object pixel, :func:`attention_precision` is NaN when no
  valid pixel is attended.  Such an image says nothing about localisation, and
  scoring it 1 (or 0) would bias the mean by how many empty images a split has.
  Reduce with ``torch.nanmean`` (or ``reduction="mean"``, which does so).
* :func:`mean_average_precision` skips classes without a positive example
  (their AP is NaN with ``average="none"``).  torchmetrics instead scores them
  0 and *includes* them in its macro mean (with a warning), so the two agree on
  the classes that have positives.
* :meth:`ConfusionMatrix.iou` is NaN for classes absent from both prediction and
  target; :meth:`ConfusionMatrix.miou` is the NaN-mean.  torchmetrics'
  ``MulticlassJaccardIndex(average=None)`` reports 0 for such classes (its
  ``zero_division``), while its ``average="macro"`` excludes them like ours.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "attention_iou",
    "attention_coverage",
    "attention_precision",
    "attention_scores",
    "multilabel_accuracy",
    "mean_average_precision",
    "ConfusionMatrix",
]

Reduction = Literal["none", "mean"]


def _as_bool(t: Tensor) -> Tensor:
    return t if t.dtype == torch.bool else t != 0


def _flatten_maps(maps: Tensor) -> Tensor:
    # [N, 1, H, W] (a channel dim as returned by most CAM code) -> [N, H, W] -> [N, H*W]
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() < 2:
        raise ValueError(f"expected maps of shape [N, H, W], got {tuple(maps.shape)}")
    return maps.reshape(maps.shape[0], -1)


def _attention_counts(
    maps: Tensor, masks: Tensor, threshold: float, valid: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Per image: |attended & object|, |attended|, |object| over valid pixels, as float [N]."""
    m = _flatten_maps(maps)
    g = _as_bool(_flatten_maps(masks))
    if m.shape != g.shape:
        raise ValueError(
            f"maps and masks must have the same shape, got {tuple(maps.shape)} and "
            f"{tuple(masks.shape)} (upsample the attention map to the mask size first)"
        )
    pred = m >= threshold
    if valid is not None:
        v = _as_bool(_flatten_maps(valid))
        if v.shape != g.shape:
            raise ValueError(f"valid must have the masks' shape, got {tuple(valid.shape)}")
        pred = pred & v
        g = g & v
    inter = (pred & g).sum(1, dtype=torch.float64)
    return inter, pred.sum(1, dtype=torch.float64), g.sum(1, dtype=torch.float64)


def _ratio(num: Tensor, den: Tensor, reduction: Reduction) -> Tensor:
    # 0/0 -> NaN on purpose (undefined), see the module docstring.
    out = (num / den).to(torch.get_default_dtype())
    if reduction == "none":
        return out
    if reduction == "mean":
        return torch.nanmean(out)
    raise ValueError(f"reduction must be 'none' or 'mean', got {reduction!r}")


def attention_iou(
    maps: Tensor,
    masks: Tensor,
    threshold: float = 0.5,
    valid: Tensor | None = None,
    reduction: Reduction = "none",
) -> Tensor:
    """IoU of the thresholded attention map with the object mask, per image.

    Args:
        maps: attention maps ``[N, H, W]`` (or ``[N, 1, H, W]``) in ``[0, 1]``, at the
            mask's resolution.
        masks: object masks ``[N, H, W]``, bool or 0/1.
        threshold: a pixel is attended where ``map >= threshold``.
        valid: optional bool ``[N, H, W]``; pixels where it is False (e.g. VOC's 255
            border) count neither as object nor as attended.
        reduction: ``"none"`` -> ``[N]``; ``"mean"`` -> NaN-mean over images.

    Returns:
        ``[N]`` (float): ``|A & M| / |A | M|``, NaN where both are empty.
    """
    inter, n_pred, n_obj = _attention_counts(maps, masks, threshold, valid)
    return _ratio(inter, n_pred + n_obj - inter, reduction)


def attention_coverage(
    maps: Tensor,
    masks: Tensor,
    threshold: float = 0.5,
    valid: Tensor | None = None,
    reduction: Reduction = "none",
) -> Tensor:
    """Fraction of object pixels that the thresholded map covers (recall), per image.

    Low coverage with high precision is the paper's failure mode of plain Grad-CAM:
    attention on a small discriminative part of the object only.

    Args: as :func:`attention_iou`.

    Returns:
        ``[N]``: ``|A & M| / |M|``, NaN where the image has no (valid) object pixel.
    """
    inter, _, n_obj = _attention_counts(maps, masks, threshold, valid)
    return _ratio(inter, n_obj, reduction)


def attention_precision(
    maps: Tensor,
    masks: Tensor,
    threshold: float = 0.5,
    valid: Tensor | None = None,
    reduction: Reduction = "none",
) -> Tensor:
    """Fraction of attended pixels that lie on the object, per image.

    Args: as :func:`attention_iou`.

    Returns:
        ``[N]``: ``|A & M| / |A|``, NaN where no (valid) pixel is attended.
    """
    inter, n_pred, _ = _attention_counts(maps, masks, threshold, valid)
    return _ratio(inter, n_pred, reduction)


def attention_scores(
    maps: Tensor,
    masks: Tensor,
    threshold: float = 0.5,
    valid: Tensor | None = None,
    reduction: Reduction = "none",
) -> dict[str, Tensor]:
    """IoU, coverage and precision in one pass: ``{"iou", "coverage", "precision"}``.

    Each value is ``[N]`` (``reduction="none"``) or a NaN-mean scalar (``"mean"``).
    """
    inter, n_pred, n_obj = _attention_counts(maps, masks, threshold, valid)
    return {
        "iou": _ratio(inter, n_pred + n_obj - inter, reduction),
        "coverage": _ratio(inter, n_obj, reduction),
        "precision": _ratio(inter, n_pred, reduction),
    }


def multilabel_accuracy(logits: Tensor, labels: Tensor, threshold: float = 0.0) -> dict[str, Tensor]:
    """Multi-label accuracy from logits.

    Args:
        logits: ``[N, C]`` scores; label ``c`` is predicted where ``logits > threshold``
            (``threshold=0`` on logits is ``sigmoid > 0.5``, as torchmetrics).
        labels: ``[N, C]`` 0/1 targets.

    Returns:
        ``{"per_label": [C], "mean": scalar, "exact_match": scalar}``:
        per-label accuracy over images, its mean (= Hamming accuracy), and the
        fraction of images whose whole label vector is right (subset accuracy).
    """
    if logits.shape != labels.shape or logits.dim() != 2:
        raise ValueError(f"expected logits and labels of the same shape [N, C], got {tuple(logits.shape)} and {tuple(labels.shape)}")
    correct = (logits > threshold) == _as_bool(labels)
    dtype = torch.get_default_dtype()
    per_label = correct.to(dtype).mean(0)
    return {
        "per_label": per_label,
        "mean": per_label.mean(),
        "exact_match": correct.all(1).to(dtype).mean(),
    }


def mean_average_precision(
    scores: Tensor, labels: Tensor, average: Literal["macro", "none"] = "macro"
) -> Tensor:
    """Mean of the per-class average precision (area under the precision-recall step curve).

    AP of a class is ``sum_k (R_k - R_{k-1}) P_k`` over its distinct score thresholds
    (sklearn / torchmetrics definition, not VOC's 11-point interpolation); tied scores
    form one threshold.  Vectorised over classes.

    Args:
        scores: ``[N, C]`` scores or logits (any monotone transform gives the same AP).
        labels: ``[N, C]`` 0/1 targets.
        average: ``"macro"`` -> scalar NaN-mean over classes with at least one positive
            (NaN if there is none); ``"none"`` -> ``[C]``, NaN for classes without positives.
    """
    if scores.shape != labels.shape or scores.dim() != 2:
        raise ValueError(f"expected scores and labels of the same shape [N, C], got {tuple(scores.shape)} and {tuple(labels.shape)}")
    n = scores.shape[0]
    s, order = torch.sort(scores.to(torch.float64), dim=0, descending=True)
    y = _as_bool(labels).gather(0, order).to(torch.float64)
    tp = torch.cumsum(y, 0)  # true positives among the top k+1
    idx = torch.arange(n, device=scores.device).unsqueeze(1).expand_as(s)
    # Last index of each run of tied scores: every item of a tie group gets the
    # precision at the end of its group.
    is_end = torch.ones_like(y, dtype=torch.bool)
    is_end[:-1] = s[:-1] != s[1:]
    end = torch.where(is_end, idx, torch.full_like(idx, n))
    end = torch.flip(torch.cummin(torch.flip(end, [0]), 0).values, [0])  # next group end at or after k
    precision_at_end = tp.gather(0, end) / (end + 1).to(torch.float64)
    n_pos = y.sum(0)
    ap = (y * precision_at_end).sum(0) / n_pos  # NaN where n_pos == 0
    ap = ap.to(torch.get_default_dtype())
    if average == "none":
        return ap
    if average == "macro":
        return torch.nanmean(ap)
    raise ValueError(f"average must be 'macro' or 'none', got {average!r}")


class ConfusionMatrix:
    """Accumulating confusion matrix for semantic segmentation.

    ``mat[t, p]`` counts pixels of target class ``t`` predicted as ``p`` (int64,
    ``[num_classes, num_classes]``).  Pixels whose target is ``ignore_index`` are
    skipped.  Accumulation is a single ``torch.bincount`` per :meth:`update`.

    Distributed evaluation: each rank calls :meth:`update` on its shard, then
    :meth:`all_reduce` (sums the matrices with ``torch.distributed.all_reduce``;
    a no-op when no process group is initialised) before reading :meth:`miou`.
    With the NCCL backend the matrix must live on the rank's GPU: pass
    ``device=`` or update with GPU tensors.  Matrices can also be combined by hand
    with :meth:`merge` / ``+`` / ``+=``.

    Args:
        num_classes: number of classes (including background).
        ignore_index: target value to skip (VOC: 255); ``None`` to ignore nothing.
        device: where the matrix lives; ``None`` follows the tensors given to
            :meth:`update`.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255, device: torch.device | str | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._follow_inputs = device is None
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device or "cpu")

    def reset(self) -> None:
        """Zero the counts."""
        self.mat.zero_()

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> "ConfusionMatrix":
        """Add a batch.

        Args:
            pred: predicted labels, int ``[...]`` with ``target``'s shape, or scores
                ``[N, C, ...]`` (argmax over dim 1) when ``target`` is ``[N, ...]``.
            target: int labels ``[...]`` in ``[0, num_classes)`` or ``ignore_index``.

        Raises:
            ValueError: on shape mismatch or labels outside ``[0, num_classes)``.
        """
        if pred.is_floating_point() and pred.dim() == target.dim() + 1:
            pred = pred.argmax(1)
        if pred.shape != target.shape:
            raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
        pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            pred, target = pred[keep], target[keep]
        c = self.num_classes
        if target.numel() and (target.min() < 0 or target.max() >= c or pred.min() < 0 or pred.max() >= c):
            raise ValueError(
                f"labels must be in [0, {c}) (or ignore_index={self.ignore_index} in target); "
                f"got target in [{int(target.min())}, {int(target.max())}], pred in [{int(pred.min())}, {int(pred.max())}]"
            )
        counts = torch.bincount(target * c + pred, minlength=c * c).reshape(c, c)
        if self._follow_inputs and self.mat.device != counts.device:
            self.mat = self.mat.to(counts.device)
        self.mat += counts.to(self.mat.device)
        return self

    def _check_compatible(self, other: "ConfusionMatrix") -> None:
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"cannot merge ConfusionMatrix with {type(other).__name__}")
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError("cannot merge confusion matrices with different num_classes or ignore_index")

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add ``other``'s counts into this matrix (in place) and return ``self``."""
        self._check_compatible(other)
        self.mat += other.mat.to(self.mat.device)
        return self

    def __iadd__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        return self.merge(other)

    def __add__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        self._check_compatible(other)
        out = ConfusionMatrix(self.num_classes, self.ignore_index, device=self.mat.device)
        out._follow_inputs = self._follow_inputs
        out.mat = self.mat + other.mat.to(self.mat.device)
        return out

    def all_reduce(self, group: object | None = None) -> "ConfusionMatrix":
        """Sum the matrix over all ranks of ``group`` (in place); returns ``self``.

        A no-op unless ``torch.distributed`` is available and initialised.  Every rank
        must call it (it is a collective).
        """
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.mat, op=dist.ReduceOp.SUM, group=group)
        return self

    def iou(self) -> Tensor:
        """Per-class IoU ``[num_classes]``: ``TP / (TP + FP + FN)``.

        NaN for classes absent from both predictions and targets, and for
        ``ignore_index`` when it is a class index (its pixels are never counted as
        targets, so its IoU is meaningless; torchmetrics' macro mean drops it too).
        """
        m = self.mat.to(torch.float64)
        tp = m.diagonal()
        union = m.sum(0) + m.sum(1) - tp
        iou = tp / union
        if self.ignore_index is not None and 0 <= self.ignore_index < self.num_classes:
            iou[self.ignore_index] = float("nan")
        return iou.to(torch.get_default_dtype())

    def miou(self) -> Tensor:
        """Mean IoU over classes present in predictions or targets (NaN-mean)."""
        return torch.nanmean(self.iou())

    def pixel_accuracy(self) -> Tensor:
        """Fraction of counted pixels predicted correctly (NaN if none counted)."""
        m = self.mat.to(torch.float64)
        return (m.diagonal().sum() / m.sum()).to(torch.get_default_dtype())

    def class_accuracy(self) -> Tensor:
        """Per-class recall ``[num_classes]`` (NaN for classes absent from targets)."""
        m = self.mat.to(torch.float64)
        return (m.diagonal() / m.sum(1)).to(torch.get_default_dtype())

    def compute(self) -> dict[str, Tensor]:
        """``{"miou", "iou", "pixel_accuracy", "mean_class_accuracy"}``."""
        return {
            "miou": self.miou(),
            "iou": self.iou(),
            "pixel_accuracy": self.pixel_accuracy(),
            "mean_class_accuracy": torch.nanmean(self.class_accuracy()),
        }

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
            f"pixels={int(self.mat.sum())})"
        )
