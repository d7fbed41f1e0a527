"""The bias studies of the paper's Sec. 5: does a classifier recognise the object, or its context?

**Biased Boat** (Sec. 5.1, Table 7). In VOC most boats are on water, so a classifier can answer
"boat" by looking at the water. The paper tests it on two kinds of images: boats *without*
water (is the boat still recognised?) and water *without* boats (is a boat hallucinated?), 50 of
each, beside the in-distribution validation accuracy. The synthetic benchmark's ``biased_boat``
split is exactly this (even images: a boat off water; odd: a water patch without a boat).
:func:`biased_boat_accuracy` scores a model on it.

**Orientation under domain shift** (Sec. 5.2 camera, Sec. 5.3 / Table 8 workpiece). A
near-symmetric object whose orientation shows only in a small critical area; in the training
domain the lighting also follows the class (:class:`~gainlib.data.SyntheticOrientation`).
:func:`orientation_scores` measures accuracy and which cue a model follows: where its
attention lies (critical area, rest of the object, background) and how often its answer is
the class the lighting points to, which on the shifted domain (random lighting) is chance for
a model that reads the object.

Scores are thresholded at probability 0.5 (logit 0): "recognised" means the boat's sigmoid
probability is above one half, as the multi-label classifier is trained (Eq. 6's L_cl).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from gainlib.data.protocol import collate_samples

__all__ = ["class_scores", "biased_boat_accuracy", "orientation_scores"]


@torch.no_grad()
def class_scores(model: nn.Module, dataset: Dataset, cls: int, batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """The logit of class ``cls`` on every sample, and whether the sample has the class.

    Returns:
        ``(logits [N], present [N] bool)``.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits, present = [], []
    try:
        for start in range(0, len(dataset), batch_size):
            batch = collate_samples([dataset[i] for i in range(start, min(len(dataset), start + batch_size))])
            logits.append(model(batch["image"].to(device))[:, cls].float().cpu())
            present.append(batch["labels"][:, cls] > 0.5)
    finally:
        model.train(was_training)
    return torch.cat(logits), torch.cat(present)


def biased_boat_accuracy(model: nn.Module, in_distribution: Dataset, biased_boat: Dataset,
                         boat: int) -> dict[str, Any]:
    """Table 7's four numbers for one model (fractions in [0, 1]).

    Args:
        model: a classifier returning logits ``[B, C]``.
        in_distribution: the validation split the model's training data resembles.
        biased_boat: boats without water and water without boats (``SyntheticScenes`` split
            ``"biased_boat"``); which is which is read from the labels.
        boat: the label index of "boat".

    Returns:
        ``{"val": accuracy of the boat decision on in_distribution,
        "boat without water": share of boat images called boat,
        "water without boat": share of boat-free images not called boat,
        "overall": the mean of the two counterfactual scores (as the paper's Table 7),
        "p(boat), boats": the mean boat probability on the boat images,
        "p(boat), water": the same on the boat-free images}`` — the last two show how far a
        model is from the threshold when the accuracies alone say nothing (e.g. all zero).
    """
    val_logits, val_present = class_scores(model, in_distribution, boat)
    logits, present = class_scores(model, biased_boat, boat)
    if not present.any() or present.all():
        raise ValueError("the biased-boat set needs images with and without a boat")
    said_boat = logits > 0
    boat_found = float(said_boat[present].float().mean())
    water_rejected = float((~said_boat[~present]).float().mean())
    probability = torch.sigmoid(logits)
    return {"val": float(((val_logits > 0) == val_present).float().mean()),
            "boat without water": boat_found, "water without boat": water_rejected,
            "overall": (boat_found + water_rejected) / 2,
            "p(boat), boats": float(probability[present].mean()),
            "p(boat), water": float(probability[~present].mean())}


def orientation_scores(model: nn.Module, dataset: Dataset, batch_size: int = 64) -> dict[str, float]:
    """Accuracy on an orientation split and the cue the model follows (fractions in [0, 1]).

    Args:
        model: a :class:`~gainlib.gain.GAIN` model (its Grad-CAM is used).
        dataset: a :class:`~gainlib.data.SyntheticOrientation` split.

    Returns:
        ``{"accuracy": top-1 accuracy,
        "follows lighting": share of answers equal to the class the lighting points to,
        "chance": 1 / number of classes,
        "attention on critical area", "attention on rest of object", "attention off object":
        the share of the true class's Grad-CAM mass (maps in [0, 1], summed) in each region,
        averaged over images}``. The critical area is the dataset's box around marker and gap.
    """
    k = dataset.labels.shape[1]
    device = next(model.parameters()).device
    size = dataset.images.shape[1]
    centres = torch.arange(size) + 0.5
    correct, lighting, shares = [], [], []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(dataset), batch_size):
            index = range(start, min(len(dataset), start + batch_size))
            batch = collate_samples([dataset[i] for i in index])
            out = model.attention(batch["image"].to(device), labels=batch["labels"].to(device))
            predicted = out.logits.argmax(1).cpu()
            truth = batch["labels"].argmax(1)
            step = 2 * np.pi / k
            light_class = np.round(dataset.light_angles[list(index)] / step).astype(int) % k
            correct.append(predicted == truth)
            lighting.append(predicted == torch.as_tensor(light_class))
            maps = out.maps[:, 0].detach().cpu()
            for j, i in enumerate(index):
                x0, y0, x1, y1 = (float(v) for v in dataset.boxes[i][0])
                critical = (((centres >= y0) & (centres <= y1))[:, None]
                            & ((centres >= x0) & (centres <= x1))[None, :])
                obj = torch.as_tensor(dataset.object_masks[i])
                total = maps[j].sum().clamp_min(1e-8)
                shares.append([float(maps[j][critical].sum() / total),
                               float(maps[j][obj & ~critical].sum() / total),
                               float(maps[j][~obj & ~critical].sum() / total)])
    finally:
        model.train(was_training)
    region = np.asarray(shares).mean(0) if shares else np.full(3, np.nan)
    return {"accuracy": float(torch.cat(correct).float().mean()),
            "follows lighting": float(torch.cat(lighting).float().mean()),
            "chance": 1.0 / k,
            "attention on critical area": float(region[0]),
            "attention on rest of object": float(region[1]),
            "attention off object": float(region[2])}
