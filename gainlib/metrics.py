"""Metrics for GAIN: attention localisation, multi-label classification, segmentation.

Two kinds of measurement sit side by side.  *Thresholded* metrics (attention IoU at a map
threshold, accuracy at a logit threshold) answer "what does the model decide at this
operating point"; *threshold-free* ones (:func:`binary_auroc`, :func:`attention_mass`,
:func:`deletion_insertion`) answer "does the score or the map rank the right things
first".  A claim read off one threshold can be an artefact of that threshold (a model that
scores every image below 0 "rejects" every distractor); report the threshold-free value
beside it.

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

from typing import Callable, Literal

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
    "binary_auroc",
    "balanced_threshold",
    "attention_mass",
    "deletion_insertion",
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


# --------------------------------------------------------------------------- threshold-free


def binary_auroc(scores: Tensor, targets: Tensor) -> Tensor:
    """Area under the ROC curve, ties counted half.

    AUC = P(a random positive scores above a random negative) + 0.5 P(they tie), computed
    as the Mann-Whitney statistic ``(R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` with
    mid-ranks for tied scores (Hanley & McNeil, Radiology 1982).  It needs no decision
    threshold, so it tells whether a score *separates* two groups even where every score of
    both falls on one side of the threshold.  Equal to scikit-learn's ``roc_auc_score`` and
    torchmetrics' ``BinaryAUROC``.

    Args:
        scores: ``[N]`` scores (any monotone transform -- logits, probabilities -- gives the
            same AUC), or ``[N, C]``: ``C`` independent binary problems, one per column
            (e.g. one-vs-rest per class).
        targets: 0/1 (or bool) of ``scores``' shape; 1 marks a positive.

    Returns:
        A 0-d tensor for ``[N]`` input, ``[C]`` for ``[N, C]``; NaN for a problem without a
        positive or without a negative (its AUC is undefined).
    """
    if scores.shape != targets.shape or scores.dim() not in (1, 2):
        raise ValueError(f"scores and targets must have the same shape [N] or [N, C], got "
                         f"{tuple(scores.shape)} and {tuple(targets.shape)}")
    if scores.is_floating_point() and torch.isnan(scores).any():
        raise ValueError("scores contain NaN; an AUC of NaN scores is undefined (drop those samples)")
    if targets.dtype != torch.bool and ((targets != 0) & (targets != 1)).any():
        raise ValueError("targets must be 0/1 or bool")
    single = scores.dim() == 1
    s2 = scores.reshape(scores.shape[0], -1).to(torch.float64)
    y2 = _as_bool(targets).reshape(s2.shape)
    n = s2.shape[0]
    s, order = torch.sort(s2, dim=0)
    y = y2.gather(0, order).to(torch.float64)
    idx = torch.arange(n, device=s.device, dtype=torch.float64).unsqueeze(1).expand_as(s)
    # Mid-rank of a run of tied scores: the mean of its first and last (1-based) positions.
    is_start = torch.ones_like(s, dtype=torch.bool)
    is_start[1:] = s[1:] != s[:-1]
    is_end = torch.ones_like(s, dtype=torch.bool)
    is_end[:-1] = s[:-1] != s[1:]
    first = torch.cummax(torch.where(is_start, idx, torch.zeros_like(idx)), 0).values
    last = torch.flip(torch.cummin(torch.flip(torch.where(is_end, idx, torch.full_like(idx, n)), [0]),
                                   0).values, [0])
    ranks = (first + last) / 2 + 1
    n_pos = y.sum(0)
    n_neg = n - n_pos
    auc = ((y * ranks).sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)  # NaN if either is 0
    auc = auc.to(torch.get_default_dtype())
    return auc[0] if single else auc


def balanced_threshold(scores: Tensor, targets: Tensor) -> float:
    """The decision threshold that maximises balanced accuracy, ``(TPR + TNR) / 2``, on these
    scores: calibrate it on a validation split, then apply ``scores > threshold`` to a test
    split (a threshold chosen on the test split would flatter any model).

    Candidates are the midpoints between consecutive distinct scores (and one below the
    lowest and one above the highest); the first best one is returned.

    >>> round(balanced_threshold(torch.tensor([0.1, 0.2, 0.6, 0.8]), torch.tensor([0, 0, 1, 1])), 3)
    0.4
    """
    scores, targets = scores.detach().flatten().double(), _as_bool(targets.flatten())
    if scores.numel() != targets.numel():
        raise ValueError(f"{scores.numel()} scores for {targets.numel()} targets")
    if not (targets.any() and (~targets).any()):
        raise ValueError("balanced_threshold needs positive and negative samples")
    values = torch.unique(scores)                       # sorted
    candidates = torch.cat([values[:1] - 1, (values[1:] + values[:-1]) / 2, values[-1:] + 1])
    above = scores[None, :] > candidates[:, None]       # [T, N]
    tpr = (above & targets).sum(1).double() / targets.sum()
    tnr = (~above & ~targets).sum(1).double() / (~targets).sum()
    return float(candidates[int(torch.argmax(tpr + tnr))])


def attention_mass(
    maps: Tensor,
    masks: Tensor,
    valid: Tensor | None = None,
    reduction: Reduction = "none",
) -> Tensor:
    """Share of each map's total mass that lies inside the object mask.

    ``sum(A * M) / sum(A)`` per map: the "energy-based pointing game" of Score-CAM (Wang et
    al., CVPR Workshops 2020), with the object's mask in place of its box.  Unlike
    :func:`attention_iou` it needs no threshold on the map: a map that puts most of its mass
    on a small corner patch scores low whatever threshold would make its support look small.
    Chance level is the object's share of the (valid) pixels.

    Args:
        maps: non-negative maps ``[N, H, W]`` (or ``[N, 1, H, W]``) at the mask's resolution
            (Grad-CAM maps are, after the ReLU of Eq. 2); their scale does not matter.
        masks: object masks ``[N, H, W]``, bool or 0/1.
        valid: optional bool ``[N, H, W]``; pixels where it is False count nowhere.
        reduction: ``"none"`` -> ``[N]``; ``"mean"`` -> NaN-mean over maps.

    Returns:
        ``[N]`` in ``[0, 1]``; NaN for a map whose (valid) mass is zero (it points nowhere).
    """
    m = _flatten_maps(maps).to(torch.float64)
    g = _as_bool(_flatten_maps(masks))
    if m.shape != g.shape:
        raise ValueError(f"maps and masks must have the same shape, got {tuple(maps.shape)} and "
                         f"{tuple(masks.shape)} (upsample the attention map to the mask size first)")
    if (m < 0).any():
        raise ValueError("maps must be non-negative (mass is undefined for negative values); "
                         "apply a ReLU or shift the maps first")
    if valid is not None:
        v = _as_bool(_flatten_maps(valid))
        if v.shape != g.shape:
            raise ValueError(f"valid must have the masks' shape, got {tuple(valid.shape)}")
        m = m * v
    return _ratio((m * g).sum(1), m.sum(1), reduction)


Order = Literal["attention", "random", "shifted"]


def _pixel_ranks(maps: Tensor, order: Order, generator: torch.Generator) -> Tensor:
    """``[N, P]``: the step at which each pixel goes (0 first), most attended first."""
    n, height, width = maps.shape
    p = height * width
    flat = maps.reshape(n, p)
    if order == "shifted":
        # The attention ranking moved by a random circular shift of a quarter to three
        # quarters of the image each way: a region of the same shape and area, elsewhere.
        dy = torch.randint(-(-height // 4), height - height // 4 + 1, (n, 1, 1), generator=generator)
        dx = torch.randint(-(-width // 4), width - width // 4 + 1, (n, 1, 1), generator=generator)
        ys = (torch.arange(height).view(1, -1, 1) - dy) % height
        xs = (torch.arange(width).view(1, 1, -1) - dx) % width
        flat = flat.gather(1, (ys * width + xs).reshape(n, p))
    # Ties (and the whole "random" order) are broken by a seeded random permutation rather than
    # by pixel index, so a flat map does not delete the image row by row from the top.
    perm = torch.rand(n, p, generator=generator).argsort(1)     # a random permutation per image
    if order == "random":
        by_step = perm
    else:
        by_step = perm.gather(1, torch.sort(flat.gather(1, perm), dim=1, descending=True,
                                            stable=True).indices)
    ranks = torch.empty_like(by_step)
    ranks.scatter_(1, by_step, torch.arange(p).expand(n, p).contiguous())
    return ranks


@torch.no_grad()
def deletion_insertion(
    model_fn: Callable[[Tensor], Tensor],
    images: Tensor,
    maps: Tensor,
    classes: Tensor,
    steps: int = 16,
    fill: float | Tensor = 0.0,
    order: Order = "attention",
    seed: int = 0,
) -> dict[str, Tensor]:
    """Deletion and insertion curves of a class score (Petsiuk et al., "RISE", BMVC 2018).

    Pixels are ranked by the map, most attended first.  *Deletion*: the class score as the
    first ``k`` pixels are replaced by ``fill`` (a map that found what the decision rests on
    makes the score fall fast: a low area).  *Insertion*: the score as the first ``k``
    pixels are put into an all-``fill`` image (a high area).  ``k`` runs over ``steps + 1``
    counts ``floor(i P / steps)``, ``i = 0..steps``, of the ``P = H W`` pixels.

    Baselines with the same number of pixels at every step, to tell "erasing the attended
    region changes the decision" from "erasing anything does": ``order="random"`` takes the
    pixels in a random order; ``order="shifted"`` takes the attention ranking circularly
    shifted by a random offset (between a quarter and three quarters of the image each way),
    so a region of the attended region's shape and area elsewhere.  Ties in the map are
    broken at random (seeded), never by pixel position.

    Args:
        model_fn: images ``[B, 3, H, W]`` -> scores ``[B, C]``; pass probabilities
            (``lambda x: model(x).softmax(1)``) to read the curves as RISE does.  Called
            ``2 (steps + 1)`` times on all ``N`` images, without gradients.
        images: ``[N, 3, H, W]`` (normalised network input).
        maps: ``[N, H, W]`` (or ``[N, 1, H, W]``) at the images' resolution.
        classes: ``[N]`` label index whose score is followed.
        steps: number of steps from nothing to every pixel.
        fill: the value of a deleted pixel: a number, or a tensor broadcastable to ``images``
            (e.g. ``[3, 1, 1]``); 0 on normalised images is the dataset mean, as the erased
            pixels of Eq. 3.
        order: ``"attention"``, ``"random"`` or ``"shifted"`` (see above).
        seed: seeds the tie-breaking and the baselines.

    Returns:
        ``{"fractions": [S + 1], "deletion": [N, S + 1], "insertion": [N, S + 1],
        "deletion_auc": [N], "insertion_auc": [N]}``: the fraction of pixels moved at each
        step, the class score along each curve, and each curve's area (trapezoid rule over the
        fractions, so in the scores' units).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
    n, _, height, width = images.shape
    maps = maps[:, 0] if maps.dim() == 4 and maps.shape[1] == 1 else maps
    if maps.shape != (n, height, width):
        raise ValueError(f"maps must be [N, H, W] = [{n}, {height}, {width}] (the images' size), "
                         f"got {tuple(maps.shape)}")
    classes = classes.reshape(-1).long().to(images.device)
    if classes.shape[0] != n:
        raise ValueError(f"classes must hold one label index per image ({n}), got {tuple(classes.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if order not in ("attention", "random", "shifted"):
        raise ValueError(f"order must be 'attention', 'random' or 'shifted', got {order!r}")
    generator = torch.Generator().manual_seed(seed)
    ranks = _pixel_ranks(maps.detach().float().cpu(), order, generator).to(images.device)
    ranks = ranks.view(n, 1, height, width)
    fill_t = torch.as_tensor(fill, dtype=images.dtype, device=images.device)
    blank = torch.broadcast_to(fill_t, images.shape)
    p = height * width
    counts = [(i * p) // steps for i in range(steps + 1)]
    deletion, insertion = [], []
    for k in counts:
        moved = ranks < k
        for curve, image in ((deletion, torch.where(moved, blank, images)),
                             (insertion, torch.where(moved, images, blank))):
            scores = model_fn(image)
            if scores.dim() != 2 or scores.shape[0] != n:
                raise ValueError(f"model_fn must return scores [N, C] = [{n}, C], got {tuple(scores.shape)}")
            curve.append(scores.gather(1, classes[:, None])[:, 0].float())
    fractions = torch.tensor(counts, dtype=torch.float32, device=images.device) / p
    deletion_t, insertion_t = torch.stack(deletion, 1), torch.stack(insertion, 1)
    return {
        "fractions": fractions,
        "deletion": deletion_t,
        "insertion": insertion_t,
        "deletion_auc": torch.trapezoid(deletion_t, fractions, dim=1),
        "insertion_auc": torch.trapezoid(insertion_t, fractions, dim=1),
    }
