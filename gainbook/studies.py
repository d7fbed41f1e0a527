"""What the chapters measure on trained models: where attention falls, what attention mining
sees, and the bias studies of the paper's Sec. 5.

**Regions** (chapters 1-3): :func:`attention_by_region` splits each map over an object's
discriminative part, the rest of its body, its usual context and everything else;
:func:`region_records` averages it over splits, methods and seeds. **Attention mining**
(chapter 2): :func:`mining_scores`.

**Does a classifier recognise the object, or its context?**

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

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from gainbook.runs import DataSpec, load_split
from gainlib.data import iter_batches
from gainlib.masking import soft_mask
from gainlib.models import eval_mode

__all__ = ["REGIONS", "attention_by_region", "region_records", "mining_scores", "class_scores",
           "biased_boat_accuracy", "orientation_scores", "decoy_scores"]


REGIONS = ("part", "body", "context", "elsewhere")


def _regions(scenes: Any, index: int, cls: int) -> dict[str, np.ndarray]:
    obj = scenes.masks[index] == cls + 1
    part = obj & scenes.part_masks[index]
    context = (scenes.context_maps[index] == cls + 1) & ~obj
    return {"object": obj, "part": part, "body": obj & ~part, "context": context,
            "elsewhere": ~obj & ~context}


def attention_by_region(model: nn.Module, scenes: Any, threshold: float = 0.5,
                        indices: Sequence[int] | None = None, batch_size: int = 64) -> "Any":
    """Where a model's attention falls on synthetic scenes, one row per (image, true class).

    For the map ``A^c`` of each ground-truth class, thresholded at ``threshold`` (relative to
    its peak): the fraction of the object's discriminative ``part`` covered, of the rest of
    its ``body``, of its usual ``context`` patches, and of everything ``elsewhere``; and the
    ``iou`` and ``coverage`` of the thresholded map against the object's mask. NaN where the
    region is empty (e.g. no context patch).

    Args:
        model: a GAIN model; scenes: a :class:`~gainlib.data.SyntheticScenes` split.

    Returns:
        A pandas DataFrame with columns ``image, class, part, body, context, elsewhere, iou,
        coverage``.
    """
    import pandas as pd

    rows = []
    device = next(model.parameters()).device
    for chunk, batch in iter_batches(scenes, indices, batch_size):
        out = model.attention(batch["image"].to(device), labels=batch["labels"].to(device))
        above: Tensor = (out.maps > threshold).cpu()
        for j, index in enumerate(chunk):
            for k in range(out.classes.shape[1]):
                if not out.valid[j, k]:
                    continue
                cls = int(out.classes[j, k])
                hit = above[j, k].numpy()
                regions = _regions(scenes, index, cls)
                row = {"image": index, "class": scenes.classes[cls]}
                for name in REGIONS:
                    region = regions[name]
                    row[name] = float(hit[region].mean()) if region.any() else float("nan")
                obj = regions["object"]
                row["iou"] = float((hit & obj).sum() / max((hit | obj).sum(), 1))
                row["coverage"] = float(hit[obj].mean()) if obj.any() else float("nan")
                rows.append(row)
    return pd.DataFrame(rows, columns=["image", "class", *REGIONS, "iou", "coverage"])


def region_records(models: Mapping[Any, Mapping[int, nn.Module]], data: DataSpec,
                   splits: Sequence[str], threshold: float = 0.5, *,
                   draw_of: Callable[[int], int] | None = None) -> list[dict[str, Any]]:
    """:func:`attention_by_region` of several methods and seeds, averaged over each split.

    Args:
        models: ``{method: {seed: model}}`` (a method is any label, e.g. a
            :class:`gainbook.chapters.Method`).
        data: the synthetic data of the runs; ``splits``: which of its splits to measure.
        draw_of: the training-set draw of a seed's runs
            (:meth:`gainbook.profiles.BookProfile.draw_of`), recorded as ``"draw"``.

    Returns:
        One record per (method, split, seed): ``{"method": method, "split": split, "seed": ...,
        "part", "body", "context", "elsewhere", "iou"}`` — the input of
        :func:`gainbook.viz.results_table` (``by=("method", "split")``).
    """
    records = []
    for name, by_seed in models.items():
        for split in splits:
            scenes = load_split(data, split)
            for seed, model in by_seed.items():
                means = attention_by_region(model, scenes, threshold)[[*REGIONS, "iou"]].mean()
                draw = {} if draw_of is None else {"draw": draw_of(seed)}
                records.append({"method": name, "split": split, **draw, "seed": seed,
                                **means.to_dict()})
    return records


def mining_scores(model: nn.Module, dataset: Dataset, batch_size: int = 64) -> dict[str, float]:
    """What attention mining sees on ``dataset``: the mean, over (image, true class) pairs, of
    the class probability ``s^c(I)`` of the image, of ``s^c(I*^c)`` of the image erased with
    the model's own soft mask and fill (:meth:`gainlib.gain.GAIN.erase`), and of the erased
    fraction ``mean T(A^c)``; ``survives`` is the fraction of pairs whose erased image still
    scores above 0.5 (evidence the map missed)."""
    device = next(model.parameters()).device
    config = model.config
    sums = {"s(I)": 0.0, "s(I*)": 0.0, "erased": 0.0, "survives": 0.0}
    count = 0
    with eval_mode(model):
        for _, batch in iter_batches(dataset, batch_size=batch_size):
            images, labels = batch["image"].to(device), batch["labels"].to(device)
            out = model.attention(images, labels=labels)
            if not out.valid.any():
                continue
            mask = soft_mask(out.maps, config.sigma, config.omega)
            with torch.no_grad():
                masked = torch.sigmoid(model(model.erase(images, out.maps)[out.valid]))
            classes = out.classes[out.valid]
            after = masked.gather(1, classes[:, None])[:, 0]
            before = torch.sigmoid(out.logits).gather(1, out.classes)[out.valid]
            sums["s(I)"] += before.sum().item()
            sums["s(I*)"] += after.sum().item()
            sums["erased"] += mask[out.valid].mean(dim=(-2, -1)).sum().item()
            sums["survives"] += (after > 0.5).sum().item()
            count += int(out.valid.sum())
    return {k: v / max(count, 1) for k, v in sums.items()}


@torch.no_grad()
def class_scores(model: nn.Module, dataset: Dataset, cls: int, batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """The logit of class ``cls`` on every sample, and whether the sample has the class.

    Returns:
        ``(logits [N], present [N] bool)``.
    """
    device = next(model.parameters()).device
    logits, present = [], []
    with eval_mode(model):
        for _, batch in iter_batches(dataset, batch_size=batch_size):
            logits.append(model(batch["image"].to(device))[:, cls].float().cpu())
            present.append(batch["labels"][:, cls] > 0.5)
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
        Fractions in [0, 1]: ``"val"``, the accuracy of the boat decision on
        ``in_distribution``; ``"boat without water"``, the share of boat images called boat;
        ``"water without boat"``, the share of boat-free images not called boat;
        ``"overall"``, the mean of the two (as the paper's Table 7); ``"p(boat), boats"`` and
        ``"p(boat), water"``, the mean boat probability on each, which shows how far a model
        is from the threshold when the accuracies say nothing; ``"AUC"``, how well the boat
        logit separates boats without water from water without boats with no threshold at
        all (0.5: not at all; 0: every water image above every boat); and the two
        counterfactual accuracies at the threshold that maximises balanced accuracy on
        ``in_distribution`` (``"... val threshold"``,
        :func:`gainlib.metrics.balanced_threshold`).
    """
    from gainlib.metrics import balanced_threshold, binary_auroc

    val_logits, val_present = class_scores(model, in_distribution, boat)
    logits, present = class_scores(model, biased_boat, boat)
    if not present.any() or present.all():
        raise ValueError("the biased-boat set needs images with and without a boat")
    said_boat = logits > 0
    boat_found = float(said_boat[present].float().mean())
    water_rejected = float((~said_boat[~present]).float().mean())
    probability = torch.sigmoid(logits)
    calibrated = logits > balanced_threshold(val_logits, val_present)
    return {"val": float(((val_logits > 0) == val_present).float().mean()),
            "boat without water": boat_found, "water without boat": water_rejected,
            "overall": (boat_found + water_rejected) / 2,
            "p(boat), boats": float(probability[present].mean()),
            "p(boat), water": float(probability[~present].mean()),
            "AUC": float(binary_auroc(logits, present)),
            "boat w/o water, val threshold": float(calibrated[present].float().mean()),
            "water w/o boat, val threshold": float((~calibrated[~present]).float().mean())}


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
    with eval_mode(model):
        for index, batch in iter_batches(dataset, batch_size=batch_size):
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
    region = np.asarray(shares).mean(0) if shares else np.full(3, np.nan)
    return {"accuracy": float(torch.cat(correct).float().mean()),
            "follows lighting": float(torch.cat(lighting).float().mean()),
            "chance": 1.0 / k,
            "attention on critical area": float(region[0]),
            "attention on rest of object": float(region[1]),
            "attention off object": float(region[2])}


def decoy_scores(model: nn.Module, dataset: Any, batch_size: int = 128) -> dict[str, float]:
    """The positive control's measures of one model on a :class:`~gainlib.data.DecoyShapes`
    split (fractions in [0, 1]).

    Returns:
        ``{"accuracy": top-1 accuracy (one object per image),
        "AUC": the mean over classes of the one-vs-rest ROC AUC of the class logits
        (threshold-free), "follows patch": share of answers equal to the class whose colour
        the corner patch has (chance where the patch is random: 1 / classes),
        "attention mass": share of the true class's Grad-CAM mass inside the object's mask
        (:func:`gainlib.metrics.attention_mass`)}``.
    """
    from gainlib.metrics import attention_mass, binary_auroc

    device = next(model.parameters()).device
    logits, masses = [], []
    with eval_mode(model):
        for index, batch in iter_batches(dataset, batch_size=batch_size):
            out = model.attention(batch["image"].to(device), labels=batch["labels"].to(device))
            logits.append(out.logits.detach().float().cpu())
            objects = torch.as_tensor(dataset.masks[index] > 0)
            masses.append(attention_mass(out.maps[:, 0].detach().cpu(), objects))
    logits = torch.cat(logits)
    truth = torch.as_tensor(dataset.labels).argmax(1)
    predicted = logits.argmax(1)
    patch = torch.as_tensor(dataset.patch_classes)
    auc = binary_auroc(logits, torch.as_tensor(dataset.labels))
    return {"accuracy": float((predicted == truth).float().mean()),
            "AUC": float(auc.nanmean()),
            "follows patch": float((predicted == patch).float().mean()),
            "attention mass": float(torch.cat(masses).nanmean())}
