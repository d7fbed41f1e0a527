"""How good a segmentation is: :func:`segmentation_miou` for label tensors (mIoU over VOC's 21
classes, ignore 255); over a whole dataset :func:`predict_segmentation` (with or without the
CRF), :func:`segmentation_scores` (IoU per class and mIoU, the layout of the paper's Table 2)
and :func:`cue_quality` (localization cues against the masks they never saw).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from gainlib.data.batching import iter_batches
from gainlib.data.protocol import IGNORE_INDEX
from gainlib.metrics import ConfusionMatrix
from gainlib.models import eval_mode
from gainlib.segmentation.crf import crf_refine

__all__ = ["segmentation_miou", "predict_segmentation", "segmentation_scores", "cue_quality"]


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


@torch.no_grad()
def predict_segmentation(network: nn.Module, dataset: Dataset, crf: bool = False,
                         batch_size: int = 64, crf_scale: float | None = None) -> Tensor:
    """Label maps ``int64 [N, H, W]`` of ``network`` on ``dataset`` at the images' size.

    The logits are upsampled bilinearly to the image; with ``crf`` the softmax is refined by
    the dense CRF first (:func:`~gainlib.segmentation.crf.crf_refine`). DeepLab's CRF
    parameters are set for ~500-pixel images: ``crf_scale`` divides its spatial deviations (default
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
